"""Review sheets that correct: a coder's own code for a rejected proposal, codes no proposer gave, timestamps.

The round trip (export, fill by code as a coder who knows the gold codes, import, assemble) from Python and the
CLI on the shared flourishing data, and bad sheets: errors naming the sheet row, nothing imported or written.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass import FineclassError, LabelSpec
from fineclass.cli import main as cli_main
from fineclass.crowd import acceptance_report, assemble_training_set, export_review, import_review
from test_crowd import _read_csv, _write_csv

T0 = datetime(2026, 5, 4, 9, 0, 0)
SECONDS = 7  # each filled row takes this long


@pytest.fixture(scope="module")
def case(flourishing):
    """Proposals for 30 labelled tweets, 3 more labelled tweets without proposals, their texts, gold codes and
    the label set from the codebook; the 33 tweets are the human sample."""
    d = flourishing
    raw = pl.read_parquet(d / "proposals.parquet")
    labelled = pl.read_parquet(d / "labeled_ids.parquet")["id"].to_list()
    ids = sorted(set(raw["id"].to_list()) & set(labelled))
    proposed_ids, bare_ids = ids[:30], ids[30:33]
    labels = pl.read_parquet(d / "labels.parquet").filter(pl.col("id").is_in(proposed_ids + bare_ids))
    gold = {(r["id"], r["dimension"], r["level"]) for r in labels.to_dicts()}
    # the paper's gold codes all come from accepted proposals; make the proposers err on some, so that the
    # coders have something to correct (every 4th gold code proposed at another level) and to add (every 4th
    # + 1 gold code not proposed at all)
    ranked = sorted(g for g in gold if g[0] in proposed_ids)
    wrong = {g: {"low": "high", "medium": "low", "high": "low"}[g[2]] for g in ranked[::4]}
    missed = set(ranked[1::4])
    rows = []
    for r in raw.filter(pl.col("id").is_in(proposed_ids)).select("id", "dimension", "level", "proposer").to_dicts():
        key = (r["id"], r["dimension"], r["level"])
        if key not in missed:
            rows.append({**r, "level": wrong.get(key, r["level"])})
    props = pl.DataFrame(rows).unique(maintain_order=True)
    texts = pl.read_parquet(d / "tweets.parquet").filter(pl.col("id").is_in(proposed_ids + bare_ids))
    spec = LabelSpec(kind="dimlevel", classes=pl.read_csv(d / "codebook.csv")["dimension"].to_list())
    sample = proposed_ids + bare_ids  # the human sample: every document is reviewed, proposals or not
    return {"props": props.to_arrow(), "sample": sample, "bare": bare_ids, "texts": texts, "gold": gold, "spec": spec}


def _expected_sources(case) -> dict[tuple, str]:
    """What a coder who knows the gold codes gives: accepted proposals, corrections and additions."""
    proposed = {(r["id"], r["dimension"], r["level"]) for r in pl.from_arrow(case["props"]).to_dicts()}
    dims = {(i, dim) for i, dim, _ in proposed}
    out = {}
    for i, dim, lev in case["gold"]:
        if (i, dim, lev) in proposed:
            out[(i, dim, lev)] = "proposal"
        else:
            out[(i, dim, lev)] = "correction" if (i, dim) in dims else "addition"
    return out


def _fill_as_expert(path, gold, timed=True):
    """Accept gold proposals; reject the others, writing the gold level of the row's dimension as the correction
    (once per document and dimension); add the gold codes of dimensions that nobody proposed, on the document's
    first row. Each row is started and finished SECONDS apart."""
    header, rows = _read_csv(path)
    h = {c: k for k, c in enumerate(header)}
    level_of = {(i, dim): lev for i, dim, lev in gold}
    proposed_dims = {(r[h["id"]], r[h["dimension"]]) for r in rows if r[h["dimension"]]}
    proposed = {(r[h["id"]], r[h["dimension"]], r[h["level"]]) for r in rows if r[h["dimension"]]}
    corrected, added_for = set(), set()
    for k, r in enumerate(rows):
        doc, dim, lev = r[h["id"]], r[h["dimension"]], r[h["level"]]
        if dim:
            if (doc, dim, lev) in gold:
                r[h["accept"]] = "Y"
            else:
                r[h["accept"]] = "N"
                right = level_of.get((doc, dim))
                if right and (doc, dim, right) not in proposed and (doc, dim) not in corrected:
                    r[h["correction"]] = right.upper()  # matched without case
                    corrected.add((doc, dim))
        if doc not in added_for:
            added_for.add(doc)
            extra = sorted(f"{d}: {v}" for i, d, v in gold if i == doc and (i, d) not in proposed_dims)
            r[h["addition"]] = "; ".join(extra)
        if timed:
            start = T0 + timedelta(seconds=60 * k)
            r[h["started"]] = start.isoformat(sep=" ")
            r[h["finished"]] = (start + timedelta(seconds=SECONDS)).isoformat(sep=" ")
    _write_csv(path, header, rows)


def _coder_of_doc(paths) -> dict[str, str]:
    out = {}
    for p in paths:
        header, rows = _read_csv(p)
        for r in rows:
            out[r[header.index("id")]] = r[header.index("coder")]
    return out


def _check_assembled(ts: pl.DataFrame, case, coder_of: dict[str, str]) -> None:
    expected = _expected_sources(case)
    ts = ts.filter(pl.col("dimension").is_not_null())
    got = {(r["id"], r["dimension"], r["level"]): r for r in ts.to_dicts()}
    assert set(got) == set(expected)  # the gold codes, no more, no fewer
    assert {k: r["source"] for k, r in got.items()} == expected
    assert {k: r["coders"] for k, r in got.items()} == {k: coder_of[k[0]] for k in got}
    sources = list(expected.values())
    assert sources.count("correction") > 0 and sources.count("addition") > 0 and sources.count("proposal") > 0


def test_corrections_and_additions_enter_the_training_set(case, tmp_path):
    paths = export_review(
        case["props"],
        tmp_path / "r.csv",
        coders=["ana", "ben"],
        overlap=0,
        texts=case["texts"],
        documents=case["sample"],
    )
    for p in paths:
        _fill_as_expert(p, case["gold"])
    dec = import_review(paths, case["props"], spec=case["spec"], documents=case["sample"])
    d = pl.from_arrow(dec)
    assert set(d.filter(pl.col("added"))["id"].to_list()) >= set(case["bare"])  # the sample's extra documents
    assert d.filter(pl.col("seconds").is_not_null())["seconds"].unique().to_list() == [SECONDS]
    coder_of = _coder_of_doc(paths)
    _check_assembled(pl.from_arrow(assemble_training_set(dec)), case, coder_of)
    # accept/reject alone (no additions, no corrections) keeps only the gold codes that a proposer gave
    plain = pl.from_arrow(dec).filter(~pl.col("added")).drop("correction", "added").to_arrow()
    kept = pl.from_arrow(assemble_training_set(plain)).filter(pl.col("dimension").is_not_null())
    expected = _expected_sources(case)
    assert {(r["id"], r["dimension"], r["level"]) for r in kept.to_dicts()} == {
        k for k, v in expected.items() if v == "proposal"
    }
    assert kept.height < len(expected)
    # the report: corrections per proposer, additions per coder, seconds per decision
    rep = acceptance_report(dec)
    prop = pl.from_arrow(rep["proposer"])
    n_corrected = d.filter(pl.col("correction").is_not_null()).height
    assert prop["corrected"].sum() == n_corrected > 0
    assert prop["seconds"].to_list() == [SECONDS] * prop.height
    adds = {r["coder"]: r for r in rep["additions"].to_pylist()}
    assert (
        adds["all"]["additions"]
        == d.filter(pl.col("added")).height
        == adds["ana"]["additions"] + adds["ben"]["additions"]
    )
    assert adds["all"]["documents"] == 33
    # the proposer table goes to the budget planner as it is: labels / acceptance documents, each with `items`
    # proposals at the timed seconds per proposal
    plan = {r["proposer"]: r for r in fineclass.plan_budget(100, rep["proposer"], scratch_seconds=60).to_pylist()}
    for r in prop.to_dicts():
        assert plan[r["proposer"]]["documents"] == int(np.ceil(100 / r["rate"]))
        assert plan[r["proposer"]]["coder_hours"] == pytest.approx(
            np.ceil(100 / r["rate"]) * r["items"] * SECONDS / 3600, rel=0.02
        )


def _good_sheets(case, folder):
    paths = export_review(case["props"], folder / "r.csv", coders=["ana", "ben"], overlap=0, texts=case["texts"])
    for p in paths:
        _fill_as_expert(p, case["gold"])
    return paths


def _damage(path, how):
    """Damage one row of a filled sheet; return its sheet row number (the header is row 1)."""
    header, rows = _read_csv(path)
    h = {c: k for k, c in enumerate(header)}
    k = next(k for k, r in enumerate(rows) if r[h["accept"]] == "N")
    if how == "correction":
        rows[k][h["correction"]] = "ecstatic"
    elif how == "addition":
        rows[k][h["addition"]] = "joy: high"
    elif how == "duplicate":
        rows.append(list(rows[k]))
        k = len(rows) - 1
    elif how == "text":
        rows[k][h["text"]] = rows[k][h["text"]] + " (edited)"
    elif how == "formula":
        rows[k][h["comment"]] = "=1+1"  # typed into the cell: no leading ', so a formula
    _write_csv(path, header, rows)
    return k + 2


BAD = {
    "correction": "correction 'ecstatic' is not a level",
    "addition": "addition 'joy: high' is not 'dimension: level'",
    "duplicate": "duplicate decision",
    "text": "edited text",
    "formula": "a formula in column comment",
}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_sheets_name_the_row_and_import_nothing(case, tmp_path, how):
    paths = _good_sheets(case, tmp_path)
    assert import_review(paths, case["props"], spec=case["spec"]).num_rows > 0
    row = _damage(paths[0], how)
    with pytest.raises(FineclassError) as e:
        import_review(paths, case["props"], spec=case["spec"])
    assert e.value.argument == "paths"
    assert f"r-ana.csv row {row}: {BAD[how]}" in str(e.value)
    assert "nothing was imported" in str(e.value)
    dec, problems = import_review(paths, case["props"], spec=case["spec"], errors="report")
    assert problems.select(["sheet", "row"]).to_pylist() == [{"sheet": "r-ana.csv", "row": row}]
    assert ("r-ana.csv", row) not in set(zip(dec.column("sheet").to_pylist(), dec.column("row").to_pylist()))


def test_a_formula_in_an_xlsx_cell_is_reported_not_evaluated(case, tmp_path):
    from openpyxl import load_workbook

    paths = export_review(case["props"], tmp_path / "r.xlsx", coders=["ana"], texts=case["texts"])
    wb = load_workbook(paths[0])
    ws = wb.active
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        key = tuple(row[header.index(c)].value for c in ("id", "dimension", "level"))
        row[header.index("accept")].value = "Y" if key in case["gold"] else "N"
    ws.cell(row=5, column=header.index("accept") + 1).value = '=IF(1,"Y","N")'
    wb.save(paths[0])
    with pytest.raises(FineclassError, match="r-ana.xlsx row 5: a formula in column accept"):
        import_review(paths, case["props"])


def test_cli_round_trip_with_corrections_and_a_bad_sheet(case, tmp_path, capsys):
    pq.write_table(case["props"], tmp_path / "proposals.parquet")
    pq.write_table(case["texts"].to_arrow(), tmp_path / "tweets.parquet")
    pq.write_table(pl.DataFrame({"id": case["sample"]}).to_arrow(), tmp_path / "sample.parquet")
    case["spec"].save(tmp_path / "spec.json")

    def run(*argv):
        return cli_main([str(a) for a in argv])

    sheets = tmp_path / "s"
    assert (
        run(
            *("review", "export", tmp_path / "proposals.parquet", "-o", sheets / "review.csv"),
            *("--coders", "ana", "ben", "--overlap", "0", "--texts", tmp_path / "tweets.parquet"),
            *("--documents", tmp_path / "sample.parquet"),
        )
        == 0
    )
    paths = sorted(sheets.glob("review-*.csv"))
    for p in paths:
        _fill_as_expert(p, case["gold"])
    decisions = tmp_path / "decisions.parquet"
    args = ("review", "import", sheets / "review-*.csv", "--proposals", tmp_path / "proposals.parquet")
    more = ("--spec", tmp_path / "spec.json", "--documents", tmp_path / "sample.parquet", "-o", decisions)
    assert run(*args, *more) == 0
    out = capsys.readouterr().out
    assert "codes added by coders" in out and "correction_rate" in out
    assert run("review", "assemble", decisions, "-o", tmp_path / "train.parquet") == 0
    _check_assembled(pl.read_parquet(tmp_path / "train.parquet"), case, _coder_of_doc(paths))
    # a bad sheet: status 2, the row named, the decisions written before left as they were
    before = decisions.read_bytes()
    row = _damage(paths[0], "correction")
    assert run(*args, *more) == 2
    assert f"review-ana.csv row {row}: correction 'ecstatic'" in capsys.readouterr().err
    assert decisions.read_bytes() == before
