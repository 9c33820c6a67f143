"""What every part of the evaluation shares: its warning, argument checks, reading tables, numbers."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from ..errors import FineclassError, warn_user
from ..tables import read_table


class EvaluationWarning(UserWarning):
    """Something in the inputs changed what was scored (unknown labels, duplicates, undefined metrics)."""


def warn(message: str) -> None:
    """Warn with an EvaluationWarning, pointing at the user's line.

    Args:
        message: the warning.
    """
    warn_user(message, EvaluationWarning)


def plural(n: int, word: str) -> str:
    """A count and a noun, in the plural when it is not one.

    Args:
        n: the count.
        word: the noun.

    Returns:
        e.g. ``"3 labels"``.
    """
    return f"{n} {word}" + ("" if n == 1 else ("es" if word.endswith("s") else "s"))


def check_confidence(confidence: Any) -> float:
    """The ``confidence`` argument, checked.

    Args:
        confidence: a level strictly between 0 and 1.

    Returns:
        It, as a float.

    Raises:
        FineclassError: naming ``confidence`` otherwise.
    """
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        c = float("nan")
    if not (0.0 < c < 1.0):
        raise FineclassError(f"`confidence` must be between 0 and 1 (e.g. 0.95); got {confidence!r}.", "confidence")
    return c


def read(data: Any, argument: str) -> pa.Table:
    """An input table, read (a missing one named in the error).

    Args:
        data: any table or path.
        argument: its argument's name.

    Returns:
        The pyarrow Table.

    Raises:
        FineclassError: naming ``argument`` when it is None or unreadable.
    """
    if data is None:
        raise FineclassError(f"`{argument}` is missing: pass a table or the path of a Parquet/CSV file.", argument)
    return read_table(data, argument)


def num(x: Any) -> float | None:
    """A float, or None for anything undefined (NaN never leaves the evaluation).

    Args:
        x: a number, None or NaN.

    Returns:
        A float or None.
    """
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
