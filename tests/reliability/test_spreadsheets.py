"""Issue 21, item 10: every CSV and XLSX file fineclass writes goes through one writer (fineclass.sheets).

- The XLSX review export no longer crashes on control characters (``\\x00``, ``\\x07``, ``\\x0b``): they are shown
  as their Unicode pictures, and the filled sheet imports without an "edited text" complaint.
- ``decisions.csv`` (``fineclass review import``) and the assembled training CSV (``fineclass review assemble``)
  neutralise cells that a spreadsheet would run as formulas, as the review sheets always did.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fineclass.cli import main
from fineclass.crowd import export_review, import_review

pytestmark = pytest.mark.reliability

IDS = ["=2+3", "@SUM(A1)", "-1+1", "plain"]
TEXTS = ["bell\x07 here", "nul\x00 byte", "vertical\x0btab", '=HYPERLINK("http://x")']


def _proposals() -> pa.Table:
    return pa.table({"id": IDS, "label": ["pos", "neg", "pos", "neg"], "proposer": ["m"] * 4})


def test_xlsx_export_survives_control_characters_and_imports_back(tmp_path):
    from openpyxl import load_workbook

    props = _proposals()
    (sheet,) = export_review(props, tmp_path / "review.xlsx", texts=pa.table({"id": IDS, "text": TEXTS}))
    wb = load_workbook(sheet)
    ws = wb.active
    header = [c.value for c in ws[1]]
    texts = sorted(ws.cell(row=r, column=header.index("text") + 1).value for r in range(2, ws.max_row + 1))
    assert texts == sorted(["bell\u2407 here", "nul\u2400 byte", "vertical\u240btab", '=HYPERLINK("http://x")'])
    assert all(ws.cell(row=r, column=header.index("text") + 1).data_type == "s" for r in range(2, ws.max_row + 1))
    for r in range(2, ws.max_row + 1):
        ws.cell(row=r, column=header.index("accept") + 1).value = "Y"
    wb.save(sheet)
    decisions = import_review(sheet, props)
    assert sorted(decisions.column("id").to_pylist()) == sorted(IDS)


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [v for row in csv.reader(f) for v in row]


def test_decisions_and_training_csv_neutralise_formulas(tmp_path):
    props = _proposals()
    pq.write_table(props, tmp_path / "proposals.parquet")
    (sheet,) = export_review(props, tmp_path / "review.csv")
    header, *rows = list(csv.reader(open(sheet, newline="", encoding="utf-8-sig")))
    for r in rows:
        r[header.index("accept")] = "Y"
    with open(sheet, "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows([header, *rows])

    decisions = tmp_path / "decisions.csv"
    assert (
        main(["review", "import", str(sheet), "--proposals", str(tmp_path / "proposals.parquet"), "-o", str(decisions)])
        == 0
    )
    training = tmp_path / "training.csv"
    assert main(["review", "assemble", str(decisions), "-o", str(training)]) == 0
    for path in (decisions, training):
        cells = _cells(path)
        assert "'=2+3" in cells and "'@SUM(A1)" in cells and "'-1+1" in cells, cells
        assert not [v for v in cells if v.startswith(("=", "+", "-", "@", "\t", "\r"))], path.name
