"""The hybrid workflow: models propose labels, people accept or reject them, accepted labels train a model.

1. :func:`propose` asks several proposers - fitted fineclass classifiers and OpenAI-compatible chat
   endpoints (:class:`fineclass.client.Endpoint`) - for labels; one long table of proposals.
2. :func:`export_review` writes one review sheet (CSV or XLSX) per coder: one row per proposal, an empty
   ``accept`` column, a share of the documents given to two coders for reliability.
3. :func:`import_review` reads the filled sheets back and validates them: unknown items, edited
   proposals or texts, missing, invalid or duplicate decisions are reported, never guessed.
4. :func:`acceptance_report`: acceptance per proposer, label and coder; agreement on the overlap.
5. :func:`assemble_training_set`: the accepted labels as a long training table, with explicit rules for
   disagreement between coders and for conflicting accepted labels.

Tables are long. For the dimension->level shape: ``id, dimension, level``; for single- and multi-label
tasks: ``id, label``. A decisions table adds ``proposer, coder, accepted`` (``"Y"``/``"N"``), the shape of
the paper's record of its own workflow.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ._fs import atomic_file
from .client import Endpoint, chat_many
from .tables import ID, check_text, read_table, with_id
from .errors import FineclassError, preview
from .labels import LabelSpec, as_spec, canon
from .protocol import InvalidAnswer, build_messages, parse_answer, predictions_to_proposals

__all__ = ["propose", "proposal_stats", "export_review", "import_review", "acceptance_report",
           "assemble_training_set", "add_cli", "RULES", "CONFLICTS"]

RULES = ("any-accept", "majority", "unanimous")
CONFLICTS = ("priority", "votes", "drop", "error")
STATS_KEY = b"fineclass.proposal_stats"
_YES = {"y", "yes", "1", "true"}
_NO = {"n", "no", "0", "false"}


# ================================================================================================ propose
def _is_classifier(p: Any) -> bool:
    return hasattr(p, "spec_") and callable(getattr(p, "predict", None))


def _named_proposers(proposers: Any) -> list[tuple[str, Any]]:
    if isinstance(proposers, Mapping):
        items = [(str(k), v) for k, v in proposers.items()]
    elif isinstance(proposers, (list, tuple)):
        items = []
        for k, p in enumerate(proposers):
            if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
                items.append(p)
            elif isinstance(p, Endpoint):
                items.append((p.label, p))
            elif _is_classifier(p):
                items.append((str(getattr(p, "name_", None) or f"model{k + 1}"), p))
            else:
                items.append((f"#{k + 1}", p))
    else:
        items = [("model1" if _is_classifier(proposers) else "#1", proposers)]
    if not items:
        raise FineclassError("`proposers` is empty; pass fitted classifiers and/or Endpoint(...) objects.",
                             "proposers")
    for name, p in items:
        if not (isinstance(p, Endpoint) or _is_classifier(p)):
            raise FineclassError(f"proposer {name} is a {type(p).__name__}; a proposer is a fitted fineclass "
                                 f"classifier or a fineclass.client.Endpoint(url, model).", "proposers")
    names = [n for n, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FineclassError(f"two proposers share the name {preview(dup)}; give each a name: pass a dict "
                             f"{{name: proposer}} or Endpoint(..., name=...).", "proposers")
    return items


def _label_fields(spec: LabelSpec) -> tuple[str, ...]:
    return ("dimension", "level") if spec.kind == "dimlevel" else ("label",)


def _check_proposal(spec: LabelSpec, p: Mapping[str, Any]) -> str | None:
    if spec.kind == "dimlevel":
        if p["dimension"] not in spec.classes:
            return f"dimension {p['dimension']!r} is not in the label set"
        if p["level"] not in (spec.levels or []):
            return f"level {p['level']!r} is not one of {', '.join(spec.levels)}"
        return None
    return None if canon(p["label"]) in spec.classes else f"label {p['label']!r} is not in the label set"


def propose(data: Any, proposers: Any, *, text: str = "text", id: str | None = None, spec: Any = None,
            prompt: str | None = None, return_stats: bool = False, progress: bool = False):
    """Ask each proposer for labels; returns a long table of proposals.

    Parameters
    ----------
    data: the documents (any table or path :func:`fineclass.data.read_table` reads).
    proposers: a list (or ``{name: proposer}`` dict) of fitted classifiers and ``Endpoint`` objects.
        Names: an endpoint's ``name`` (default its model), a classifier's ``name_`` or ``model1``, ...
    spec: the label set endpoints are asked about and answers are checked against; default: the
        first classifier's ``spec_``. Required when every proposer is an endpoint (a LabelSpec, a dict, a
        JSON file or a saved model's folder).
    prompt: instructions replacing the default ones (see :func:`fineclass.protocol.build_messages`).
    return_stats: also return the per-proposer stats table (it is also kept in the table's metadata;
        read it with :func:`proposal_stats`).

    Returns
    -------
    ``id, dimension, level`` (or ``id, label``), ``proposer``, ``confidence`` (null where unknown) and
    ``error``. One row per proposal; a document a proposer could not answer - a failed request, an
    answer that is not valid JSON or names labels outside the label set - gets one row with null labels and
    the reason in ``error``. A valid empty answer gives no rows.
    """
    named = _named_proposers(proposers)
    spec = as_spec(spec)
    if spec is None:
        first = next((p for _, p in named if _is_classifier(p)), None)
        if first is None:
            raise FineclassError("every proposer is an endpoint, so the label set is unknown: pass `spec=` (a "
                                 "LabelSpec, a dict, or a saved model's folder or labels.json).", "spec")
        spec = first.spec_
    for name, p in named:
        if _is_classifier(p):
            ps = p.spec_
            if ps.kind != spec.kind or not set(ps.classes) <= set(spec.classes):
                raise FineclassError(f"proposer {name} predicts a {ps.kind} label set with classes "
                                     f"{preview(ps.classes)}, which does not fit `spec` ({spec.kind}, "
                                     f"{preview(spec.classes)}).", "spec")
    table = with_id(read_table(data), id)
    table, empty = check_text(table, text, on_empty="flag")
    ids = table.column(ID)
    texts = table.column("text").to_pylist()
    keep = np.flatnonzero(~empty)
    fields = _label_fields(spec)
    rows: dict[str, list] = {"id": [], **{f: [] for f in fields}, "proposer": [], "confidence": [], "error": []}

    def add(i, name, prop=None, conf=None, err=None):
        rows["id"].append(i)
        for f in fields:
            rows[f].append(None if prop is None else prop[f])
        rows["proposer"].append(name)
        rows["confidence"].append(conf)
        rows["error"].append(err)

    id_list = ids.to_pylist()
    stats = []
    for name, p in named:
        start = time.monotonic()
        st = {"proposer": name, "kind": "endpoint" if isinstance(p, Endpoint) else "model", "items": len(id_list),
              "proposals": 0, "invalid": 0, "errors": 0, "requests": 0, "cached": 0, "prompt_tokens": None,
              "completion_tokens": None, "seconds": 0.0}
        for k in np.flatnonzero(empty):
            add(id_list[k], name, err="the text is empty")
            st["errors"] += 1
        if isinstance(p, Endpoint):
            convs = [build_messages(spec, texts[k], prompt) for k in keep]
            results, cst = chat_many(p, convs, progress=progress)
            st.update(requests=cst["requests"], cached=cst["cached"], prompt_tokens=cst["prompt_tokens"],
                      completion_tokens=cst["completion_tokens"])
            for k, r in zip(keep, results):
                if r.error is not None:
                    add(id_list[k], name, err=f"request failed: {r.error}")
                    st["errors"] += 1
                    continue
                try:
                    props = parse_answer(spec, r.content)
                except InvalidAnswer as e:
                    add(id_list[k], name, err=f"invalid answer: {e}")
                    st["invalid"] += 1
                    continue
                for prop in props:
                    add(id_list[k], name, prop, prop.get("confidence"))
                    st["proposals"] += 1
        elif len(keep):
            sub = pa.table({ID: ids.take(pa.array(keep, pa.int64())), "text": [texts[k] for k in keep]})
            preds = p.predict(sub, text="text", id=ID)
            if preds.column(ID).to_pylist() != sub.column(ID).to_pylist():
                raise FineclassError(f"proposer {name} returned predictions for other documents than it was "
                                     f"given; check its predict().", "proposers")
            for k, props in zip(keep, predictions_to_proposals(spec, preds)):
                bad = [m for m in (_check_proposal(spec, q) for q in props) if m]
                if bad:
                    add(id_list[k], name, err=f"invalid answer: {bad[0]}")
                    st["invalid"] += 1
                    continue
                for prop in props:
                    add(id_list[k], name, prop, prop.get("confidence"))
                    st["proposals"] += 1
        st["seconds"] = round(time.monotonic() - start, 3)
        stats.append(st)
    ltype = spec.arrow_type()
    cols = {"id": pa.array(rows["id"], ids.type)}
    if spec.kind == "dimlevel":
        cols["dimension"] = pa.array(rows["dimension"], pa.string())
        cols["level"] = pa.array(rows["level"], pa.string())
    else:
        cols["label"] = pa.array([None if v is None else spec.decode_value(canon(v)) for v in rows["label"]],
                                 ltype)
    cols["proposer"] = pa.array(rows["proposer"], pa.string())
    cols["confidence"] = pa.array(rows["confidence"], pa.float64())
    cols["error"] = pa.array(rows["error"], pa.string())
    out = pa.table(cols)
    meta = {STATS_KEY: json.dumps(stats).encode(), b"fineclass.label_spec": json.dumps(spec.to_dict()).encode()}
    out = out.replace_schema_metadata(meta)
    if return_stats:
        return out, _stats_table(stats)
    return out


def _stats_table(stats: list[dict]) -> pa.Table:
    schema = pa.schema([("proposer", pa.string()), ("kind", pa.string()), ("items", pa.int64()),
                        ("proposals", pa.int64()), ("invalid", pa.int64()), ("errors", pa.int64()),
                        ("requests", pa.int64()), ("cached", pa.int64()), ("prompt_tokens", pa.int64()),
                        ("completion_tokens", pa.int64()), ("seconds", pa.float64())])
    return pa.Table.from_pylist(stats, schema=schema)


def proposal_stats(proposals: pa.Table) -> pa.Table:
    """Per proposer: items, proposals, invalid answers, errors, requests sent, cache hits, tokens, seconds."""
    meta = proposals.schema.metadata or {}
    if STATS_KEY not in meta:
        raise FineclassError("`proposals` carries no stats (they are kept in the metadata of the table "
                             "propose() returns, and in Parquet files written from it).", "proposals")
    return _stats_table(json.loads(meta[STATS_KEY]))


# ================================================================================================ items
def _shape(table: pa.Table, argument: str) -> tuple[str, ...]:
    cols = table.column_names
    if ID not in cols:
        raise FineclassError(f"`{argument}` has no `id` column; columns are: {', '.join(cols)}.", argument)
    if "dimension" in cols and "level" in cols:
        return ("dimension", "level")
    if "label" in cols:
        return ("label",)
    raise FineclassError(f"`{argument}` needs label columns `dimension` and `level`, or `label`; columns are: "
                         f"{', '.join(cols)}.", argument)


def _key_str(v: Any) -> str:
    return "" if v is None else canon(v)


def _item_id(doc: str, label: Sequence[str]) -> str:
    blob = json.dumps([doc, *label], ensure_ascii=False)
    return "p" + hashlib.sha1(blob.encode("utf-8")).hexdigest()[:12]


def _text_check(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def _proposal_items(proposals: pa.Table, fields: tuple[str, ...]):
    """Distinct proposals -> {item: {"id": original id, "doc": str id, "label": (..), "proposers": [...]}}."""
    ids = proposals.column(ID).to_pylist()
    labs = [proposals.column(f).to_pylist() for f in fields]
    props = proposals.column("proposer").to_pylist() if "proposer" in proposals.column_names else \
        [None] * proposals.num_rows
    items: dict[str, dict] = {}
    for k in range(proposals.num_rows):
        lab = tuple(_key_str(col[k]) for col in labs)
        if any(v == "" for v in lab):
            continue  # an error row: nothing was proposed
        doc = _key_str(ids[k])
        item = _item_id(doc, lab)
        entry = items.get(item)
        if entry is None:
            entry = items[item] = {"id": ids[k], "doc": doc, "label": lab, "proposers": []}
        if props[k] is not None and props[k] not in entry["proposers"]:
            entry["proposers"].append(props[k])
    return items


# ================================================================================================ export
_CODER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _safe_sheet_path(folder: Path, stem: str, coder: str | None, ext: str) -> Path:
    name = f"{stem}{ext}" if coder is None else f"{stem}-{coder}{ext}"
    target = (folder / name).resolve()
    if target.parent != folder.resolve() or "/" in name or "\\" in name or name.startswith("."):
        raise FineclassError(f"coder name {coder!r} would write outside the folder {str(folder)!r}. Use letters, "
                             f"digits, '_', '-' and '.'.", "coders")
    return target


def export_review(proposals: Any, path: str | Path, *, coders: Sequence[str] | None = None,
                  overlap: float = 0.1, seed: int = 0, texts: Any = None, text: str = "text",
                  id: str | None = None, overwrite: bool = False) -> list[Path]:
    """Write review sheets for coders: one file per coder, one row per proposal, an empty ``accept`` column.

    Parameters
    ----------
    proposals: the table :func:`propose` returns (or any long table with ``id`` and ``dimension``/``level``
        or ``label``; a ``proposer`` column is used when present). Rows without a label (errors) are skipped.
        The same label proposed by several proposers is one row: each proposal is reviewed once, blind to
        who proposed it, and the decision counts for every proposer that made it.
    path: ``folder/review.csv`` or ``folder/review.xlsx``; each coder's sheet is ``folder/review-<coder>.ext``.
    coders: coder names (letters, digits, ``_ - .``); default one sheet without a coder name.
    overlap: the share of documents (rounded, at least one when > 0) that a second coder also reviews.
        Documents, not single proposals, are assigned, so a coder sees all proposals for a text together.
        Needs two or more coders; with one it is ignored.
    seed: makes the assignment reproducible.
    texts: a table (or path) with the documents (``id`` + ``text`` columns, or pass ``text=``/``id=``) to
        show the text beside each proposal; a ``check`` column then detects edited texts on import.
    overwrite: replace existing sheets (off by default, so a re-export cannot destroy filled sheets).

    Returns the paths written. Sheets have columns ``item, coder, id, [text], dimension, level`` (or
    ``label``), ``accept`` (fill with Y or N), ``comment`` (free), ``[check]``. In CSV sheets a cell that
    starts with ``= + - @`` (or ``'``) gets a leading ``'`` so spreadsheet programs do not run it as a formula;
    :func:`import_review` removes it. XLSX cells are written as text, never as formulas.
    """
    props = read_table(proposals, "proposals")
    fields = _shape(props, "proposals")
    items = _proposal_items(props, fields)
    if not items:
        raise FineclassError("`proposals` holds no proposal with a label; nothing to review.", "proposals")
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".csv", ".xlsx"):
        raise FineclassError(f"`path` must end in .csv or .xlsx; got {str(path)!r}.", "path")
    if not 0 <= overlap <= 1:
        raise FineclassError(f"`overlap` is a share of documents between 0 and 1; got {overlap!r}.", "overlap")
    folder = path.parent
    coder_list: list[str | None]
    if coders is None:
        coder_list = [None]
    else:
        if isinstance(coders, str):
            coders = [coders]
        coder_list = [str(c) for c in coders]
        if not coder_list:
            raise FineclassError("`coders` is empty; name at least one coder.", "coders")
        bad = [c for c in coder_list if not _CODER.match(c) or ".." in c]
        if bad:
            raise FineclassError(f"coder names {preview(bad)} cannot be used in file names: use letters, digits, "
                                 f"'_', '-' and '.' (no path separators, no leading dot).", "coders")
        if len({c.casefold() for c in coder_list}) != len(coder_list):  # one file each, also on Windows/macOS
            raise FineclassError(f"`coders` holds duplicates: {preview(coder_list)}.", "coders")
    targets = {c: _safe_sheet_path(folder, path.stem, c, ext) for c in coder_list}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise FineclassError(f"review sheets already exist: {preview(existing)}. Choose another `path`, or pass "
                             f"overwrite=True to replace them (filled decisions would be lost).", "path")
    text_of = None
    if texts is not None:
        tt = with_id(read_table(texts, "texts"), id)
        tt, _ = check_text(tt, text, on_empty="flag")
        text_of = dict(zip((_key_str(v) for v in tt.column(ID).to_pylist()), tt.column("text").to_pylist()))
        missing = sorted({e["doc"] for e in items.values()} - set(text_of))
        if missing:
            raise FineclassError(f"`texts` has no text for {len(missing)} proposed documents (ids: "
                                 f"{preview(missing)}).", "texts")
    # assign documents to coders
    by_doc: dict[str, list[str]] = {}
    for item, e in items.items():
        by_doc.setdefault(e["doc"], []).append(item)
    docs = sorted(by_doc)
    rng = np.random.default_rng(seed)
    order = [docs[k] for k in rng.permutation(len(docs))]
    n_coders = len(coder_list)
    assign: dict[str | None, list[str]] = {c: [] for c in coder_list}
    n_overlap = 0
    if n_coders >= 2 and overlap > 0:
        n_overlap = min(len(order), max(1, int(round(overlap * len(order)))))
    overlap_docs = set(order[k] for k in rng.permutation(len(order))[:n_overlap])
    m = 0
    for k, doc in enumerate(order):
        first = k % n_coders
        assign[coder_list[first]].append(doc)
        if doc in overlap_docs:
            second = (first + 1 + (m % (n_coders - 1))) % n_coders
            m += 1
            assign[coder_list[second]].append(doc)
    header = ["item", "coder", "id"] + (["text"] if text_of else []) + list(fields) + ["accept", "comment"] + \
        (["check"] if text_of else [])
    written = []
    for coder, target in targets.items():
        rows = []
        for doc in assign[coder]:
            for item in sorted(by_doc[doc], key=lambda it: items[it]["label"]):
                e = items[item]
                row = [item, coder or "", e["doc"]]
                if text_of:
                    row.append(text_of[e["doc"]])
                row += list(e["label"]) + ["", ""]
                if text_of:
                    row.append(_text_check(text_of[e["doc"]]))
                rows.append(row)
        folder.mkdir(parents=True, exist_ok=True)
        if ext == ".csv":
            _write_csv(target, header, rows)
        else:
            _write_xlsx(target, header, rows, coder)
        written.append(target)
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sheets": [p.name for p in written],
                "coders": [c for c in coder_list if c is not None], "overlap": overlap, "seed": seed,
                "documents": len(docs), "overlap_documents": n_overlap, "items": len(items),
                "shape": list(fields)}
    (folder / f"{path.stem}.manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return written


def _csv_guard(v: str) -> str:
    """A leading ' keeps spreadsheet programs from running a cell as a formula; a cell that starts with '
    gets one too, so that :func:`_csv_unguard` (drop one leading ') restores every value exactly."""
    return "'" + v if isinstance(v, str) and v.startswith(_FORMULA + ("'",)) else v


def _csv_unguard(v: str) -> str:
    return v[1:] if v.startswith("'") else v


def _write_csv(target: Path, header: list[str], rows: list[list]) -> None:
    with atomic_file(target) as tmp, open(tmp, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([_csv_guard(v) for v in r])


def _write_xlsx(target: Path, header: list[str], rows: list[list], coder: str | None) -> None:
    try:
        from openpyxl import Workbook
        from openpyxl.worksheet.datavalidation import DataValidation
    except ImportError:  # pragma: no cover
        raise FineclassError("writing .xlsx needs openpyxl: pip install openpyxl, or use a .csv path.",
                             "path") from None
    wb = Workbook()
    ws = wb.active
    ws.title = (coder or "review")[:31]
    ws.append(header)
    for r in rows:
        ws.append(r)
    for row in ws.iter_rows(min_row=2):
        for cell in row:  # every value is text: ids keep their digits, a text starting with '=' stays text
            if cell.value is not None:
                cell.value = str(cell.value)
                cell.data_type = "s"
    acc = header.index("accept") + 1
    from openpyxl.utils import get_column_letter
    col = get_column_letter(acc)
    dv = DataValidation(type="list", formula1='"Y,N"', allow_blank=True, showErrorMessage=True,
                        errorTitle="Y or N", error="Enter Y (accept) or N (reject).")
    ws.add_data_validation(dv)
    if rows:
        dv.add(f"{col}2:{col}{len(rows) + 1}")
    ws.freeze_panes = "A2"
    with atomic_file(target) as tmp:
        wb.save(tmp)


# ================================================================================================ import
def _read_sheet(path: Path) -> tuple[list[str], list[list[str]]]:
    ext = path.suffix.lower()
    if ext == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                data = [[_csv_unguard(v) for v in row] for row in csv.reader(f)]
        except UnicodeDecodeError:
            raise FineclassError(f"the review sheet {str(path)!r} is not UTF-8 text. Save it as CSV UTF-8 "
                                 f"(or as .xlsx).", "paths") from None
    elif ext == ".xlsx":
        from openpyxl import load_workbook
        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as e:
            raise FineclassError(f"the review sheet {str(path)!r} could not be read as .xlsx ({e}).",
                                 "paths") from None
        ws = wb.worksheets[0]
        data = [[_cell_str(v) for v in row] for row in ws.iter_rows(values_only=True)]
        wb.close()
    else:
        raise FineclassError(f"review sheets are .csv or .xlsx files; got {str(path)!r}.", "paths")
    while data and not any((v or "").strip() for v in data[-1]):
        data.pop()
    if not data:
        raise FineclassError(f"the review sheet {str(path)!r} is empty.", "paths")
    header = [(h or "").strip().lower() for h in data[0]]
    return header, [[(v if v is not None else "") for v in row] for row in data[1:]]


def _cell_str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _expand_paths(paths: Any) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in paths:
        s = str(p)
        if any(ch in s for ch in "*?["):
            hits = sorted(glob.glob(s))
            if not hits:
                raise FineclassError(f"no review sheet matches {s!r}.", "paths")
            out += [Path(h) for h in hits]
        else:
            if not Path(s).exists():
                raise FineclassError(f"the review sheet {s!r} does not exist.", "paths")
            out.append(Path(s))
    if not out:
        raise FineclassError("`paths` is empty; pass the filled review sheets.", "paths")
    return out


def _parse_accept(v: str) -> str | None:
    s = (v or "").strip().casefold()
    if s in _YES:
        return "Y"
    if s in _NO:
        return "N"
    return None


def import_review(paths: Any, proposals: Any, *, complete: bool = True, errors: str = "raise"):
    """Read filled review sheets into a decisions table, checking every row.

    ``accept`` takes Y or N; yes/no, 1/0 and true/false are read as Y/N too, in any case. Reported
    problems (never guessed): a missing column, an unknown ``item``, an edited id, label or text (the
    ``check`` column), an empty, invalid or duplicate decision (the same item decided twice by one coder),
    a row without a coder, and - with ``complete=True`` - proposals that are in no sheet.

    ``errors="raise"`` (default) raises one :class:`FineclassError` listing the problems by file and row;
    ``errors="report"`` returns ``(decisions, problems)`` where ``decisions`` holds the valid rows only.

    Returns ``id, dimension, level`` (or ``id, label``), ``proposer, coder, accepted`` (Y/N), ``item``,
    ``sheet``, ``row``: one row per decision and proposer (a proposal made by two proposers gives two rows
    with the same decision).
    """
    if errors not in ("raise", "report"):
        raise FineclassError(f"`errors` must be 'raise' or 'report'; got {errors!r}.", "errors")
    props = read_table(proposals, "proposals")
    fields = _shape(props, "proposals")
    items = _proposal_items(props, fields)
    problems: list[dict] = []

    def problem(sheet, row, item, column, message):
        problems.append({"sheet": sheet, "row": row, "item": item, "column": column, "problem": message})

    seen: dict[tuple[str, str], tuple[str, int]] = {}
    out = []
    for path in _expand_paths(paths):
        sheet = path.name
        header, rows = _read_sheet(path)
        need = ["item", "coder", "id", *fields, "accept"]
        missing = [c for c in need if c not in header]
        if missing:
            problem(sheet, 1, None, ", ".join(missing), f"missing column(s) {', '.join(missing)}; do not rename "
                    f"or delete the sheet's columns")
            continue
        col = {h: k for k, h in enumerate(header) if h}
        for r, values in enumerate(rows, start=2):
            def get(name):
                k = col.get(name)
                return (values[k] if k is not None and k < len(values) else "") or ""
            if not any(v.strip() for v in values):
                continue  # a blank line
            item = get("item").strip()
            e = items.get(item)
            if e is None:
                problem(sheet, r, item or None, "item", f"unknown item {item!r}: not among `proposals`")
                continue
            ok = True
            if get("id").strip() != e["doc"]:
                problem(sheet, r, item, "id", f"edited id: was {e['doc']!r}, now {get('id').strip()!r}")
                ok = False
            for f, v in zip(fields, e["label"]):
                if get(f).strip() != v:
                    problem(sheet, r, item, f, f"edited proposal: {f} was {v!r}, now {get(f).strip()!r}")
                    ok = False
            if "check" in col and "text" in col and get("check").strip():
                if _text_check(get("text")) != get("check").strip():
                    problem(sheet, r, item, "text", "edited text: the document's text differs from the one "
                            "exported")
                    ok = False
            coder = get("coder").strip()
            decision = _parse_accept(get("accept"))
            if not get("accept").strip():
                problem(sheet, r, item, "accept", "missing decision: fill in Y or N")
                ok = False
            elif decision is None:
                problem(sheet, r, item, "accept", f"accept value {get('accept').strip()!r} is not Y or N")
                ok = False
            key = (item, coder)
            if key in seen:
                s0, r0 = seen[key]
                problem(sheet, r, item, "item", f"duplicate decision: coder {coder or '(none)'!r} already decided "
                        f"this item in {s0} row {r0}")
                ok = False
            else:
                seen[key] = (sheet, r)
            if ok:
                out.append((item, coder, decision, sheet, r))
    if complete:
        decided = {k[0] for k in seen}
        for item in items:
            if item not in decided:
                e = items[item]
                problem(None, None, item, None, f"proposal {e['doc']!r} {'/'.join(e['label'])} is in no sheet "
                        f"(pass every filled sheet, or complete=False)")
    prob_table = pa.Table.from_pylist(problems, schema=pa.schema([
        ("sheet", pa.string()), ("row", pa.int64()), ("item", pa.string()), ("column", pa.string()),
        ("problem", pa.string())]))
    if problems and errors == "raise":
        lines = [f"{p['sheet']} row {p['row']}: {p['problem']}" if p["sheet"] else p["problem"]
                 for p in problems[:25]]
        more = f"\n... and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise FineclassError(f"the review sheets have {len(problems)} problem(s); fix them and import again "
                             f"(or pass errors='report' to get them as a table):\n  " + "\n  ".join(lines) + more,
                             "paths")
    id_type = props.column(ID).type
    rec: dict[str, list] = {"id": [], **{f: [] for f in fields}, "proposer": [], "coder": [], "accepted": [],
                            "item": [], "sheet": [], "row": []}
    for item, coder, decision, sheet, r in out:
        e = items[item]
        for proposer in e["proposers"] or [None]:
            rec["id"].append(e["id"])
            for f, v in zip(fields, e["label"]):
                rec[f].append(v)
            rec["proposer"].append(proposer)
            rec["coder"].append(coder or None)
            rec["accepted"].append(decision)
            rec["item"].append(item)
            rec["sheet"].append(sheet)
            rec["row"].append(r)
    cols = {"id": pa.array(rec["id"], id_type)}
    if "label" in fields:
        cols["label"] = pa.array([_restore(props, v) for v in rec["label"]], props.column("label").type)
    else:
        cols["dimension"] = pa.array(rec["dimension"], pa.string())
        cols["level"] = pa.array(rec["level"], pa.string())
    for name in ("proposer", "coder", "accepted", "item", "sheet"):
        cols[name] = pa.array(rec[name], pa.string())
    cols["row"] = pa.array(rec["row"], pa.int64())
    decisions = pa.table(cols)
    if errors == "report":
        return decisions, prob_table
    return decisions


def _restore(props: pa.Table, v: str):
    t = props.column("label").type
    return int(v) if pa.types.is_integer(t) else v


# ================================================================================================ report
def _accepted_bool(decisions: pa.Table, argument: str = "decisions") -> np.ndarray:
    if "accepted" not in decisions.column_names:
        raise FineclassError(f"`{argument}` has no `accepted` column; columns are: "
                             f"{', '.join(decisions.column_names)}.", argument)
    out = []
    bad = set()
    for v in decisions.column("accepted").to_pylist():
        if isinstance(v, bool):
            out.append(v)
            continue
        s = _parse_accept(str(v)) if v is not None else None
        if s is None:
            bad.add(v)
            out.append(False)
        else:
            out.append(s == "Y")
    if bad:
        raise FineclassError(f"`{argument}`: `accepted` holds values other than Y/N: {preview(sorted(map(str, bad)))}.",
                             argument)
    return np.array(out, dtype=bool)


def _natural(k: Any):
    s = "" if k is None else str(k)
    return (k is None, not s.isdigit(), int(s) if s.isdigit() else 0, s)


def _rate_table(groups: list, acc: np.ndarray, name: str, type_: pa.DataType = pa.string()) -> pa.Table:
    keys: dict = {}
    for g, a in zip(groups, acc):
        n = keys.setdefault(g, [0, 0])
        n[0] += 1
        n[1] += int(a)
    order = sorted(keys, key=_natural)
    return pa.table({
        name: pa.array(order, type_),
        "decisions": pa.array([keys[k][0] for k in order], pa.int64()),
        "accepted": pa.array([keys[k][1] for k in order], pa.int64()),
        "rate": pa.array([keys[k][1] / keys[k][0] for k in order], pa.float64()),
    })


def _kappa_table(long_rows: list[dict]) -> tuple[list[dict], str]:
    """Agreement rows (statistic, coder_a, coder_b, estimate, n) for a long table unit/coder/value.

    Uses :func:`fineclass.evaluate.agreement` (Cohen's kappa by scikit-learn, Krippendorff's alpha); falls back to
    scikit-learn and krippendorff directly when that module cannot be imported.
    """
    table = pa.Table.from_pylist(long_rows, schema=pa.schema([("unit", pa.string()), ("coder", pa.string()),
                                                              ("value", pa.string())]))
    import warnings
    try:
        from .evaluation import agreement
    except ImportError:  # pragma: no cover - evaluate.py is part of the package
        agreement = None
    if agreement is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined statistics come back as null; the report shows them
            return agreement(table, unit="unit", coder="coder", value="value").to_pylist(), \
                "fineclass.evaluate.agreement"
    from sklearn.metrics import cohen_kappa_score  # pragma: no cover
    by: dict = {}
    for r in long_rows:
        by.setdefault(r["coder"], {})[r["unit"]] = r["value"]
    rows = []
    cs = sorted(by)
    for i, a in enumerate(cs):
        for b in cs[i + 1:]:
            joint = [u for u in by[a] if u in by[b]]
            ya, yb = [by[a][u] for u in joint], [by[b][u] for u in joint]
            k = float(cohen_kappa_score(ya, yb)) if len(joint) >= 2 and len(set(ya) | set(yb)) > 1 else None
            rows.append({"statistic": "cohen_kappa", "coder_a": a, "coder_b": b, "estimate": k, "n": len(joint)})
            rows.append({"statistic": "percent_agreement", "coder_a": a, "coder_b": b,
                         "estimate": float(np.mean(np.equal(ya, yb))) if joint else None, "n": len(joint)})
    return rows, "sklearn.metrics.cohen_kappa_score"


def _coder_votes(decisions: pa.Table, fields: tuple[str, ...], acc: np.ndarray):
    """{(doc, label): {coder: [decisions]}} with the coder as a string (row number when none is known)."""
    ids = decisions.column(ID).to_pylist()
    labs = [decisions.column(f).to_pylist() for f in fields]
    coders = decisions.column("coder").to_pylist() if "coder" in decisions.column_names else \
        [None] * decisions.num_rows
    votes: dict[tuple, dict[str, list[bool]]] = {}
    for k in range(decisions.num_rows):
        lab = tuple(_key_str(col[k]) for col in labs)
        if any(v == "" for v in lab):
            continue
        c = _key_str(coders[k]) or f"row{k}"
        votes.setdefault((_key_str(ids[k]), lab), {}).setdefault(c, []).append(bool(acc[k]))
    return votes


def acceptance_report(decisions: Any) -> dict[str, pa.Table]:
    """How often proposals were accepted, and how far coders agree.

    Rates are computed over the decision rows present. Returns a dict of tables:

    - ``proposer``, ``dimension`` (or ``label``), ``coder``: decisions, accepted, rate per group
      (``level`` too for the dimension->level shape);
    - ``agreement``: on the overlap (proposals decided by two or more coders), per coder pair and over
      all pairs (``coder_a = "all"``: every pair of decisions on one proposal is one unit): items,
      agreement (share of equal decisions), kappa (Cohen's), alpha (Krippendorff's, nominal, all coders of
      a proposal; on the "all" row), and ``method``: the function that computed them
      (:func:`fineclass.evaluate.agreement`). A coder who gave one proposal both Y and N (possible when the same label
      was proposed twice) is left out of that item's comparison and counted in ``self_conflicts``.
    """
    dec = read_table(decisions, "decisions")
    fields = _shape(dec, "decisions")
    acc = _accepted_bool(dec)
    out = {}
    if "proposer" in dec.column_names:
        out["proposer"] = _rate_table(dec.column("proposer").to_pylist(), acc, "proposer")
    if fields == ("dimension", "level"):
        out["dimension"] = _rate_table(dec.column("dimension").to_pylist(), acc, "dimension")
        out["level"] = _rate_table(dec.column("level").to_pylist(), acc, "level")
    else:
        out["label"] = _rate_table([_key_str(v) for v in dec.column("label").to_pylist()], acc, "label")
    if "coder" in dec.column_names:
        out["coder"] = _rate_table([_key_str(v) or None for v in dec.column("coder").to_pylist()], acc, "coder")
    # agreement on the overlap: one vote per coder and proposal
    votes = _coder_votes(dec, fields, acc)
    long_rows, pair_rows = [], []
    self_conflicts = 0
    units = 0
    for key, by_coder in votes.items():
        clean = {}
        for c, vs in by_coder.items():
            if c.startswith("row"):
                continue  # no coder column: nothing to compare
            if len(set(vs)) > 1:
                self_conflicts += 1
            else:
                clean[c] = "Y" if vs[0] else "N"
        if len(clean) < 2:
            continue
        units += 1
        unit = json.dumps([key[0], *key[1]], ensure_ascii=False)
        cs = sorted(clean, key=_natural)
        long_rows += [{"unit": unit, "coder": c, "value": clean[c]} for c in cs]
        for i in range(len(cs)):  # pooled over pairs: each pair of decisions on one proposal is one unit
            for j in range(i + 1, len(cs)):
                pu = f"{unit}|{cs[i]}|{cs[j]}"
                pair_rows += [{"unit": pu, "coder": "a", "value": clean[cs[i]]},
                              {"unit": pu, "coder": "b", "value": clean[cs[j]]}]
    rows = []
    alpha, kappa_all, agree_all, method = None, None, None, "fineclass.evaluate.agreement"
    if units:
        stats, method = _kappa_table(long_rows)
        by_pair: dict = {}
        for r in stats:
            if r["coder_a"] is None:
                alpha = r["estimate"]
            elif r["n"]:
                pair = tuple(sorted((r["coder_a"], r["coder_b"]), key=_natural))
                by_pair.setdefault(pair, {})[r["statistic"]] = r
        for (ca, cb), st in sorted(by_pair.items(), key=lambda kv: (_natural(kv[0][0]), _natural(kv[0][1]))):
            k = next((v for name, v in st.items() if name.startswith("cohen_kappa")), None)
            rows.append({"coder_a": ca, "coder_b": cb, "items": st["percent_agreement"]["n"],
                         "agreement": st["percent_agreement"]["estimate"], "kappa": k["estimate"] if k else None,
                         "alpha": None, "self_conflicts": None, "method": method})
        pooled, _ = _kappa_table(pair_rows)
        for r in pooled:
            if r["statistic"] == "percent_agreement":
                agree_all = r["estimate"]
            elif r["statistic"].startswith("cohen_kappa"):
                kappa_all = r["estimate"]
    rows.append({"coder_a": "all", "coder_b": "all", "items": units, "agreement": agree_all, "kappa": kappa_all,
                 "alpha": alpha, "self_conflicts": self_conflicts, "method": method})
    out["agreement"] = pa.Table.from_pylist(rows, schema=pa.schema([
        ("coder_a", pa.string()), ("coder_b", pa.string()), ("items", pa.int64()), ("agreement", pa.float64()),
        ("kappa", pa.float64()), ("alpha", pa.float64()), ("self_conflicts", pa.int64()), ("method", pa.string())]))
    return out


# ================================================================================================ assemble
def assemble_training_set(decisions: Any, *, rule: str = "any-accept", conflict: str = "priority",
                          priority: Sequence[str] | None = None, kind: str | None = None,
                          keep_empty: bool = True, return_conflicts: bool = False):
    """The accepted labels as a long training table, with explicit rules for disagreement.

    Each coder casts one vote per proposal (document + label): accept if they accepted it in any of their
    rows (a label proposed by two proposers appears twice), reject otherwise.

    rule: when a proposal is accepted, given its votes:
        ``"any-accept"``: at least one coder accepted it (the paper's workflow: one coder per tweet, and an
        accept by either coder of the overlap counts);
        ``"majority"``: more coders accepted than rejected (a tie rejects);
        ``"unanimous"``: every coder who decided accepted.
    conflict: two or more accepted levels for one dimension of one document (dimension->level shape), or
        two or more accepted labels for one document (``kind="single"``):
        ``"priority"``: keep the label proposed by the earliest proposer in ``priority`` (default: the order
        in which proposers first appear in ``decisions``); a tie falls back to ``"votes"``;
        ``"votes"``: keep the label with the most accepting coders; a tie falls back to ``priority``; a
        tie on both drops the cell;
        ``"drop"``: drop the cell; ``"error"``: raise, listing the conflicts.
    kind: ``"dimlevel"`` when ``decisions`` has ``dimension``/``level``; otherwise ``"multi"`` (every
        accepted label kept) unless ``"single"`` is passed.
    keep_empty: keep documents that were reviewed but got no accepted label, as one row with null labels
        (training reads them as documents with no label present); never for ``kind="single"``.
    return_conflicts: also return a table of the resolved conflicts (id, dimension, candidates, chosen,
        reason).

    Returns ``id, dimension, level`` (or ``id, label``), ``accepts``, ``rejects`` (coder votes).
    """
    if rule not in RULES:
        raise FineclassError(f"`rule` must be one of {', '.join(RULES)}; got {rule!r}.", "rule")
    if conflict not in CONFLICTS:
        raise FineclassError(f"`conflict` must be one of {', '.join(CONFLICTS)}; got {conflict!r}.", "conflict")
    dec = read_table(decisions, "decisions")
    fields = _shape(dec, "decisions")
    if kind is None:
        kind = "dimlevel" if fields == ("dimension", "level") else "multi"
    if (kind == "dimlevel") != (fields == ("dimension", "level")) or kind not in ("single", "multi", "dimlevel"):
        raise FineclassError(f"`kind` {kind!r} does not fit the decisions' columns ({', '.join(fields)}).", "kind")
    acc = _accepted_bool(dec)
    votes = _coder_votes(dec, fields, acc)
    # who proposed what
    proposers_of: dict[tuple, list[str]] = {}
    seen_order: list[str] = []
    if "proposer" in dec.column_names:
        ids = dec.column(ID).to_pylist()
        labs = [dec.column(f).to_pylist() for f in fields]
        for k, p in enumerate(dec.column("proposer").to_pylist()):
            if p is None:
                continue
            if p not in seen_order:
                seen_order.append(p)
            key = (_key_str(ids[k]), tuple(_key_str(col[k]) for col in labs))
            lst = proposers_of.setdefault(key, [])
            if p not in lst:
                lst.append(p)
    order = list(priority) if priority is not None else seen_order
    rank = {p: n for n, p in enumerate(order)}
    original_id = {}
    for v in dec.column(ID).to_pylist():
        original_id.setdefault(_key_str(v), v)
    accepted: dict[tuple, tuple[int, int]] = {}
    docs_seen: list[str] = []
    doc_set = set()
    for (doc, lab), by_coder in votes.items():
        if doc not in doc_set:
            doc_set.add(doc)
            docs_seen.append(doc)
        ya = sum(1 for vs in by_coder.values() if any(vs))
        no = len(by_coder) - ya
        ok = {"any-accept": ya >= 1, "majority": ya > no, "unanimous": ya >= 1 and no == 0}[rule]
        if ok:
            accepted[(doc, lab)] = (ya, no)
    # group into cells that may hold only one label
    cells: dict[tuple, list[tuple]] = {}
    for (doc, lab) in accepted:
        cell = (doc, lab[0]) if kind == "dimlevel" else (doc,) if kind == "single" else (doc, lab)
        cells.setdefault(cell, []).append(lab)
    conflicts = []
    chosen: list[tuple[str, tuple]] = []
    for cell, labs in cells.items():
        doc = cell[0]
        if len(labs) == 1:
            chosen.append((doc, labs[0]))
            continue
        cand = sorted(labs)

        def prank(lab):
            ps = proposers_of.get((doc, lab), [])
            return min((rank.get(p, len(rank)) for p in ps), default=len(rank))

        def best(keyfn, pool):
            top = min(keyfn(lab) for lab in pool)
            return [lab for lab in pool if keyfn(lab) == top]

        by_votes = lambda lab: -accepted[(doc, lab)][0]  # noqa: E731
        if conflict == "error":
            conflicts.append((cell, cand, None, "error"))
            continue
        if conflict == "drop":
            pick, reason = [], "dropped: conflicting accepted labels"
        elif conflict == "priority":
            pick = best(prank, cand)
            reason = "priority"
            if len(pick) > 1:
                pick, reason = best(by_votes, pick), "priority tie, then votes"
        else:
            pick = best(by_votes, cand)
            reason = "votes"
            if len(pick) > 1:
                pick, reason = best(prank, pick), "votes tie, then priority"
        if len(pick) != 1:
            pick, reason = [], "dropped: tie"
        conflicts.append((cell, cand, pick[0] if pick else None, reason))
        if pick:
            chosen.append((doc, pick[0]))
    if conflict == "error" and conflicts:
        lines = [f"{c[0][0]} {c[0][1] if kind == 'dimlevel' else ''}: {', '.join('/'.join(x) for x in c[1])}"
                 for c in conflicts[:20]]
        raise FineclassError(f"{len(conflicts)} conflicting accepted labels (first ones: {'; '.join(lines)}). "
                             f"Pass conflict='priority', 'votes' or 'drop' to resolve them.", "conflict")
    by_doc: dict[str, list[tuple]] = {}
    for doc, lab in chosen:
        by_doc.setdefault(doc, []).append(lab)
    rows = []
    for doc in docs_seen:
        labs = sorted(by_doc.get(doc, []))
        if not labs:
            if keep_empty and kind != "single":
                rows.append((doc, None, 0, 0))
            continue
        for lab in labs:
            ya, no = accepted[(doc, lab)]
            rows.append((doc, lab, ya, no))
    id_type = dec.column(ID).type
    cols = {"id": pa.array([original_id[r[0]] for r in rows], id_type)}
    if kind == "dimlevel":
        cols["dimension"] = pa.array([r[1][0] if r[1] else None for r in rows], pa.string())
        cols["level"] = pa.array([r[1][1] if r[1] else None for r in rows], pa.string())
    else:
        ltype = dec.column("label").type
        conv = (lambda s: int(s)) if pa.types.is_integer(ltype) else (lambda s: s)
        cols["label"] = pa.array([conv(r[1][0]) if r[1] else None for r in rows], ltype)
    cols["accepts"] = pa.array([r[2] for r in rows], pa.int64())
    cols["rejects"] = pa.array([r[3] for r in rows], pa.int64())
    table = pa.table(cols)
    if not return_conflicts:
        return table

    def fmt(doc, lab):
        ya, no = accepted[(doc, lab)]
        ps = ",".join(proposers_of.get((doc, lab), [])) or "?"
        return f"{lab[-1]} ({ps}; {ya} accept, {no} reject)"

    ctable = pa.table({
        "id": pa.array([original_id[c[0][0]] for c in conflicts], id_type),
        ("dimension" if kind == "dimlevel" else "cell"): pa.array(
            [c[0][1] if kind == "dimlevel" else None for c in conflicts], pa.string()),
        "candidates": pa.array([[fmt(c[0][0], lab) for lab in c[1]] for c in conflicts], pa.list_(pa.string())),
        "chosen": pa.array([c[2][-1] if c[2] else None for c in conflicts], pa.string()),
        "reason": pa.array([c[3] for c in conflicts], pa.string()),
    })
    return table, ctable


# ================================================================================================ CLI
def _write_table(table: pa.Table, path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv
        pcsv.write_csv(table, p)
    else:
        import pyarrow.parquet as pq
        pq.write_table(table, p)


def _print_table(t: pa.Table, title: str) -> None:
    print(f"\n{title}")
    print(t.to_pandas().to_string(index=False))


def _cli_propose(args) -> int:
    proposers: dict[str, Any] = {}
    if args.model:
        from .classifier import load
        for m in args.model:
            proposers[Path(m).name] = load(m)
    for url, model in args.endpoint or []:
        ep = Endpoint(url, model, key_env=None if args.key_env.lower() == "none" else args.key_env,
                      timeout=args.timeout, concurrency=args.concurrency,
                      cache=args.cache if args.cache else True)
        proposers[ep.label] = ep
    if not proposers:
        raise FineclassError("name at least one proposer: --model FOLDER and/or --endpoint URL MODEL.", "proposers")
    prompt = Path(args.prompt).read_text(encoding="utf-8") if args.prompt else None
    out, stats = propose(args.data, proposers, text=args.text, id=args.id, spec=args.spec, prompt=prompt,
                         return_stats=True, progress=True)
    _write_table(out, args.output)
    _print_table(stats, "proposers")
    print(f"\nwrote {out.num_rows} rows to {args.output}")
    return 0


def _cli_export(args) -> int:
    paths = export_review(args.proposals, args.output, coders=args.coders, overlap=args.overlap, seed=args.seed,
                          texts=args.texts, text=args.text, id=args.id, overwrite=args.overwrite)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cli_import(args) -> int:
    decisions = import_review(args.sheets, args.proposals, complete=not args.partial)
    _write_table(decisions, args.output)
    rep = acceptance_report(decisions)
    for name, t in rep.items():
        _print_table(t, f"acceptance by {name}" if name != "agreement" else "agreement on the overlap")
    print(f"\nwrote {decisions.num_rows} decisions to {args.output}")
    return 0


def _cli_assemble(args) -> int:
    table = assemble_training_set(args.decisions, rule=args.rule, conflict=args.conflict,
                                  priority=args.priority, kind=args.kind)
    _write_table(table, args.output)
    print(f"wrote {table.num_rows} rows to {args.output}")
    return 0


def add_cli(subparsers) -> None:
    """Register ``fineclass propose`` and ``fineclass review export|import|assemble``."""
    p = subparsers.add_parser("propose", help="ask models and endpoints to propose labels",
                              description="Ask fitted models and OpenAI-compatible endpoints for labels.")
    p.add_argument("data", help="documents: Parquet/CSV file, glob or folder")
    p.add_argument("-o", "--output", required=True, help="proposals file (.parquet or .csv)")
    p.add_argument("--model", action="append", metavar="FOLDER", help="a saved fineclass classifier (repeatable)")
    p.add_argument("--endpoint", action="append", nargs=2, metavar=("URL", "MODEL"),
                   help="an OpenAI-compatible endpoint and model name (repeatable)")
    p.add_argument("--key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="variable holding the endpoints' key (default OPENAI_API_KEY; 'none' for no key)")
    p.add_argument("--spec", help="label spec JSON (needed when every proposer is an endpoint)")
    p.add_argument("--prompt", help="file with instructions replacing the default prompt")
    p.add_argument("--text", default="text")
    p.add_argument("--id", default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--cache", default=None, help="response cache folder (default ~/.cache/fineclass/chat)")
    p.set_defaults(func=_cli_propose)

    r = subparsers.add_parser("review", help="review sheets: export, import, assemble",
                              description="Review sheets for the hybrid workflow.")
    rs = r.add_subparsers(dest="review_command", required=True)
    e = rs.add_parser("export", help="write one review sheet per coder")
    e.add_argument("proposals", help="proposals file from `fineclass propose`")
    e.add_argument("-o", "--output", required=True, help="folder/review.csv or folder/review.xlsx")
    e.add_argument("--coders", nargs="+", default=None)
    e.add_argument("--overlap", type=float, default=0.1)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--texts", default=None, help="documents, to show each text beside its proposals")
    e.add_argument("--text", default="text")
    e.add_argument("--id", default=None)
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=_cli_export)
    i = rs.add_parser("import", help="read filled sheets, validate, report acceptance")
    i.add_argument("sheets", nargs="+", help="filled review sheets (.csv/.xlsx; globs allowed)")
    i.add_argument("--proposals", required=True)
    i.add_argument("-o", "--output", required=True, help="decisions file (.parquet or .csv)")
    i.add_argument("--partial", action="store_true", help="allow proposals that are in no sheet")
    i.set_defaults(func=_cli_import)
    a = rs.add_parser("assemble", help="build a training set from decisions")
    a.add_argument("decisions")
    a.add_argument("-o", "--output", required=True)
    a.add_argument("--rule", choices=RULES, default="any-accept")
    a.add_argument("--conflict", choices=CONFLICTS, default="priority")
    a.add_argument("--priority", nargs="+", default=None, help="proposers, most trusted first")
    a.add_argument("--kind", choices=("single", "multi", "dimlevel"), default=None)
    a.set_defaults(func=_cli_assemble)
