"""The fidelity report: do exported GGUF files label documents as the model they came from does?

``fidelity(model, against=["deploy/model-q8_0.gguf", "deploy/model-q4_k_m.gguf"], data=held_out)`` classifies the
same documents with the reference (the torch classifier) and with each exported file, and reports, per file:

- label agreement with the reference, with a Wilson interval;
- when ``data`` has human codes: the task metric of both and their difference (exported minus reference), with a
  paired bootstrap interval (``evaluation.paired_bootstrap``: both scored on the same resamples);
- the documents whose label flipped, with both confidences and the largest change of any probability.

A file whose metric drop has an interval entirely below zero gets a warning: the quantization costs accuracy
beyond what resampling the documents explains.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..classifier import Classifier, load
from ..errors import FineclassError, warn_user
from ..evaluation import paired_bootstrap
from ..tables import check_text, read_table, with_id
from .classifier import load_gguf

DEFAULT_METRIC = {"single": "accuracy", "multi": "jaccard", "dimlevel": "jaccard"}


# ---------------------------------------------------------------------- the report
@dataclass
class FidelityReport:
    """The result of ``fidelity()``.

    Attributes:
        summary: one row per exported file: file, quant, bytes, n, agreement and its interval, flipped, the metric
            of the reference and of the file, their difference with its paired bootstrap interval and p-value,
            and the seconds the file took to classify ``n`` documents.
        flips: one row per (file, document) whose label differs from the reference: id, both labels, both
            confidences (single-label), the largest change of any probability, and the human code when known.
        metric: the task metric compared (None without human codes).
        reference_seconds: the seconds the reference took on the same documents.
        notes: what the reader should know (documents left out, missing codes...).
    """

    summary: pa.Table
    flips: pa.Table
    metric: str | None
    confidence: float
    reference_seconds: float
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as plain Python (what ``fidelity.json`` holds).

        Returns:
            ``{metric, confidence, reference_seconds, summary, flips, notes}``, tables as lists of rows.
        """
        return {
            "metric": self.metric,
            "confidence": self.confidence,
            "reference_seconds": self.reference_seconds,
            "summary": self.summary.to_pylist(),
            "flips": self.flips.to_pylist(),
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_columns", 30):
            table = self.summary.drop_columns(["bytes"]).to_pandas().to_string(index=False, float_format="%.4g")
        lines = [
            f"Fidelity of exported models against the reference (metric: {self.metric or 'none'}, "
            f"{self.confidence:.0%} intervals)",
            table,
        ]
        if self.flips.num_rows:
            lines.append(f"{self.flips.num_rows} flipped document(s); see .flips")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _wilson(k: int, n: int, confidence: float) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _label_keys(table: pa.Table, kind: str) -> list:
    """Each document's prediction as a comparable value (a code, a set of codes, a set of dimension-levels)."""
    if kind == "single":
        return table.column("label").to_pylist()
    rows = table.column("labels").to_pylist()
    if kind == "multi":
        return [None if r is None else frozenset(r) for r in rows]
    return [None if r is None else frozenset((x["dimension"], x["level"]) for x in r) for r in rows]


def _targets(against: Any) -> list:
    """The exported models to check: files, export folders (every .gguf in them) or Classifiers."""
    items = list(against) if isinstance(against, (list, tuple)) else [against]
    if not items:
        raise FineclassError("`against` is empty: pass the exported .gguf files or their export folder.", "against")
    out = []
    for item in items:
        if hasattr(item, "predict"):
            out.append(item)
            continue
        p = Path(str(item)).expanduser()
        if p.is_dir() and not (p / "fineclass.json").exists():
            files = sorted(f for f in p.glob("*.gguf") if f.is_file())
            if not files:
                raise FineclassError(f"`against` {str(item)!r} holds no .gguf file.", "against")
            out.extend(files)
        elif p.exists():
            out.append(p)
        else:
            raise FineclassError(f"`against` {str(item)!r} does not exist.", "against")
    return out


def fidelity(
    model: Any,
    against: Any,
    data: Any,
    *,
    text: str = "text",
    label: Any = None,
    id: str | None = None,
    metric: str | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    threads: int | None = None,
    warn: bool = True,
) -> FidelityReport:
    """Compare exported models with the model they came from, on the same documents.

    Args:
        model: the reference: a Classifier or the folder of a saved one (the torch model).
        against: exported models: .gguf files, an export folder (all its .gguf files), loaded Classifiers, or a
            list of these.
        data: the held-out documents (a table or a Parquet/CSV file) with a text column, and optionally the human
            codes (a ``label`` column, or ``labels`` for the list shapes).
        text: the text column of ``data``.
        label: the column of human codes (default: ``label``/``labels`` when present; none: agreement only).
        id: the id column of ``data``.
        metric: the metric compared (default: accuracy for single-label, jaccard otherwise).
        bootstrap: the paired bootstrap's resamples.
        confidence: the level of the intervals.
        seed: the bootstrap's seed.
        threads: CPU threads for llama.cpp (default: torch's setting).
        warn: warn when a file's metric drop has an interval entirely below zero.

    Returns:
        A FidelityReport (``.summary``, ``.flips``, ``.to_dict()``).

    Raises:
        FineclassError: ``against`` names nothing loadable, ``data`` lacks the text column, or the exported models
            have another label set than the reference.

    Example:
        >>> report = fineclass.fidelity(clf, "deploy", data="held_out.parquet")  # doctest: +SKIP
        >>> report.summary.to_pandas()  # doctest: +SKIP
    """
    reference = model if isinstance(model, Classifier) else load(model)
    spec = reference.spec_
    targets = _targets(against)
    table = with_id(read_table(data), id)
    table, empty = check_text(table, text, on_empty="flag")
    truth_col = label
    if truth_col is None:
        truth_col = next((c for c in ("label", "labels") if c in table.column_names), None)
    elif truth_col not in table.column_names:
        raise FineclassError(
            f"`label`: column {truth_col!r} not found in `data`; columns are: {', '.join(table.column_names)}.", "label"
        )
    notes = []
    keep = ~np.asarray(empty, dtype=bool)
    if not keep.all():
        notes.append(f"{int((~keep).sum())} document(s) with empty text were left out.")
        table = table.filter(pa.array(keep))
    docs = table.select(["id", "text"])
    t0 = time.perf_counter()
    ref = reference.predict(docs)
    ref_seconds = time.perf_counter() - t0
    ref_keys = _label_keys(ref, spec.kind)
    pcols = [c for c in ref.column_names if c.startswith("p_")]
    p_ref = np.column_stack([ref.column(c).to_numpy(zero_copy_only=False) for c in pcols]) if pcols else None
    m = None
    truth = None
    if truth_col is not None:
        m = metric or DEFAULT_METRIC[spec.kind]
        truth = table.select(["id", truth_col]).rename_columns(["id", _label_cols(spec)[0]])
    elif metric is not None:
        raise FineclassError("`metric` needs human codes: `data` has no `label` column; pass `label=`.", "label")
    else:
        notes.append("no human codes in `data`: label agreement only, no metric.")
    rows, flips = [], []
    for target in targets:
        clf = target if hasattr(target, "predict") else load_gguf(target, threads=threads, argument="against")
        if (clf.spec_.kind, clf.spec_.classes, clf.spec_.levels) != (spec.kind, spec.classes, spec.levels):
            raise FineclassError(
                f"`against`: {_name(clf)} has another label set than the reference model; compare "
                f"files exported from it.",
                "against",
            )
        t0 = time.perf_counter()
        got = clf.predict(docs)
        seconds = time.perf_counter() - t0
        keys = _label_keys(got, spec.kind)
        same = np.array([a == b for a, b in zip(ref_keys, keys)], dtype=bool)
        n, k = len(same), int(same.sum())
        lo, hi = _wilson(k, n, confidence)
        row = {
            "file": _name(clf),
            "quant": getattr(clf, "gguf_", {}).get("quant"),
            "bytes": getattr(clf, "gguf_", {}).get("bytes"),
            "n": n,
            "agreement": k / n if n else None,
            "agreement_lower": lo,
            "agreement_upper": hi,
            "flipped": n - k,
            "metric": m,
            "reference": None,
            "exported": None,
            "difference": None,
            "lower": None,
            "upper": None,
            "p_value": None,
            "seconds": round(seconds, 3),
        }
        if truth is not None:
            pb = paired_bootstrap(
                got.select(["id", *_label_cols(spec)]),
                ref.select(["id", *_label_cols(spec)]),
                truth,
                metric=m,
                spec=spec,
                bootstrap=bootstrap,
                confidence=confidence,
                seed=seed,
            ).to_pylist()[0]
            row.update(
                {
                    "reference": pb["b"],
                    "exported": pb["a"],
                    "difference": pb["difference"],
                    "lower": pb["lower"],
                    "upper": pb["upper"],
                    "p_value": pb["p_value"],
                }
            )
            if warn and pb["upper"] is not None and pb["upper"] < 0:
                warn_user(
                    f"fineclass: {row['file']} lowers {m} from {pb['b']:.4f} to {pb['a']:.4f} "
                    f"({pb['difference']:+.4f}, {confidence:.0%} interval {pb['lower']:+.4f} to "
                    f"{pb['upper']:+.4f}): more than resampling the documents explains. Prefer a finer "
                    f"quantization (q8_0, q5_k_m)."
                )
        rows.append(row)
        p_got = np.column_stack([got.column(c).to_numpy(zero_copy_only=False) for c in pcols]) if pcols else None
        for i in np.flatnonzero(~same):
            flips.append(
                _flip(
                    row["file"],
                    ref,
                    got,
                    i,
                    spec.kind,
                    p_ref,
                    p_got,
                    truth.column(1)[int(i)].as_py() if truth is not None else None,
                )
            )
    return FidelityReport(
        _summary_table(rows), _flips_table(flips, ref, spec.kind, truth), m, confidence, round(ref_seconds, 3), notes
    )


def _label_cols(spec) -> list[str]:
    return ["label", "confidence"] if spec.kind == "single" else ["labels"]


def _name(clf) -> str:
    g = getattr(clf, "gguf_", None)
    return Path(g["file"]).name if g else repr(clf)


def _flip(file, ref, got, i, kind, p_ref, p_got, truth) -> dict:
    i = int(i)
    col = "label" if kind == "single" else "labels"
    out = {
        "file": file,
        "id": ref.column("id")[i].as_py(),
        "label_reference": ref.column(col)[i].as_py(),
        "label_exported": got.column(col)[i].as_py(),
        "confidence_reference": None,
        "confidence_exported": None,
        "max_probability_change": None,
        "truth": truth,
    }
    if kind == "single":
        out["confidence_reference"] = ref.column("confidence")[i].as_py()
        out["confidence_exported"] = got.column("confidence")[i].as_py()
    if p_ref is not None:
        out["max_probability_change"] = float(np.nanmax(np.abs(p_ref[i] - p_got[i])))
    return out


def _summary_table(rows: list) -> pa.Table:
    schema = pa.schema(
        [
            ("file", pa.string()),
            ("quant", pa.string()),
            ("bytes", pa.int64()),
            ("n", pa.int64()),
            ("agreement", pa.float64()),
            ("agreement_lower", pa.float64()),
            ("agreement_upper", pa.float64()),
            ("flipped", pa.int64()),
            ("metric", pa.string()),
            ("reference", pa.float64()),
            ("exported", pa.float64()),
            ("difference", pa.float64()),
            ("lower", pa.float64()),
            ("upper", pa.float64()),
            ("p_value", pa.float64()),
            ("seconds", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _flips_table(flips: list, ref: pa.Table, kind: str, truth) -> pa.Table:
    col = "label" if kind == "single" else "labels"
    label_type = ref.schema.field(col).type
    truth_type = truth.schema.field(1).type if truth is not None else pa.null()
    schema = pa.schema(
        [
            ("file", pa.string()),
            ("id", ref.schema.field("id").type),
            ("label_reference", label_type),
            ("label_exported", label_type),
            ("confidence_reference", pa.float64()),
            ("confidence_exported", pa.float64()),
            ("max_probability_change", pa.float64()),
            ("truth", truth_type),
        ]
    )
    return pa.Table.from_pylist(flips, schema=schema)
