"""Microbenchmarks of lstm_fused against torch.nn.LSTM, a loop of torch.nn.LSTMCell and a
plain PyTorch reference LSTM, on CPU and GPU. Run ``python -m lstm_fused.bench --help``."""
from .cli import main

__all__ = ["main"]
