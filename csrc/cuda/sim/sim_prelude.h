#pragma once
// A CPU simulation of the CUDA kernels, for checking their indexing and
// synchronisation on a machine without a GPU (see run_sim.sh). Included before
// the kernel sources, compiled by the host C++ compiler with LSTM_FUSED_SIM:
//   - every GPU thread is a host thread (pthreads), so the kernels run as
//     written, with real concurrency between threads and blocks; or, for
//     grids too large for one thread each (launch_fibers: the real 128-block
//     grid is 32768 threads), a fiber (ucontext) in one host thread, switched
//     only at barriers, in a fixed round-robin order;
//   - __syncthreads is a barrier of the block's threads, grid.sync() one of
//     the whole grid (a cooperative launch runs every block at once);
//   - mma.sync is a barrier of the warp's 32 lanes around an exchange of their
//     fragments, computed from the PTX ISA's fragment layouts, written out
//     independently of the kernels' own use of them; the products (exact in
//     fp32 for 16-bit and tf32 operands) are accumulated in fp32, as by the
//     tensor cores (their internal order and rounding within one instruction
//     may differ from this sequential sum by a few ulp);
//   - dynamic shared memory is a per-block array; static __shared__ arrays are
//     function statics, so kernels that use them run one block at a time.
// With -fsanitize=thread, a missing barrier shows up as a data race.
#define LSTM_FUSED_SIM 1
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <barrier>
#include <deque>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace lstm_fused_sim {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "SIM FAILURE: %s\n", what);
  std::abort();
}

// ------------------------------------------------------------------ fibers
// A fiber's context is its saved stack pointer. On x86-64 the switch saves the
// callee-saved registers and the SSE/x87 control words on the stack (no signal
// mask system call, unlike swapcontext); elsewhere ucontext is used.
#if defined(__x86_64__)
extern "C" void lstm_fused_sim_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl lstm_fused_sim_switch
.type lstm_fused_sim_switch,@function
lstm_fused_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size lstm_fused_sim_switch, .-lstm_fused_sim_switch
)");
struct FiberContext {
  void* sp = nullptr;
};
inline void switch_context(FiberContext* from, FiberContext* to) {
  lstm_fused_sim_switch(&from->sp, to->sp);
}
// A fresh stack whose first switch "returns" into entry() (which never returns).
inline void make_context(FiberContext* c, char* stack, size_t size, void (*entry)()) {
  auto* top = reinterpret_cast<uint64_t*>(
      (reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15)));
  *--top = 0;                                   // alignment: entry sees rsp % 16 == 8
  *--top = reinterpret_cast<uint64_t>(entry);   // return address of the first switch
  for (int r = 0; r < 6; ++r) *--top = 0;       // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr = 0;
  uint16_t fpcw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpcw));
  *--top = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpcw) << 32);
  c->sp = top;
}
#else
struct FiberContext {
  ucontext_t uc;
};
inline void switch_context(FiberContext* from, FiberContext* to) { swapcontext(&from->uc, &to->uc); }
inline void make_context(FiberContext* c, char* stack, size_t size, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, entry, 0);
}
#endif

struct ThreadCtx;
struct Fiber {
  FiberContext ctx;
  const ThreadCtx* c = nullptr;
  bool done = false;
};
struct Scheduler {
  FiberContext main;
  std::deque<Fiber*> ready;
  Fiber* current = nullptr;
};
// Non-null while fibers run (all in this one host thread).
inline thread_local Scheduler* tl_sched = nullptr;

// A barrier of n participants: std::barrier between host threads, or a
// counter whose waiting fibers resume when the last one arrives.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n), real_(n) {}
  void arrive_and_wait() {
    Scheduler* s = tl_sched;
    if (s == nullptr) {
      real_.arrive_and_wait();
      return;
    }
    if (++count_ == n_) {
      count_ = 0;
      for (Fiber* f : waiting_) s->ready.push_back(f);
      waiting_.clear();
      return;
    }
    Fiber* self = s->current;
    waiting_.push_back(self);
    switch_context(&self->ctx, &s->main);
  }

 private:
  int n_;
  int count_ = 0;
  std::vector<Fiber*> waiting_;
  std::barrier<> real_;
};

struct Warp {
  std::unique_ptr<Barrier> bar;
  uint32_t a[32][4];
  uint32_t b[32][2];
  int kind[32];
};

struct Block {
  std::unique_ptr<Barrier> bar;
  std::vector<uint4> smem;
  std::vector<std::unique_ptr<Warp>> warps;
};

inline thread_local Block* tl_block = nullptr;
inline thread_local Warp* tl_warp = nullptr;
inline thread_local int tl_lane = 0;
inline thread_local Barrier* tl_grid = nullptr;
// Set by the caller: run the next launches as fibers (see the header).
inline bool g_fibers = false;

