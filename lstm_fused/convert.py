"""``lstm_fused.convert``: swap torch.nn.LSTM / LSTMCell submodules of a model
for lstm_fused's (and back)."""
from torch import nn
from torch.nn.utils import parametrize

from .errors import LSTMArgumentError
from .modules import LSTM, LSTMCell

# Exact types only: a subclass may override forward, and swapping it would lose that.
_TARGETS = {
    "lstm_fused": {nn.LSTM: LSTM, nn.LSTMCell: LSTMCell},
    "torch": {LSTM: nn.LSTM, LSTMCell: nn.LSTMCell},
}

# Hooks travel with the module: the new one holds the very same dicts, so the
# handles returned when they were registered still remove them.
_HOOK_DICTS = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)


def convert(model: nn.Module, to: str = "lstm_fused") -> nn.Module:
    """Replace, in place, every ``torch.nn.LSTM`` / ``torch.nn.LSTMCell`` in
    ``model`` by ``lstm_fused.LSTM`` / ``LSTMCell`` (``to="lstm_fused"``), or
    every lstm_fused module by torch's (``to="torch"``). Returns the model, or
    the replacement when ``model`` itself is one of these modules.

    The replacement holds the same ``nn.Parameter`` objects (shared, not
    copied), so device, dtype, ``requires_grad`` and an optimizer built over
    ``model.parameters()`` carry over; its training mode and hooks are the old
    module's. A module reachable under several names is replaced by one new
    module. Other modules, subclasses of these classes included, are left
    alone. Parametrized (``torch.nn.utils.parametrize``) or weight-normed
    modules are refused: remove the parametrization first
    (``parametrize.remove_parametrizations(m, name)``), convert, register it again."""
    if to not in _TARGETS:
        raise LSTMArgumentError(f"lstm_fused.convert: to must be 'lstm_fused' or 'torch', got {to!r}")
    if not isinstance(model, nn.Module):
        raise LSTMArgumentError(f"lstm_fused.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    targets = _TARGETS[to]
    memo = {}

    def swap(module, path):
        if id(module) not in memo:
            memo[id(module)] = _replacement(module, targets[_base_type(module)], path)
        return memo[id(module)]

    if _base_type(model) in targets:
        return swap(model, "model")
    for path, parent in model.named_modules(remove_duplicate=True):
        for name, child in list(parent._modules.items()):
            if child is not None and _base_type(child) in targets:
                parent._modules[name] = swap(child, f"{path}.{name}" if path else name)
    return model


def _base_type(module):
    """The module's class; for a parametrized module, the class parametrize derived its own from."""
    if parametrize.is_parametrized(module):
        return type(module).__bases__[0]
    return type(module)


def _weight_names(module):
    if isinstance(module, nn.RNNBase):
        return list(module._flat_weights_names)
    return ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def _refuse_computed_weights(module, names, path):
    why = None
    if parametrize.is_parametrized(module):
        why = "is parametrized (torch.nn.utils.parametrize)"
    elif any(type(h).__name__ == "WeightNorm" for h in module._forward_pre_hooks.values()):
        why = "is weight-normed (torch.nn.utils.weight_norm)"
    else:
        missing = [n for n in names if n not in module._parameters]
        if missing:
            why = f"computes {', '.join(missing)} instead of holding them as parameters"
    if why:
        raise LSTMArgumentError(
            f"lstm_fused.convert: {path} ({type(module).__name__}) {why}; remove that first "
            "(e.g. parametrize.remove_parametrizations(m, name)), convert, then apply it again"
        )


def _replacement(old, cls, path):
    variant, peephole = getattr(old, "variant", "standard"), getattr(old, "peephole", False)
    if variant != "standard" or peephole:
        raise LSTMArgumentError(
            f"lstm_fused.convert: {path} is a variant={variant!r}{' peephole' if peephole else ''} cell, which "
            f"{type(old).__name__}'s counterpart does not have")
    names = _weight_names(old)
    _refuse_computed_weights(old, names, path)
    dtype = old.weight_ih_l0.dtype if isinstance(old, nn.RNNBase) else old.weight_ih.dtype
    if isinstance(old, nn.RNNBase):
        new = cls(old.input_size, old.hidden_size, num_layers=old.num_layers, bias=old.bias,
                  batch_first=old.batch_first, dropout=old.dropout, bidirectional=old.bidirectional,
                  proj_size=old.proj_size, device="meta", dtype=dtype)
    else:
        new = cls(old.input_size, old.hidden_size, bias=old.bias, device="meta", dtype=dtype)
    for name in names:
        # RNNBase.__setattr__ keeps _flat_weights in step with the parameters
        setattr(new, name, old._parameters[name])
    for attr in _HOOK_DICTS:
        if hasattr(old, attr):
            setattr(new, attr, getattr(old, attr))
    new.train(old.training)
    if isinstance(new, nn.LSTM):
        new.flatten_parameters()  # cuDNN's single weight buffer, as after nn.LSTM's own construction
    return new
