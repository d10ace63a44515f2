"""The adding problem (Hochreiter & Schmidhuber 1997) on lstm_fused.LSTM: the
standard cell against its variants.

Every step of a sequence of length T holds two features: a value drawn
uniformly from [0, 1] and a marker (0 or 1). Exactly two steps are marked, one
in each half; the target is the sum of their two values. Answering 1.0 every
time scores an MSE of 1/6 (about 0.167, the variance of the sum): a model
below that line has learned to carry the marked values across the sequence.

Each run trains lstm_fused.LSTM(2, hidden, batch_first=True, **kwargs) and a
Linear(hidden, 1) on the last step's output with Adam and the MSE, from the
same seed, on the same batches, for the same number of steps, and measures
the MSE on a fixed held-out test set along the way.

Writes into --out: curves_T{T}.png (test MSE per step, every run),
input_gate_T{T}.png (the trained models' input gates on a few test sequences),
results_T{T}.md and results_T{T}.json (the final table, also printed).
"""
import argparse
import contextlib
import os
import sys
import time

import torch
from torch import nn

import lstm_fused

# run name -> lstm_fused.LSTM keyword arguments; --variants picks from these names
RUNS = {
    "standard": {},
    "cifg": {"variant": "cifg"},
    "no_input_gate": {"variant": "no_input_gate"},
    "peephole": {"peephole": True},
}

# the MSE of always answering 1.0, the mean of the target
BASELINE_MSE = 1.0 / 6.0

# Measured on 2 cores: the standard cell leaves the 0.167 plateau at T = 200
# after 1000-1400 steps (seeds 0-3), so 3000 steps leave it room to settle,
# and the four default runs take about 2.5 minutes together.
DEFAULTS = dict(length=200, steps=3000, hidden=32, batch=64, lr=2e-2, clip=1.0, seed=0,
                test_size=1000, gate_sequences=6)


def adding_batch(n, length, generator=None):
    """n sequences: x (n, length, 2) as [value, marker] per step, y (n,) the sum
    of the two marked values. The first mark falls in [0, length // 2), the
    second in [length // 2, length)."""
    if length < 2:
        raise ValueError(f"the adding problem needs length >= 2, got {length}")
    values = torch.rand(n, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)
    rows = torch.arange(n)
    markers = torch.zeros(n, length)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = values[rows, first] + values[rows, second]
    return x, y


class AddingModel(nn.Module):
    """The LSTM, then a linear read-out of the last step's output."""

    def __init__(self, hidden, **lstm_kwargs):
        super().__init__()
        self.lstm = lstm_fused.LSTM(2, hidden, batch_first=True, **lstm_kwargs)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)


def build_models(names, hidden, seed):
    """{name: model}, each initialised from the same seed. Built before any
    training so that a keyword this build of lstm_fused lacks stops the demo
    at once rather than after the first runs."""
    models = {}
    for name in names:
        torch.manual_seed(seed)
        try:
            models[name] = AddingModel(hidden, **RUNS[name])
        except TypeError as e:
            raise SystemExit(f"run {name!r}: lstm_fused.LSTM does not take {RUNS[name]} here ({e}); "
                             f"choose runs with --variants") from e
    return models


@torch.no_grad()
def eval_mse(model, x, y):
    was_training = model.training
    model.eval()
    try:
        return nn.functional.mse_loss(model(x), y).item()
    finally:
        model.train(was_training)