inline void* block_smem() { return tl_block->smem.data(); }

inline float f32_of_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float half_bits_to_float(uint32_t h, bool bf16) {
  if (bf16) return f32_of_bits((h & 0xffffu) << 16);
  return __half2float(__ushort_as_half(static_cast<unsigned short>(h & 0xffffu)));
}

// Each lane publishes its fragments; after the barrier every lane computes its
// own accumulators; the second barrier keeps the exchange area until all have read.
template <class AFn, class BFn>
inline void mma_exchange(float (&d)[4], int kind, int K, AFn a_at, BFn b_at) {
  Warp& w = *tl_warp;
  const int lane = tl_lane;
  w.kind[lane] = kind;
  w.bar->arrive_and_wait();
  for (int l = 0; l < 32; ++l) {
    if (w.kind[l] != kind) fail("lanes of a warp issued different mma instructions");
  }
  const int g = lane / 4, q = lane % 4;
  const int rows[4] = {g, g, g + 8, g + 8};
  const int cols[4] = {2 * q, 2 * q + 1, 2 * q, 2 * q + 1};
  float out[4];
  for (int i = 0; i < 4; ++i) {
    float s = d[i];
    for (int k = 0; k < K; ++k) s = std::fma(a_at(w, rows[i], k), b_at(w, k, cols[i]), s);
    out[i] = s;
  }
  w.bar->arrive_and_wait();
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

// mma.m16n8k16.row.col, 16-bit operands (PTX ISA, "Matrix Fragments for
// mma.m16n8k16 with floating point type"): A element (r, k) is held by lane
// (r % 8)·4 + (k % 8) / 2 in register (r >= 8) + 2·(k >= 8), half k % 2;
// B element (k, n) by lane n·4 + (k % 8) / 2 in register (k >= 8), half k % 2.
inline void mma_16816(bool bf16, float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                      uint32_t a3, uint32_t b0, uint32_t b1) {
  Warp& w = *tl_warp;
  w.a[tl_lane][0] = a0;
  w.a[tl_lane][1] = a1;
  w.a[tl_lane][2] = a2;
  w.a[tl_lane][3] = a3;
  w.b[tl_lane][0] = b0;
  w.b[tl_lane][1] = b1;
  auto a_at = [bf16](const Warp& w, int r, int k) {
    const uint32_t word = w.a[(r % 8) * 4 + (k % 8) / 2][(r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)];
    return half_bits_to_float(k % 2 ? word >> 16 : word, bf16);
  };
  auto b_at = [bf16](const Warp& w, int k, int n) {
    const uint32_t word = w.b[n * 4 + (k % 8) / 2][k >= 8 ? 1 : 0];
    return half_bits_to_float(k % 2 ? word >> 16 : word, bf16);
  };
  mma_exchange(d, bf16 ? 1 : 2, 16, a_at, b_at);
}

// mma.m16n8k8.row.col .tf32: A element (r, k) in lane (r % 8)·4 + k % 4,
// register (r >= 8) + 2·(k >= 4); B element (k, n) in lane n·4 + k % 4,
// register (k >= 4). The tensor core reads the upper 19 bits only.
inline void mma_1688_tf32(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                          uint32_t b0, uint32_t b1) {
  Warp& w = *tl_warp;
  w.a[tl_lane][0] = a0;
  w.a[tl_lane][1] = a1;
  w.a[tl_lane][2] = a2;
  w.a[tl_lane][3] = a3;
  w.b[tl_lane][0] = b0;
  w.b[tl_lane][1] = b1;
  auto a_at = [](const Warp& w, int r, int k) {
    return f32_of_bits(w.a[(r % 8) * 4 + k % 4][(r >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)] &
                       0xffffe000u);
  };
  auto b_at = [](const Warp& w, int k, int n) {
    return f32_of_bits(w.b[n * 4 + k % 4][k >= 4 ? 1 : 0] & 0xffffe000u);
  };
  mma_exchange(d, 3, 8, a_at, b_at);
}

struct ThreadCtx {
  Block* block;
  Warp* warp;
  Barrier* grid;
  uint3 tid, bid;
  dim3 bdim, gdim;
  const std::function<void()>* body;
};

inline void enter(const ThreadCtx* c) {
  tl_block = c->block;
  tl_warp = c->warp;
  tl_lane = static_cast<int>(c->tid.x % 32);
  tl_grid = c->grid;
  threadIdx = c->tid;
  blockIdx = c->bid;
  blockDim = c->bdim;
  gridDim = c->gdim;
}

inline void* thread_main(void* p) {
  const ThreadCtx* c = static_cast<const ThreadCtx*>(p);
  enter(c);
  (*c->body)();
  return nullptr;
}

[[noreturn]] inline void fiber_main() {
  Fiber* f = tl_sched->current;
  (*f->c->body)();
  f->done = true;
  switch_context(&f->ctx, &tl_sched->main);  // never resumed
  fail("a finished fiber was resumed");
}

// Runs one fiber per context, round-robin, each until it finishes or waits at
// a barrier; a barrier that never completes is a deadlock.
inline void run_fibers(std::vector<ThreadCtx>& ctx) {
  constexpr size_t kStack = size_t(128) << 10;
  const size_t n = ctx.size();
  void* stacks = mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (stacks == MAP_FAILED) fail("mmap of the fiber stacks");
  Scheduler sched;
  std::vector<Fiber> fibers(n);
  for (size_t i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    f.c = &ctx[i];
    make_context(&f.ctx, static_cast<char*>(stacks) + i * kStack, kStack, fiber_main);
    sched.ready.push_back(&f);
  }
  tl_sched = &sched;
  size_t finished = 0;
  while (!sched.ready.empty()) {
    Fiber* f = sched.ready.front();
    sched.ready.pop_front();
    sched.current = f;
    enter(f->c);
    switch_context(&sched.main, &f->ctx);
    if (f->done) ++finished;
  }
  tl_sched = nullptr;
  munmap(stacks, n * kStack);
  if (finished != n) fail("deadlock: threads wait at a barrier that never completes");
}

// Runs `body` as a 1-D grid of `blocks` x `threads` (threads a multiple of 32).
// cooperative: every block at once (grid barrier available); else one block
// at a time (kernels with static shared memory).
inline void launch(int blocks, int threads, size_t smem_bytes, bool cooperative,
                   const std::function<void()>& body, int grid_y = 1) {
  if (threads % 32 != 0) fail("block size must be a multiple of 32");
  const int total_blocks = blocks * grid_y;
  std::unique_ptr<Barrier> grid;
  if (cooperative) grid = std::make_unique<Barrier>(total_blocks * threads);
  auto run_blocks = [&](int first, int count) {
    std::vector<std::unique_ptr<Block>> blk;
    std::vector<ThreadCtx> ctx(static_cast<size_t>(count) * threads);
    std::vector<pthread_t> tids(ctx.size());
    for (int i = 0; i < count; ++i) {
      auto b = std::make_unique<Block>();
      b->bar = std::make_unique<Barrier>(threads);
      // Poison shared memory: the kernels must write before they read.
      b->smem.assign(smem_bytes / sizeof(uint4) + 1, make_uint4(0x7fc00000u, 0x7fc00000u,
                                                                0x7fc00000u, 0x7fc00000u));
      for (int wi = 0; wi < threads / 32; ++wi) {
        auto w = std::make_unique<Warp>();
        w->bar = std::make_unique<Barrier>(32);
        b->warps.push_back(std::move(w));
      }
      blk.push_back(std::move(b));
    }
    for (int i = 0; i < count; ++i) {
      const int lin = first + i;
      for (int t = 0; t < threads; ++t) {
        ThreadCtx& c = ctx[static_cast<size_t>(i) * threads + t];
        c.block = blk[i].get();
        c.warp = blk[i]->warps[t / 32].get();
        c.grid = grid.get();
        c.tid = make_uint3(t, 0, 0);
        c.bid = make_uint3(lin % blocks, lin / blocks, 0);
        c.bdim = dim3(threads, 1, 1);
        c.gdim = dim3(blocks, grid_y, 1);
        c.body = &body;
      }
    }
    if (g_fibers) {
      run_fibers(ctx);
      return;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    for (size_t i = 0; i < ctx.size(); ++i) {
      if (pthread_create(&tids[i], &attr, thread_main, &ctx[i]) != 0) fail("pthread_create");
    }
    for (auto& t : tids) pthread_join(t, nullptr);
    pthread_attr_destroy(&attr);
  };
  if (cooperative) {
    run_blocks(0, total_blocks);
  } else {
    for (int b = 0; b < total_blocks; ++b) run_blocks(b, 1);
  }
}

}  // namespace lstm_fused_sim

inline void __syncthreads() { lstm_fused_sim::tl_block->bar->arrive_and_wait(); }
inline float __uint_as_float(uint32_t u) { return lstm_fused_sim::f32_of_bits(u); }
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline uint4 __ldcg(const uint4* p) { return *p; }
[[noreturn]] inline void __trap() { lstm_fused_sim::fail("__trap"); }

namespace cooperative_groups {
struct grid_group {
  void sync() {
    if (lstm_fused_sim::tl_grid == nullptr) {
      lstm_fused_sim::fail("grid.sync outside a cooperative launch");
    }
    lstm_fused_sim::tl_grid->arrive_and_wait();
  }
};
inline grid_group this_grid() { return {}; }
}  // namespace cooperative_groups
