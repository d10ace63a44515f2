"""Named suites of shapes, and how command-line choices turn into a list of cases."""
import dataclasses
from dataclasses import dataclass

from .cases import Case


@dataclass(frozen=True)
class Preset:
    name: str
    devices: tuple          # devices the suite is meant for
    dtypes: tuple
    modes: tuple            # sequence modes; "cell" runs on cell_shapes
    shapes: tuple           # (T, B, I, H)
    cell_shapes: tuple = ()  # (B, I, H)
    case_budget_s: float = 1.0  # seconds of timed rounds per case (after warm-up and check)
    description: str = ""


SEQ_MODES = ("inference", "fwd", "fwdbwd")

QUICK = Preset(
    name="quick",
    devices=(),
    dtypes=("float32",),
    modes=SEQ_MODES + ("cell",),
    shapes=((6, 2, 8, 8), (4, 3, 5, 12)),
    cell_shapes=((2, 8, 8),),
    case_budget_s=0.04,
    description="tiny shapes that run in seconds (for tests)",
)

CPU = Preset(
    name="cpu",
    devices=("cpu",),
    dtypes=("float32",),
    modes=SEQ_MODES + ("cell",),
    shapes=(
        (100, 1, 256, 256),
        (100, 8, 512, 512),
        (100, 32, 256, 256),
        (100, 64, 512, 512),
        (50, 16, 1024, 1024),
    ),
    cell_shapes=((8, 256, 256),),
    case_budget_s=2.5,
    description="fp32 shapes sized for a few CPU cores (about two minutes on 2 cores)",
)

GPU = Preset(
    name="gpu",
    devices=("cuda",),
    dtypes=("float32", "bfloat16", "float16"),
    modes=SEQ_MODES + ("cell",),
    shapes=tuple(
        (T, B, H, H)
        for T in (100, 512)
        for B in (1, 8, 32, 64, 256)
        for H in (256, 512, 1024, 2048)
    ),
    cell_shapes=tuple((B, H, H) for B in (8, 256) for H in (256, 1024)),
    case_budget_s=0.8,
    description="T 100 and 512, B 1..256, H 256..2048 in fp32, bf16 and fp16",
)

PACKED = Preset(
    name="packed",
    devices=(),
    dtypes=("float32",),
    # the padded (fwd) and packed runs of one shape, side by side
    modes=("fwd", "packed"),
    shapes=((100, 8, 512, 512), (100, 64, 512, 512)),
    case_budget_s=2.0,
    description="PackedSequence of mixed lengths against the padded batch of the longest length",
)

PRESETS = {p.name: p for p in (QUICK, CPU, GPU, PACKED)}
PRESET_NAMES = ("quick", "cpu", "gpu", "full", "packed")


def default_preset(cuda_available):
    return "gpu" if cuda_available else "cpu"


def preset_devices(name, cuda_available):
    """Devices a preset runs on when --device is not given."""
    if name == "full":
        return ("cpu", "cuda")
    if name in ("quick", "packed"):
        return ("cuda",) if cuda_available else ("cpu",)
    return PRESETS[name].devices


EXPLICIT_CASE_BUDGET_S = 2.0


def expand(preset_name, devices, dtypes=None, modes=None, shapes=None,
           layers=1, bidirectional=False, proj=0):
    """The cases of a run. Explicit dtypes/modes/shapes override the preset's;
    "full" is the cpu suite on CPU plus the gpu suite on CUDA. With explicit
    shapes, preset_name only names the defaults for dtypes and modes."""
    if preset_name != "full":
        parts = [(device, PRESETS[preset_name]) for device in devices]
    elif len(devices) > 1:
        parts = [("cpu", CPU), ("cuda", GPU)]
    else:
        # --device given with full: both suites' shapes on that one device
        parts = [(devices[0], CPU), (devices[0], GPU)]

    cases = []
    seen = set()
    for device, preset in parts:
        budget = EXPLICIT_CASE_BUDGET_S if shapes else preset.case_budget_s
        run_modes = modes or preset.modes
        run_shapes = shapes or preset.shapes
        if shapes:
            cell_shapes = tuple((B, I, H) for _, B, I, H in shapes)
        else:
            cell_shapes = preset.cell_shapes
        for dtype in dtypes or preset.dtypes:
            for mode in run_modes:
                if mode == "cell":
                    todo = [Case(device, dtype, mode, 1, B, I, H, budget_s=budget) for B, I, H in cell_shapes]
                else:
                    todo = [
                        Case(device, dtype, mode, T, B, I, H, layers, bidirectional, proj, budget_s=budget)
                        for T, B, I, H in run_shapes
                    ]
                for case in todo:
                    if case not in seen:
                        seen.add(case)
                        cases.append(case)
    return cases


def with_budget(case, budget_s):
    return dataclasses.replace(case, budget_s=budget_s)
