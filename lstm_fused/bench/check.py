"""Correctness of each contender against torch's own module on the case's first
input set, before anything is timed.

A result within the dtype's tolerance of torch's is ok. Past it, torch itself may
be the one that drifted (bf16 over hundreds of steps, TF32 in cuDNN), so both are
compared with a float64 run of torch's module: the contender is still ok when its
error is within TORCH_ERROR_FACTOR times torch's own."""
import copy
import dataclasses
import math

from .contenders import lstm_named_parameters

# Largest error accepted, relative to the scale (max |value|) of each reference tensor.
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 2e-2}
TORCH_ERROR_FACTOR = 4.0


def results(module, call, inputs, mode):
    """Named tensors one call produces: outputs and, in fwdbwd mode, grads."""
    out = call(inputs)
    if mode == "cell":
        named = {"h": out[0], "c": out[1]}
    else:
        y, (h_n, c_n) = out
        named = {"output": y, "h_n": h_n, "c_n": c_n}
    if mode == "fwdbwd":
        named["grad input"] = inputs.x.grad
        for name, p in lstm_named_parameters(module).items():
            named[f"grad {name}"] = p.grad
    # kept on the device in their own dtype: for large GPU shapes a float64 host copy
    # of every output and grad would take gigabytes
    return {k: (None if v is None else v.detach().clone()) for k, v in named.items()}


def _error(val, ref):
    ref, val = ref.double(), val.double()
    return (val - ref).abs().max().item() / max(ref.abs().max().item(), 1e-6)


def relative_error(got, want):
    """(max error over tensors relative to each tensor's scale, name of the worst)."""
    worst, where = 0.0, ""
    for name, ref in want.items():
        val = got.get(name)
        if (val is None) != (ref is None):
            return float("inf"), f"{name} missing"
        if ref is None:
            continue
        if val.shape != ref.shape:
            return float("inf"), f"{name} shape {tuple(val.shape)} != {tuple(ref.shape)}"
        if not ref.numel():
            continue
        err = _error(val, ref)
        if math.isnan(err):
            return err, name
        if err > worst:
            worst, where = err, name
    return worst, where


def float64_results(module, make_call, inputs, mode):
    """Results of a float64 copy of torch's module on a float64 copy of the inputs."""
    module = copy.deepcopy(module).double()
    cast = {}
    for f in dataclasses.fields(inputs):
        t = getattr(inputs, f.name)
        cast[f.name] = None if t is None else t.detach().double().requires_grad_(t.requires_grad)
    return results(module, make_call(module, mode), type(inputs)(**cast), mode)


def within_torch_error(got, want, want64, dtype):
    """(ok, text for the row's detail): is every tensor of got as close to float64
    as TORCH_ERROR_FACTOR times torch's own error in the same dtype?"""
    worst, where = 0.0, ""
    for name, exact in want64.items():
        if exact is None or not exact.numel():
            continue
        bound = max(TOLERANCE[dtype], TORCH_ERROR_FACTOR * _error(want[name], exact))
        ratio = _error(got[name], exact) / bound
        if not ratio <= worst:  # also catches NaN
            worst, where = ratio, name
    if worst <= 1.0:
        return True, f"within {TORCH_ERROR_FACTOR:g}x torch's own error against float64"
    return False, f"{where}: {worst:.1f}x over max(tolerance, {TORCH_ERROR_FACTOR:g}x torch's error) against float64"


def verdict(err, dtype):
    """The text of the "check" column."""
    if err <= TOLERANCE[dtype]:
        return "ok"
    return f"MISMATCH {err:.1e}"
