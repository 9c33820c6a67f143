"""``estimate()``: label shares and regression coefficients from model codes plus a human sample."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

import fineclass.estimation._regression as reg  # the module itself: `from . import` would import the package
import fineclass.estimation._shares as sh

from .._checks import flag, whole_number
from ..errors import FineclassError, preview, warn_user
from ..evaluation.coded import id_array
from ..labels import as_spec, canon
from ..tables import read_table
from ._design import make_design
from ._dsl import code_features, crossfit
from ._inputs import confidence_matrix, indicator, natural_sort, numeric_column, read_coded, unique_keys

METHODS = ("ppi++", "ppi", "dsl")
POPULATIONS = ("finite", "superpopulation")
INTERCEPT = "(Intercept)"
# small_sample=True: the weight of the pseudo-document added to each cell (human code x model code) of a share's
# variance (see fineclass.estimation._shares)
SMALL_SAMPLE_PSEUDO = 1.0


def estimate(
    codes: Any,
    human: Any,
    *,
    data: Any = None,
    sample: Any = None,
    by: str | Sequence[str] | None = None,
    labels: str | Sequence[str] | None = None,
    regression: str | None = None,
    outcome: str | None = None,
    covariates: str | Sequence[str] | None = None,
    method: str = "ppi++",
    population: str = "finite",
    design: str | None = None,
    probability: str = "probability",
    stratum: str = "stratum",
    confidence: float = 0.95,
    small_sample: bool = True,
    folds: int = 5,
    seed: int = 0,
    id: str = "id",
    label: Any = None,
    spec: Any = None,
) -> pa.Table:
    """Estimate label shares or regression coefficients from model codes plus human codes on a random sample.

    The confidence intervals stay valid whatever the model's errors.

    The model's codes cover the corpus; the human codes cover a random sample of it drawn with known
    probabilities (:func:`fineclass.draw_sample` draws one). The human sample corrects the model's errors, the
    model's codes on the rest make the estimate more precise than the human sample alone:

    - ``method="ppi++"`` (default): prediction-powered inference with a power-tuned weight ``lambda`` on the
      model's codes (Angelopoulos, Duchi and Zrnic 2023), never worse than the human sample alone in large
      samples (with ``population="finite"`` lambda minimises the reported variance, so its interval is never
      wider than the human sample's); ``"ppi"``: lambda = 1 (Angelopoulos et al. 2023, Science);
    - ``"dsl"``: design-based supervised learning (Egami, Hinck, Stewart and Wei 2023): a cross-fitted model
      predicts each human code from the model's code, its confidence and the groups or covariates, and the
      design-based pseudo-outcomes correct its errors.

    ``population="finite"`` (default) treats the corpus as the population, so the estimand is the share (or the
    coefficient) among these documents, and variances come from the sampling design with the finite-population
    correction. ``"superpopulation"`` treats the documents as draws from a larger population, as the PPI and DSL
    papers do; for PPI and PPI++ on a simple random sample it matches the ``ppi-python`` package.

    Beside each estimate come the naive one (model codes taken as the truth, with the interval that ignores
    their errors), the one from the human sample alone, and ``effective_n``: how many human codes the human-only
    estimate would need, under the same design, to be as precise.

    Args:
        codes: the model's codes for every document: ``Classifier.predict`` output (``id, label`` or ``id,
            labels``), or a long table (``id, label`` one row per label, or ``id, dimension, level``). For a
            dimension->level task a dimension counts as present at any level. A ``confidence`` column (or
            record field) is used by DSL.
        human: the coders' codes for the sampled documents, in any of the same shapes.
        data: one row per document of the corpus (``id`` and any ``by`` or regression columns). Needed when
            ``codes`` is a long table (which cannot list documents without labels); else ``codes`` is it.
        sample: the drawn sample (``id``, ``probability``, and ``stratum`` or ``design``), as
            :func:`fineclass.draw_sample` returns it. Needed when ``human`` is a long table; else ``human`` is
            the sample and may carry those columns. Without probabilities the sample is taken as a simple
            random sample of the corpus.
        by: column(s) of ``data`` to estimate shares by group (party, year...).
        labels: the labels whose shares to estimate (default: all of the label set).
        regression: ``"ols"`` or ``"logistic"`` to estimate a regression instead of shares.
        outcome: the regression's outcome: a column of ``data``, or a label of the label set (its 0/1 code).
        covariates: the regression's covariates (an intercept is added): columns of ``data`` or labels.
        method: ``"ppi++"``, ``"ppi"`` or ``"dsl"``.
        population: ``"finite"`` or ``"superpopulation"``.
        design: ``"srs"``, ``"stratified"`` or ``"poisson"``; default: the sample's ``design`` column, else
            stratified when a ``stratum`` column is present, Poisson when probabilities differ, else srs.
        probability: the name of the sample's column of inclusion probabilities.
        stratum: the name of the sample's stratum column.
        confidence: the confidence level of the intervals.
        small_sample: keep intervals honest when the sample holds few disagreements between the model and the
            coders (their number, not the sample's size, sets the precision of the correction): a share's
            variance gets one pseudo-document in each cell (human code x model code), in the spirit of Agresti
            and Caffo (2000), so that a sample without disagreements does not give a zero-width interval; a
            coefficient's interval uses Student's t with Satterthwaite's degrees of freedom (``df``), the
            effective number of documents that carry its variance. False gives the plain normal intervals of
            the PPI and DSL papers (and of ppi-python).
        folds: cross-fitting folds of DSL.
        seed: seeds DSL's folds.
        id: the id column of every table.
        label: the label column of ``codes`` and ``human`` (or a (dimension, level) pair), when not the usual.
        spec: a LabelSpec (or a fitted Classifier): the label set; codes outside it are errors.

    Returns:
        A pyarrow Table, one row per label (and group) or coefficient: the ``by`` columns, ``estimand``
        (share, ols, logistic), ``outcome``, ``term`` (the label, or the coefficient), ``estimate``,
        ``std_error``, ``conf_low``, ``conf_high``, ``df`` (of a coefficient's t interval; null for normal
        intervals), ``method``, ``lambda``, ``model_estimate``,
        ``model_std_error``, ``model_conf_low``, ``model_conf_high``, ``human_estimate``, ``human_std_error``,
        ``human_conf_low``, ``human_conf_high``, ``n_human``, ``n_total``, ``effective_n``, ``gain``
        (effective_n / n_human), ``population``, ``design``.

    Raises:
        FineclassError: a human-coded document that is not in the corpus, probabilities outside (0, 1], an
            empty sample, a label outside the label set, an unknown column, a design that does not fit.

    Example:
        >>> sample = fineclass.draw_sample(predictions, size=400, seed=1)
        >>> # ... the coders code the 400 documents into `coded` ...
        >>> fineclass.estimate(predictions, coded, sample=sample, by="party")
    """
    from scipy.stats import norm

    if method not in METHODS:
        raise FineclassError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}.", "method")
    if population not in POPULATIONS:
        raise FineclassError(f"`population` must be one of {', '.join(POPULATIONS)}; got {population!r}.", "population")
    try:
        level = float(confidence)
    except (TypeError, ValueError):
        level = float("nan")
    if not 0 < level < 1:
        raise FineclassError(
            f"`confidence` must be a level between 0 and 1 (e.g. 0.95); got {confidence!r}.", "confidence"
        )
    flag(small_sample, "small_sample")
    folds, seed = whole_number(folds, "folds", minimum=2), whole_number(seed, "seed", minimum=0)
    if regression is not None and regression not in reg.FAMILIES:
        raise FineclassError(
            f"`regression` must be one of {', '.join(reg.FAMILIES)} (or None for label shares); got {regression!r}.",
            "regression",
        )
    by = [by] if isinstance(by, str) else list(by or [])
    if regression is not None and by:
        raise FineclassError(
            "`by` estimates shares by group; for a regression, add the group as covariates (0/1 columns).", "by"
        )
    z = float(norm.ppf(1 - (1 - level) / 2))

    cod = read_coded(codes, "codes", id=id, label=label)
    hum = read_coded(human, "human", id=id, label=label)
    corpus_tab, ckeys = _corpus(cod, data, id)
    pos = {k: i for i, k in enumerate(ckeys)}
    N = len(ckeys)
    skeys, dsg = _sample(hum, sample, pos, id, probability, stratum, design, N)
    sampled = np.array([pos[k] for k in skeys], dtype=np.int64)

    labelset = _label_set(cod, hum, as_spec(spec))
    common = dict(
        N=N,
        sampled=sampled,
        skeys=skeys,
        design=dsg,
        method=method,
        population=population,
        z=z,
        level=level,
        small_sample=bool(small_sample),
        folds=folds,
        seed=seed,
    )
    if regression is None:
        if outcome is not None or covariates:
            raise FineclassError(
                '`outcome` and `covariates` describe a regression: pass `regression="ols"` or "logistic" too.',
                "regression",
            )
        targets = _targets(labels, labelset)
        return _shares_table(cod, hum, corpus_tab, ckeys, targets, by, **common)
    if outcome is None:
        raise FineclassError("a regression needs `outcome=`: a column of `data` or a label.", "outcome")
    return _regression_table(cod, hum, corpus_tab, ckeys, labelset, regression, outcome, covariates, **common)


# ================================================================================================ inputs
def _corpus(cod, data, id):
    if data is not None:
        tab = read_table(data, "data")
        keys = id_array(tab, id, "data").to_pylist()
        unique_keys(keys, "data")
    elif cod.fmt == "document":
        tab, keys = cod.table, list(cod.keys)
    else:
        raise FineclassError(
            "`codes` is a long table (one row per label), which cannot list the documents "
            "without labels; pass `data=` with one row per document of the corpus (its ids, "
            "and any `by` or regression columns).",
            "data",
        )
    known = set(keys)
    outside = [k for k in cod.keys if k not in known]
    if outside:
        raise FineclassError(
            f"`codes` holds {len(outside)} documents that are not in `data` (ids: {preview(outside)}).", "codes"
        )
    if cod.fmt == "document" and len(cod.keys) < len(keys):
        have = set(cod.keys)
        missing = [k for k in keys if k not in have]
        raise FineclassError(
            f"{len(missing)} documents of `data` have no row in `codes` (ids: {preview(missing)}); "
            f"classify them, or leave them out of `data`.",
            "codes",
        )
    if not keys:
        raise FineclassError("the corpus is empty: `codes` (or `data`) has no documents.", "codes")
    return tab, keys


def _sample(hum, sample, pos, id, probability, stratum, design, N):
    if sample is not None:
        stab = read_table(sample, "sample")
        skeys = id_array(stab, id, "sample").to_pylist()
        unique_keys(skeys, "sample")
        where = "sample"
    elif hum.fmt == "document":
        stab, skeys, where = hum.table, list(hum.keys), "human"
    else:
        raise FineclassError(
            "`human` is a long table (one row per label), which cannot list the sampled documents "
            "the coders gave no label; pass `sample=` with the drawn sample (ids and "
            "probabilities, as draw_sample() returns it).",
            "sample",
        )
    if not skeys:
        raise FineclassError(
            f"the human sample is empty: `{where}` has no documents. Code a random sample of the "
            f"corpus first (see draw_sample()).",
            "human",
        )
    inside = set(skeys)
    extra = [k for k in hum.keys if k not in inside]
    if extra:
        raise FineclassError(
            f"`human` codes {len(extra)} documents that are not in `sample` (ids: {preview(extra)}); "
            f"pass the sample they were drawn in.",
            "human",
        )
    if hum.fmt == "document" and where == "sample" and len(hum.keys) < len(skeys):
        have = set(hum.keys)
        missing = [k for k in skeys if k not in have]
        raise FineclassError(
            f"{len(missing)} sampled documents have no row in `human` (ids: {preview(missing)}); "
            f"code them, or drop them from `sample`.",
            "human",
        )
    unknown = [k for k in skeys if k not in pos]
    if unknown:
        raise FineclassError(
            f"`{where}` holds {len(unknown)} documents that are not in `codes` (ids: "
            f"{preview(unknown)}); every human-coded document must be one of the coded corpus.",
            where,
        )
    prob = strata = None
    if probability in stab.column_names:
        col = stab.column(probability)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
            raise FineclassError(
                f"the probability column `{probability}` of `{where}` holds {col.type} values, not numbers.",
                "probability",
            )
        if col.null_count:
            raise FineclassError(
                f"the probability column `{probability}` of `{where}` has {col.null_count} missing "
                f"values; every sampled document needs its inclusion probability.",
                "probability",
            )
        prob = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), float)
    elif probability != "probability":
        raise FineclassError(
            f"column `{probability}` not found in `{where}`; columns are: {', '.join(stab.column_names)}.",
            "probability",
        )
    if stratum in stab.column_names:
        strata = stab.column(stratum).to_pylist()
        if all(s is None for s in strata):
            strata = None
        elif any(s is None for s in strata):
            raise FineclassError(f"the stratum column `{stratum}` of `{where}` has missing values.", "stratum")
    if design is None and "design" in stab.column_names:
        kinds = {d for d in stab.column("design").to_pylist() if d is not None}
        if len(kinds) > 1:
            raise FineclassError(
                f"the `design` column of `{where}` names several designs ({preview(sorted(kinds))}).", "design"
            )
        design = kinds.pop() if kinds else None
    dsg = make_design(design, prob, strata, len(skeys), N)
    if dsg.kind != "poisson":
        total = dsg.weights.sum()
        if abs(total - N) > 0.05 * N + 1:
            warn_user(
                f"the sample's weights (1 / probability) add up to {total:,.0f}, but the corpus holds {N:,} "
                f"documents: check `probability` (were the documents drawn from this corpus?)."
            )
    return skeys, dsg


def _label_set(cod, hum, spec) -> list[str]:
    seen_c = set().union(*cod.sets.values()) if cod.sets else set()
    seen_h = set().union(*hum.sets.values()) if hum.sets else set()
    if spec is not None:
        known = set(spec.classes)
        for name, seen in (("codes", seen_c), ("human", seen_h)):
            bad = natural_sort(seen - known)
            if bad:
                raise FineclassError(
                    f"`{name}` holds labels that are not in the label set: {preview(bad)}. Known "
                    f"labels: {preview(spec.classes)}.",
                    name,
                )
        return list(spec.classes)
    labelset = natural_sort(seen_c | seen_h)
    if not labelset:
        raise FineclassError("neither `codes` nor `human` holds any label; nothing to estimate.", "codes")
    return labelset


def _targets(labels, labelset) -> list[str]:
    if labels is None:
        return list(labelset)
    wanted = [canon(x) for x in ([labels] if isinstance(labels, (str, int)) else labels)]
    bad = [x for x in wanted if x not in labelset]
    if bad:
        raise FineclassError(
            f"`labels` names labels that are not in the label set: {preview(bad)}. Known labels: {preview(labelset)}.",
            "labels",
        )
    if not wanted:
        raise FineclassError("`labels` is empty; name at least one label, or leave it out for all.", "labels")
    return wanted


# ================================================================================================ shares
def _groups(tab: pa.Table, ckeys: list, by: list[str]):
    """Group index per corpus document, and the group values in sorted order."""
    for b in by:
        if b not in tab.column_names:
            raise FineclassError(f"column `{b}` not found in `data`; columns are: {', '.join(tab.column_names)}.", "by")
    if not by:
        return np.zeros(len(ckeys), np.int64), [()]
    cols = [tab.column(b).to_pylist() for b in by]
    vals = list(zip(*cols))
    uniq = list(dict.fromkeys(vals))
    try:
        uniq.sort(key=lambda g: tuple((x is None, x) for x in g))
    except TypeError:
        pass
    index = {g: i for i, g in enumerate(uniq)}
    return np.array([index[v] for v in vals], dtype=np.int64), uniq


def _effective_n(v: float, v_h: float, n: int, N: int, finite: bool) -> float | None:
    """Human codes that the human-only estimate would need, under the same design, to match variance ``v``."""
    if not (np.isfinite(v) and np.isfinite(v_h)) or n == 0:
        return None
    if v <= 0:
        return float(N) if finite else None
    if finite:
        if n >= N or v_h <= 0:
            return float(n)
        unit = v_h / (1.0 / n - 1.0 / N)
        return float(1.0 / (v / unit + 1.0 / N))
    return float(n * v_h / v)


def _shares_table(
    cod,
    hum,
    tab,
    ckeys,
    targets,
    by,
    *,
    N,
    sampled,
    skeys,
    design,
    method,
    population,
    z,
    level,
    small_sample,
    folds,
    seed,
) -> pa.Table:
    pseudo = SMALL_SAMPLE_PSEUDO if small_sample else 0.0
    F = indicator(cod.sets, ckeys, targets)
    Y = indicator(hum.sets, skeys, targets)
    gidx, gvals = _groups(tab, ckeys, by)
    finite = population == "finite"
    if not finite and method != "dsl" and design.kind != "srs":
        raise FineclassError(
            f"population='superpopulation' with method {method!r} follows ppi-python, which needs "
            f"a simple random sample; this sample's design is {design.kind!r}. Use "
            f"population='finite', or method='dsl'.",
            "population",
        )
    G = None
    if method == "dsl":
        extra = np.eye(len(gvals))[gidx][:, 1:] if len(gvals) > 1 else None
        feats = code_features(F, confidence_matrix(cod, ckeys, targets), extra)
        G = crossfit(feats, Y, sampled, folds=folds, seed=seed)
    sgroup = gidx[sampled]
    weights = design.weights
    L = len(targets)
    rows = []
    empty_groups = []
    for g, gv in enumerate(gvals):
        in_g = gidx == g
        dom = sgroup == g
        n_g, N_g = int(dom.sum()), int(in_g.sum())
        mo = sh.model_only(F[in_g])
        if n_g == 0:
            empty_groups.append(gv)
            fit = hfit = None
        elif finite:
            zero = np.zeros_like(Y)
            hfit = sh.finite(Y, zero, np.zeros(L), design, dom, 0.0, pseudo)
            if method == "dsl":
                fit = sh.finite(Y, G[sampled], G[in_g].mean(0), design, dom, 1.0, pseudo)
            else:
                fit = sh.finite(
                    Y, F[sampled], F[in_g].mean(0), design, dom, "tune" if method == "ppi++" else 1.0, pseudo
                )
        else:
            out_g = in_g.copy()
            out_g[sampled] = False
            if method == "dsl":
                fit = sh.pseudo_outcomes(Y[dom], G[sampled][dom], G[in_g], weights[dom], pseudo)
                hfit = (
                    sh.pseudo_outcomes(Y[dom], np.zeros((n_g, L)), np.zeros((N_g, L)), weights[dom], pseudo, 0.0)
                    if design.kind != "srs"
                    else sh.superpopulation(Y[dom], np.zeros((n_g, L)), np.zeros((int(out_g.sum()), L)), 0.0, pseudo)
                )
            else:
                fit = sh.superpopulation(
                    Y[dom], F[sampled][dom], F[out_g], "tune" if method == "ppi++" else 1.0, pseudo
                )
                hfit = sh.superpopulation(Y[dom], np.zeros((n_g, L)), np.zeros((int(out_g.sum()), L)), 0.0, pseudo)
        for j, lab in enumerate(targets):
            row = {b: v for b, v in zip(by, gv)}
            row.update(estimand="share", outcome=None, term=lab)
            row.update(_columns("", fit, j, z, clip=True))
            row["df"] = None
            row.update(method=method, **{"lambda": None if fit is None or method == "dsl" else float(fit.lam[j])})
            row.update(_columns("model_", mo, j, z, clip=True))
            row.update(_columns("human_", hfit, j, z, clip=True))
            eff = None if fit is None else _effective_n(fit.variance[j], hfit.variance[j], n_g, N_g, finite)
            row.update(
                n_human=n_g,
                n_total=N_g,
                effective_n=eff,
                gain=None if eff is None else eff / n_g,
                population=population,
                design=design.kind,
            )
            rows.append(row)
    if empty_groups:
        warn_user(
            f"{len(empty_groups)} groups have no human-coded document ({preview(empty_groups)}); their "
            f"estimates are null. Draw the sample stratified by group to cover every group."
        )
    return _table(rows, by, tab)


def _columns(prefix: str, fit, j: int, z: float, clip: bool) -> dict:
    if fit is None:
        return {
            f"{prefix}estimate": None,
            f"{prefix}std_error": None,
            f"{prefix}conf_low": None,
            f"{prefix}conf_high": None,
        }
    est = float(fit.estimate[j]) if hasattr(fit, "estimate") else float(fit.beta[j])
    var = float(fit.variance[j]) if hasattr(fit, "variance") else float(fit.cov[j, j])
    se = float(np.sqrt(max(var, 0.0)))
    lo, hi = est - z * se, est + z * se
    if clip:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return {f"{prefix}estimate": est, f"{prefix}std_error": se, f"{prefix}conf_low": lo, f"{prefix}conf_high": hi}


_FLOATS = (
    "estimate",
    "std_error",
    "conf_low",
    "conf_high",
    "df",
    "lambda",
    "model_estimate",
    "model_std_error",
    "model_conf_low",
    "model_conf_high",
    "human_estimate",
    "human_std_error",
    "human_conf_low",
    "human_conf_high",
    "effective_n",
    "gain",
)


def _table(rows: list[dict], by: list[str], tab: pa.Table) -> pa.Table:
    order = [
        *by,
        "estimand",
        "outcome",
        "term",
        "estimate",
        "std_error",
        "conf_low",
        "conf_high",
        "df",
        "method",
        "lambda",
        "model_estimate",
        "model_std_error",
        "model_conf_low",
        "model_conf_high",
        "human_estimate",
        "human_std_error",
        "human_conf_low",
        "human_conf_high",
        "n_human",
        "n_total",
        "effective_n",
        "gain",
        "population",
        "design",
    ]
    cols = {}
    for c in order:
        vals = [r[c] for r in rows]
        if c in by:
            cols[c] = pa.array(vals, type=tab.schema.field(c).type)
        elif c in _FLOATS:
            cols[c] = pa.array(vals, pa.float64())
        elif c in ("n_human", "n_total"):
            cols[c] = pa.array(vals, pa.int64())
        else:
            cols[c] = pa.array(vals, pa.string())
    return pa.table(cols)


# ================================================================================================ regression
def _names(v) -> list[str]:
    return [v] if isinstance(v, str) else [str(x) for x in (v or [])]


def _regression_table(
    cod,
    hum,
    tab,
    ckeys,
    labelset,
    family,
    outcome,
    covariates,
    *,
    N,
    sampled,
    skeys,
    design,
    method,
    population,
    z,
    level,
    small_sample,
    folds,
    seed,
) -> pa.Table:
    names = [str(outcome)] + _names(covariates)
    if len(set(names)) != len(names):
        raise FineclassError(f"the regression names a variable twice ({preview(names)}).", "covariates")
    observed = set(tab.column_names)
    coded_names, roles = [], []
    for k, name in enumerate(names):
        arg = "outcome" if k == 0 else "covariates"
        in_data, in_labels = name in observed, canon(name) in labelset
        if in_data and in_labels:
            raise FineclassError(
                f"`{name}` is both a column of `data` and a label; rename the column so that the "
                f"regression knows which one you mean.",
                arg,
            )
        if not (in_data or in_labels):
            raise FineclassError(
                f"`{name}` is neither a column of `data` ({preview(sorted(observed))}) nor a label "
                f"({preview(labelset)}).",
                arg,
            )
        roles.append("coded" if in_labels else "observed")
        if in_labels:
            coded_names.append(canon(name))
    if not coded_names:
        raise FineclassError(
            "the regression uses no coded label, so the human codes have nothing to correct; "
            "name a label as the outcome or a covariate.",
            "outcome",
        )
    finite = population == "finite"
    if not finite and method != "dsl" and design.kind != "srs":
        raise FineclassError(
            f"population='superpopulation' with method {method!r} follows ppi-python, which needs "
            f"a simple random sample; this sample's design is {design.kind!r}. Use "
            f"population='finite', or method='dsl'.",
            "population",
        )
    allrows = np.arange(N)
    F = indicator(cod.sets, ckeys, coded_names)
    Y = indicator(hum.sets, skeys, coded_names)
    obs = {
        nm: numeric_column(tab, nm, "data", allrows, "outcome" if k == 0 else "covariates")
        for k, (nm, r) in enumerate(zip(names, roles))
        if r == "observed"
    }
    if family == "logistic" and roles[0] == "observed" and not np.isin(obs[names[0]], (0.0, 1.0)).all():
        raise FineclassError(f"a logistic regression needs a 0/1 outcome; `{names[0]}` holds other values.", "outcome")

    def problem(imputed: np.ndarray) -> reg.Problem:
        def column(k, nm, source, rows):
            return obs[nm][rows] if roles[k] == "observed" else source[:, coded_names.index(canon(nm))]

        Xh = np.column_stack([np.ones(N)] + [column(k, nm, imputed, allrows) for k, nm in enumerate(names) if k])
        Xs = np.column_stack([np.ones(len(sampled))] + [column(k, nm, Y, sampled) for k, nm in enumerate(names) if k])
        return reg.Problem(
            family,
            Xh,
            column(0, names[0], imputed, allrows),
            Xs,
            column(0, names[0], Y, sampled),
            sampled,
            outcome_only=roles[0] == "coded" and all(r == "observed" for r in roles[1:]),
        )

    pr_codes = problem(F)
    mo = reg.model_only(pr_codes)
    start = mo.beta
    if method == "dsl":
        extra = np.column_stack(list(obs.values())) if obs else None
        G = crossfit(
            code_features(F, confidence_matrix(cod, ckeys, coded_names), extra), Y, sampled, folds=folds, seed=seed
        )
        pr = problem(G)
    else:
        pr = pr_codes
    lam = "tune" if method == "ppi++" else 1.0
    if finite:
        fit = reg.finite(pr, design, lam, start)
        hfit = reg.finite(pr_codes, design, 0.0, start)
    elif method == "dsl":
        fit = reg.pseudo_moments(pr, design.weights, start)
        hfit = (
            reg.superpopulation(pr_codes, 0.0, start)
            if design.kind == "srs"
            else reg.pseudo_moments(pr_codes, design.weights, start, impute=False)
        )
    else:
        fit = reg.superpopulation(pr, lam, start)
        hfit = reg.superpopulation(pr_codes, 0.0, start)
    terms = [INTERCEPT] + names[1:]
    n = len(sampled)
    rows = []
    from scipy.stats import t as student

    def quantile(f, j):  # Student's t with the fit's degrees of freedom, when small_sample asks for it
        if not small_sample or f.df is None or not np.isfinite(f.df[j]):
            return z, None
        df = max(float(f.df[j]), 1.0)
        return float(student.ppf(1 - (1 - level) / 2, df)), df

    for j, term in enumerate(terms):
        row = dict(estimand=family, outcome=names[0], term=term)
        q, df = quantile(fit, j)
        row.update(_columns("", fit, j, q, clip=False))
        row["df"] = df
        row.update(method=method, **{"lambda": None if method == "dsl" else float(fit.lam)})
        row.update(_columns("model_", mo, j, z, clip=False))
        row.update(_columns("human_", hfit, j, quantile(hfit, j)[0], clip=False))
        eff = _effective_n(float(fit.cov[j, j]), float(hfit.cov[j, j]), n, N, finite)
        row.update(
            n_human=n,
            n_total=N,
            effective_n=eff,
            gain=None if eff is None else eff / n,
            population=population,
            design=design.kind,
        )
        rows.append(row)
    return _table(rows, [], tab)
