"""Argument checks shared by the whole package (one rule each, so that every argument is checked alike)."""

from __future__ import annotations

import math
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


def flag(value: Any, name: str, *, setting: str = "", why: str = "") -> bool:
    """An argument that must be True or False (numpy's bools too), as a ``bool``.

    Args:
        value: what the user passed.
        name: the argument's name, as the user typed it.
        setting: the setting inside it, e.g. ``"extra['refit']"`` (then the error reads "`config`: extra['refit']").
        why: a sentence added to the error, saying what True does.

    Returns:
        The value as a ``bool``.

    Raises:
        FineclassError: naming ``name`` when the value is not True or False.

    Example:
        >>> flag(np.True_, "small_sample")
        True
    """
    if not isinstance(value, (bool, np.bool_)):
        where = f"`{name}`: {setting}" if setting else f"`{name}`"
        raise FineclassError(f"{where} must be True or False; got {value!r}.{' ' + why if why else ''}", name)
    return bool(value)


def number(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    finite: bool = False,
    hint: str = "",
) -> float:
    """An argument that must be a real number within bounds, as a ``float``.

    A bool, a string or NaN is an error that names the argument, as is a number outside the bounds.

    Args:
        value: what the user passed.
        name: the argument's name, as the user typed it.
        minimum: the smallest value allowed (``None``: no bound).
        maximum: the largest value allowed (``None``: no bound).
        positive: whether the value must be above 0.
        finite: whether infinity is refused too.
        hint: words added to the error after the rule, e.g. ``" in its extra['C']"``.

    Returns:
        The value as a ``float``.

    Raises:
        FineclassError: when the value is not such a number.

    Example:
        >>> number(1, "config", minimum=0, maximum=1)
        1.0
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
    ok = ok and (not finite or math.isfinite(value)) and (not positive or value > 0)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        kind = "a finite number" if finite else "a number"
        if positive:
            rule = f"a positive {kind[2:]}"
        elif minimum is not None and maximum is not None:
            rule = f"{kind} from {minimum:g} to {maximum:g}"
        elif minimum is not None:
            rule = f"{kind}, {minimum:g} or more"
        elif maximum is not None:
            rule = f"{kind}, {maximum:g} or less"
        else:
            rule = kind
        raise FineclassError(f"`{name}` must be {rule}{hint}; got {value!r}.", name)
    return float(value)
