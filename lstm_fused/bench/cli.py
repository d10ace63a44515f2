"""python -m lstm_fused.bench: the command line."""
import argparse
import os
import sys

import torch

from . import env as envinfo
from . import export, machine as machinery, presets, store, sweep
from .cases import DTYPE_ALIASES, MODES
from .contenders import BASELINE_HELP, BASELINES, EXTRAS, BenchError, fused_api
from .table import compare_lines, table_lines

DEFAULT_RESULTS_DIR = os.path.join("bench", "results")


def _choices_list(kind, allowed, aliases=None):
    """argparse type for a comma-separated list drawn from allowed values."""
    aliases = aliases or {a: a for a in allowed}

    def parse(text):
        out = []
        for item in filter(None, (s.strip().lower() for s in text.split(","))):
            if item not in aliases:
                raise argparse.ArgumentTypeError(
                    f"invalid {kind} {item!r} (choose from {', '.join(allowed)})")
            if aliases[item] not in out:
                out.append(aliases[item])
        if not out:
            raise argparse.ArgumentTypeError(f"empty {kind} list (choose from {', '.join(allowed)})")
        return out

    return parse


def _baselines(text):
    if text.strip().lower() == "all":
        return list(BASELINES)
    if text.strip().lower() == "none":
        return []
    return _choices_list("baseline", BASELINES + EXTRAS + ("all", "none"))(text)


def _shape_or_preset(text):
    if text in presets.PRESET_NAMES:
        return text
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a preset ({', '.join(presets.PRESET_NAMES)}) nor T,B,I,H "
            "with four positive integers, e.g. 100,8,512,512")
    return dims


