"""Review sheets as files.

CSV is written safely for spreadsheet programs, XLSX with every value as text; sheets are read back with the
formulas a coder typed flagged, never evaluated.
"""

from __future__ import annotations

import csv
import glob
from pathlib import Path
from typing import Any

from ..errors import FineclassError
from ..sheets import csv_cell, csv_unguard, save_xlsx, write_csv, xlsx_workbook

# the one CSV/XLSX writer of the project (issue 21): its guard is the review sheets' guard
csv_guard = csv_cell


def safe_sheet_path(folder: Path, stem: str, coder: str | None, ext: str) -> Path:
    """The path of one coder's sheet, checked to stay inside ``folder``.

    Args:
        folder: the sheets' folder.
        stem: the sheets' common name (``review``).
        coder: the coder, or None for a single sheet.
        ext: ``.csv`` or ``.xlsx``.

    Returns:
        ``folder/stem-coder.ext`` (or ``folder/stem.ext``).

    Raises:
        FineclassError: naming ``coders`` when the name would write outside the folder.
    """
    name = f"{stem}{ext}" if coder is None else f"{stem}-{coder}{ext}"
    target = (folder / name).resolve()
    if target.parent != folder.resolve() or "/" in name or "\\" in name or name.startswith("."):
        raise FineclassError(
            f"coder name {coder!r} would write outside the folder {str(folder)!r}. Use letters, "
            f"digits, '_', '-' and '.'.",
            "coders",
        )
    return target


def write_sheet(target: Path, header: list[str], rows: list[list], title: str, choices: dict[str, str]) -> None:
    """Write one sheet atomically through :mod:`fineclass.sheets`: CSV with guarded cells, or XLSX as text.

    Args:
        target: the file (.csv or .xlsx).
        header: the column names.
        rows: the rows, one list of values each.
        title: the XLSX worksheet's title.
        choices: per column, the values an XLSX cell may take (``{"accept": "Y,N"}``), as a drop-down.

    Raises:
        FineclassError: naming ``path`` when XLSX is asked for without openpyxl.
    """
    if target.suffix.lower() == ".csv":
        write_csv(target, header, rows)
        return
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = xlsx_workbook(header, rows, title=title)
    ws = wb.active
    for name, values in choices.items():
        col = get_column_letter(header.index(name) + 1)
        dv = DataValidation(
            type="list",
            formula1=f'"{values}"',
            allow_blank=True,
            showErrorMessage=True,
            errorTitle=values.replace(",", " or "),
            error=f"Enter one of {values.replace(',', ', ')}.",
        )
        ws.add_data_validation(dv)
        if rows:
            dv.add(f"{col}2:{col}{len(rows) + 1}")
    ws.freeze_panes = "A2"
    save_xlsx(wb, target)


def read_sheet(path: Path) -> tuple[list[str], list[list[str]], set[tuple[int, str]]]:
    """Read a filled sheet as text, and find the cells that hold formulas.

    In CSV a formula is a cell that starts with ``=`` without the ``'`` the export puts before such values; in
    XLSX it is a cell whose content is a formula. Their values are never evaluated (an XLSX formula's cached
    result is read as the value, and the cell is reported).

    Args:
        path: the sheet (.csv or .xlsx).

    Returns:
        ``(header, rows, formulas)``: the lower-case column names, the rows as text (row ``k`` of the list is
        sheet row ``k + 2``), and ``(sheet row, column)`` of every formula.

    Raises:
        FineclassError: naming ``paths`` when the file is not UTF-8 CSV or readable XLSX, or is empty.
    """
    ext = path.suffix.lower()
    formulas: set[tuple[int, int]] = set()
    if ext == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                raw = list(csv.reader(f))
        except UnicodeDecodeError:
            raise FineclassError(
                f"the review sheet {str(path)!r} is not UTF-8 text. Save it as CSV UTF-8 (or as .xlsx).", "paths"
            ) from None
        formulas = {(r, k) for r, row in enumerate(raw, start=1) for k, v in enumerate(row) if v.startswith("=")}
        data = [[csv_unguard(v) for v in row] for row in raw]
    elif ext == ".xlsx":
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
            ws = wb.worksheets[0]
            data = [[_cell_str(v) for v in row] for row in ws.iter_rows(values_only=True)]
            wb.close()
            wf = load_workbook(path, read_only=True, data_only=False)
            for r, row in enumerate(wf.worksheets[0].iter_rows(), start=1):
                formulas |= {(r, k) for k, c in enumerate(row) if getattr(c, "data_type", None) == "f"}
            wf.close()
        except Exception as e:
            raise FineclassError(f"the review sheet {str(path)!r} could not be read as .xlsx ({e}).", "paths") from None
    else:
        raise FineclassError(f"review sheets are .csv or .xlsx files; got {str(path)!r}.", "paths")
    while data and not any((v or "").strip() for v in data[-1]):
        data.pop()
    if not data:
        raise FineclassError(f"the review sheet {str(path)!r} is empty.", "paths")
    header = [(h or "").strip().lower() for h in data[0]]
    named = {(r, header[k] if k < len(header) and header[k] else f"column {k + 1}") for r, k in formulas}
    return header, [[(v if v is not None else "") for v in row] for row in data[1:]], named


def _cell_str(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if hasattr(v, "isoformat"):  # a date or time typed into a cell
        return v.isoformat(sep=" ") if hasattr(v, "hour") and hasattr(v, "date") else v.isoformat()
    return str(v)


def expand_paths(paths: Any) -> list[Path]:
    """The sheets named by paths and globs.

    Args:
        paths: a path, a glob, or a list of them.

    Returns:
        The files, globs expanded in sorted order.

    Raises:
        FineclassError: naming ``paths`` when one does not exist, a glob matches nothing, or none is given.
    """
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
