"""The benchmark tool on a tiny preset on CPU: files, table and errors. Timings are
not asserted; only that every figure is there, finite, and that the checks pass."""
import csv
import json
import math
import os
import subprocess
import sys
import types

import pytest
import torch

import lstm_fused
from lstm_fused.bench import main
from lstm_fused.bench import floor, machine as machinery
from lstm_fused.bench.baselines import CellLoopLSTM, ReferenceCell, ReferenceLSTM
from lstm_fused.bench.cases import Case
from lstm_fused.bench.check import within_torch_error
from lstm_fused.bench.cli import plot_title
from lstm_fused.bench.machine import Machine
from lstm_fused.bench.sweep import FIELDS, run_case

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALWAYS_NUMERIC = ("median_us", "min_us", "max_us", "us_per_step", "gflops", "flops", "bytes",
                  "floor_us", "floor_ratio", "speedup_vs_nn")
TABLE_COLUMNS = ("case", "contender", "check", "median", "[min, max]", "us/step", "x nn", "x loop",
                 "x ref", "achieved", "peak mem", "floor", "x floor")


def _finite(value):
    return value not in (None, "") and math.isfinite(float(value))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One in-process run of the quick preset, shared by the checks below."""
    out = tmp_path_factory.mktemp("bench")
    paths = {k: str(out / f"run.{k}") for k in ("csv", "json", "png")}
    argv = ["--shapes", "quick", "--device", "cpu", "--no-progress", "--results-dir", str(out),
            "--csv", paths["csv"], "--json", paths["json"], "--plot", paths["png"], "--label", "base"]
    capture = pytest.MonkeyPatch()
    stdout = out / "stdout.txt"
    with open(stdout, "w") as f:
        capture.setattr(sys, "stdout", f)
        rc = main(argv)
    capture.undo()
    return types.SimpleNamespace(rc=rc, dir=out, text=stdout.read_text(), **paths)


def test_quick_run_succeeds(quick_run):
    assert quick_run.rc == 0, quick_run.text


def test_table_has_header_columns_and_every_contender(quick_run):
    text = quick_run.text
    for word in ("torch", "CPU", "cuDNN", "oneDNN", "GEMM", "GB/s"):
        assert word in text
    header = next(line for line in text.splitlines() if line.startswith("case"))
    for column in TABLE_COLUMNS:
        assert column in header
    for name in ("lstm_fused", "nn.LSTM", "LSTMCell loop", "reference", "nn.LSTMCell", "reference cell"):
        assert f" {name} " in text
    assert "MISMATCH" not in text and "ERROR" not in text


def test_csv_has_every_figure(quick_run):
    with open(quick_run.csv, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == FIELDS
        rows = list(reader)
    assert {r["mode"] for r in rows} == {"inference", "fwd", "fwdbwd", "cell"}
    for row in rows:
        assert row["check"] == ("ref" if row["contender"].startswith("nn.") else "ok"), row
        for key in ALWAYS_NUMERIC:
            assert _finite(row[key]), (key, row)
        assert int(row["rounds"]) >= 1
        assert float(row["min_us"]) <= float(row["median_us"]) <= float(row["max_us"])
    fused = [r for r in rows if r["role"] == "lstm_fused"]
    assert fused and all(r["check"] == "ok" and _finite(r["check_err"]) for r in fused)
    for r in fused:
        if r["mode"] != "cell":
            assert _finite(r["speedup_vs_cellloop"]) and _finite(r["speedup_vs_reference"])


def test_json_has_rows_env_and_machine(quick_run):
    with open(quick_run.json) as f:
        data = json.load(f)
    assert data["fields"] == list(FIELDS)
    assert data["env"]["torch"] == torch.__version__
    assert data["env"]["cpu_logical_cores"] >= 1
    assert data["machine"]["gemm_gflops"]["cpu float32"] > 0
    assert data["machine"]["bandwidth_gbs"]["cpu"] > 0
    # the engines this process timed and chose, as lstm_fused lists them
    assert set(data["cpu_engine_choices"]) <= set(lstm_fused.cpu_engine_choices())
    assert all(" -> " in line for line in data["cpu_engine_choices"])
    rows = data["rows"]
    assert len(rows) == 27  # 6 sequence cases x 4 contenders + 1 cell case x 3
    for row in rows:
        assert set(row) == set(FIELDS)
        assert row["check"] in ("ok", "ref")
        for key in ALWAYS_NUMERIC:
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), (key, row)


def test_plot_and_stored_run_written(quick_run):
    with open(quick_run.png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(quick_run.dir, "base.json")) as f:
        assert len(json.load(f)["rows"]) == 27


def test_compare_against_stored_run(quick_run, capsys):
    rc = main(["--shapes", "quick", "--device", "cpu", "--mode", "cell", "--no-progress",
               "--results-dir", str(quick_run.dir), "--compare", "base", "--json", str(quick_run.dir / "cmp.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "against stored run 'base'" in out
    with open(quick_run.dir / "cmp.json") as f:
        compare = json.load(f)["compare"]
    assert compare["label"] == "base"
    assert {r["contender"] for r in compare["rows"]} == {"nn.LSTMCell", "lstm_fused", "reference cell"}
    assert all(r["speedup"] > 0 for r in compare["rows"])


def test_command_line_module(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lstm_fused.bench", "--shapes", "quick", "--device", "cpu", "--mode", "cell",
         "--no-progress", "--results-dir", str(tmp_path / "results")],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))},
    )
    assert proc.returncode == 0, proc.stderr
    assert " lstm_fused " in proc.stdout and "nn.LSTMCell" in proc.stdout and "x nn" in proc.stdout
    # nothing on stderr: torch's benchmark utilities would warn "No CUDA runtime is found"
    # on any machine with a CUDA toolkit and no GPU
    assert "No CUDA runtime" not in proc.stdout + proc.stderr
    assert proc.stderr == ""
    for ext in ("csv", "json", "png"):
        assert (tmp_path / "results" / f"latest-cpu.{ext}").exists()


@pytest.mark.parametrize("argv, words", [
    (["--mode", "sideways"], ["--mode", "sideways", "fwd, fwdbwd"]),
    (["--shapes", "1,2,3"], ["--shapes", "T,B,I,H"]),
    (["--shapes", "tiny"], ["--shapes", "quick, cpu, gpu, full"]),
    (["--shapes", "quick", "100,1,8,8"], ["--shapes", "not both"]),
    (["--dtype", "fp8"], ["--dtype", "float32"]),
    (["--baselines", "keras"], ["--baselines", "cellloop"]),
    (["--layers", "0"], ["--layers", "positive"]),
    (["--device", "tpu"], ["--device", "cpu", "cuda"]),
    (["--shapes", "quick", "--device", "cpu", "--proj-size", "64"], ["--proj-size", "smaller"]),
    (["--shapes", "quick", "--device", "cpu", "--compare", "nosuchrun"], ["--compare", "nosuchrun"]),
])
def test_bad_options_name_the_option(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--results-dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--device", "cuda"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--device" in err and "CUDA is not available" in err
    with pytest.raises(SystemExit):
        main(["--shapes", "gpu"])
    assert "--device cpu" in capsys.readouterr().err


def test_baselines_match_nn_lstm():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    x = torch.randn(4, 3, 5, requires_grad=True)
    hx = (torch.randn(4, 3, 7), torch.randn(4, 3, 7))
    want, (h_want, c_want) = ref(x, hx)
    for cls in (ReferenceLSTM, CellLoopLSTM):
        model = cls(5, 7, num_layers=2, bidirectional=True)
        if hasattr(model, "load_lstm_state_dict"):
            model.load_lstm_state_dict(ref.state_dict())
        else:
            model.load_state_dict(ref.state_dict())
        got, (h, c) = model(x, hx)
        for a, b in ((got, want), (h, h_want), (c, c_want)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    proj = torch.nn.LSTM(5, 7, proj_size=3)
    model = ReferenceLSTM(5, 7, proj_size=3)
    model.load_state_dict(proj.state_dict())
    hx = (torch.randn(1, 3, 3), torch.randn(1, 3, 7))
    torch.testing.assert_close(model(x, hx)[0], proj(x, hx)[0], rtol=1e-5, atol=1e-6)

    cell = torch.nn.LSTMCell(5, 7)
    mine = ReferenceCell(5, 7)
    mine.load_state_dict(cell.state_dict())
    hc = (torch.randn(3, 7), torch.randn(3, 7))
    for a, b in zip(mine(x[0], hc), cell(x[0], hc)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_flops_follow_the_formula():
    T, B, I, H = 10, 4, 6, 8
    one_layer = 2 * T * B * 4 * H * (I + H)
    assert floor.flops(Case("cpu", "float32", "fwd", T, B, I, H)) == one_layer
    assert floor.flops(Case("cpu", "float32", "inference", T, B, I, H)) == one_layer
    assert floor.flops(Case("cpu", "float32", "fwdbwd", T, B, I, H)) == 3 * one_layer
    assert floor.flops(Case("cpu", "float32", "fwd", T, B, I, H, bidirectional=True)) == 2 * one_layer
    two = floor.flops(Case("cpu", "float32", "fwd", T, B, I, H, layers=2))
    assert two == one_layer + 2 * T * B * 4 * H * (H + H)


class _OffByOnePercent(torch.nn.LSTM):
    def forward(self, x, hx):
        y, (h, c) = super().forward(x, hx)
        return y * 1.01, (h, c)


def test_a_wrong_result_is_reported_not_hidden():
    fake = types.SimpleNamespace(LSTM=_OffByOnePercent, LSTMCell=torch.nn.LSTMCell)
    machine = Machine({("cpu", "float32"): 1e11}, {"cpu": 1e10}, {"cpu": 0.0}, {"float32": 4})
    case = Case("cpu", "float32", "fwd", 5, 2, 4, 6)
    rows = {r["contender"]: r for r in run_case(case, fake, ["nn"], machine, budget_s=0.01)}
    assert rows["lstm_fused"]["check"].startswith("MISMATCH")
    assert rows["lstm_fused"]["check_detail"].startswith("output")
    assert rows["nn.LSTM"]["check"] == "ref"


def test_past_the_tolerance_torch_own_error_against_float64_decides():
    exact = {"output": torch.linspace(-1, 1, 50, dtype=torch.float64)}
    torch_result = {"output": exact["output"] + 0.05}   # torch itself 5% off in this dtype
    close = {"output": exact["output"] - 0.1}           # within 4x torch's error
    far = {"output": exact["output"] + 0.3}
    assert within_torch_error(close, torch_result, exact, "bfloat16")[0]
    ok, detail = within_torch_error(far, torch_result, exact, "bfloat16")
    assert not ok and detail.startswith("output")


class _Unsupported(torch.nn.LSTM):
    def forward(self, x, hx):
        raise NotImplementedError("this shape is not supported")


def test_a_failing_contender_is_reported_and_the_rest_still_run():
    fake = types.SimpleNamespace(LSTM=_Unsupported, LSTMCell=torch.nn.LSTMCell)
    machine = Machine({("cpu", "float32"): 1e11}, {"cpu": 1e10}, {"cpu": 0.0}, {"float32": 4})
    case = Case("cpu", "float32", "inference", 5, 2, 4, 6)
    rows = {r["contender"]: r for r in run_case(case, fake, ["nn", "reference"], machine, budget_s=0.01)}
    assert rows["lstm_fused"]["check"] == "ERROR NotImplementedError"
    assert "not supported" in rows["lstm_fused"]["check_detail"]
    assert rows["lstm_fused"]["median_us"] is None
    assert rows["reference"]["check"] == "ok" and rows["reference"]["median_us"] > 0


def test_the_real_package_is_benchmarked():
    from lstm_fused.bench.contenders import fused_api

    assert fused_api() is lstm_fused


def test_packed_mode_checks_and_times_packed_input(tmp_path):
    path = tmp_path / "packed.json"
    rc = main(["--shapes", "5,4,6,8", "--device", "cpu", "--mode", "fwd,packed", "--no-progress",
               "--budget", "0.05", "--results-dir", str(tmp_path / "results"), "--json", str(path)])
    assert rc == 0
    with open(path) as f:
        rows = json.load(f)["rows"]
    packed = [r for r in rows if r["mode"] == "packed"]
    assert {r["contender"] for r in packed} == {"nn.LSTM", "lstm_fused"}
    assert all(r["check"] in ("ok", "ref") for r in packed)


def _proc_cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_isa_follows_the_cpu_flags():
    isa = machinery.cpu_isa("fpu sse2 avx2 avx512f avx512_bf16 fma")
    assert isa == {"avx2": True, "avx512f": True, "avx512_bf16": True, "avx512_fp16": False,
                   "amx_tile": False, "amx_bf16": False}
    assert machinery.isa_text(isa) == "AVX2, AVX-512, AVX512_BF16; no AVX512_FP16, AMX-TILE, AMX-BF16"
    assert machinery.isa_text(machinery.cpu_isa("fpu sse2")).startswith("no AVX2, AVX-512")
    assert machinery.isa_text(None).startswith("ISA unknown")
    flags = _proc_cpu_flags()
    if flags is not None:
        assert machinery.cpu_isa() == {f: f in flags for f, _ in machinery.ISA_FLAGS}


def test_cpu_model_and_isa_beside_every_figure(quick_run):
    model, isa = machinery.cpu_model(), machinery.cpu_isa()
    text = machinery.isa_text(isa)
    assert model and model in quick_run.text and text in quick_run.text
    with open(quick_run.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["cpu"] == model and r["cpu_isa"] == text for r in rows)
    with open(quick_run.json) as f:
        data = json.load(f)
    assert data["env"]["cpu"] == model and data["env"]["cpu_isa"] == isa
    assert data["machine"]["cpu"] == model and data["machine"]["cpu_isa_text"] == text
    assert all(r["cpu"] == model and r["cpu_isa"] == text for r in data["rows"])
    title = plot_title(data["env"])
    assert model in title and text in title


def test_floor_is_set_by_the_fastest_engine_measured(quick_run):
    with open(quick_run.json) as f:
        data = json.load(f)
    measured = data["machine"]["gemm_measured"]["cpu float32"]
    engines = {r["engine"] for r in measured}
    assert "torch.mm (MKL)" in engines or "torch.mm" in engines
    if hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and torch.backends.mkldnn.is_available():
        assert "oneDNN packed" in engines
    # the square shape and the per-step shapes of the run's cases, (B x H) . (H x 4H)
    shapes = {(r["m"], r["k"], r["n"]) for r in measured}
    assert (2048, 2048, 2048) in shapes and (2, 8, 32) in shapes and (3, 12, 48) in shapes
    best = max(measured, key=lambda r: r["gflops"])
    assert data["machine"]["gemm_gflops"]["cpu float32"] == best["gflops"]
    engine = f"{best['engine']} at {best['m']}x{best['k']}x{best['n']}"
    assert data["machine"]["gemm_engine"]["cpu float32"] == engine
    assert f"GEMM  cpu float32 {best['gflops']:,.0f} GFLOP/s by {engine} sets the floor" in quick_run.text
    bandwidth = data["machine"]["bandwidth_gbs"]["cpu"] * 1e9
    stream_us = data["machine"]["weight_stream_us"]
    for row in data["rows"]:
        assert row["floor_gemm_engine"] == engine and row["floor_gemm_gflops"] == best["gflops"]
        case = Case(row["device"], row["dtype"], row["mode"], row["T"], row["B"], row["I"], row["H"],
                    row["layers"], row["bidirectional"], row["proj"])
        size = floor.recurrent_bytes(case, 4)
        stream = floor.barrier_steps(case) * stream_us[f"cpu {size}"] if size else 0.0
        want = max(row["flops"] / (best["gflops"] * 1e9) * 1e6, row["bytes"] / bandwidth * 1e6, stream)
        assert row["floor_us"] == pytest.approx(want, rel=1e-9)


def test_the_floor_rate_is_the_best_engine_not_the_first(monkeypatch):
    """Engines with known rates: the floor takes the fastest, at the shape it reached it."""
    seconds = {"slow": 4.0, "fast": 1.0, "middle": 2.0}
    monkeypatch.setattr(machinery, "cpu_engines",
                        lambda x, w: {name: (lambda name=name: name) for name in seconds})
    def fake_seconds(fn, run_time):
        name = fn()
        if not isinstance(name, str):  # the copy that measures the bandwidth
            return 1.0
        # the fast engine is slower than "middle" at the square shape, faster at the per-step one
        if run_time == 0.3:  # the square shape
            return 3.0 if name == "fast" else seconds[name]
        return seconds[name] * 1e-9

    monkeypatch.setattr(machinery, "_best_cpu_seconds", fake_seconds)
    case = Case("cpu", "float32", "fwd", 10, 4, 6, 8)
    m = machinery.measure([case], square_s=0.3, step_s=0.05)
    step_flops = 2 * 4 * 8 * 32
    assert m.gemm_flops[("cpu", "float32")] == pytest.approx(step_flops / 1e-9)
    assert m.gemm_engine[("cpu", "float32")] == "fast at 4x8x32"
    rates = {(e, s): r for e, s, r in m.gemm_measured[("cpu", "float32")]}
    assert rates[("middle", (2048, 2048, 2048))] > rates[("fast", (2048, 2048, 2048))]
    assert len(rates) == 6
    assert floor.floor_seconds(case, m) >= floor.flops(case) / (step_flops / 1e-9)


def test_recurrent_bytes_count_every_direction_and_the_projection():
    assert floor.recurrent_bytes(Case("cpu", "float32", "fwd", 10, 1, 6, 8), 4) == 4 * 8 * 8 * 4
    bi = Case("cpu", "bfloat16", "fwdbwd", 10, 1, 6, 8, layers=3, bidirectional=True, proj=5)
    assert floor.recurrent_bytes(bi, 2) == 2 * (4 * 8 * 5 + 5 * 8) * 2
    assert floor.recurrent_bytes(Case("cpu", "float32", "cell", 1, 8, 6, 8), 4) == 0


def test_the_weight_stream_sets_the_floor_of_a_small_batch():
    """Where reading W_hh every step takes longer than the flops at the GEMM rate,
    the floor is the steps times that read (forward and backward sweeps, every layer)."""
    case = Case("cpu", "float32", "fwdbwd", 100, 1, 256, 256, layers=2)
    size = floor.recurrent_bytes(case, 4)
    m = machinery.Machine(gemm_flops={("cpu", "float32"): 1e15}, bandwidth={"cpu": 1e15},
                          barrier_s={"cpu": 0.0}, element_size={"float32": 4},
                          stream_s={("cpu", size): 5e-6})
    assert floor.barrier_steps(case) == 400
    assert floor.floor_seconds(case, m) == pytest.approx(400 * 5e-6)
    m.stream_s = {}
    assert floor.floor_seconds(case, m) < 1e-6


def test_the_weight_stream_is_measured():
    """The op reads what it is asked to: 256 times the bytes take longer, a step of
    16 MiB at least the time of one copy of them at any speed a CPU reaches (2 TB/s)."""
    small = torch.ops.lstm_fused._cpu_stream_seconds(64 << 10, 20, 3)
    large = torch.ops.lstm_fused._cpu_stream_seconds(16 << 20, 20, 3)
    assert 0 < small < large and large > (16 << 20) / 2e12
    with pytest.raises(RuntimeError, match="bytes, steps and trials > 0"):
        torch.ops.lstm_fused._cpu_stream_seconds(0, 20, 3)


def test_every_cpu_engine_computes_the_product():
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 2e-2)):
        x, w = torch.randn(5, 16).to(dtype), torch.randn(24, 16).to(dtype)
        engines = machinery.cpu_engines(x, w)
        assert engines, dtype
        want = x.double() @ w.double().t()
        for name, fn in engines.items():
            got = fn().double()
            assert got.shape == want.shape, name
            assert ((got - want).abs().max() / want.abs().max()).item() < tol, (name, dtype)


def test_record_contender_runs_checked_and_is_no_baseline(tmp_path):
    """--baselines nn,record adds lstm_fused inside record_gates: checked like
    lstm_fused, and no row gets a speedup against it."""
    import json
    import subprocess
    import sys

    out = tmp_path / "r.json"
    subprocess.run([sys.executable, "-m", "lstm_fused.bench", "--shapes", "quick", "--mode", "fwd",
                    "--baselines", "nn,record", "--budget", "1", "--no-progress", "--json", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    rows = json.loads(out.read_text())["rows"]
    rec = [r for r in rows if r["contender"] == "lstm_fused+record"]
    assert rec and all(r["check"] == "ok" for r in rec)
    assert not any("speedup_vs_record" in r for r in rows)


def test_variants_bench_checks_and_times(capsys):
    """python -m lstm_fused.bench.variants: every variant checked against the
    float64 reference (exit status 0 only when all pass), then timed."""
    from lstm_fused.bench import variants

    assert variants.main(["--cases", "6,2,16", "--rounds", "1", "--budget", "0.05"]) == 0
    out = capsys.readouterr().out
    for name in variants.CONTENDERS:
        assert f" {name} " in out, out


def test_isa_limits_are_named_in_the_header(monkeypatch):
    """A run under a variable that keeps MKL or oneDNN off part of the CPU (an
    imitation of another CPU) says so in its header and stored environment."""
    from lstm_fused.bench import env as bench_env
    from lstm_fused.bench.machine import Machine
    monkeypatch.delenv("MKL_ENABLE_INSTRUCTIONS", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    e = bench_env.collect(lstm_fused)
    assert e["cpu_isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}
    lines = bench_env.header_lines(e, Machine())
    assert any(l.startswith("ISA") and "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16" in l for l in lines)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    e = bench_env.collect(lstm_fused)
    assert e["cpu_isa_limits"] == {}
    assert not any(l.startswith("ISA") for l in bench_env.header_lines(e, Machine()))


def test_a_rate_measured_low_before_the_cases_is_raised_after_them(monkeypatch):
    """The floor takes the better of the measurements before and after the cases, and
    the rows' floor columns follow it; a lower second reading changes nothing."""
    readings = iter([4.0, 1.0, 8.0])  # seconds of the one engine: slow, fast, slower

    monkeypatch.setattr(machinery, "cpu_engines", lambda x, w: {"only": lambda: "only"})
    monkeypatch.setattr(machinery, "step_shapes", lambda cases: [])
    # the copy that measures the bandwidth: instant, so the floor is the GEMM's
    monkeypatch.setattr(machinery, "_best_cpu_seconds", lambda fn, run_time: next(readings)
                        if isinstance(fn(), str) else 1e-12)
    case = Case("cpu", "float32", "inference", 10, 4, 6, 8)
    m = machinery.measure([case])
    slow = m.gemm_flops[("cpu", "float32")]
    row = {"device": "cpu", "dtype": "float32", "mode": "inference", "T": 10, "B": 4, "I": 6, "H": 8,
           "layers": 1, "bidirectional": False, "proj": 0, "median_us": 1e6,
           "floor_us": floor.floor_seconds(case, m) * 1e6}
    before = row["floor_us"]
    assert machinery.remeasure_cpu_gemm(m, [case]) == ["float32"]
    assert m.gemm_flops[("cpu", "float32")] == pytest.approx(4 * slow)
    from lstm_fused.bench.sweep import refloor
    refloor([row], [case], m)
    assert row["floor_us"] < before
    assert row["floor_gemm_gflops"] == pytest.approx(4 * slow / 1e9)
    assert row["floor_ratio"] == pytest.approx(1e6 / row["floor_us"])
    assert machinery.remeasure_cpu_gemm(m, [case]) == []  # 8 s: slower, kept the 1 s reading
    assert m.gemm_flops[("cpu", "float32")] == pytest.approx(4 * slow)
