"""The one exception type a user should ever see."""


class PipelineError(Exception):
    """Bad input or bad params: the message names the file (or key) and the fix, on one line."""
