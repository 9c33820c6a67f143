"""Agreement among coders (Cohen's kappa, Krippendorff's alpha), and of a model with them."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import FineclassError, preview
from ..labels import DEFAULT_LEVELS, canon
from .coded import layout, read_coded, sorted_codes
from .common import num, read, warn

LEVELS_OF_MEASUREMENT = ("nominal", "ordinal", "interval", "ratio")


def _coded_matrix(table: Any, unit: str, coder: Any, value: str, argument: str = "table"):
    """(units, coders, {(unit, coder): value}) from a long table, or a wide one when ``coder`` is a list."""
    t = read(table, argument)
    cols = t.column_names
    if unit not in cols:
        raise FineclassError(
            f"column `{unit}` not found in `{argument}`; columns are: {', '.join(cols)}. Pass "
            f"`unit=` with the name of the column that identifies the coded items.",
            "unit",
        )
    units_raw = t.column(unit).to_pylist()
    cells: dict = {}
    if isinstance(coder, (list, tuple)):  # wide: one column per coder
        for c in coder:
            if c not in cols:
                raise FineclassError(
                    f"coder column `{c}` not found in `{argument}`; columns are: {', '.join(cols)}.", "coder"
                )
        coders = [str(c) for c in coder]
        rows = [(u, str(c), v) for c in coder for u, v in zip(units_raw, t.column(c).to_pylist())]
    else:
        for c, what in ((coder, "coder"), (value, "value")):
            if c not in cols:
                raise FineclassError(
                    f"column `{c}` not found in `{argument}`; columns are: {', '.join(cols)}. "
                    f"Pass `{what}=` with its name (or `coder=` a list of coder columns for a "
                    f"wide table).",
                    what,
                )
        rows = list(zip(units_raw, t.column(coder).to_pylist(), t.column(value).to_pylist()))
        coders = []
    units: list = []
    seen_u: set = set()
    seen_c = set(coders)
    for u, c, v in rows:
        if u is None or c is None:
            raise FineclassError(f"`{argument}` has rows without a unit or a coder.", argument)
        c = str(c)
        if c not in seen_c:
            seen_c.add(c)
            coders.append(c)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue  # missing value: the coder did not code this unit
        if u not in seen_u:
            seen_u.add(u)
            units.append(u)
        key = (u, c)
        if key in cells and cells[key] != v:
            raise FineclassError(
                f"coder {c!r} gave unit {u!r} two different values ({cells[key]!r} and {v!r}) in "
                f"`{argument}`; keep one value per coder and unit.",
                argument,
            )
        cells[key] = v
    return units, coders, cells


def _value_codes(cells: dict, level: str, order: Sequence | None) -> tuple[dict, list]:
    """Map each value to a number: a category index (nominal), a rank (ordinal) or itself (interval, ratio)."""
    values = list(cells.values())
    if level in ("interval", "ratio"):
        try:
            return {k: float(v) for k, v in cells.items()}, sorted({float(v) for v in values})
        except (TypeError, ValueError):
            raise FineclassError(f"level={level!r} needs numeric values; found e.g. {values[0]!r}.", "level") from None
    canonical = {k: canon(v) for k, v in cells.items()}
    distinct = set(canonical.values())
    if order is not None:
        ordered = [canon(o) for o in order]
        missing = distinct - set(ordered)
        if missing:
            raise FineclassError(f"`order` lacks values found in the data: {preview(sorted(missing))}.", "order")
    elif level == "ordinal":
        try:
            ordered = sorted(distinct, key=float)
        except ValueError:
            if distinct <= set(DEFAULT_LEVELS):
                ordered = [x for x in DEFAULT_LEVELS]
            else:
                raise FineclassError(
                    f"level='ordinal' needs `order=` (the values from lowest to highest) for "
                    f"non-numeric values such as {preview(sorted(distinct), 4)}.",
                    "order",
                ) from None
    else:
        ordered = sorted_codes(distinct)
    rank = {v: i for i, v in enumerate(ordered)}
    return {k: float(rank[v]) for k, v in canonical.items()}, list(range(len(ordered)))


def _alpha(codes: dict, units: list, coders: list, level: str, domain: list) -> tuple[float | None, int]:
    import krippendorff

    M = np.full((len(coders), len(units)), np.nan)
    ui = {u: j for j, u in enumerate(units)}
    ci = {c: i for i, c in enumerate(coders)}
    for (u, c), v in codes.items():
        M[ci[c], ui[u]] = v
    pairable = int((np.isfinite(M).sum(0) >= 2).sum())
    if pairable == 0:
        warn("Krippendorff's alpha is undefined: no unit was coded by two coders; it is reported as null.")
        return None, 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            a = krippendorff.alpha(
                reliability_data=M, level_of_measurement=level, value_domain=np.asarray(domain, dtype=float)
            )
    except ValueError as e:  # e.g. one value only in the whole domain
        warn(f"Krippendorff's alpha is undefined for these data ({e}); it is reported as null.")
        return None, pairable
    a = num(a)
    if a is None:
        warn(
            "Krippendorff's alpha is undefined for these data (no disagreement is possible: the coders use a "
            "single value); it is reported as null."
        )
    return a, pairable


def _kappa_rows(codes: dict, units: list, coders: list, weights: str | None, pairs: list | None = None) -> list:
    from sklearn.metrics import cohen_kappa_score

    by_coder: dict = {c: {} for c in coders}
    for (u, c), v in codes.items():
        by_coder[c][u] = v
    name = "cohen_kappa" if weights is None else f"cohen_kappa_{weights}"
    rows = []
    pairs = pairs or [(a, b) for i, a in enumerate(coders) for b in coders[i + 1 :]]
    for a, b in pairs:
        joint = [u for u in units if u in by_coder[a] and u in by_coder[b]]
        ya = [by_coder[a][u] for u in joint]
        yb = [by_coder[b][u] for u in joint]
        k = None
        if len(joint) >= 2 and len(set(ya) | set(yb)) >= 2:
            labels = sorted(set(ya) | set(yb))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = num(cohen_kappa_score(ya, yb, labels=labels, weights=weights))
        if k is None:
            warn(
                f"Cohen's kappa between {a!r} and {b!r} is undefined ({len(joint)} jointly coded units"
                f"{', one value only' if len(joint) >= 2 else ''}); it is reported as null."
            )
        agree = float(np.mean(np.equal(ya, yb))) if joint else None
        rows.append({"statistic": name, "coder_a": a, "coder_b": b, "estimate": k, "n": len(joint)})
        rows.append({"statistic": "percent_agreement", "coder_a": a, "coder_b": b, "estimate": agree, "n": len(joint)})
    return rows


_AGREEMENT_SCHEMA = pa.schema(
    [
        ("statistic", pa.string()),
        ("coder_a", pa.string()),
        ("coder_b", pa.string()),
        ("estimate", pa.float64()),
        ("n", pa.int64()),
    ]
)


def _agreement_args(level: str, weights: str | None) -> None:
    if level not in LEVELS_OF_MEASUREMENT:
        raise FineclassError(f"`level` must be one of {', '.join(LEVELS_OF_MEASUREMENT)}; got {level!r}.", "level")
    if weights not in (None, "linear", "quadratic"):
        raise FineclassError(f"`weights` must be None, 'linear' or 'quadratic'; got {weights!r}.", "weights")
    if weights is not None and level == "nominal":
        raise FineclassError(
            "weighted kappa needs ordered values: pass level='ordinal' (with `order=`) or leave `weights` out.",
            "weights",
        )


def agreement(
    table: Any,
    *,
    unit: str = "id",
    coder: Any = "coder",
    value: str = "label",
    level: str = "nominal",
    order: Sequence | None = None,
    weights: str | None = None,
) -> pa.Table:
    """Agreement among coders: Cohen's kappa and percent agreement per pair, Krippendorff's alpha overall.

    Kappa uses the units both coders coded (scikit-learn's ``cohen_kappa_score``); alpha uses every pairable value
    (the ``krippendorff`` package). Undefined statistics are null, with a warning.

    Args:
        table: long (one row per unit and coder: ``unit``, ``coder``, ``value``) or wide (``coder=`` a list of
            columns, one per coder). Missing values (null, or no row) mean the coder did not code the unit.
        unit: the column that identifies the coded items.
        coder: the coder column, or a list of coder columns (wide).
        value: the value column (long).
        level: nominal, ordinal, interval or ratio (for alpha).
        order: the values from lowest to highest, for ordinal non-numeric values.
        weights: None (unweighted kappa), ``"linear"`` or ``"quadratic"``.

    Returns:
        A table: statistic, coder_a, coder_b, estimate, n (jointly coded units; for alpha, the units coded by at
        least two coders).

    Raises:
        FineclassError: naming the argument at fault (fewer than two coders, a missing column...).

    Example:
        >>> agreement({"id": [1, 1, 2, 2], "coder": ["a", "b", "a", "b"], "label": [1, 1, 0, 1]})  # doctest: +SKIP
    """
    _agreement_args(level, weights)
    units, coders, cells = _coded_matrix(table, unit, coder, value)
    if len(coders) < 2:
        raise FineclassError(f"agreement needs at least two coders; `table` has {len(coders)}.", "coder")
    codes, domain = _value_codes(cells, level, order)
    rows = _kappa_rows(codes, units, coders, weights)
    a, pairable = _alpha(codes, units, coders, level, domain)
    rows.append(
        {"statistic": f"krippendorff_alpha_{level}", "coder_a": None, "coder_b": None, "estimate": a, "n": pairable}
    )
    return pa.Table.from_pylist(rows, schema=_AGREEMENT_SCHEMA)


def model_vs_coders(
    predictions: Any,
    coders: Any,
    *,
    unit: str = "id",
    coder: Any = "coder",
    value: str = "label",
    id: str = "id",
    label: str | None = None,
    level: str = "nominal",
    order: Sequence | None = None,
    weights: str | None = None,
    model_name: str = "model",
) -> pa.Table:
    """A model's agreement with each human coder, next to the coders' agreement with each other.

    The model is scored on the units the coders coded.

    Args:
        predictions: single-label predictions (``id`` and ``label``, as ``Classifier.predict`` returns them).
        coders: the coders' codes (long or wide, as in :func:`agreement`).
        unit: the unit column of ``coders``.
        coder: the coder column (or columns) of ``coders``.
        value: the value column of ``coders``.
        id: the id column of ``predictions``.
        label: the label column of ``predictions`` (None: found).
        level: the level of measurement (see :func:`agreement`).
        order: the values from lowest to highest (ordinal).
        weights: kappa's weights (see :func:`agreement`).
        model_name: the model's name in the rows.

    Returns:
        The rows of :func:`agreement`: kappa and percent agreement of the model with each coder and between coders;
        the mean kappa of model-coder and coder-coder pairs (coder_b ``"(mean)"``); Krippendorff's alpha among the
        coders (coder_a ``"coders"``) and with the model as one more coder (``"coders+model"``).

    Raises:
        FineclassError: naming the argument at fault.
    """
    _agreement_args(level, weights)
    units, names, cells = _coded_matrix(coders, unit, coder, value, "coders")
    if model_name in names:
        raise FineclassError(f"a coder is already called {model_name!r}; pass another `model_name=`.", "model_name")
    ptab = read(predictions, "predictions")
    lay = layout(ptab, "predictions", label, "single")
    pc_ = read_coded(ptab, "predictions", lay, "single", id, None, "predictions")
    if pc_.conflicts:
        warn(
            f"`predictions` gives different labels for the same document {pc_.conflicts} times; the first row "
            f"(or the most confident) was kept."
        )
    ukey = {canon(u): u for u in units}
    covered = [k for k in ukey if k in pc_.values and pc_.values[k] is not None]
    if not covered:
        raise FineclassError(
            f"no unit of `coders` has a prediction: check that `{unit}` in `coders` and `{id}` "
            f"in `predictions` hold the same ids.",
            "predictions",
        )
    if len(covered) < len(ukey):
        warn(
            f"{len(ukey) - len(covered)} of {len(ukey)} coded units have no prediction; the model is compared on "
            f"the other {len(covered)}."
        )
    all_cells = dict(cells)
    for k in covered:
        all_cells[(ukey[k], model_name)] = pc_.values[k]
    everyone = names + [model_name]
    codes, domain = _value_codes(all_cells, level, order)
    model_pairs = [(model_name, c) for c in names]
    coder_pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    rows = (
        _kappa_rows(codes, units, everyone, weights, model_pairs + coder_pairs)
        if coder_pairs
        else _kappa_rows(codes, units, everyone, weights, model_pairs)
    )
    kname = "cohen_kappa" if weights is None else f"cohen_kappa_{weights}"

    def mean_of(pairs):
        vals = [
            r["estimate"]
            for r in rows
            if r["statistic"] == kname and (r["coder_a"], r["coder_b"]) in pairs and r["estimate"] is not None
        ]
        return (float(np.mean(vals)) if vals else None), len(vals)

    mm, nm = mean_of(set(model_pairs))
    rows.append({"statistic": f"{kname}_mean", "coder_a": model_name, "coder_b": "(mean)", "estimate": mm, "n": nm})
    if coder_pairs:
        cm, ncp = mean_of(set(coder_pairs))
        rows.append({"statistic": f"{kname}_mean", "coder_a": "coders", "coder_b": "(mean)", "estimate": cm, "n": ncp})
        coder_codes = {k: v for k, v in codes.items() if k[1] != model_name}
        a, pairable = _alpha(coder_codes, units, names, level, domain)
        rows.append(
            {
                "statistic": f"krippendorff_alpha_{level}",
                "coder_a": "coders",
                "coder_b": None,
                "estimate": a,
                "n": pairable,
            }
        )
    a, pairable = _alpha(codes, units, everyone, level, domain)
    rows.append(
        {
            "statistic": f"krippendorff_alpha_{level}",
            "coder_a": f"coders+{model_name}",
            "coder_b": None,
            "estimate": a,
            "n": pairable,
        }
    )
    return pa.Table.from_pylist(rows, schema=_AGREEMENT_SCHEMA)
