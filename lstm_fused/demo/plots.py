"""The adding demo's figures, drawn on a bare Agg canvas so that nothing touches
the user's pyplot backend."""
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig, path):
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)


def curves(results, length, baseline, path):
    """Test MSE against training step, one line per run, log-scale y."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for row in results:
        pts = row["curve"]
        ax.plot([p["step"] for p in pts], [p["test_mse"] for p in pts], marker="o", markersize=3,
                label=f"{row['name']} ({row['final_test_mse']:.2g})")
    ax.axhline(baseline, color="gray", linestyle="--", linewidth=1,
               label=f"always 1.0 (MSE 1/6 = {baseline:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("test MSE")
    ax.set_title(f"Adding problem, T = {length}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def input_gates(gates, x, path):
    """gates: {run: (B, T) mean input gate}; x: those B test sequences, whose
    marked steps are drawn over each panel. One panel per run."""
    marks = (x[..., 1] > 0).nonzero().tolist()  # [sequence, step] pairs
    n, length = x.shape[0], x.shape[1]
    fig = Figure(figsize=(8.0, len(gates) * (0.3 * n + 1.1) + 0.3), layout="constrained")
    axes = fig.subplots(len(gates), 1, squeeze=False)[:, 0]
    for ax, (name, g) in zip(axes, gates.items()):
        lo, hi = g.min().item(), g.max().item()
        if hi - lo < 1e-3:  # a constant gate (no_input_gate): a readable colour bar all the same
            lo, hi = lo - 0.05, hi + 0.05
        im = ax.imshow(g.numpy(), aspect="auto", interpolation="nearest", cmap="viridis",
                       vmin=lo, vmax=hi, extent=(-0.5, length - 0.5, n - 0.5, -0.5))
        # on the row's top edge, so the gate's own stripe at the mark stays visible
        ax.scatter([t for _, t in marks], [b - 0.38 for b, _ in marks], marker="v", s=22,
                   facecolor="red", edgecolor="white", linewidth=0.5)
        ax.set_yticks(range(n))
        ax.set_ylabel("test sequence")
        ax.set_title(f"{name}: input gate i, mean over hidden units (red: the two marked steps)",
                     fontsize=9)
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("time step")
    _save(fig, path)
