"""Review sheets: one per coder, written safely for spreadsheet programs, read back and checked row by row."""

from __future__ import annotations

import csv
import glob
import json
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .._fs import atomic_file
from ..errors import FineclassError, preview
from ..tables import ID, check_text, read_table, with_id
from .items import key_str, parse_accept, proposal_items, shape, text_check

_CODER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _safe_sheet_path(folder: Path, stem: str, coder: str | None, ext: str) -> Path:
    name = f"{stem}{ext}" if coder is None else f"{stem}-{coder}{ext}"
    target = (folder / name).resolve()
    if target.parent != folder.resolve() or "/" in name or "\\" in name or name.startswith("."):
        raise FineclassError(
            f"coder name {coder!r} would write outside the folder {str(folder)!r}. Use letters, "
            f"digits, '_', '-' and '.'.",
            "coders",
        )
    return target


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
    overwrite: bool = False,
) -> list[Path]:
    """Write review sheets for coders: one file per coder, one row per proposal, an empty ``accept`` column.

    In CSV sheets a cell that starts with ``= + - @`` (or ``'``) gets a leading ``'`` so spreadsheet programs do not
    run it as a formula; :func:`import_review` removes it. XLSX cells are written as text, never as formulas.

    Args:
        proposals: the table :func:`propose` returns (or any long table with ``id`` and ``dimension``/``level`` or
            ``label``; a ``proposer`` column is used when present). Rows without a label (errors) are skipped. The
            same label proposed by several proposers is one row: each proposal is reviewed once, blind to who
            proposed it, and the decision counts for every proposer that made it.
        path: ``folder/review.csv`` or ``folder/review.xlsx``; each coder's sheet is ``folder/review-<coder>.ext``.
        coders: coder names (letters, digits, ``_ - .``); default one sheet without a coder name.
        overlap: the share of documents (rounded, at least one when > 0) that a second coder also reviews.
            Documents, not single proposals, are assigned, so a coder sees all proposals for a text together.
            Needs two or more coders; with one it is ignored.
        seed: makes the assignment reproducible.
        texts: a table (or path) with the documents, to show the text beside each proposal; a ``check`` column
            then detects edited texts on import.
        text: the text column of ``texts``.
        id: the id column of ``texts``.
        overwrite: replace existing sheets (off by default, so a re-export cannot destroy filled sheets).

    Returns:
        The paths written. Sheets have columns ``item, coder, id, [text], dimension, level`` (or ``label``),
        ``accept`` (fill with Y or N), ``comment`` (free), ``[check]``.

    Raises:
        FineclassError: naming ``path``, ``coders``, ``overlap``, ``texts`` or ``proposals`` when they do not fit.
    """
    props = read_table(proposals, "proposals")
    fields = shape(props, "proposals")
    items = proposal_items(props, fields)
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
            raise FineclassError(
                f"coder names {preview(bad)} cannot be used in file names: use letters, digits, "
                f"'_', '-' and '.' (no path separators, no leading dot).",
                "coders",
            )
        if len({c.casefold() for c in coder_list}) != len(coder_list):  # one file each, also on Windows/macOS
            raise FineclassError(f"`coders` holds duplicates: {preview(coder_list)}.", "coders")
    targets = {c: _safe_sheet_path(folder, path.stem, c, ext) for c in coder_list}
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
        missing = sorted({e["doc"] for e in items.values()} - set(text_of))
        if missing:
            raise FineclassError(
                f"`texts` has no text for {len(missing)} proposed documents (ids: {preview(missing)}).", "texts"
            )
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
    header = (
        ["item", "coder", "id"]
        + (["text"] if text_of else [])
        + list(fields)
        + ["accept", "comment"]
        + (["check"] if text_of else [])
    )
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
                    row.append(text_check(text_of[e["doc"]]))
                rows.append(row)
        folder.mkdir(parents=True, exist_ok=True)
        if ext == ".csv":
            _write_csv(target, header, rows)
        else:
            _write_xlsx(target, header, rows, coder)
        written.append(target)
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sheets": [p.name for p in written],
        "coders": [c for c in coder_list if c is not None],
        "overlap": overlap,
        "seed": seed,
        "documents": len(docs),
        "overlap_documents": n_overlap,
        "items": len(items),
        "shape": list(fields),
    }
    (folder / f"{path.stem}.manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return written


def _csv_guard(v: str) -> str:
    """A leading ' keeps spreadsheet programs from running a cell as a formula.

    A cell that starts with ' gets one too, so that :func:`_csv_unguard` (drop one leading ') restores every
    value exactly.
    """
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
        raise FineclassError(
            "writing .xlsx needs openpyxl: pip install openpyxl, or use a .csv path.", "path"
        ) from None
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
    dv = DataValidation(
        type="list",
        formula1='"Y,N"',
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Y or N",
        error="Enter Y (accept) or N (reject).",
    )
    ws.add_data_validation(dv)
    if rows:
        dv.add(f"{col}2:{col}{len(rows) + 1}")
    ws.freeze_panes = "A2"
    with atomic_file(target) as tmp:
        wb.save(tmp)


def _read_sheet(path: Path) -> tuple[list[str], list[list[str]]]:
    ext = path.suffix.lower()
    if ext == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                data = [[_csv_unguard(v) for v in row] for row in csv.reader(f)]
        except UnicodeDecodeError:
            raise FineclassError(
                f"the review sheet {str(path)!r} is not UTF-8 text. Save it as CSV UTF-8 (or as .xlsx).", "paths"
            ) from None
    elif ext == ".xlsx":
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as e:
            raise FineclassError(f"the review sheet {str(path)!r} could not be read as .xlsx ({e}).", "paths") from None
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


def import_review(paths: Any, proposals: Any, *, complete: bool = True, errors: str = "raise"):
    """Read filled review sheets into a decisions table, checking every row.

    ``accept`` takes Y or N; yes/no, 1/0 and true/false are read as Y/N too, in any case. Reported problems (never
    guessed): a missing column, an unknown ``item``, an edited id, label or text (the ``check`` column), an empty,
    invalid or duplicate decision (the same item decided twice by one coder), a row without a coder, and - with
    ``complete=True`` - proposals that are in no sheet.

    Args:
        paths: the filled sheets (.csv or .xlsx; globs allowed).
        proposals: the proposals the sheets were exported from.
        complete: report proposals that are in no sheet.
        errors: ``"raise"`` raises one error listing the problems by file and row; ``"report"`` returns them.

    Returns:
        ``id, dimension, level`` (or ``id, label``), ``proposer, coder, accepted`` (Y/N), ``item``, ``sheet``,
        ``row``: one row per decision and proposer (a proposal made by two proposers gives two rows with the same
        decision). With ``errors="report"``: ``(decisions, problems)``, ``decisions`` holding the valid rows.

    Raises:
        FineclassError: naming ``paths`` with every problem found (``errors="raise"``).
    """
    if errors not in ("raise", "report"):
        raise FineclassError(f"`errors` must be 'raise' or 'report'; got {errors!r}.", "errors")
    props = read_table(proposals, "proposals")
    fields = shape(props, "proposals")
    items = proposal_items(props, fields)
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
            problem(
                sheet,
                1,
                None,
                ", ".join(missing),
                f"missing column(s) {', '.join(missing)}; do not rename or delete the sheet's columns",
            )
            continue
        col = {h: k for k, h in enumerate(header) if h}
        for r, values in enumerate(rows, start=2):

            def get(name, values=values, col=col):
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
                if text_check(get("text")) != get("check").strip():
                    problem(sheet, r, item, "text", "edited text: the document's text differs from the one exported")
                    ok = False
            coder = get("coder").strip()
            decision = parse_accept(get("accept"))
            if not get("accept").strip():
                problem(sheet, r, item, "accept", "missing decision: fill in Y or N")
                ok = False
            elif decision is None:
                problem(sheet, r, item, "accept", f"accept value {get('accept').strip()!r} is not Y or N")
                ok = False
            key = (item, coder)
            if key in seen:
                s0, r0 = seen[key]
                problem(
                    sheet,
                    r,
                    item,
                    "item",
                    f"duplicate decision: coder {coder or '(none)'!r} already decided this item in {s0} row {r0}",
                )
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
                problem(
                    None,
                    None,
                    item,
                    None,
                    f"proposal {e['doc']!r} {'/'.join(e['label'])} is in no sheet "
                    f"(pass every filled sheet, or complete=False)",
                )
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
            f"the review sheets have {len(problems)} problem(s); fix them and import again "
            f"(or pass errors='report' to get them as a table):\n  " + "\n  ".join(lines) + more,
            "paths",
        )
    id_type = props.column(ID).type
    rec: dict[str, list] = {
        "id": [],
        **{f: [] for f in fields},
        "proposer": [],
        "coder": [],
        "accepted": [],
        "item": [],
        "sheet": [],
        "row": [],
    }
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
