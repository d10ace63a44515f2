"""Round-robin timing: each round times a block of calls of every contender in turn,
so drift (clocks, thermals, other load) hits all of them alike; medians over rounds
are reported. A perf_counter loop (garbage collection paused, as timeit does) times
CPU blocks, CUDA events time GPU blocks. torch.utils.benchmark is not used: importing
it imports torch.utils.cpp_extension, which warns about CUDA on any machine with a
CUDA toolkit and no GPU."""
import gc
import time

import torch


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_once(device, fn):
    """Seconds of one synchronised call (a warm-up, its time sizes the blocks)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def peak_memory(device, fn):
    """Bytes a call allocates at its peak on top of what was live before it (CUDA only)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def cpu_block_seconds(fn, number):
    """Seconds per call of `number` back-to-back calls."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    finally:
        if enabled:
            gc.enable()


class _CpuBlock:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, number):
        return cpu_block_seconds(self.fn, number)


class _CudaBlock:
    def __init__(self, fn):
        self.fn = fn
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def __call__(self, number):
        self.start.record()
        for _ in range(number):
            self.fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3 / number


def round_robin(device, entries, budget_s, min_rounds=3, max_rounds=50, max_block_s=0.02):
    """entries: (activate, fn, seconds per call from warm-up). Returns per-entry lists
    of seconds per call, one per round, and the calls per block.

    Rounds continue until the case's budget is spent (at least min_rounds, at most
    max_rounds); a block repeats a call until it lasts about max_block_s (less when
    the budget is small), so cheap calls are not dominated by timer overhead. When calls turn out far slower than their
    warm-up said (another process took the cores), a deadline of three times the
    planned time stops the case after fewer rounds rather than stalling the suite;
    the row's round count shows it."""
    block_s = min(max_block_s, budget_s / (min_rounds * len(entries)))
    blocks = [(_CudaBlock if device == "cuda" else _CpuBlock)(fn) for _, fn, _ in entries]
    numbers = [max(1, int(block_s / max(est, 1e-7))) for _, _, est in entries]
    planned_round = sum(n * est for n, (_, _, est) in zip(numbers, entries))
    deadline = 3 * max(budget_s, min_rounds * planned_round)
    times = [[] for _ in entries]
    n = len(entries)
    start = time.perf_counter()
    rounds = 0
    while True:
        elapsed = time.perf_counter() - start
        if rounds >= max_rounds or (rounds >= min_rounds and elapsed >= budget_s) \
                or (rounds >= 1 and elapsed >= deadline):
            break
        for k in range(n):
            # rotate who goes first, so no contender always follows the same one
            i = (rounds + k) % n
            entries[i][0]()
            times[i].append(blocks[i](numbers[i]))
        rounds += 1
    return times, numbers
