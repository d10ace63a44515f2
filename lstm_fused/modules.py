"""Drop-in modules: same constructor, parameter names, initialisation, state_dict
and forward signature as torch.nn.LSTM / torch.nn.LSTMCell; keyword arguments
beyond theirs choose a cell variant (variants.py):

    variant="standard"        torch.nn.LSTM's cell (the default)
    variant="cifg"            i = 1 − f; weights and biases have 3H rows (f, g, o)
    variant="no_input_gate"   i = 1; 3H rows (f, g, o)
    peephole=True             diagonal peepholes: weight_peephole_l{k}[_reverse]
                              (LSTMCell: weight_peephole), rows (i, f, o) or (f, o)
    forget_bias=b             b added to the forget gate's slice of bias_ih at
                              initialisation (reset_parameters)
"""
import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import functional as F
from . import variants
from .errors import LSTMArgumentError
from .record import recorder_for


def _variant_args(variant, peephole, forget_bias, bias):
    v = variants.get(variant)
    if not isinstance(peephole, bool):
        raise LSTMArgumentError(f"lstm_fused: peephole must be a bool, got {peephole!r}")
    try:
        forget_bias = float(forget_bias)
    except (TypeError, ValueError):
        raise LSTMArgumentError(f"lstm_fused: forget_bias must be a number, got {forget_bias!r}") from None
    if not math.isfinite(forget_bias):
        raise LSTMArgumentError(f"lstm_fused: forget_bias must be finite, got {forget_bias}")
    if forget_bias != 0.0 and not bias:
        raise LSTMArgumentError("lstm_fused: forget_bias needs bias=True (it is added to bias_ih)")
    return v, peephole, forget_bias


def _add_forget_bias(module, names, v, H):
    if module.forget_bias == 0.0:
        return
    f = v.gates.index("f")
    with torch.no_grad():
        for name in names:
            getattr(module, name)[f * H:(f + 1) * H] += module.forget_bias


def _variant_repr(module):
    parts = []
    if module.variant != "standard":
        parts.append(f"variant={module.variant!r}")
    if module.peephole:
        parts.append("peephole=True")
    if module.forget_bias != 0.0:
        parts.append(f"forget_bias={module.forget_bias}")
    return ", ".join(parts)


class LSTM(nn.RNNBase):
    """torch.nn.LSTM's interface on lstm_fused's kernels.

    Subclasses nn.RNNBase (not nn.LSTM) so that torch.compile traces it instead
    of refusing it as a cuDNN RNN."""

    def __init__(self, *args, variant="standard", peephole=False, forget_bias=0.0, **kwargs):
        super().__init__("LSTM", *args, **kwargs)
        v, self.peephole, self.forget_bias = _variant_args(variant, peephole, forget_bias, self.bias)
        self.variant = v.name
        if not v.standard or self.peephole:
            self._variant_parameters(v)
            self.reset_parameters()
        elif self.forget_bias:  # the standard cell keeps nn.LSTM's initial values under one seed
            _add_forget_bias(self, [n for n in self._flat_weights_names if n.startswith("bias_ih")], v,
                             self.hidden_size)

    def _variant_parameters(self, v):
        """KH-row weights and biases, and the peephole weights, in place of
        nn.RNNBase's 4H rows; the flat list in the order functional.lstm takes."""
        H = self.hidden_size
        for group in self._all_weights:
            for name in group:
                if name.startswith(("weight_ih", "weight_hh", "bias_ih", "bias_hh")):
                    w = getattr(self, name)
                    setattr(self, name, nn.Parameter(w.new_empty((v.num_gates * H,) + tuple(w.shape[1:]))))
            if self.peephole:
                name = group[0].replace("weight_ih", "weight_peephole")
                w = getattr(self, group[0])
                self.register_parameter(name, nn.Parameter(w.new_empty((len(v.peephole_rows), H))))
                group.append(name)
        self._flat_weights_names = [name for group in self._all_weights for name in group]
        self._init_flat_weights()

    def reset_parameters(self):
        super().reset_parameters()
        if getattr(self, "forget_bias", 0.0):  # nn.RNNBase's constructor calls this before it is set
            names = [n for n in self._flat_weights_names if n.startswith("bias_ih")]
            _add_forget_bias(self, names, variants.get(self.variant), self.hidden_size)

    def extra_repr(self):
        extra = _variant_repr(self)
        return super().extra_repr() + (", " + extra if extra else "")

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
            variant=getattr(self, "variant", "standard"),
            peephole=getattr(self, "peephole", False),
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

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, variant="standard",
                 peephole=False, forget_bias=0.0):
        v, peephole, forget_bias = _variant_args(variant, peephole, forget_bias, bias)
        super().__init__(input_size, hidden_size, bias, num_chunks=v.num_gates, device=device, dtype=dtype)
        self.variant, self.peephole, self.forget_bias = v.name, peephole, forget_bias
        if peephole:
            self.weight_peephole = nn.Parameter(torch.empty((len(v.peephole_rows), hidden_size),
                                                            device=device, dtype=dtype))
            self.reset_parameters()
        elif forget_bias:  # otherwise nn.LSTMCell's initial values under one seed
            _add_forget_bias(self, ["bias_ih"], v, hidden_size)

    def reset_parameters(self):
        super().reset_parameters()
        if getattr(self, "forget_bias", 0.0):  # nn.RNNCellBase's constructor calls this before it is set
            _add_forget_bias(self, ["bias_ih"], variants.get(self.variant), self.hidden_size)

    def extra_repr(self):
        extra = _variant_repr(self)
        return super().extra_repr() + (", " + extra if extra else "")

    def forward(self, input, hx=None):
        # _parameters directly: each attribute access through Module.__getattr__
        # costs about as much as a small tensor op, and a step is short
        p = self._parameters
        try:
            w = p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
            peep = p.get("weight_peephole")
        except KeyError:  # parametrized or weight-normed: the attributes are computed
            w = self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
            peep = getattr(self, "weight_peephole", None)
        variant = self.__dict__.get("variant", "standard")
        if variant == "standard" and peep is None:
            return F.lstm_cell(input, hx, *w, _record=recorder_for(self))
        return F.lstm_cell(input, hx, *w, variant=variant, w_peep=peep, _record=recorder_for(self))
