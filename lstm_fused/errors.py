"""The error raised for bad arguments. It is both a ValueError and a
RuntimeError, so code written against torch.nn.LSTM (which raises RuntimeError)
keeps catching it."""


class LSTMArgumentError(ValueError, RuntimeError):
    pass
