"""Small training demos of lstm_fused.LSTM. Run ``python -m lstm_fused.demo --help``.

    adding   the adding problem (Hochreiter & Schmidhuber 1997): the standard
             cell against the cell variants, learning curves, input gates, a table
"""
from .cli import DEMOS, main

__all__ = ["DEMOS", "main"]
