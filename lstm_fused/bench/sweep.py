"""Runs the cases: build contenders, check them, time them round-robin, make rows."""
import gc
import math
import statistics

import torch
from tqdm import tqdm

from . import floor
from .check import TOLERANCE, float64_results, relative_error, results, verdict, within_torch_error
from .contenders import BASELINES, error_text, build
from .machine import isa_text
from .timing import peak_memory, round_robin, run_once
from .workload import make_call, make_inputs, rotating

FIELDS = (
    "device", "dtype", "mode", "T", "B", "I", "H", "layers", "bidirectional", "proj",
    "contender", "role", "check", "check_err", "check_tol", "check_detail",
    "median_us", "min_us", "max_us", "rounds", "calls_per_round", "us_per_step",
    *(f"speedup_vs_{b}" for b in BASELINES),
    "gflops", "flops", "bytes", "peak_mem_mb", "floor_us", "floor_ratio", "floor_gemm_gflops", "floor_gemm_engine",
    "cpu", "cpu_isa",
)


def _free(device):
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _floor_columns(case, machine, median_us):
    """The floor columns of a row of case, from machine's rates (floor_ratio once timed)."""
    floor_us = floor.floor_seconds(case, machine) * 1e6
    return {"floor_us": floor_us, "floor_ratio": median_us / floor_us if median_us else None,
            "floor_gemm_gflops": machine.gemm_flops[(case.device, case.dtype)] / 1e9,
            "floor_gemm_engine": machine.gemm_engine.get((case.device, case.dtype))}


def _row(case, contender, machine):
    return {
        "device": case.device, "dtype": case.dtype, "mode": case.mode,
        "T": case.steps, "B": case.B, "I": case.I, "H": case.H,
        "layers": 1 if case.mode == "cell" else case.layers,
        "bidirectional": case.bidirectional, "proj": case.proj,
        "contender": contender.name, "role": contender.role,
        "check": "", "check_err": None, "check_tol": TOLERANCE[case.dtype], "check_detail": "",
        "median_us": None, "min_us": None, "max_us": None, "rounds": 0, "calls_per_round": 0,
        "us_per_step": None, **{f"speedup_vs_{b}": None for b in BASELINES},
        "gflops": None, "flops": floor.flops(case),
        "bytes": floor.min_bytes(case, machine.element_size[case.dtype]),
        "peak_mem_mb": None, **_floor_columns(case, machine, None),
        "cpu": machine.cpu, "cpu_isa": isa_text(machine.isa),
    }


def run_case(case, api, baselines, machine, budget_s, n_sets=3, seed=0):
    """Rows of one case, one per contender (torch's module only when it is timed)."""
    restore = api.get_path() if hasattr(api, "get_path") and case.device == "cuda" else None
    try:
        return _run_case(case, api, baselines, machine, budget_s, n_sets, seed)
    finally:
        if restore is not None:
            api.set_path(restore)
        _free(case.device)


def _run_case(case, api, baselines, machine, budget_s, n_sets, seed):
    contenders = build(case, baselines, api, seed)
    inputs = make_inputs(case, n_sets, seed)
    rows = {c.name: _row(case, c, machine) for c in contenders}
    ref = contenders[0]
    try:
        want = results(ref.module, make_call(ref.module, case.mode), inputs[0], case.mode)
    except Exception as e:  # e.g. a dtype torch does not support on this device
        ref.error, want = error_text(e), None

    want64 = None  # float64 results of torch's module, computed only if a check needs them
    entries, timed = [], []
    for c in contenders:
        row = rows[c.name]
        if c.error is None:
            call = make_call(c.module, case.mode)
            try:
                c.activate()
                if c is ref:
                    row["check"] = "ref"
                elif want is None:
                    row.update(check="UNCHECKED", check_detail=f"{ref.name} failed: {ref.error}")
                    call(inputs[0])
                else:
                    # the check's call is also the first warm-up
                    got = results(c.module, call, inputs[0], case.mode)
                    err, where = relative_error(got, want)
                    row.update(check=verdict(err, case.dtype), check_err=err, check_detail=where)
                    if row["check"] != "ok" and math.isfinite(err):
                        if want64 is None:
                            want64 = float64_results(ref.module, make_call, inputs[0], case.mode)
                        ok, detail = within_torch_error(got, want, want64, case.dtype)
                        if ok:
                            row.update(check="ok", check_detail=f"{where} past tolerance, {detail}")
                        else:
                            row["check_detail"] = detail
                if c.timed:
                    fn = rotating(call, inputs)
                    est = run_once(case.device, fn)
                    peak = peak_memory(case.device, fn)
                    row["peak_mem_mb"] = None if peak is None else peak / 2 ** 20
                    entries.append((c.activate, fn, est))
                    timed.append(c)
            except Exception as e:  # e.g. an unsupported shape or out of memory: say so in the row
                c.error = error_text(e)
                _free(case.device)
        if c.error is not None:
            # the exception type in the table, its message in the files and the summary
            row.update(check="ERROR " + c.error.split(":", 1)[0], check_detail=c.error)

    if entries:
        times, numbers = round_robin(case.device, entries, budget_s)
        for c, ts, number in zip(timed, times, numbers):
            med = statistics.median(ts)
            rows[c.name].update(
                median_us=med * 1e6, min_us=min(ts) * 1e6, max_us=max(ts) * 1e6,
                rounds=len(ts), calls_per_round=number, us_per_step=med * 1e6 / case.steps,
                gflops=rows[c.name]["flops"] / med / 1e9,
            )
            rows[c.name]["floor_ratio"] = rows[c.name]["median_us"] / rows[c.name]["floor_us"]

    by_key = {c.key: rows[c.name]["median_us"] for c in timed if c.role == "baseline"}
    out = [rows[c.name] for c in contenders if c.timed]
    for row in out:
        for key, base in by_key.items():
            if row["median_us"] and base:
                row[f"speedup_vs_{key}"] = base / row["median_us"]
    return out


def refloor(rows, cases, machine):
    """Recompute the floor columns of rows from machine's (re-measured) rates."""
    by_key = {(c.device, c.dtype, c.mode, c.steps, c.B, c.I, c.H, 1 if c.mode == "cell" else c.layers,
               c.bidirectional, c.proj): c for c in cases}
    for row in rows:
        case = by_key.get((row["device"], row["dtype"], row["mode"], row["T"], row["B"], row["I"], row["H"],
                           row["layers"], row["bidirectional"], row["proj"]))
        if case is not None:
            row.update(_floor_columns(case, machine, row["median_us"]))


def run(cases, api, baselines, machine, n_sets=3, seed=0, progress=True):
    rows = []
    bar = tqdm(cases, desc="lstm_fused bench", unit="case", disable=not progress, dynamic_ncols=True)
    for case in bar:
        bar.set_postfix_str(case.label, refresh=False)
        rows.extend(run_case(case, api, baselines, machine, case.budget_s, n_sets, seed))
    return rows
