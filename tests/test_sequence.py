"""The fused forward engines (small_batch, onednn) run a layer whose rows all
run every step in one parallel region with a barrier per step
(csrc/cpu/fused_step_cpu.h), and so does the backward sweep whose product runs
on onednn (fused_backward_cpu.h); a packed batch runs step by step. Both must
give the same bits, for any thread count and from concurrent callers, and
match torch.nn.LSTM; the counters show which of the two ran."""
import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm_fused
from conftest import assert_close_to_reference, make_pair

CASES = [("small_batch", torch.float32, 2, 64), ("small_batch", torch.float32, 5, 48),
         ("small_batch", torch.bfloat16, 3, 32),
         ("onednn", torch.float32, 3, 64), ("onednn", torch.bfloat16, 4, 48),
         ("onednn", torch.float16, 4, 32)]
IDS = [f"{e}-{str(d)[6:]}-B{b}-H{h}" for e, d, b, h in CASES]
T, I = 17, 24  # small_batch takes 16 steps or more


def skip_unless_fused(engine, dtype):
    if not lstm_fused.cpu_engine_available(engine, dtype):
        pytest.skip(f"the {engine} engine does not run {dtype} on this CPU")


def forward(model, x, hx, packed):
    """(output, h_n, c_n, grads of x, h0, c0): a padded batch, or the same batch
    packed with every length T (which runs step by step)."""
    x, hx = x.detach().requires_grad_(), tuple(h.detach().requires_grad_() for h in hx)
    if packed:
        seq = pack_padded_sequence(x, [x.size(0)] * x.size(1))
        out, (h, c) = model(seq, hx)
        out = pad_packed_sequence(out)[0]
    else:
        out, (h, c) = model(x, hx)
    torch.autograd.backward([out, h, c], [torch.ones_like(out), torch.ones_like(h), torch.ones_like(c)])
    return [out.detach(), h.detach(), c.detach(), x.grad, hx[0].grad, hx[1].grad]


def counted(fn):
    """fn's result and the passes (forward, backward) that ran in one region."""
    before = lstm_fused.cpu_sequence_counts()
    result = fn()
    after = lstm_fused.cpu_sequence_counts()
    return result, (after["forward"] - before["forward"], after["backward"] - before["backward"])


def onednn_products(before):
    """Backward products run on onednn since the counts `before`."""
    return lstm_fused.cpu_engine_counts()["onednn"] - before["onednn"]


@pytest.mark.parametrize("engine,dtype,B,H", CASES, ids=IDS)
def test_one_region_matches_step_by_step(engine, dtype, B, H):
    skip_unless_fused(engine, dtype)
    ref, ours, ref64 = make_pair(dtype, input_size=I, hidden_size=H, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    hx = (torch.randn(4, B, H, dtype=torch.float64), torch.randn(4, B, H, dtype=torch.float64))
    with lstm_fused.use_cpu_engine(engine):
        before = lstm_fused.cpu_engine_counts()
        one, (fwd, bwd) = counted(lambda: forward(ours, x.to(dtype), [h.to(dtype) for h in hx], False))
        assert fwd == 4, "each of 2 layers x 2 directions runs in one region"
        assert lstm_fused.cpu_engine_counts()[engine] - before[engine] >= 4
        # the backward's product engine: onednn when pinned, timed otherwise
        want_bwd = 4 if engine == "onednn" else onednn_products(before)
        assert bwd == want_bwd, "each backward sweep on onednn runs in one region"
        steps, regions = counted(lambda: forward(ours, x.to(dtype), [h.to(dtype) for h in hx], True))
        assert regions == (0, 0), "a packed batch runs step by step"
    for name, a, b in zip(["output", "h_n", "c_n", "dx", "dh0", "dc0"], one, steps):
        assert torch.equal(a, b), f"{name}: one region and step by step differ"
    theirs = forward(ref, x.to(dtype), [h.to(dtype) for h in hx], False)
    want = forward(ref64, x, hx, False)
    for name, a, b, r in zip(["output", "h_n", "c_n", "dx", "dh0", "dc0"], one, theirs, want):
        assert_close_to_reference(a, b, r, dtype, name)


@pytest.mark.parametrize("engine,dtype,B,H", CASES, ids=IDS)
def test_any_thread_count_same_bits(engine, dtype, B, H):
    """Each hidden unit is computed whole by one thread: the split between
    threads does not change a bit."""
    skip_unless_fused(engine, dtype)
    _, ours, _ = make_pair(dtype, input_size=I, hidden_size=H)
    x = torch.randn(T, B, I).to(dtype)
    threads = torch.get_num_threads()
    results = []
    try:
        with lstm_fused.use_cpu_engine(engine), torch.no_grad():
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                results.append(ours(x))
    finally:
        torch.set_num_threads(threads)
    for (out, (h, c)), n in zip(results[1:], (2, 3)):
        assert torch.equal(out, results[0][0]), f"{n} threads: output differs from 1 thread"
        assert torch.equal(h, results[0][1][0]) and torch.equal(c, results[0][1][1])


@pytest.mark.parametrize("engine,dtype,B,H", CASES[:3], ids=IDS[:3])
def test_concurrent_callers(engine, dtype, B, H):
    """Callers on several Python threads each get an OpenMP team of their own,
    more threads than cores: the barrier must neither hang nor mix them up."""
    skip_unless_fused(engine, dtype)
    _, ours, _ = make_pair(dtype, input_size=I, hidden_size=H)
    xs = [torch.randn(50, B, I).to(dtype) for _ in range(3)]
    with lstm_fused.use_cpu_engine(engine), torch.no_grad():
        want = [ours(x)[0] for x in xs]
        got = [None] * len(xs)

        def run(i):
            for _ in range(5):
                got[i] = ours(xs[i])[0]

        workers = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert not any(w.is_alive() for w in workers), "a concurrent call did not finish"
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"caller {i}: differs from its call alone"