def train(name, model, args, test, progress=True):
    """Trains one run; returns its row of the results (curve included)."""
    from tqdm import tqdm

    # the same batches for every run: a fresh generator from the same seed
    data = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    every = args.eval_every or max(1, args.steps // 20)
    curve = [(0, eval_mse(model, *test), None)]
    losses = []
    start = time.perf_counter()
    bar = tqdm(range(1, args.steps + 1), desc=f"{name:>13}", unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, leave=True)
    for step in bar:
        x, y = adding_batch(args.batch, args.length, data)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        losses.append(loss.item())
        if step % every == 0 or step == args.steps:
            train_loss = sum(losses) / len(losses)
            losses.clear()
            curve.append((step, eval_mse(model, *test), train_loss))
            bar.set_postfix(train=f"{train_loss:.3g}", test=f"{curve[-1][1]:.3g}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    mses = [m for _, m, _ in curve]
    return {
        "name": name,
        "kwargs": RUNS[name],
        "steps": args.steps,
        "seconds": round(seconds, 2),
        "final_test_mse": mses[-1],
        "best_test_mse": min(mses),
        "curve": [{"step": s, "test_mse": m, "train_loss": t} for s, m, t in curve],
    }


@torch.no_grad()
def input_gates(model, x):
    """The input gate (mean over hidden units) per sequence and step, (B, T)."""
    model.eval()
    with lstm_fused.record_gates(model) as rec:
        model(x)
    return rec["lstm.l0"].gates[:, :, 0].mean(-1).t().float()


def gate_contrast(gates, x):
    """The mean input gate on the marked steps and on the others (None when
    there are none: T = 2)."""
    marked = x[..., 1] > 0
    return tuple(gates[m].mean().item() if m.any() else None for m in (marked, ~marked))


@contextlib.contextmanager
def flushing_denormals():
    """Subnormal floats flushed to zero while open; yields whether they are.
    Through T steps of an untrained model the gradients decay to zero across
    the subnormal range, where x86 float arithmetic is many times slower:
    without this a training step at T = 200 ran about five times slower.
    Nothing near 1e-38 moves the MSE."""
    was = torch.tensor(1e-40).item() == 0.0  # already flushing: the constant rounds to zero
    try:
        yield torch.set_flush_denormal(True)  # False where the CPU cannot
    finally:
        torch.set_flush_denormal(was)


def _run_names(text):
    if text.strip() == "all":
        return list(RUNS)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown run(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(RUNS)} or all")
    return list(dict.fromkeys(names))


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    return parse


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _positive(text):
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--length", "-T", type=_int_at_least(2), default=d["length"],
                   help=f"sequence length T, at least 2 (default {d['length']})")
    p.add_argument("--steps", type=_int_at_least(1), default=d["steps"],
                   help=f"training steps per run (default {d['steps']})")
    p.add_argument("--hidden", type=_int_at_least(1), default=d["hidden"],
                   help=f"LSTM hidden size (default {d['hidden']})")
    p.add_argument("--batch", type=_int_at_least(1), default=d["batch"],
                   help=f"sequences per training step (default {d['batch']})")
    p.add_argument("--lr", type=_positive, default=d["lr"],
                   help=f"Adam learning rate (default {d['lr']:g})")
    p.add_argument("--clip", type=_non_negative, default=d["clip"],
                   help=f"gradient norm clip, 0 for none (default {d['clip']:g})")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="seed of the initial weights and of the training batches; "
                        f"the test set uses seed + 1 (default {d['seed']})")
    p.add_argument("--eval-every", type=_int_at_least(1), default=None,
                   help="steps between test evaluations (default: steps / 20)")
    p.add_argument("--test-size", type=_int_at_least(1), default=d["test_size"],
                   help=f"held-out test sequences (default {d['test_size']})")
    p.add_argument("--gate-sequences", type=_int_at_least(1), default=d["gate_sequences"],
                   help=f"test sequences in the input gate heat map (default {d['gate_sequences']})")
    p.add_argument("--variants", type=_run_names, default=list(RUNS),
                   help=f"comma-separated runs out of {', '.join(RUNS)}, or all (default all)")
    p.add_argument("--out", default="adding_out", help="output directory (default adding_out)")
    p.add_argument("--threads", type=_int_at_least(1), default=None,
                   help="torch.set_num_threads (default: torch's choice); every time step "
                        "synchronises the threads, so on a machine busy with other work 1 is faster")
    p.add_argument("--quiet", action="store_true", help="no progress bars, one line per run")


def run(args):
    with flushing_denormals() as flushed:
        return _run(args, flushed)


def _run(args, flushed):
    from . import plots, report

    if args.threads:
        torch.set_num_threads(args.threads)
    models = build_models(args.variants, args.hidden, args.seed)
    test = adding_batch(args.test_size, args.length, torch.Generator().manual_seed(args.seed + 1))
    shown = min(args.gate_sequences, args.test_size)
    # the gate contrast averages over more sequences than the heat map shows
    probe = test[0][:max(shown, min(100, args.test_size))]
    results, gates = [], {}
    for name, model in models.items():
        row = train(name, model, args, test, progress=not args.quiet)
        g = input_gates(model, probe)
        row["input_gate_marked"], row["input_gate_unmarked"] = gate_contrast(g, probe)
        gates[name] = g[:shown]
        results.append(row)
        if args.quiet:
            print(f"{name}: test MSE {row['final_test_mse']:.5f} after {row['steps']} steps, "
                  f"{row['seconds']:.1f} s", flush=True)
    T = args.length
    os.makedirs(args.out, exist_ok=True)
    plots.curves(results, T, BASELINE_MSE, os.path.join(args.out, f"curves_T{T}.png"))
    plots.input_gates(gates, probe[:shown], os.path.join(args.out, f"input_gate_T{T}.png"))
    print(report.write(report.summary(args, results, flushed), args.out, T))
    return 0
