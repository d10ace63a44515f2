"""Speedup over torch's module per shape and dtype, one panel per device and mode.
Drawn on a bare Agg canvas, so nothing touches the user's pyplot backend."""
import math
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from .cases import SHORT_DTYPE
from .table import case_label

TORCH_NAMES = ("nn.LSTM", "nn.LSTMCell")


def _shape(row):
    # the case label without device, dtype and mode: those are the panel and the series
    return case_label(row).split(None, 3)[3]


def _times(v, _pos=None):
    return f"{v:.0f}x" if v >= 100 else f"{v:.3g}x"


def _panel(ax, rows, device, mode):
    shapes = list(dict.fromkeys(_shape(r) for r in rows))
    series = list(dict.fromkeys((r["contender"], r["dtype"]) for r in rows))
    # lstm_fused first and bold; baselines after it, small and faint
    series.sort(key=lambda s: not s[0].startswith("lstm_fused"))
    width = 0.8 / len(series)
    values = []
    for k, (contender, dtype) in enumerate(series):
        pts = [(shapes.index(_shape(r)) - 0.4 + (k + 0.5) * width, r["speedup_vs_nn"]) for r in rows
               if (r["contender"], r["dtype"]) == (contender, dtype)]
        fused = contender.startswith("lstm_fused")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="none",
                marker="o" if fused else "v", markersize=7 if fused else 4, alpha=1.0 if fused else 0.6,
                label=f"{contender} {SHORT_DTYPE[dtype]}")
        values += [p[1] for p in pts]
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    low, high = min(values + [1.0]), max(values + [1.0])
    ax.set_ylim(low / 1.5, high * 1.5)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(_times))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
    ax.set_xticks(range(len(shapes)))
    ax.set_xticklabels(shapes, rotation=40, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(shapes) - 0.4)
    for x in range(1, len(shapes)):
        ax.axvline(x - 0.5, color="grey", linewidth=0.3, alpha=0.5)
    torch_name = "nn.LSTMCell" if mode == "cell" else "nn.LSTM"
    ax.set_ylabel(f"speedup over {torch_name}")
    ax.set_title(f"{device} {mode} (log scale, >1: faster than {torch_name})", fontsize=10)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))


def save_plot(path, rows, title=None):
    rows = [r for r in rows if r["speedup_vs_nn"] and math.isfinite(r["speedup_vs_nn"])
            and r["contender"] not in TORCH_NAMES]
    panels = list(dict.fromkeys((r["device"], r["mode"]) for r in rows))
    if not panels:
        return None
    most = max(len({_shape(r) for r in rows if (r["device"], r["mode"]) == p}) for p in panels)
    fig = Figure(figsize=(max(7.0, 0.35 * most + 4), 3.4 * len(panels)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (device, mode) in zip(axes, panels):
        _panel(ax, [r for r in rows if (r["device"], r["mode"]) == (device, mode)], device, mode)
    if title:
        fig.suptitle(title, fontsize=9)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
