"""Generated input folders, property-based: classify either writes each input id exactly once, or refuses with a
FineclassError before writing a shard.

A folder holds one to three files: Parquet, CSV or TSV; with integer ids, text ids or none; texts that may be
blank, missing, or hold commas, quotes, newlines and accents; CSV files in UTF-8 or Latin-1; files without rows.
The tiny BERT of tests/conftest.py classifies; the examples are few and small, so the test runs in seconds.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fineclass
from fineclass import FineclassError

pytestmark = pytest.mark.reliability

TEXT = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\t", "a good film", "bad, very bad", 'he said "no"', "two\nlines", "très bien", "12"]),
    st.text(st.characters(codec="latin-1", exclude_categories=["Cc", "Cs"]), max_size=12),
)
FORMATS = ["parquet", "csv", "tsv"]
ID_KINDS = ["int", "str", "none"]


@st.composite
def folders(draw) -> list[dict]:
    """One to three files; most folders agree on format and id kind, some mix them (and must be refused)."""
    n = draw(st.integers(1, 3))
    fmt = draw(st.sampled_from(FORMATS + ["mixed"]))
    ids = draw(st.sampled_from(ID_KINDS + ["mixed"]))
    return [
        {
            "format": draw(st.sampled_from(FORMATS)) if fmt == "mixed" else fmt,
            "ids": draw(st.sampled_from(ID_KINDS)) if ids == "mixed" else ids,
            "encoding": draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1"])),
            "texts": draw(st.lists(TEXT, max_size=6)),
        }
        for _ in range(n)
    ]


def _write(folder: Path, n: int, spec: dict, first_id: int) -> list:
    """One generated file; returns the ids it holds (None where it has no id column)."""
    rows = len(spec["texts"])
    ids = None
    if spec["ids"] == "int":
        ids = list(range(first_id, first_id + rows))
    elif spec["ids"] == "str":
        ids = [f"doc-{i}" for i in range(first_id, first_id + rows)]
    columns = {"text": pa.array(spec["texts"], pa.string())}
    if ids is not None:
        columns = {"id": pa.array(ids, pa.int64() if spec["ids"] == "int" else pa.string()), **columns}
    path = folder / f"part{n}.{spec['format']}"
    if spec["format"] == "parquet":
        pq.write_table(pa.table(columns), path)
    else:
        with open(path, "w", newline="", encoding=spec["encoding"], errors="replace") as f:
            w = csv.writer(f, delimiter="\t" if spec["format"] == "tsv" else ",")
            w.writerow(list(columns))
            for r in range(rows):
                w.writerow(["" if columns[c][r].as_py() is None else columns[c][r].as_py() for c in columns])
    return ids if ids is not None else [None] * rows


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(files=folders(), shard_rows=st.integers(1, 4))
def test_classify_writes_each_id_once_or_refuses_before_a_shard(
    hypothesis_examples, tiny_classifier, files, shard_rows
):
    hypothesis_examples.add("classify a generated input folder")
    with tempfile.TemporaryDirectory() as d:
        folder, out = Path(d) / "in", Path(d) / "out"
        folder.mkdir()
        ids: list = []
        for n, spec in enumerate(files):
            ids += _write(folder, n, spec, first_id=len(ids))
        try:
            summary = fineclass.classify(
                str(folder), model=tiny_classifier, output=out, shard_rows=shard_rows, progress=False
            )
        except FineclassError as e:
            hypothesis_examples.outcome(f"refused ({e.argument})")
            written = sorted(p.name for p in out.glob("*part-*")) if out.exists() else []
            assert not written, f"refused ({e}) after writing {written}"
            return
        hypothesis_examples.outcome("classified")
        assert summary["complete"]
        got = fineclass.read_output(out).column("id").to_pylist()
        expected = ids if all(i is not None for i in ids) else list(range(len(ids)))
        assert got == expected, "each input id exactly once, in input order"
