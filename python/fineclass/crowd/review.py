"""Review sheets: one per coder, written safely for spreadsheet programs, read back and checked row by row.

A sheet row holds one proposal (document + label) and the coder's columns: ``accept`` (Y or N), ``correction``
(when rejecting: the coder's own code in place of the proposal), ``addition`` (codes that no proposer gave for
the document), ``comment``, and ``started`` / ``finished`` (timestamps, for the time per item). A document
without proposals (in a drawn sample) gets one row without a label, for its additions.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..errors import FineclassError, preview
from ..sheets import xlsx_cell
from ..tables import ID, check_text, read_table, with_id
from .items import LabelSet, document_item, key_str, parse_accept, parse_time, proposal_items, shape, text_check
from .sheets import expand_paths, read_sheet, safe_sheet_path, write_sheet

_CODER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CODER_COLUMNS = ("accept", "correction", "addition", "comment", "started", "finished")


def export_review(
    proposals: Any,
    path: str | Path,
    *,
    coders: Sequence[str] | None = None,
    overlap: float = 0.1,
    seed: int = 0,
    texts: Any = None,
    text: str = "text",
    id: str | None = None,
    documents: Any = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write review sheets for coders: one file per coder, one row per proposal, the coder's columns empty.

    In CSV sheets a cell that starts with ``= + - @`` (or ``'``) gets a leading ``'`` so spreadsheet programs do not
    run it as a formula; :func:`import_review` removes it. XLSX cells are written as text, never as formulas.

    Args:
        proposals: the table :func:`propose` returns (or any long table with ``id`` and ``dimension``/``level`` or
            ``label``; a ``proposer`` column is used when present). Rows without a label (errors) are skipped. The
            same label proposed by several proposers is one row: each proposal is reviewed once, blind to who
            proposed it, and the decision counts for every proposer that made it.
        path: ``folder/review.csv`` or ``folder/review.xlsx``; each coder's sheet is ``folder/review-<coder>.ext``.
        coders: coder names (letters, digits, ``_ - .``); default one sheet without a coder name (coders then
            write their id in the ``coder`` column of the rows they review).
        overlap: the share of documents (rounded, at least one when > 0) that a second coder also reviews.
            Documents, not single proposals, are assigned, so a coder sees all proposals for a text together.
            Needs two or more coders; with one it is ignored.
        seed: makes the assignment reproducible.
        texts: a table (or path) with the documents, to show the text beside each proposal; a ``check`` column
            then detects edited texts on import.
        text: the text column of ``texts``.
        id: the id column of ``texts``.
        documents: ids (a list, or a table or path with an ``id`` column) of documents to review whether or not
            a proposer coded them: each one without proposals gets a row without a label, for the coder's
            additions (a drawn human sample: see :func:`fineclass.draw_sample`).
        overwrite: replace existing sheets (off by default, so a re-export cannot destroy filled sheets).

    Returns:
        The paths written. Sheets have columns ``item, coder, id, [text], dimension, level`` (or ``label``),
        ``accept`` (Y or N), ``correction`` (with N: the coder's own code; for dimension->level the right level of
        the row's dimension), ``addition`` (codes no proposer gave, separated by ``;``; ``dimension: level`` for
        dimension->level), ``comment``, ``started``, ``finished`` (timestamps such as ``2026-05-04 10:31:07``),
        ``[check]``.

    Raises:
        FineclassError: naming ``path``, ``coders``, ``overlap``, ``texts``, ``documents`` or ``proposals`` when
            they do not fit.

    Example:
        >>> export_review(proposals, "review/review.csv", coders=["ana", "ben"], texts=tweets)  # doctest: +SKIP
    """
    props = read_table(proposals, "proposals")
    fields = shape(props, "proposals")
    items = proposal_items(props, fields)
    extra = _document_ids(documents)
    by_doc: dict[str, list[str]] = {}
    for item, e in items.items():
        by_doc.setdefault(e["doc"], []).append(item)
    bare = {key_str(v): v for v in extra if key_str(v) not in by_doc}
    if not items and not bare:
        raise FineclassError("`proposals` holds no proposal with a label; nothing to review.", "proposals")
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".csv", ".xlsx"):
        raise FineclassError(f"`path` must end in .csv or .xlsx; got {str(path)!r}.", "path")
    if not 0 <= overlap <= 1:
        raise FineclassError(f"`overlap` is a share of documents between 0 and 1; got {overlap!r}.", "overlap")
    folder = path.parent
    coder_list = _coder_list(coders)
    targets = {c: safe_sheet_path(folder, path.stem, c, ext) for c in coder_list}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise FineclassError(
            f"review sheets already exist: {preview(existing)}. Choose another `path`, or pass "
            f"overwrite=True to replace them (filled decisions would be lost).",
            "path",
        )
    text_of = None
    if texts is not None:
        tt = with_id(read_table(texts, "texts"), id)
        tt, _ = check_text(tt, text, on_empty="flag")
        text_of = dict(zip((key_str(v) for v in tt.column(ID).to_pylist()), tt.column("text").to_pylist()))
        missing = sorted((set(by_doc) | set(bare)) - set(text_of))
        if missing:
            raise FineclassError(
                f"`texts` has no text for {len(missing)} documents to review (ids: {preview(missing)}).", "texts"
            )
    for doc in bare:
        by_doc[doc] = []
    # assign documents to coders
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
    header = (
        ["item", "coder", "id"]
        + (["text"] if text_of else [])
        + list(fields)
        + list(CODER_COLUMNS)
        + (["check"] if text_of else [])
    )
    blank = [""] * len(CODER_COLUMNS)
    written = []
    for coder, target in targets.items():
        rows = []
        for doc in assign[coder]:
            shown = text_of[doc] if text_of else None
            cells = [(document_item(doc), bare[doc], [""] * len(fields))] if doc in bare else []
            for item in sorted(by_doc[doc], key=lambda it: items[it]["label"]):
                cells.append((item, items[item]["id"], list(items[item]["label"])))
            for item, doc_id, label in cells:
                row = [item, coder or "", key_str(doc_id)] + ([shown] if text_of else []) + label + blank
                # the check is over the text as the sheet holds it (XLSX: control characters shown as pictures)
                rows.append(row + ([text_check(shown if ext == ".csv" else xlsx_cell(shown))] if text_of else []))
        folder.mkdir(parents=True, exist_ok=True)
        write_sheet(target, header, rows, coder or "review", {"accept": "Y,N"})
        written.append(target)
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sheets": [p.name for p in written],
        "coders": [c for c in coder_list if c is not None],
        "overlap": overlap,
        "seed": seed,
        "documents": len(docs),
        "documents_without_proposals": len(bare),
        "overlap_documents": n_overlap,
        "items": len(items),
        "shape": list(fields),
    }
    (folder / f"{path.stem}.manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return written


def _coder_list(coders: Sequence[str] | None) -> list[str | None]:
    if coders is None:
        return [None]
    if isinstance(coders, str):
        coders = [coders]
    coder_list = [str(c) for c in coders]
    if not coder_list:
        raise FineclassError("`coders` is empty; name at least one coder.", "coders")
    bad = [c for c in coder_list if not _CODER.match(c) or ".." in c]
    if bad:
        raise FineclassError(
            f"coder names {preview(bad)} cannot be used in file names: use letters, digits, "
            f"'_', '-' and '.' (no path separators, no leading dot).",
            "coders",
        )
    if len({c.casefold() for c in coder_list}) != len(coder_list):  # one file each, also on Windows/macOS
        raise FineclassError(f"`coders` holds duplicates: {preview(coder_list)}.", "coders")
    return coder_list


def _document_ids(documents: Any) -> list:
    """The ids of ``documents``: a list of ids, or a table (or path) with an ``id`` column."""
    if documents is None:
        return []
    if isinstance(documents, (list, tuple)):
        ids = list(documents)
    else:
        t = read_table(documents, "documents")
        if ID not in t.column_names:
            raise FineclassError(
                f"`documents` has no `id` column; columns are: {', '.join(t.column_names)}.", "documents"
            )
        ids = t.column(ID).to_pylist()
    if any(v is None for v in ids):
        raise FineclassError("`documents` holds missing ids.", "documents")
    return ids


def import_review(
    paths: Any,
    proposals: Any,
    *,
    complete: bool = True,
    errors: str = "raise",
    spec: Any = None,
    documents: Any = None,
):
    """Read filled review sheets into a decisions table, checking every row.

    ``accept`` takes Y or N; yes/no, 1/0 and true/false are read as Y/N too, in any case. ``correction`` (only with
    N) and ``addition`` are matched against the label set, as written or without case. Reported problems (never
    guessed), each naming its sheet and row: a missing column, an unknown ``item``, an edited id, label or text
    (the ``check`` column), an empty, invalid or duplicate decision (the same item decided twice by one coder), a
    correction or addition outside the label set, a correction with Y, an addition that a proposer gave for that
    document, a code both rejected and given by one coder, a bad or backward timestamp, a formula in a cell, and -
    with ``complete=True`` - proposals (and ``documents``) that are in no sheet. With any problem nothing is
    imported (``errors="raise"``).

    Time per item: ``finished - started``; a row with only ``finished`` is timed from the same coder's previous
    ``finished`` (the time since their last decision).

    Args:
        paths: the filled sheets (.csv or .xlsx; globs allowed).
        proposals: the proposals the sheets were exported from.
        complete: report proposals (and ``documents``) that are in no sheet.
        errors: ``"raise"`` raises one error listing the problems by file and row; ``"report"`` returns them.
        spec: the label set that corrections and additions must belong to (a LabelSpec, its dict or JSON file, a
            saved model's folder); default: the labels (or dimensions and levels) that the proposals hold.
        documents: the documents exported without proposals (``export_review(documents=...)``), to check that
            each was reviewed.

    Returns:
        ``id, dimension, level`` (or ``id, label``), ``proposer, coder, accepted`` (Y/N), ``correction`` (the
        coder's code in place of a rejected proposal: a level for dimension->level, else a label), ``added``
        (True: a code the coder added, with no proposer and no decision), ``item``, ``sheet``, ``row``,
        ``started``, ``finished``, ``seconds``: one row per decision and proposer (a proposal made by two proposers
        gives two rows with the same decision), one per added code, and one without a label for a document that
        had no proposals. With ``errors="report"``: ``(decisions, problems)``, ``decisions`` holding the valid
        rows.

    Raises:
        FineclassError: naming ``paths`` with every problem found (``errors="raise"``).

    Example:
        >>> decisions = import_review("review/review-*.csv", proposals, spec="model/")  # doctest: +SKIP
    """
    if errors not in ("raise", "report"):
        raise FineclassError(f"`errors` must be 'raise' or 'report'; got {errors!r}.", "errors")
    props = read_table(proposals, "proposals")
    fields = shape(props, "proposals")
    items = proposal_items(props, fields)
    reader = _SheetReader(fields, items, LabelSet(fields, spec, items))
    for path in expand_paths(paths):
        reader.read(path)
    reader.check_codes()
    reader.time_rows()
    if complete:
        reader.check_complete(_document_ids(documents))
    problems = reader.problems
    prob_table = pa.Table.from_pylist(
        problems,
        schema=pa.schema(
            [
                ("sheet", pa.string()),
                ("row", pa.int64()),
                ("item", pa.string()),
                ("column", pa.string()),
                ("problem", pa.string()),
            ]
        ),
    )
    if problems and errors == "raise":
        lines = [f"{p['sheet']} row {p['row']}: {p['problem']}" if p["sheet"] else p["problem"] for p in problems[:25]]
        more = f"\n... and {len(problems) - 25} more" if len(problems) > 25 else ""
        raise FineclassError(
            f"the review sheets have {len(problems)} problem(s); nothing was imported. Fix them and import again "
            f"(or pass errors='report' to get them as a table):\n  " + "\n  ".join(lines) + more,
            "paths",
        )
    decisions = reader.table(props)
    if errors == "report":
        return decisions, prob_table
    return decisions


class _SheetReader:
    """Reads sheets row by row into decisions, collecting every problem."""

    def __init__(self, fields: tuple[str, ...], items: dict, labels: LabelSet):
        self.fields, self.items, self.labels = fields, items, labels
        self.proposed: dict[str, set] = {}
        for e in items.values():
            self.proposed.setdefault(e["doc"], set()).add(e["label"])
        self.problems: list[dict] = []
        self.seen: dict[tuple[str, str], tuple[str, int]] = {}
        self.rows: list[dict] = []  # one per valid sheet row

    def problem(self, sheet, row, item, column, message) -> None:
        self.problems.append({"sheet": sheet, "row": row, "item": item, "column": column, "problem": message})

    def read(self, path: Path) -> None:
        sheet = path.name
        header, rows, formulas = read_sheet(path)
        need = ["item", "coder", "id", *self.fields, "accept"]
        missing = [c for c in need if c not in header]
        if missing:
            self.problem(
                sheet,
                1,
                None,
                ", ".join(missing),
                f"missing column(s) {', '.join(missing)}; do not rename or delete the sheet's columns",
            )
            return
        col = {h: k for k, h in enumerate(header) if h}
        for r, values in enumerate(rows, start=2):
            if any(v.strip() for v in values):  # else a blank line
                self._row(sheet, r, values, col, sorted(c for rr, c in formulas if rr == r))

    def _row(self, sheet: str, r: int, values: list[str], col: dict, formulas: list[str]) -> None:
        def get(name):
            k = col.get(name)
            return ((values[k] if k is not None and k < len(values) else "") or "").strip()

        item = get("item")
        e = self.items.get(item)
        doc_row = e is None and item.startswith("d") and document_item(get("id")) == item
        if e is None and not doc_row:
            self.problem(sheet, r, item or None, "item", f"unknown item {item!r}: not among `proposals`")
            return
        ok = True

        def bad(column, message):
            nonlocal ok
            self.problem(sheet, r, item, column, message)
            ok = False

        for c in formulas:
            bad(c, f"a formula in column {c}: type the value itself (formulas are never evaluated)")
        doc = get("id") if doc_row else e["doc"]
        if not doc_row and get("id") != e["doc"]:
            bad("id", f"edited id: was {e['doc']!r}, now {get('id')!r}")
        label = tuple("" for _ in self.fields) if doc_row else e["label"]
        for f, v in zip(self.fields, label):
            if get(f) != v:
                what = "a row without a proposal" if doc_row else "proposal"
                bad(f, f"edited {what}: {f} was {v!r}, now {get(f)!r}")
        if "check" in col and "text" in col and get("check"):
            text = values[col["text"]] if col["text"] < len(values) else ""
            if text_check(text) != get("check"):
                bad("text", "edited text: the document's text differs from the one exported")
        coder = get("coder")
        decision, correction = None, None
        if doc_row:
            if get("accept") or get("correction"):
                bad("accept", "this row has no proposal to accept, reject or correct; write codes in `addition`")
        else:
            decision = parse_accept(get("accept"))
            if not get("accept"):
                bad("accept", "missing decision: fill in Y or N")
            elif decision is None:
                bad("accept", f"accept value {get('accept')!r} is not Y or N")
            if get("correction"):
                try:
                    correction = self.labels.correction(get("correction"), label)
                except ValueError as err:
                    bad("correction", str(err))
                else:
                    if decision == "Y":
                        bad("correction", "a correction replaces a rejected proposal: set accept to N, or clear it")
                    elif correction == label:
                        bad("correction", "the correction repeats the proposal: accept it instead")
        additions: list[tuple[str, ...]] = []
        if get("addition"):
            try:
                additions = self.labels.additions(get("addition"))
            except ValueError as err:
                bad("addition", str(err))
            for a in additions:
                if a in self.proposed.get(doc, ()):
                    bad("addition", f"{'/'.join(a)} was proposed for this document: decide it in its own row")
        times = []
        for c in ("started", "finished"):
            try:
                times.append(parse_time(get(c)))
            except ValueError:
                times.append(None)
                bad(c, f"{c} {get(c)!r} is not a timestamp such as 2026-05-04 10:31:07")
        if times[0] is not None and times[1] is not None and times[1] < times[0]:
            bad("finished", "finished is before started")
        key = (item, coder)
        if key in self.seen:
            s0, r0 = self.seen[key]
            bad("item", f"duplicate decision: coder {coder or '(none)'!r} already decided this item in {s0} row {r0}")
        else:
            self.seen[key] = (sheet, r)
        if ok:
            self.rows.append(
                {
                    "item": item,
                    "doc": doc,
                    "coder": coder,
                    "decision": decision,
                    "correction": correction,
                    "additions": additions,
                    "sheet": sheet,
                    "row": r,
                    "started": times[0],
                    "finished": times[1],
                    "seconds": None,
                }
            )

    def check_codes(self) -> None:
        """A code that one coder both rejected and gave (by a correction or an addition) for one document."""
        rejected: dict[tuple, tuple[str, int]] = {}
        for row in self.rows:
            if row["decision"] == "N":
                rejected[(row["coder"], row["doc"], self.items[row["item"]]["label"])] = (row["sheet"], row["row"])
        for row in self.rows:
            given = ([row["correction"]] if row["correction"] else []) + row["additions"]
            for code in given:
                hit = rejected.get((row["coder"], row["doc"], code))
                if hit:
                    self.problem(
                        row["sheet"],
                        row["row"],
                        row["item"],
                        "correction" if code == row["correction"] else "addition",
                        f"{'/'.join(code)} is given here but rejected by the same coder in {hit[0]} row {hit[1]}",
                    )

    def time_rows(self) -> None:
        """Seconds per row: finished - started, or the time since the coder's previous finished."""
        by_coder: dict[str, list[dict]] = {}
        for row in self.rows:
            if row["finished"] is not None:
                by_coder.setdefault(row["coder"], []).append(row)
        for rows in by_coder.values():
            rows.sort(key=lambda x: x["finished"])
            previous: datetime | None = None
            for row in rows:
                start = row["started"] if row["started"] is not None else previous
                if start is not None:
                    row["seconds"] = (row["finished"] - start).total_seconds()
                previous = row["finished"]

    def check_complete(self, documents: list) -> None:
        decided = {k[0] for k in self.seen}
        for item, e in self.items.items():
            if item not in decided:
                self.problem(
                    None,
                    None,
                    item,
                    None,
                    f"proposal {e['doc']!r} {'/'.join(e['label'])} is in no sheet "
                    f"(pass every filled sheet, or complete=False)",
                )
        seen_docs = {row["doc"] for row in self.rows} | {self.items[i]["doc"] for i in decided if i in self.items}
        for v in documents:
            doc = key_str(v)
            if doc not in seen_docs:
                self.problem(
                    None, None, document_item(doc), None, f"document {doc!r} is in no sheet (pass every filled sheet)"
                )

    def table(self, props: pa.Table) -> pa.Table:
        fields = self.fields
        rec: dict[str, list] = {
            "id": [],
            **{f: [] for f in fields},
            "proposer": [],
            "coder": [],
            "accepted": [],
            "correction": [],
            "added": [],
            "item": [],
            "sheet": [],
            "row": [],
            "started": [],
            "finished": [],
            "seconds": [],
        }
        original = {e["doc"]: e["id"] for e in self.items.values()}

        def add(row, doc_id, label, proposer, accepted, correction, added, timed):
            rec["id"].append(doc_id)
            for f, v in zip(fields, label):
                rec[f].append(v)
            rec["proposer"].append(proposer)
            rec["coder"].append(row["coder"] or None)
            rec["accepted"].append(accepted)
            rec["correction"].append(correction)
            rec["added"].append(added)
            rec["item"].append(row["item"])
            rec["sheet"].append(row["sheet"])
            rec["row"].append(row["row"])
            for c in ("started", "finished", "seconds"):
                rec[c].append(row[c] if timed else None)

        for row in self.rows:
            e = self.items.get(row["item"])
            doc_id = e["id"] if e else original.get(row["doc"], row["doc"])
            if e is None:  # a document without proposals: reviewed, with or without additions
                add(row, doc_id, [None] * len(fields), None, None, None, False, True)
            else:
                corr = row["correction"][-1] if row["correction"] else None
                for proposer in e["proposers"] or [None]:
                    add(row, doc_id, e["label"], proposer, row["decision"], corr, False, True)
            for code in row["additions"]:
                add(row, doc_id, code, None, None, None, True, False)
        id_type = props.column(ID).type
        ids = [_restore_id(v, id_type) for v in rec["id"]]
        cols = {"id": pa.array(ids, id_type)}
        if "label" in fields:
            cols["label"] = pa.array([_restore(props, v) for v in rec["label"]], props.column("label").type)
        else:
            cols["dimension"] = pa.array(rec["dimension"], pa.string())
            cols["level"] = pa.array(rec["level"], pa.string())
        for name in ("proposer", "coder", "accepted", "correction"):
            cols[name] = pa.array(rec[name], pa.string())
        cols["added"] = pa.array(rec["added"], pa.bool_())
        cols["item"] = pa.array(rec["item"], pa.string())
        cols["sheet"] = pa.array(rec["sheet"], pa.string())
        cols["row"] = pa.array(rec["row"], pa.int64())
        cols["started"] = pa.array(rec["started"], pa.timestamp("us"))
        cols["finished"] = pa.array(rec["finished"], pa.timestamp("us"))
        cols["seconds"] = pa.array(rec["seconds"], pa.float64())
        return pa.table(cols)


def _restore_id(v: Any, id_type: pa.DataType) -> Any:
    """An id read from a sheet (text) in the proposals' id type."""
    if isinstance(v, str) and pa.types.is_integer(id_type):
        return int(v)
    return v


def _restore(props: pa.Table, v: Any):
    t = props.column("label").type
    return int(v) if v is not None and pa.types.is_integer(t) else v
