"""lstm_fused: fused LSTM kernels for PyTorch, a drop-in torch.nn.LSTM / LSTMCell."""
from ._ops import ops
from .config import get_path, set_path, use_path
from .errors import LSTMArgumentError
from .functional import lstm, lstm_cell
from .modules import LSTM, LSTMCell

__all__ = ["LSTM", "LSTMCell", "lstm", "lstm_cell", "ops", "get_path", "set_path", "use_path",
           "LSTMArgumentError", "cuda_compiled"]
__version__ = "0.1.0"


def cuda_compiled() -> bool:
    """Whether this build contains the CUDA kernels."""
    from ._ops import _C

    return _C.cuda_compiled()
