"""The CPU kernels' buffer cache: lstm_fused.empty_cache(), lstm_fused.cpu_cache_stats(),
the default bound (what recent calls used) and LSTM_FUSED_CPU_CACHE_MB. Results that
run on reused blocks are checked against torch.nn.LSTM like every other result."""
import gc
import json
import os
import subprocess
import sys

import pytest
import torch

import lstm_fused
from conftest import assert_close_to_reference, make_pair

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1 << 20
GRANULE = 1 << 16
I = H = 256
B = 16


def _pooled(nbytes):
    """Bytes a buffer takes in the cache: none below 1 MB, else rounded up to 64 KiB."""
    return 0 if nbytes < MB else -(-nbytes // GRANULE) * GRANULE


def step_bound(T, B, H, I):
    """More than one forward+backward of a float32 layer can hold in pooled buffers at
    once: gates, their gradient and its transposed copy (for dW on brgemm blocks)
    (T, B, 4H), and at most six (T, B, H)/(T, B, I) buffers (output, cells, the previous
    h of each step, the input gradient, spares)."""
    return 3 * _pooled(T * B * 4 * H * 4) + 6 * _pooled(T * B * max(H, I) * 4)


def _fresh():
    gc.collect()
    lstm_fused.empty_cache()
    stats = lstm_fused.cpu_cache_stats()
    assert stats["cached_bytes"] == 0 and stats["cached_blocks"] == 0, stats
    assert stats["in_use_bytes"] == 0, f"pooled tensors of other tests are still alive: {stats}"
    return stats


def _train_step(model, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, model.input_size, generator=g, requires_grad=True)
    out, (h, c) = model(x)
    (out.square().sum() + h.sum() + c.sum()).backward()
    return x, out


def test_steady_loop_reuses_every_block_and_empty_cache_frees_them():
    start = _fresh()  # hits and misses count from the process's start
    model = lstm_fused.LSTM(I, H)
    misses = []
    for _ in range(4):
        _train_step(model, 80)  # everything of the step is freed when it returns
        misses.append(lstm_fused.cpu_cache_stats()["misses"] - start["misses"])
    stats = lstm_fused.cpu_cache_stats()
    assert misses[0] > 0 and misses[1:] == [misses[0]] * 3, misses  # only the first step allocates
    assert stats["hits"] - start["hits"] >= 3 * misses[0]
    assert 0 < stats["cached_bytes"] <= stats["recent_bytes"] <= step_bound(80, B, H, I)
    lstm_fused.empty_cache()
    stats = lstm_fused.cpu_cache_stats()
    assert stats["cached_bytes"] == 0 and stats["cached_blocks"] == 0 and stats["in_use_bytes"] == 0


def test_a_loop_that_keeps_last_steps_output_reaches_a_steady_state():
    _fresh()
    model = lstm_fused.LSTM(I, H)
    kept, misses = None, []
    for step in range(5):
        kept = _train_step(model, 80, seed=step)  # the previous step's output lives meanwhile
        misses.append(lstm_fused.cpu_cache_stats()["misses"])
    assert misses[2:] == [misses[1]] * 3, misses
    stats = lstm_fused.cpu_cache_stats()
    assert stats["in_use_bytes"] > 0
    assert stats["cached_bytes"] + stats["in_use_bytes"] <= stats["recent_bytes"] <= 2 * step_bound(80, B, H, I)
    del kept
    gc.collect()
    assert lstm_fused.cpu_cache_stats()["in_use_bytes"] == 0


def test_cache_holds_what_recent_calls_used_not_all_it_has_seen():
    """Steps of ever new sequence lengths (a new size for every buffer): a cache bound by
    a fixed limit would keep the blocks of every length; this one keeps at most what
    the latest calls used, and after smaller calls only blocks of their size."""
    _fresh()
    model = lstm_fused.LSTM(I, H)
    lengths = (40, 50, 60, 70, 80, 90, 100, 110)
    for T in lengths:
        _train_step(model, T)
    stats = lstm_fused.cpu_cache_stats()
    assert 0 < stats["cached_bytes"] <= stats["recent_bytes"] <= step_bound(max(lengths), B, H, I)
    assert stats["cached_bytes"] < sum(step_bound(T, B, H, I) for T in lengths) / 4

    # inference at one small length, a few times: the training blocks go, its own stay
    x = torch.randn(64, B, I)
    with torch.no_grad():
        for _ in range(6):
            model(x)
    stats = lstm_fused.cpu_cache_stats()
    inference = _pooled(64 * B * 4 * H * 4) + 2 * _pooled(64 * B * H * 4)  # gates, output, spare
    assert 0 < stats["cached_bytes"] <= stats["recent_bytes"] <= inference, stats
    lstm_fused.empty_cache()
    assert lstm_fused.cpu_cache_stats()["cached_bytes"] == 0


def test_results_on_reused_blocks_equal_nn_lstm():
    """Steps whose buffers come from the cache, the first step's results kept alive
    meanwhile (a block handed out twice would overwrite them), all against nn.LSTM."""
    _fresh()
    ref, ours, ref64 = make_pair(torch.float32, input_size=I, hidden_size=H, num_layers=2)
    kept = []
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        x = torch.randn(80, B, I, generator=g)
        results = []
        for model in (ours, ref, ref64):
            xin = x.to(next(model.parameters()).dtype).detach().clone().requires_grad_()
            model.zero_grad()
            out, (h, c) = model(xin)
            (out.square().sum() + h.sum() + c.sum()).backward()
            results.append([out.detach(), h.detach(), c.detach(), xin.grad]
                           + [p.grad.clone() for p in model.parameters()])
        kept.append(results)
        assert lstm_fused.cpu_cache_stats()["hits"] > 0 or step == 0
    for step, (mine, theirs, exact) in enumerate(kept):
        for k, (a, b, e) in enumerate(zip(mine, theirs, exact)):
            assert_close_to_reference(a, b, e, torch.float32, f"step {step} result {k}")


def _run_with_cache_mb(value):
    code = """
import json, torch, lstm_fused
model = lstm_fused.LSTM(256, 256)
for _ in range(3):
    out, _ = model(torch.randn(80, 16, 256, requires_grad=True))
    out.sum().backward()
    del out
print(json.dumps(lstm_fused.cpu_cache_stats()))
"""
    env = {**os.environ, "LSTM_FUSED_CPU_CACHE_MB": value,
           "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value", ["0", "2"])
def test_environment_caps_the_cache(value):
    stats = _run_with_cache_mb(value)
    assert stats["limit_bytes"] == int(value) * MB
    assert stats["cached_bytes"] <= int(value) * MB
    assert stats["layout_bytes"] <= int(value) * MB
    if value == "0":  # off: no block goes through the cache at all
        assert stats["hits"] == stats["misses"] == stats["cached_blocks"] == 0
        assert stats["layout_hits"] == stats["layout_entries"] == 0
    else:
        assert stats["misses"] > 0 and stats["hits"] > 0


# Weight layouts kept from call to call (csrc/cpu/weight_layouts_cpu.h): the
# micro-kernel engine's (the onednn fixture of conftest), float32 here.
def _layouts():
    s = lstm_fused.cpu_cache_stats()
    return s["layout_hits"], s["layout_misses"]


def _check_inference(ours, ref, x):
    ref64 = torch.nn.LSTM(ref.input_size, ref.hidden_size).double()
    ref64.load_state_dict({k: v.double() for k, v in ref.state_dict().items()})
    with torch.no_grad():
        got, want, exact = ours(x)[0], ref(x)[0], ref64(x.double())[0]
    assert_close_to_reference(got, want, exact, torch.float32, "output")


@pytest.mark.parametrize("where", ["gemm", "step"])
def test_layouts_kept_while_weights_hold_their_bytes(onednn, where):
    lstm_fused.empty_cache()  # no record of earlier weights at these addresses
    ref = torch.nn.LSTM(48, 64)
    ours = lstm_fused.LSTM(48, 64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 8, 48)
    with lstm_fused.use_cpu_input_projection(where):
        _check_inference(ours, ref, x)
        hits, misses = _layouts()
        _check_inference(ours, ref, x)
        assert _layouts()[0] > hits and _layouts()[1] == misses  # the second call laid nothing out

        # changed where no version counter sees it: through .data, and through numpy
        with torch.no_grad():
            ref.weight_hh_l0.mul_(-1.5)
            ref.weight_ih_l0.add_(0.25)
        ours.weight_hh_l0.data.copy_(ref.weight_hh_l0)
        ours.weight_ih_l0.detach().numpy()[:] = ref.weight_ih_l0.detach().numpy()
        _check_inference(ours, ref, x)
        assert _layouts()[1] > misses  # laid out again from the new bytes
        # and one element, late in the weight
        with torch.no_grad():
            ref.weight_hh_l0[-1, -1] = 3.0
        ours.weight_hh_l0.data[-1, -1] = 3.0
        _check_inference(ours, ref, x)


def test_empty_cache_drops_the_kept_layouts(onednn):
    ours = lstm_fused.LSTM(32, 32)
    with torch.no_grad():
        ours(torch.randn(4, 8, 32))
    assert lstm_fused.cpu_cache_stats()["layout_entries"] > 0
    lstm_fused.empty_cache()
    stats = lstm_fused.cpu_cache_stats()
    assert stats["layout_entries"] == 0 and stats["layout_bytes"] == 0


def test_weights_that_change_every_call_are_not_copied_every_call(onednn):
    """Training: after two changes in a row, a weight's layout is built without keeping a
    copy for its next lookups; the results still follow the new weights."""
    lstm_fused.empty_cache()
    ref = torch.nn.LSTM(40, 48)
    ours = lstm_fused.LSTM(40, 48)
    ours.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.1)
    x = torch.randn(7, 8, 40)
    kept = []
    for _ in range(6):
        for m, opt in ((ref, opt_ref), (ours, opt_ours)):
            opt.zero_grad()
            m(x)[0].square().sum().backward()
            opt.step()
        kept.append(lstm_fused.cpu_cache_stats()["layout_entries"])
    # the step's forward and backward layouts of W_hh are kept at first, then not any more
    assert kept[0] > 0 and kept[-1] < kept[0], kept
    for _ in range(3):
        _check_inference(ours, ref, x)  # the latest weights, whether laid out afresh or kept


def test_small_batch_layout_kept_while_weights_hold_their_bytes():
    """small_batch's W_hh layout is kept like onednn's; an inference of 6 steps (fewer
    than a call must have to lay W_hh out for it anew) runs on it."""
    if not lstm_fused.cpu_engine_available("small_batch", torch.float32):
        pytest.skip("the small_batch engine does not run float32 on this CPU")
    lstm_fused.empty_cache()
    ref = torch.nn.LSTM(48, 64)
    ours = lstm_fused.LSTM(48, 64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 48)
    with lstm_fused.use_cpu_engine("small_batch"):
        before = lstm_fused.cpu_engine_counts()["small_batch"]
        _check_inference(ours, ref, x)
        hits, misses = _layouts()
        _check_inference(ours, ref, x)
        assert lstm_fused.cpu_engine_counts()["small_batch"] - before == 2
        assert _layouts()[0] > hits and _layouts()[1] == misses
        with torch.no_grad():
            ref.weight_hh_l0[-1, -1] = 3.0
        ours.weight_hh_l0.data[-1, -1] = 3.0
        _check_inference(ours, ref, x)
        assert _layouts()[1] > misses
