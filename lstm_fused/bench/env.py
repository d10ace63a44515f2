"""The environment a run reports in its header and stores with its results."""
import datetime
import os
import platform
import re

import torch

from .machine import cpu_isa, cpu_model, engine_text, isa_text


def _onednn_version():
    match = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    return match.group(1) if match else None


def _cudnn_version():
    try:
        v = torch.backends.cudnn.version()
    except Exception:
        return None
    return None if v is None else f"{v // 10000}.{v % 10000 // 100}.{v % 100}"


# Variables that make the libraries use less of the CPU than it has (an
# imitation of another CPU); a figure measured under them must say so.
ISA_LIMITS = ("MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "ONEDNN_MAX_CPU_ISA",
              "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def isa_limits():
    return {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}


def collect(api):
    env = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "cpu_logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_isa_limits": isa_limits(),
        "torch": torch.__version__,
        "onednn": _onednn_version() if torch.backends.mkldnn.is_available() else None,
        "cuda": torch.version.cuda,
        "cudnn": _cudnn_version(),
        "cuda_available": torch.cuda.is_available(),
        "gpu": None,
        "tf32": torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32,
        "lstm_fused": getattr(api, "__version__", None),
        "lstm_fused_file": getattr(api, "__file__", None),
        "lstm_fused_path": api.get_path() if hasattr(api, "get_path") else None,
        "load_average_1min": load_average(),
    }
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB, sm_{props.major}{props.minor}, {props.multi_processor_count} SMs)"
    return env


def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def load_warning(load, cores, when):
    """A line to print when other processes keep the CPUs busy: with a core taken, the
    OpenMP regions of nn.LSTM on CPU stall for tens of ms per call, and every CPU
    figure drifts."""
    cores = cores or 1
    if load is not None and load > 0.5 * cores:
        return (f"warning: load average {load:.2f} on {cores} cores {when}: other processes "
                "compete for the CPUs, CPU timings are unreliable")
    return None


def engine_summary(measured):
    """Each engine's best rate and the shape (m x k x n) it reached it at."""
    best = {}
    for engine, shape, rate in measured:
        if rate > best.get(engine, (0, None))[0]:
            best[engine] = (rate, shape)
    return ", ".join(f"{engine_text(e, s)} {r / 1e9:,.0f}" for e, (r, s) in best.items())


def header_lines(env, machine):
    cuda = f"CUDA {env['cuda']}" if env["cuda"] else "CUDA none"
    if env["cuda"] and not env["cuda_available"]:
        cuda += " (no device)"
    load = env["load_average_1min"]
    lines = [
        f"lstm_fused bench  {env['date']}  {env['host']}",
        f"CPU   {env['cpu']} ({isa_text(env['cpu_isa'])}), {env['cpu_logical_cores']} logical cores, "
        f"torch threads {env['torch_threads']} ({env['cpu_capability']})" + ("" if load is None else f", load {load:.2f}"),
    ]
    limits = env.get("cpu_isa_limits")
    if limits:
        lines.append("ISA   limited by " + " ".join(f"{k}={v}" for k, v in sorted(limits.items())) +
                     ": the libraries use less of this CPU than it has")
    lines += [
        f"GPU   {env['gpu'] or 'none'}",
        f"torch {env['torch']}, {cuda}, cuDNN {env['cudnn'] or 'none'}, oneDNN {env['onednn'] or 'none'}, "
        f"TF32 {'on' if env['tf32'] else 'off'}, python {env['python']}",
        f"lstm_fused {env['lstm_fused'] or '?'}" + (f", CUDA path {env['lstm_fused_path']}" if env["lstm_fused_path"] else ""),
    ]
    for key, v in sorted(machine.gemm_flops.items()):
        lines.append(f"GEMM  {' '.join(key)} {v / 1e9:,.0f} GFLOP/s by {machine.gemm_engine[key]} sets the floor "
                     f"(best per engine, GFLOP/s: {engine_summary(machine.gemm_measured.get(key, []))})")
    rates = []
    for (device, dtype), v in sorted(machine.gemm_flops.items()):
        rates.append(f"{device} {dtype} GEMM {v / 1e9:,.0f} GFLOP/s")
    for device, v in sorted(machine.bandwidth.items()):
        rates.append(f"{device} copy {v / 1e9:,.1f} GB/s")
    for (device, size), v in sorted(machine.stream_s.items()):
        rates.append(f"{device} weight stream {size / 1024:,.0f} KiB in {v * 1e6:,.1f} us a step "
                     f"({size / v / 1e9:,.0f} GB/s)")
    lines.append("floor " + "; ".join(rates) + "; per-step barrier 1 us on GPU")
    warning = load_warning(load, env["cpu_logical_cores"], "before the run")
    return lines + ([warning] if warning else [])
