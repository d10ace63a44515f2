"""Drop-in modules: same constructor, parameter names, initialisation, state_dict
and forward signature as torch.nn.LSTM / torch.nn.LSTMCell."""
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import functional as F
from .errors import LSTMArgumentError
from .record import recorder_for


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
            return self._forward_packed(input, hx)
        return self._run(input, hx, batch_first=self.batch_first, record=recorder_for(self))

    def _run(self, input, hx, batch_first, lengths=None, record=None):
        weights = [getattr(self, name) for name in self._flat_weights_names]
        return F.lstm(
            input,
            weights,
            hx,
            lengths=lengths,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=batch_first,
            dropout=self.dropout,
            training=self.training,
            bidirectional=self.bidirectional,
            proj_size=self.proj_size,
            _record=record,
        )


    def _forward_packed(self, packed, hx):
        """PackedSequence in, PackedSequence out, as torch.nn.LSTM: the kernels
        run the padded batch with per-sequence lengths, in the packed (sorted)
        order; hx and (h_n, c_n) are in the caller's batch order."""
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        padded, lengths = pad_packed_sequence(PackedSequence(data, batch_sizes))
        if hx is not None and sorted_indices is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise LSTMArgumentError("lstm_fused: hx must be a tuple (h_0, c_0)")
            hx = tuple(h.index_select(1, sorted_indices) for h in hx)
        record = recorder_for(self)
        if record is not None and unsorted_indices is not None:
            # gates recorded in the caller's batch order, as h_n
            def record(layer, direction, *tensors, to=record, u=unsorted_indices):
                to(layer, direction, *(t.index_select(1, u.to(t.device)) for t in tensors))
        output, (h_n, c_n) = self._run(padded, hx, batch_first=False, lengths=lengths, record=record)
        out_data = pack_padded_sequence(output, lengths).data
        if unsorted_indices is not None:
            h_n, c_n = h_n.index_select(1, unsorted_indices), c_n.index_select(1, unsorted_indices)
        return PackedSequence(out_data, batch_sizes, sorted_indices, unsorted_indices), (h_n, c_n)


class LSTMCell(nn.RNNCellBase):
    """torch.nn.LSTMCell's interface on lstm_fused's fused step kernel."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        # _parameters directly: each attribute access through Module.__getattr__
        # costs about as much as a small tensor op, and a step is short
        p = self._parameters
        try:
            w = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
        except KeyError:  # parametrized or weight-normed: the attributes are computed
            w = self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        return F.lstm_cell(input, hx, *w, _record=recorder_for(self))