def _integer(zero_ok=False):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(
                f"must be a {'non-negative' if zero_ok else 'positive'} integer, got {text!r}")
        return value
    return parse


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"budget must be a positive number of seconds, got {text!r}")
    return value


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m lstm_fused.bench",
        description="Microbenchmarks of lstm_fused against torch.nn.LSTM, a loop of torch.nn.LSTMCell "
                    "and a plain PyTorch reference LSTM. With no arguments: the cpu suite (about two "
                    "minutes on 2 cores), or the gpu suite when CUDA is available.",
        epilog="baselines: " + "; ".join(f"{k}: {v}" for k, v in BASELINE_HELP.items()),
    )
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="run every case on this device (default: the preset's device)")
    p.add_argument("--dtype", type=_choices_list("dtype", ("float32", "bfloat16", "float16"), DTYPE_ALIASES),
                   help="comma-separated dtypes: float32|fp32, bfloat16|bf16, float16|fp16 (default: the preset's)")
    p.add_argument("--shapes", nargs="+", type=_shape_or_preset, metavar="PRESET|T,B,I,H",
                   help="a preset or one or more T,B,I,H shapes (cell mode uses B,I,H); presets: "
                        + "; ".join(f"{p.name}: {p.description}" for p in presets.PRESETS.values())
                        + "; full: the cpu suite on CPU and the gpu suite on CUDA. "
                        "Default: cpu, or gpu when CUDA is available")
    p.add_argument("--layers", type=_integer(), default=1, help="LSTM layers (default 1)")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional LSTMs")
    p.add_argument("--proj-size", type=_integer(zero_ok=True), default=0,
                   help="proj_size of the LSTMs (default 0: none); the LSTMCell loop does not support it")
    p.add_argument("--mode", type=_choices_list("mode", MODES),
                   help="comma-separated modes: inference (no_grad), fwd (forward with grad), "
                        "fwdbwd (forward+backward), cell (one LSTMCell step), packed (forward with grad on a "
                        "PackedSequence of mixed lengths T..T/4); default: the preset's")
    p.add_argument("--baselines", type=_baselines, default=list(BASELINES),
                   help=f"comma-separated contenders to time besides lstm_fused: "
                        f"{', '.join(BASELINES + EXTRAS)}, all (the baselines) or none "
                        "(default all; nn.LSTM is always the reference of the correctness check)")
    p.add_argument("--csv", metavar="PATH", help="write every figure as CSV")
    p.add_argument("--json", metavar="PATH", help="write every figure, the environment and the options as JSON")
    p.add_argument("--plot", metavar="PATH", help="save a PNG of the speedups over nn.LSTM")
    p.add_argument("--results-dir", default=DEFAULT_RESULTS_DIR,
                   help=f"where stored runs live, and where results go when none of --csv/--json/--plot "
                        f"is given (default {DEFAULT_RESULTS_DIR})")
    p.add_argument("--label", metavar="NAME", help="store this run as NAME in the results directory")
    p.add_argument("--compare", metavar="LABEL", help="print the speedup of this run over the stored run LABEL")
    p.add_argument("--budget", type=_seconds, metavar="SECONDS",
                   help="seconds of timed rounds for the whole run, shared by its cases (default: the preset's)")
    p.add_argument("--input-sets", type=_integer(), default=3,
                   help="input sets rotated through while timing (default 3)")
    p.add_argument("--threads", type=_integer(), help="torch CPU threads (default: torch's)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 in fp32 matmuls and cuDNN (off by default: fp32 means fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _resolve(parser, args):
    """Cases of the run, or a parser error that names the option at fault."""
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        parser.error("argument --device: cuda requested but CUDA is not available on this machine "
                     "(torch.cuda.is_available() is False); use --device cpu")
    given = args.shapes or []
    names = [s for s in given if isinstance(s, str)]
    shapes = [s for s in given if not isinstance(s, str)]
    if len(names) > 1 or (names and shapes):
        parser.error("argument --shapes: give one preset name or T,B,I,H shapes, not both")
    if names:
        preset = names[0]
    elif args.device:
        preset = "gpu" if args.device == "cuda" else "cpu"
    else:
        preset = presets.default_preset(cuda)
    if args.device:
        devices = (args.device,)
    else:
        devices = presets.preset_devices(preset, cuda)
        if "cuda" in devices and not cuda:
            parser.error(f"argument --shapes: preset {preset!r} runs on CUDA, which is not available "
                         "on this machine; add --device cpu to run its shapes on CPU, or use --shapes cpu")
    if args.label and not store.valid_label(args.label):
        parser.error(f"argument --label: {args.label!r} is not a valid name (letters, digits, . _ -)")
    if args.compare:
        if not store.valid_label(args.compare):
            parser.error(f"argument --compare: {args.compare!r} is not a valid name (letters, digits, . _ -)")
        if not os.path.exists(store.path_of(args.results_dir, args.compare)):
            stored = sorted(f[:-5] for f in os.listdir(args.results_dir) if f.endswith(".json")) \
                if os.path.isdir(args.results_dir) else []
            parser.error(f"argument --compare: no stored run {args.compare!r} in {args.results_dir} "
                         f"(stored: {', '.join(stored) or 'none'})")
    cases = presets.expand(preset, devices, args.dtype, args.mode, shapes or None,
                           args.layers, args.bidirectional, args.proj_size)
    for case in cases:
        if case.proj and case.mode != "cell" and case.proj >= case.H:
            parser.error(f"argument --proj-size: {case.proj} must be smaller than the hidden size "
                         f"(H={case.H} in {case.shape_label})")
    if not cases:
        parser.error("argument --mode: no case to run")
    if args.budget:
        cases = [presets.with_budget(c, args.budget / len(cases)) for c in cases]
    return (preset if not shapes else "custom"), cases


def _outputs(args, devices):
    """Where files go: the paths given, else latest-<devices>.* in the results directory."""
    if args.csv or args.json or args.plot:
        return args.csv, args.json, args.plot
    stem = os.path.join(args.results_dir, "latest-" + "-".join(devices))
    return stem + ".csv", stem + ".json", stem + ".png"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    suite, cases = _resolve(parser, args)
    try:
        api = fused_api()
    except BenchError as e:
        print(f"lstm_fused bench: error: {e}", file=sys.stderr)
        return 2

    if args.threads:
        torch.set_num_threads(args.threads)
    saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    try:
        return _run(args, suite, cases, api)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32


def plot_title(env):
    """The machine the figures belong to: CPU model and vector extensions, GPU, torch."""
    title = f"{env['cpu']} ({machinery.isa_text(env['cpu_isa'])}), {env['torch_threads']} threads"
    if env["gpu"]:
        title += f"; {env['gpu']}"
    return title + f"; torch {env['torch']}"


def _cpu_engine_choices():
    """Which engine each kind of CPU call was timed onto: they differ between
    CPUs, so a run records its own."""
    try:
        import lstm_fused
        return lstm_fused.cpu_engine_choices()
    except (ImportError, RuntimeError):
        return []


def _run(args, suite, cases, api):
    env = envinfo.collect(api)
    rates = machinery.measure(cases)
    for line in envinfo.header_lines(env, rates):
        print(line)
    devices = sorted({c.device for c in cases})
    print(f"suite {suite}: {len(cases)} cases on {', '.join(devices)}; "
          "contenders alternate round-robin, medians reported")
    sys.stdout.flush()

    rows = sweep.run(cases, api, args.baselines, rates, n_sets=args.input_sets, seed=args.seed,
                     progress=not args.no_progress)
    for dtype in machinery.remeasure_cpu_gemm(rates, cases):
        key = ("cpu", dtype)
        print(f"GEMM  cpu {dtype} {rates.gemm_flops[key] / 1e9:,.0f} GFLOP/s by {rates.gemm_engine[key]} "
              "sets the floor (re-measured after the cases, above the reading before them)")
    sweep.refloor(rows, cases, rates)
    print()
    for line in table_lines(rows):
        print(line)

    comparison = None
    if args.compare:
        stored = store.load(args.results_dir, args.compare)
        found = store.compare(rows, stored)
        comparison = {"label": args.compare, "date": stored["env"].get("date"),
                      "rows": [{**{k: c["row"][k] for k in store.KEY},
                                "stored_us": c["stored_us"], "now_us": c["row"]["median_us"],
                                "speedup": c["ratio"]} for c in found]}
        print()
        for line in compare_lines(found, args.compare, stored["env"].get("date")):
            print(line)

    choices = _cpu_engine_choices() if "cpu" in devices else []
    if choices:
        print()
        print("CPU engines timed and chosen in this run (lstm_fused.cpu_engine_choices()):")
        for line in choices:
            print("  " + line)

    options = {k: v for k, v in vars(args).items()}
    options.update(suite=suite, cases=len(cases))
    data = export.payload(env, rates, options, rows, comparison)
    data["cpu_engine_choices"] = choices
    csv_path, json_path, plot_path = _outputs(args, devices)
    written = []
    if csv_path:
        export.write_csv(csv_path, rows)
        written.append(csv_path)
    if json_path:
        export.write_json(json_path, data)
        written.append(json_path)
    if plot_path:
        from .plot import save_plot  # matplotlib is slow to import; only when a plot is wanted
        if save_plot(plot_path, rows, plot_title(env)):
            written.append(plot_path)
    if args.label:
        written.append(store.save(args.results_dir, args.label, data))
    print()
    print("wrote " + ", ".join(written))

    bad = [r for r in rows if r["check"] not in ("ok", "ref")]
    if bad:
        print(f"{len(bad)} row(s) failed the correctness check or did not run:", file=sys.stderr)
        for r in bad:
            print(f"  {r['contender']} {r['device']} {r['dtype']} {r['mode']} "
                  f"T{r['T']} B{r['B']} I{r['I']} H{r['H']}: {r['check']} {r['check_detail']}".rstrip(),
                  file=sys.stderr)
        return 1
    return 0
