"""Drop-in modules: same constructor, parameter names, initialisation, state_dict
and forward signature as torch.nn.LSTM / torch.nn.LSTMCell."""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import functional as F


class LSTM(nn.RNNBase):
    """torch.nn.LSTM's interface on lstm_fused's kernels.

    Subclasses nn.RNNBase (not nn.LSTM) so that torch.compile traces it instead
    of refusing it as a cuDNN RNN."""

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def flatten_parameters(self):
        """No-op: the kernels read the parameters where they are."""

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            raise NotImplementedError("lstm_fused.LSTM does not accept PackedSequence yet; "
                                      "pass a padded tensor")
        weights = [getattr(self, name) for name in self._flat_weights_names]
        return F.lstm(
            input,
            weights,
            hx,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            dropout=self.dropout,
            training=self.training,
            bidirectional=self.bidirectional,
            proj_size=self.proj_size,
        )


class LSTMCell(nn.RNNCellBase):
    """torch.nn.LSTMCell's interface on lstm_fused's fused step kernel."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return F.lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
