"""Errors that reach the user as one line that says what to type next."""


class UserError(Exception):
    """A bad input the user can fix; the CLI prints ``str(err)`` on one line and exits 2."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message} — {hint}")
        self.hint = hint


class UnknownName(UserError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataWarning(UserWarning):
    """Something in the inputs was skipped or repaired; the CLI prints it as one ``warning:`` line."""
