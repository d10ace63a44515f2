"""The terminal table."""
import math

from .cases import SHORT_DTYPE

SPEEDUP_COLUMNS = (("speedup_vs_nn", "x nn"), ("speedup_vs_cellloop", "x loop"), ("speedup_vs_reference", "x ref"))
LEGEND = ("x nn / x loop / x ref: time of nn.LSTM (nn.LSTMCell in cell mode) / LSTMCell loop / reference "
          "over the row's time (>1: the row is faster); median [min, max] over rounds; "
          "x floor: median over the floor max(flops/GEMM rate, bytes/bandwidth, steps x weight stream) + "
          "barriers, at the best GEMM rate measured among the engines (header line GEMM) and the measured "
          "time to read a step's recurrent weights (header line floor)")


def _ok(v):
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _unit(us):
    if us < 1e3:
        return 1.0, "us"
    if us < 1e6:
        return 1e3, "ms"
    return 1e6, "s"


def _num(v):
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_time(us):
    if not _ok(us):
        return "-"
    scale, unit = _unit(us)
    return f"{_num(us / scale)} {unit}"


def fmt_spread(row):
    if not _ok(row["median_us"]):
        return ""
    scale, _ = _unit(row["median_us"])
    return f"[{_num(row['min_us'] / scale)}, {_num(row['max_us'] / scale)}]"


def fmt_rate(gflops):
    if not _ok(gflops):
        return "-"
    if gflops >= 1e3:
        return f"{gflops / 1e3:.3g} TF/s"
    return f"{gflops:.3g} GF/s" if gflops >= 1 else f"{gflops * 1e3:.3g} MF/s"


def fmt_x(v):
    return f"{v:.2f}x" if _ok(v) else "-"


def case_label(row):
    shape = f"B{row['B']} I{row['I']} H{row['H']}"
    if row["mode"] != "cell":
        shape = f"T{row['T']} " + shape
        if row["proj"]:
            shape += f" P{row['proj']}"
        if row["layers"] > 1:
            shape += f" L{row['layers']}"
        if row["bidirectional"]:
            shape += " bi"
    return f"{row['device']} {SHORT_DTYPE[row['dtype']]} {row['mode']:<9} {shape}"


def _render(header, body, right):
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    return [line(header), rule] + [line(r) if r else "" for r in body]


def table_lines(rows):
    header = ["case", "contender", "check", "median", "[min, max]", "us/step",
              *(name for _, name in SPEEDUP_COLUMNS), "achieved", "peak mem", "floor", "x floor"]
    body, last = [], None
    for row in rows:
        label = case_label(row)
        if last is not None and label != last:
            body.append(None)
        mem = row["peak_mem_mb"]
        body.append([
            label if label != last else "",
            row["contender"],
            row["check"],
            fmt_time(row["median_us"]),
            fmt_spread(row),
            _num(row["us_per_step"]) if _ok(row["us_per_step"]) else "-",
            *(fmt_x(row[key]) for key, _ in SPEEDUP_COLUMNS),
            fmt_rate(row["gflops"]),
            f"{mem:.1f} MiB" if _ok(mem) else "-",
            fmt_time(row["floor_us"]),
            fmt_x(row["floor_ratio"]),
        ])
        last = label
    right = set(range(3, len(header)))
    lines = _render(header, [r or [""] * len(header) for r in body], right)
    return lines + ["", LEGEND]


def compare_lines(comparisons, label, stored_date):
    header = ["case", "contender", f"{label}", "now", "speedup"]
    body = [[case_label(c["row"]), c["row"]["contender"], fmt_time(c["stored_us"]),
             fmt_time(c["row"]["median_us"]), fmt_x(c["ratio"])] for c in comparisons]
    title = f"against stored run '{label}' ({stored_date}); speedup = stored median / current median"
    if not body:
        return [title, "no case of this run is in the stored run"]
    return [title] + _render(header, body, {2, 3, 4})
