"""The one writer of every CSV and XLSX file fineclass writes: safe to open in a spreadsheet program.

- CSV: a text cell that starts with ``= + - @``, a tab or a carriage return would be run as a formula by Excel,
  LibreOffice or Google Sheets (CSV injection); it gets a leading ``'``. A cell that already starts with ``'``
  gets one too, so that :func:`csv_unguard` (drop one leading ``'``) restores every value exactly. Numbers,
  booleans and empty cells are written as they are.
- XLSX: every cell is written as text (never a formula); the control characters XML 1.0 cannot hold (codes 0 to 31
  except tab, newline and carriage return), which make spreadsheet libraries refuse the file, are
  replaced by their visible Unicode pictures (BEL, code 7, becomes U+2407).

Both write atomically: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from ._fs import atomic_file
from .errors import FineclassError

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_GUARDED = FORMULA_STARTS + ("'",)
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that no spreadsheet program runs as a formula.

    Args:
        value: any cell value; only text is changed.

    Returns:
        ``"'" + value`` for text starting with ``= + - @``, a tab, a carriage return or ``'``; else ``value``.

    Example:
        >>> csv_cell("=2+3"), csv_cell("plain"), csv_cell(-1)
        ("'=2+3", 'plain', -1)
    """
    return "'" + value if isinstance(value, str) and value.startswith(_GUARDED) else value


def csv_unguard(value: str) -> str:
    """Undo :func:`csv_cell` for a cell read back from a CSV file fineclass wrote.

    Args:
        value: the cell's text.

    Returns:
        The text without one leading ``'``.
    """
    return value[1:] if value.startswith("'") else value


def xlsx_cell(value: Any) -> str | None:
    """A value as XLSX cell text: the control characters XML cannot hold become their visible pictures.

    Args:
        value: any cell value (None stays empty).

    Returns:
        The text, or None.

    Example:
        >>> xlsx_cell("bell" + chr(7))
        'bell␇'
    """
    if value is None:
        return None
    return _XML_ILLEGAL.sub(lambda m: chr(0x2400 + ord(m.group())), str(value))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]], *, bom: bool = True) -> Path:
    """Write rows as a CSV file (UTF-8, with a byte-order mark so that Excel reads it as UTF-8), cells guarded.

    Args:
        path: the file.
        header: the column names.
        rows: the rows, each as long as ``header``.
        bom: start the file with a UTF-8 byte-order mark.

    Returns:
        The file's path.
    """
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.writer(f)
        w.writerow([csv_cell(h) for h in header])
        for r in rows:
            w.writerow([csv_cell(v) for v in r])
    return path


def write_table_csv(table: Any, path: str | Path) -> Path:
    """Write a table as CSV, with every text cell guarded against formulas (numbers are written as they are).

    Args:
        table: a pyarrow Table (or anything :func:`pyarrow.table` takes).
        path: the file.

    Returns:
        The file's path.

    Raises:
        FineclassError: naming ``output`` when a column cannot be written as CSV (a list column).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    table = table if isinstance(table, pa.Table) else pa.table(table)
    columns = []
    for col in table.columns:
        t = col.type
        if pa.types.is_dictionary(t):
            col, t = col.cast(t.value_type), t.value_type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            starts = pc.match_substring_regex(col, r"^[=+\-@\t\r']")
            col = pc.if_else(pc.fill_null(starts, False), pc.binary_join_element_wise("'", col, ""), col)
        columns.append(col)
    guarded = pa.table(dict(zip(table.column_names, columns)))
    path = Path(path)
    try:
        with atomic_file(path) as tmp:
            pcsv.write_csv(guarded, str(tmp))
    except pa.ArrowInvalid as e:
        raise FineclassError(
            f"`output` {str(path)!r}: the table cannot be written as CSV ({e}); write .parquet instead.", "output"
        ) from None
    return path


def unguard_table(table: Any) -> Any:
    """Undo :func:`write_table_csv`'s guard on a table read back from a CSV file fineclass wrote.

    Args:
        table: a pyarrow Table read from such a file.

    Returns:
        The table with one leading ``'`` removed from every text cell that has one.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for col in table.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = pc.replace_substring_regex(col, r"^'", "", max_replacements=1)
        columns.append(col)
    return pa.table(dict(zip(table.column_names, columns)))


def xlsx_workbook(header: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str = "sheet"):
    """Build an XLSX workbook with every cell as text (no formula can run), control characters made visible.

    Args:
        header: the column names.
        rows: the rows.
        title: the worksheet's name (at most 31 characters are kept).

    Returns:
        The openpyxl ``Workbook`` (add validations or layout, then :func:`save_xlsx`).

    Raises:
        FineclassError: naming ``path`` when openpyxl is not installed.
    """
    try:
        from openpyxl import Workbook
    except ImportError:  # pragma: no cover
        raise FineclassError(
            "writing .xlsx needs openpyxl: pip install openpyxl, or use a .csv path.", "path"
        ) from None
    wb = Workbook()
    ws = wb.active
    ws.title = xlsx_cell(title)[:31]
    ws.append([xlsx_cell(h) for h in header])
    for r in rows:
        ws.append([xlsx_cell(v) for v in r])
    for row in ws.iter_rows(min_row=2):
        for cell in row:  # every value is text: ids keep their digits, a text starting with '=' stays text
            if cell.value is not None:
                cell.data_type = "s"
    return wb


def save_xlsx(workbook: Any, path: str | Path) -> Path:
    """Save a workbook from :func:`xlsx_workbook` atomically.

    Args:
        workbook: the openpyxl Workbook.
        path: the file.

    Returns:
        The file's path.
    """
    path = Path(path)
    with atomic_file(path) as tmp:
        workbook.save(tmp)
    return path
