"""The one exception family fineclass raises for problems a user can fix."""

from __future__ import annotations


class FineclassError(ValueError):
    """A problem with an argument or an input that the user can fix.

    ``argument`` names the argument as the user typed it (``"text"``, ``"data"``,
    ``"model"``...), so that the R package and the CLI can point at it.
    """

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


def preview(values, limit: int = 10) -> str:
    """A short, readable list of offending values for error messages.

    Args:
        values: the values.
        limit: how many to show; the rest are counted.

    Returns:
        e.g. ``"'a', 'b' (and 3 more)"``.
    """
    values = list(values)
    shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:limit])
    more = len(values) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def warn_user(message: str, category: type = UserWarning) -> None:
    """Warn, pointing at the user's line.

    The warning is attributed to the first frame outside the fineclass package, so Python shows the user's file
    and line beside the message, not a line inside fineclass.

    Args:
        message: the warning.
        category: its class (``UserWarning`` unless said).
    """
    import os
    import sys
    import warnings
    from pathlib import Path

    here = str(Path(__file__).resolve().parent) + os.sep
    level, frame = 2, sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(here):
        level += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)
