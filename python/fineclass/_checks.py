"""Argument checks shared by the whole package (one rule each, so that every argument is checked alike)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import FineclassError


def whole_number(
    value: Any, name: str, *, minimum: int | None = 1, allow_none: bool = False, hint: str = ""
) -> int | None:
    """An argument that must be a whole number, as an ``int``.

    R passes every number as a double, so ``3.0`` is read as ``3``; a fraction, a bool, a string or a number
    below ``minimum`` is an error that names the argument.

    Args:
        value: what the user passed.
        name: the argument's name, as the user typed it.
        minimum: the smallest value allowed (``None``: no bound).
        allow_none: whether ``None`` is allowed (it is then returned as is).
        hint: words added to the error after the rule, e.g. ``" (tokens per batch, e.g. 8192)"``.

    Returns:
        The value as an ``int`` (or ``None`` when allowed and given).

    Raises:
        FineclassError: when the value is not a whole number of at least ``minimum``.

    Example:
        >>> whole_number(3.0, "epochs")
        3
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (minimum is not None and value < minimum):
        if minimum is None:
            rule = "a whole number"
        elif minimum == 1:
            rule = "a positive whole number"
        else:
            rule = f"a whole number, {minimum} or more"
        raise FineclassError(f"`{name}` must be {rule}{hint}; got {value!r}.", name)
    return int(value)
