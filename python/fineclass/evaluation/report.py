"""The Evaluation: headline metrics with bootstrap intervals, per-class and per-document tables."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .._checks import whole_number
from ..errors import FineclassError, preview
from ..labels import LabelSpec
from .align import Prepared, prepare
from .coded import sorted_codes
from .common import check_confidence, num, warn
from .stats import Stats, f1, percentile, ratio, resampled, stats_for

_NONE = "\x00none"  # stands for a missing single-label prediction inside scikit-learn's arrays


class Evaluation:
    """The scores of one set of predictions against the truth.

    Attributes: ``kind``, ``n`` (documents scored), ``metrics`` (pyarrow Table: metric, estimate, lower,
    upper, n), ``per_class`` (single, multi), ``confusion`` (single: truth, predicted, n),
    ``per_dimension`` (dimlevel), ``per_document``, ``notes`` (list of str), ``n_empty_predictions``,
    ``confidence`` and ``bootstrap`` (resamples; 0 = no intervals).
    """

    def __init__(
        self,
        kind: str,
        metrics: pa.Table,
        notes: list,
        *,
        per_class: pa.Table | None = None,
        confusion: pa.Table | None = None,
        per_dimension: pa.Table | None = None,
        per_document: pa.Table | None = None,
        n_empty_predictions: int = 0,
        confidence: float = 0.95,
        bootstrap: int = 0,
        spec: LabelSpec | None = None,
    ):
        self.kind = kind
        self.metrics = metrics
        self.notes = list(notes)
        self.per_class = per_class
        self.confusion = confusion
        self.per_dimension = per_dimension
        self.per_document = per_document
        self.n_empty_predictions = n_empty_predictions
        self.confidence = confidence
        self.bootstrap = bootstrap
        self.spec = spec
        self.n = per_document.num_rows if per_document is not None else None

    def get(self, metric: str) -> float | None:
        """The estimate of one headline metric.

        Args:
            metric: its name (see :func:`evaluate`).

        Returns:
            The estimate, or None when undefined.

        Raises:
            FineclassError: naming ``metric`` when this evaluation has no such metric.
        """
        names = self.metrics.column("metric").to_pylist()
        if metric not in names:
            raise FineclassError(f"no metric {metric!r}; this evaluation has: {', '.join(names)}.", "metric")
        return self.metrics.column("estimate")[names.index(metric)].as_py()

    def __getitem__(self, metric: str) -> float | None:
        return self.get(metric)

    def to_dict(self) -> dict:
        """Every table by name (for R: a named list of data frames); notes as a one-column table.

        Returns:
            ``{"metrics": ..., "per_class": ..., ..., "notes": ...}``.
        """
        out = {"metrics": self.metrics}
        for name in ("per_class", "confusion", "per_dimension", "per_document"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t
        out["notes"] = pa.table({"note": pa.array(self.notes, pa.string())})
        return out

    def __repr__(self) -> str:
        head = f"Evaluation ({self.kind}, {self.n} documents"
        head += (
            f", {self.confidence:.0%} bootstrap intervals from {self.bootstrap} resamples)"
            if self.bootstrap
            else ", no intervals)"
        )
        rows = self.metrics.to_pylist()
        w = max(len(r["metric"]) for r in rows) if rows else 6

        def f(x):
            return "   null" if x is None else f"{x:7.3f}"

        lines = [head, f"  {'metric':<{w}}  estimate  interval"]
        for r in rows:
            iv = f"[{f(r['lower']).strip()}, {f(r['upper']).strip()}]" if r["lower"] is not None else ""
            lines.append(f"  {r['metric']:<{w}}  {f(r['estimate'])}   {iv}")
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # notebooks
        import html

        return "<pre>" + html.escape(repr(self)) + "</pre>"


def _metric_table(
    stats: Stats, n: int, resamples: int, confidence: float, seed: int, clusters: np.ndarray | None, notes: list
) -> pa.Table:
    fns = [f for _, f, _ in stats.metrics]
    full = stats.S.sum(0)[None, :]
    est = [float(f(full, np.array([float(n)]))[0]) for f in fns]
    boot = resampled(stats.S, fns, resamples, np.random.default_rng(seed), clusters) if resamples else None
    rows = {"metric": [], "estimate": [], "lower": [], "upper": [], "n": []}
    for j, (name, _, why) in enumerate(stats.metrics):
        e = num(est[j])
        lo = hi = None
        if e is None:
            msg = f"{name} is undefined for these data ({why}); it is reported as null."
            warn(msg)
            notes.append(msg)
        elif boot is not None:
            lo, hi, bad = percentile(boot[:, j], confidence)
            if bad:
                notes.append(
                    f"{name}: {bad} of {resamples} resamples left it undefined; its interval comes from the others."
                )
        rows["metric"].append(name)
        rows["estimate"].append(e)
        rows["lower"].append(lo)
        rows["upper"].append(hi)
        rows["n"].append(n)
    return pa.table(
        {
            "metric": pa.array(rows["metric"], pa.string()),
            "estimate": pa.array(rows["estimate"], pa.float64()),
            "lower": pa.array(rows["lower"], pa.float64()),
            "upper": pa.array(rows["upper"], pa.float64()),
            "n": pa.array(rows["n"], pa.int64()),
        }
    )


def _nulls(a: np.ndarray) -> pa.Array:
    return pa.array([num(x) for x in np.asarray(a, dtype=float)], pa.float64())


def _ids_array(prep: Prepared) -> pa.Array:
    vals = [prep.original[k] for k in prep.keys]
    try:
        return pa.array(vals)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([str(v) for v in vals], pa.string())


def _tables_single(prep: Prepared, S: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = prep.classes
    y_true = np.array(prep.truth, dtype=object)
    y_pred = np.array([_NONE if v is None else v for v in prep.preds[0]], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prec, rec, f1, sup = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=np.nan)
    predicted = [int((y_pred == c).sum()) for c in classes]
    per_class = pa.table(
        {
            "class": pa.array(classes, pa.string()),
            "name": pa.array([prep.names.get(c, c) for c in classes], pa.string()),
            "support": pa.array(sup.astype(np.int64)),
            "predicted": pa.array(predicted, pa.int64()),
            "precision": _nulls(prec),
            "recall": _nulls(rec),
            "f1": _nulls(f1),
        }
    )
    extra = [c for c in sorted_codes(set(y_pred) - set(classes) - {_NONE})]
    cols = classes + extra + ([_NONE] if (y_pred == _NONE).any() else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = confusion_matrix(y_true, y_pred, labels=cols)
    cm = cm[: len(classes)]
    confusion = pa.table(
        {
            "truth": pa.array([t for t in classes for _ in cols], pa.string()),
            "predicted": pa.array([None if p == _NONE else p for _ in classes for p in cols], pa.string()),
            "n": pa.array(cm.ravel().astype(np.int64)),
        }
    )
    per_document = pa.table(
        {
            "id": _ids_array(prep),
            "truth": pa.array(prep.truth, pa.string()),
            "predicted": pa.array(prep.preds[0], pa.string()),
            "correct": pa.array(S[:, 0].astype(bool)),
        }
    )
    return {"per_class": per_class, "confusion": confusion, "per_document": per_document}


def _tables_multi(prep: Prepared, S: np.ndarray) -> dict:
    K = len(prep.classes)
    Y = S[:, 4 + K : 4 + 2 * K]
    Z = S[:, 4 + 2 * K : 4 + 3 * K]
    # per class by hand (scikit-learn's formulas): its multilabel check refuses one class or none
    Yb, Zb = Y.astype(bool), Z.astype(bool)
    tp, sup, npred = (Yb & Zb).sum(0).astype(np.float64), Yb.sum(0), Zb.sum(0)
    prec = np.where(npred > 0, tp / np.maximum(npred, 1), np.nan)
    rec = np.where(sup > 0, tp / np.maximum(sup, 1), np.nan)
    f1 = np.where(sup + npred > 0, 2 * tp / np.maximum(sup + npred, 1), np.nan)
    per_class = pa.table(
        {
            "class": pa.array(prep.classes, pa.string()),
            "name": pa.array([prep.names.get(c, c) for c in prep.classes], pa.string()),
            "support": pa.array(sup.astype(np.int64)),
            "predicted": pa.array(Z.sum(0).astype(np.int64)),
            "precision": _nulls(prec),
            "recall": _nulls(rec),
            "f1": _nulls(f1),
        }
    )
    per_document = pa.table(
        {
            "id": _ids_array(prep),
            "n_truth": pa.array(Y.sum(1).astype(np.int64)),
            "n_predicted": pa.array((Z.sum(1) + S[:, 3]).astype(np.int64)),
            "exact_match": pa.array(S[:, 0].astype(bool)),
            "jaccard": pa.array(S[:, 2]),
        }
    )
    return {"per_class": per_class, "per_document": per_document}


def _tables_dimlevel(prep: Prepared, S: np.ndarray, perdim: np.ndarray) -> dict:
    D = len(prep.classes)
    tot = perdim.sum(0)
    tp, t, p, pair = tot[:D], tot[D : 2 * D], tot[2 * D : 3 * D], tot[3 * D :]
    per_dimension = pa.table(
        {
            "dimension": pa.array(prep.classes, pa.string()),
            "support": pa.array(t.astype(np.int64)),
            "predicted": pa.array(p.astype(np.int64)),
            "precision": _nulls(ratio(tp, p)),
            "recall": _nulls(ratio(tp, t)),
            "f1": _nulls(f1(tp, t, p)),
            "pair_f1": _nulls(f1(pair, t, p)),
            "level_accuracy": _nulls(ratio(pair, tp)),
        }
    )
    per_document = pa.table(
        {
            "id": _ids_array(prep),
            "n_truth": pa.array(S[:, 3].astype(np.int64)),
            "n_predicted": pa.array(S[:, 4].astype(np.int64)),
            "accD": _nulls(S[:, 0]),
            "jaccard": pa.array(S[:, 1]),
        }
    )
    return {"per_dimension": per_dimension, "per_document": per_document}


def evaluate(
    predictions: Any,
    truth: Any,
    *,
    spec: Any = None,
    kind: str | None = None,
    id: str = "id",
    label: Any = None,
    ids: Any = None,
    on_mismatch: str = "error",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cluster: str | None = None,
) -> Evaluation:
    """Score predictions against human codes.

    Headline metrics: single: accuracy, macro_f1, weighted_f1, kappa (Cohen's, model vs truth); multi:
    exact_match, hamming_loss, jaccard, micro_f1, macro_f1; dimlevel: accD, jaccard, presence_micro_f1,
    presence_macro_f1, pair_micro_f1, level_accuracy. Macro averages run over the classes of the label set that
    occur in the truth or the predictions.

    Args:
        predictions: a table or path: document-level (``id, label`` or ``id, labels``) or long (``id, label`` one
            row per label; ``id, dimension, level[, confidence]``). Other columns (e.g. ``split``) are ignored.
        truth: the human codes, in any of the same forms; filter it yourself to score one split.
        spec: the LabelSpec (or its dict, its JSON path, a saved model's folder, or a fitted Classifier). Without
            it the label set is the classes (or dimensions) found in ``truth``.
        kind: ``"single"``, ``"multi"`` or ``"dimlevel"``; inferred from ``spec`` or ``truth`` when left out (a
            scalar label column with repeated ids is multi-label).
        id: the name of the id column in both tables.
        label: the label column, or a (dimension, level) pair.
        ids: the documents to score (a list, or a table with an ``id`` column); default: the ids of ``truth``.
        on_mismatch: ``"error"`` raises when predictions and truth cover different documents (for single-label,
            or document-level tables); ``"intersect"`` scores the documents in both.
        bootstrap: resamples for the percentile intervals (0: none).
        confidence: the intervals' level.
        seed: their seed.
        cluster: a column of ``truth`` naming each document's cluster; clusters are resampled whole.

    Returns:
        An :class:`Evaluation`: ``metrics`` (metric, estimate, lower, upper, n), ``per_class`` or
        ``per_dimension``, ``confusion`` (single), ``per_document`` and ``notes``.

    Raises:
        FineclassError: naming the argument at fault.

    Example:
        >>> ev = fineclass.evaluate(clf.predict(test), test, spec=clf)  # doctest: +SKIP
        >>> ev.get("macro_f1")  # doctest: +SKIP
    """
    resamples = whole_number(bootstrap, "bootstrap", minimum=0)
    conf = check_confidence(confidence)
    seed = whole_number(seed, "seed", minimum=0)
    prep = prepare(
        [predictions],
        truth,
        spec=spec,
        kind=kind,
        id=id,
        label=label,
        ids=ids,
        on_mismatch=on_mismatch,
        cluster=cluster,
    )
    if prep.kind == "dimlevel" and not prep.classes:
        raise FineclassError(
            "`truth` has no dimension: pass `spec=` with the label set, or truth with labels.", "truth"
        )
    stats, perdim = stats_for(prep, 0)
    notes = prep.notes
    n = len(prep.keys)
    metrics = _metric_table(stats, n, resamples, conf, seed, prep.cluster, notes)
    if prep.kind == "single":
        tables = _tables_single(prep, stats.S)
    elif prep.kind == "multi":
        tables = _tables_multi(prep, stats.S)
    else:
        tables = _tables_dimlevel(prep, stats.S, perdim)
    if prep.cluster is not None:
        notes.append(f"intervals resample {int(prep.cluster.max()) + 1} clusters of documents.")
    return Evaluation(
        prep.kind,
        metrics,
        notes,
        n_empty_predictions=prep.n_empty[0],
        confidence=conf,
        bootstrap=resamples,
        spec=prep.spec,
        **tables,
    )


def paired_bootstrap(
    pred_a: Any,
    pred_b: Any,
    truth: Any,
    *,
    metric: str | Sequence[str] | None = None,
    spec: Any = None,
    kind: str | None = None,
    id: str = "id",
    label: Any = None,
    ids: Any = None,
    on_mismatch: str = "error",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cluster: str | None = None,
) -> pa.Table:
    """The difference between two models (a - b) on the same documents, with a paired bootstrap.

    Both models are scored on the same resamples of the same documents. ``p_value`` is twice the smaller share of
    resampled differences on either side of zero (capped at 1): a bootstrap analogue of a two-sided p-value for
    "no difference".

    Args:
        pred_a: the first model's predictions.
        pred_b: the second model's predictions.
        truth: the human codes.
        metric: one headline metric or a list; default every headline metric.
        spec: see :func:`evaluate`.
        kind: see :func:`evaluate`.
        id: see :func:`evaluate`.
        label: see :func:`evaluate`.
        ids: see :func:`evaluate`.
        on_mismatch: see :func:`evaluate`.
        bootstrap: resamples (at least 1).
        confidence: the intervals' level.
        seed: their seed.
        cluster: see :func:`evaluate`.

    Returns:
        A table: metric, a, b, difference, lower, upper, p_value, n.

    Raises:
        FineclassError: naming the argument at fault.

    Example:
        >>> fineclass.paired_bootstrap(pred_a, pred_b, truth, metric="macro_f1")  # doctest: +SKIP
    """
    resamples = whole_number(bootstrap, "bootstrap", minimum=1)
    conf = check_confidence(confidence)
    seed = whole_number(seed, "seed", minimum=0)
    prep = prepare(
        [pred_a, pred_b],
        truth,
        spec=spec,
        kind=kind,
        id=id,
        label=label,
        ids=ids,
        on_mismatch=on_mismatch,
        cluster=cluster,
        pred_names=("pred_a", "pred_b"),
    )
    sa, _ = stats_for(prep, 0)
    sb, _ = stats_for(prep, 1)
    known = [m for m, _, _ in sa.metrics]
    wanted = known if metric is None else ([metric] if isinstance(metric, str) else list(metric))
    bad = [m for m in wanted if m not in known]
    if bad:
        raise FineclassError(
            f"`metric`: {preview(bad)} are not metrics of a {prep.kind} evaluation; choose from {', '.join(known)}.",
            "metric",
        )
    m = sa.S.shape[1]
    S = np.hstack([sa.S, sb.S])
    fa = {name: f for name, f, _ in sa.metrics}
    fns = [(lambda f: lambda s, c: f(s[:, :m], c) - f(s[:, m:], c))(fa[w]) for w in wanted]
    n = len(prep.keys)
    full = S.sum(0)[None, :]
    cnt = np.array([float(n)])
    boot = resampled(S, fns, resamples, np.random.default_rng(seed), prep.cluster)
    rows = []
    for j, w in enumerate(wanted):
        a = num(fa[w](full[:, :m], cnt)[0])
        b = num(fa[w](full[:, m:], cnt)[0])
        d = None if a is None or b is None else a - b
        lo, hi, _ = percentile(boot[:, j], conf) if d is not None else (None, None, 0)
        ok = boot[np.isfinite(boot[:, j]), j]
        p = None
        if d is not None and ok.size:
            p = float(min(1.0, 2 * min((ok <= 0).mean(), (ok >= 0).mean())))
        if d is None:
            warn(f"{w} is undefined for one of the models on these data; its difference is null.")
        rows.append({"metric": w, "a": a, "b": b, "difference": d, "lower": lo, "upper": hi, "p_value": p, "n": n})
    schema = pa.schema(
        [
            ("metric", pa.string()),
            ("a", pa.float64()),
            ("b", pa.float64()),
            ("difference", pa.float64()),
            ("lower", pa.float64()),
            ("upper", pa.float64()),
            ("p_value", pa.float64()),
            ("n", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
