"""Errors the conversion stage raises; each message is one line that names
the culprit and says what to do."""


class ConversionError(RuntimeError):
    """The TFLite converter refused the model, or produced one that breaks
    the target's contract (e.g. float ops in an int8 model)."""


class ValidationError(RuntimeError):
    """The converted model does not agree with the float model well enough."""
