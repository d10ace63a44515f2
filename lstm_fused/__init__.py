"""lstm_fused: fused LSTM kernels for PyTorch, a drop-in torch.nn.LSTM / LSTMCell."""
from ._ops import ops
from .config import (CPU_ENGINES, CPU_INPUT_PROJECTIONS, cpu_engine_available, cpu_engine_choices,
                     cpu_engine_counts, cpu_input_projection_counts, cpu_large_gemm_counts, cpu_sequence_counts,
                     get_cpu_engine, get_cpu_input_projection, get_path, set_cpu_engine, set_cpu_input_projection,
                     set_path, use_cpu_engine, use_cpu_input_projection, use_path)
from .convert import convert
from .errors import LSTMArgumentError
from .functional import lstm, lstm_cell
from .modules import LSTM, LSTMCell
from .record import GateRecord, GateRecorder, record_gates

__all__ = ["LSTM", "LSTMCell", "lstm", "lstm_cell", "ops", "get_path", "set_path", "use_path",
           "CPU_ENGINES", "get_cpu_engine", "set_cpu_engine", "use_cpu_engine",
           "cpu_engine_available", "cpu_engine_counts", "cpu_engine_choices", "cpu_sequence_counts",
           "cpu_large_gemm_counts", "CPU_INPUT_PROJECTIONS", "get_cpu_input_projection",
           "set_cpu_input_projection", "use_cpu_input_projection", "cpu_input_projection_counts",
           "LSTMArgumentError",
           "cuda_compiled", "convert", "safe_globals", "empty_cache", "cpu_cache_stats",
           "record_gates", "GateRecorder", "GateRecord"]
__version__ = "0.1.0"


def safe_globals() -> list:
    """The classes a pickled model holding lstm_fused modules needs allow-listed
    for ``torch.load`` (``weights_only=True``, its default):
    ``with torch.serialization.safe_globals(lstm_fused.safe_globals()): torch.load(path)``."""
    return [LSTM, LSTMCell]


def cuda_compiled() -> bool:
    """Whether this build contains the CUDA kernels."""
    from ._ops import _C

    return _C.cuda_compiled()


def empty_cache() -> None:
    """Frees every block the CPU kernels keep cached for their next call (blocks
    still held by tensors are not touched) and the weight layouts kept from earlier
    calls, as torch.cuda.empty_cache() does for CUDA, and with glibc returns the
    heap's free pages to the system (malloc_trim)."""
    from ._ops import _C

    _C.empty_cache()


def cpu_cache_stats() -> dict:
    """The CPU buffer cache: cached_bytes and cached_blocks (kept for the next call),
    in_use_bytes (held by live tensors), recent_bytes (what the latest calls used: the
    bound on in-use plus cached bytes), limit_bytes (LSTM_FUSED_CPU_CACHE_MB's cap on
    cached bytes, None when unset), hits and misses (blocks reused and freshly allocated);
    and the weight layouts kept for the CPU micro-kernel from call to call (while a weight
    holds the same bytes): layout_bytes (layouts and the weight copies they are checked
    against), layout_entries, layout_hits and layout_misses (lookups that found or built one)."""
    from ._ops import _C

    return _C.cpu_cache_stats()
