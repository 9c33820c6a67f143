"""The share of documents per label, by group, with bootstrap intervals."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._checks import whole_number
from ..errors import FineclassError, preview
from ..labels import as_spec
from .coded import Layout, key_array, layout, read_coded, sorted_codes
from .common import check_confidence, num, read, warn
from .stats import percentile, resampled


def label_shares(
    predictions: Any,
    groups: Any = None,
    by: Any = (),
    *,
    id: str = "id",
    label: Any = None,
    kind: str | None = None,
    spec: Any = None,
    on_mismatch: str = "error",
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cluster: str | None = None,
) -> pa.Table:
    """The share of documents carrying each label, by group, with percentile bootstrap intervals.

    Documents are resampled within each group (clusters, when ``cluster`` names a column of ``groups``).

    Args:
        predictions: single, multi or dimlevel predictions (document-level or long). For dimlevel the label is the
            dimension (present at any level).
        groups: a table with ``id`` and the ``by`` columns (e.g. party, year); without it the ``by`` columns are
            read from ``predictions``. The documents counted are those of ``groups`` (a document without rows in a
            long ``predictions`` table carries no label).
        by: the grouping columns (one name or a list; none: one group).
        id: the id column.
        label: the label column (None: found).
        kind: the shape (None: inferred).
        spec: the label set (its labels get rows even where no document carries them).
        on_mismatch: ``"error"`` or ``"intersect"`` for documents of ``groups`` without a prediction.
        bootstrap: resamples (0: no intervals).
        confidence: the intervals' level.
        seed: their seed.
        cluster: a column of ``groups`` with each document's cluster.

    Returns:
        The ``by`` columns, label, documents (in the group), n (carrying the label), share, lower, upper.

    Raises:
        FineclassError: naming the argument at fault.
    """
    resamples = whole_number(bootstrap, "bootstrap", minimum=0)
    conf = check_confidence(confidence)
    seed = whole_number(seed, "seed", minimum=0)
    by = [by] if isinstance(by, str) else [str(b) for b in (by or [])]
    spec = as_spec(spec)
    if spec is not None:
        kind = spec.kind
    ptab = read(predictions, "predictions")
    gtab = ptab if groups is None else read(groups, "groups")
    gname = "predictions" if groups is None else "groups"
    for b in by + ([cluster] if cluster else []):
        if b not in gtab.column_names:
            raise FineclassError(
                f"column `{b}` not found in `{gname}`; columns are: {', '.join(gtab.column_names)}.",
                "by" if b != cluster else "cluster",
            )
    if id not in gtab.column_names:
        raise FineclassError(f"column `{id}` not found in `{gname}`; pass `id=` with the id column.", "id")
    gkeys = key_array(gtab.column(id)).to_pylist()
    gvals = {b: gtab.column(b).to_pylist() for b in by}
    cvals = gtab.column(cluster).to_pylist() if cluster else None
    doc_group: dict = {}
    doc_cluster: dict = {}
    for r, k in enumerate(gkeys):
        g = tuple(gvals[b][r] for b in by)
        if k in doc_group and doc_group[k] != g:
            raise FineclassError(f"document {k!r} belongs to two groups in `{gname}` ({doc_group[k]} and {g}).", "by")
        doc_group[k] = g
        if cluster:
            doc_cluster[k] = cvals[r]
    lay = layout(ptab, "predictions", label, kind)
    if lay.kind is None:
        dup = pc.count_distinct(key_array(ptab.column(id))).as_py() < ptab.num_rows
        lay = Layout("multi" if dup else "single", "long" if dup else "document", lay.columns)
    kind = lay.kind
    coded = read_coded(ptab, "predictions", lay, kind, id, set(doc_group), "predictions")
    if coded.conflicts:
        warn(
            f"`predictions` gives different labels for the same document {coded.conflicts} times; the most "
            f"confident (else the first) row was kept."
        )
    keys = list(doc_group)
    absent = [k for k in keys if k not in coded.values]
    if absent and (kind == "single" or lay.fmt == "document"):
        msg = f"{len(absent)} documents of `{gname}` have no prediction (ids: {preview(absent)})."
        if on_mismatch != "intersect":
            raise FineclassError(
                msg + " Pass on_mismatch='intersect' to count only the documents with one.", "predictions"
            )
        keys = [k for k in keys if k in coded.values]
    if kind == "single":
        sets = [set() if coded.values.get(k) is None else {coded.values[k]} for k in keys]
    elif kind == "multi":
        sets = [coded.values.get(k, set()) for k in keys]
    else:
        sets = [set(coded.values.get(k, {})) for k in keys]
    labels = list(spec.classes) if spec is not None else sorted_codes(set().union(*sets) if sets else set())
    if spec is not None:
        extra = sorted_codes(set().union(*sets) - set(labels))
        if extra:
            warn(f"`predictions` holds labels outside `spec`: {preview(extra)}; they get rows of their own.")
            labels += extra
    li = {c: j for j, c in enumerate(labels)}
    X = np.zeros((len(keys), len(labels)))
    for i, s in enumerate(sets):
        for c in s:
            X[i, li[c]] = 1
    group_of = [doc_group[k] for k in keys]
    order: dict = {}
    for g in group_of:
        order.setdefault(g, len(order))
    try:
        gs = sorted(order, key=lambda g: tuple((x is None, x) for x in g))
    except TypeError:
        gs = list(order)
    gidx = np.array([gs.index(g) for g in group_of]) if gs else np.array([], dtype=int)
    seqs = np.random.SeedSequence(seed).spawn(max(len(gs), 1))
    out = {b: [] for b in by}
    out.update({"label": [], "documents": [], "n": [], "share": [], "lower": [], "upper": []})
    fns = [partial(_share, j) for j in range(len(labels))]
    for gi, g in enumerate(gs):
        rows = np.flatnonzero(gidx == gi)
        Xg = X[rows]
        ng = len(rows)
        boot = None
        if resamples and ng:
            cl = None
            if cluster:
                _, cl = np.unique(
                    np.array([str(doc_cluster[keys[r]]) for r in rows], dtype=object), return_inverse=True
                )
            boot = resampled(Xg, fns, resamples, np.random.default_rng(seqs[gi]), cl)
        for j, lab in enumerate(labels):
            for b, x in zip(by, g):
                out[b].append(x)
            out["label"].append(lab)
            out["documents"].append(ng)
            out["n"].append(int(Xg[:, j].sum()))
            out["share"].append(num(Xg[:, j].mean()) if ng else None)
            lo = hi = None
            if boot is not None:
                lo, hi, _ = percentile(boot[:, j], conf)
            out["lower"].append(lo)
            out["upper"].append(hi)
    cols = {b: pa.array(out[b]) if out[b] else pa.array([], gtab.schema.field(b).type) for b in by}
    cols["label"] = pa.array(out["label"], pa.string())
    cols["documents"] = pa.array(out["documents"], pa.int64())
    cols["n"] = pa.array(out["n"], pa.int64())
    for c in ("share", "lower", "upper"):
        cols[c] = pa.array(out[c], pa.float64())
    return pa.table(cols)


def _share(j: int, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The share of documents carrying label ``j``, from a resample's column sums and document counts."""
    return sums[:, j] / counts
