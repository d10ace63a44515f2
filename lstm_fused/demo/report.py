"""The adding demo's results: a JSON record and a markdown table."""
import json
import os
import platform

import torch

import lstm_fused
from ..bench.machine import cpu_model


def summary(args, results, subnormals_flushed):
    """Everything a reader needs to rerun the table: settings, machine, runs."""
    return {
        "task": "adding",
        "length": args.length,
        "steps": args.steps,
        "hidden": args.hidden,
        "batch": args.batch,
        "lr": args.lr,
        "clip": args.clip,
        "seed": args.seed,
        "test_seed": args.seed + 1,
        "test_size": args.test_size,
        "baseline_mse": 1.0 / 6.0,
        "subnormals_flushed": subnormals_flushed,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lstm_fused": lstm_fused.__version__,
        "runs": results,
    }


def _kwargs(kw):
    return ", ".join(f"{k}={v!r}" for k, v in kw.items()) or "(none)"


def _gate(v):
    return "-" if v is None else f"{v:.3f}"


def markdown(s):
    lines = [
        f"Adding problem, T = {s['length']}: {s['steps']} steps of {s['batch']} sequences, "
        f"hidden {s['hidden']}, Adam lr {s['lr']:g}, clip {s['clip']:g}, seed {s['seed']}; "
        f"test MSE on {s['test_size']} held-out sequences (seed {s['test_seed']}), "
        f"where always answering 1.0 scores {s['baseline_mse']:.3f}. "
        f"{s['cpu']}, {s['threads']} threads, torch {s['torch']}, lstm_fused {s['lstm_fused']}.",
        "",
        "| run | LSTM kwargs | final test MSE | best test MSE | mean i, marked steps | mean i, other steps | seconds |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in s["runs"]:
        lines.append(f"| {r['name']} | {_kwargs(r['kwargs'])} | {r['final_test_mse']:.2e} | "
                     f"{r['best_test_mse']:.2e} | {_gate(r['input_gate_marked'])} | "
                     f"{_gate(r['input_gate_unmarked'])} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def write(s, out, length):
    """Writes results_T{length}.json and .md into out; returns the markdown."""
    text = markdown(s)
    with open(os.path.join(out, f"results_T{length}.json"), "w") as f:
        json.dump(s, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, f"results_T{length}.md"), "w") as f:
        f.write(text)
    return text
