"""Errors shown to users as one line that names the fix (no traceback unless asked).

Standard library only: the board's entry point imports this before numpy or OpenCV, so a
Python without them still gets one line.
"""


class UserError(RuntimeError):
    pass


class MissingRuntime(UserError):
    """A runtime or converter package is not installed; `module` is the top-level module that is missing."""

    def __init__(self, message: str, module: str = ""):
        super().__init__(message)
        self.module = module
