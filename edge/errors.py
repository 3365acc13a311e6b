"""Errors shown to users as one line that names the fix (no traceback unless asked)."""


class UserError(RuntimeError):
    pass
