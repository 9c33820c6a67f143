"""Data in: every accepted input type, ids created and carried, label shapes, and bad input."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fineclass import FineclassError, LabelSpec
from fineclass.data import labelled
from fineclass.tables import as_table, read_table

ROWS = {"doc": ["a b", "c d", "e f"], "body": ["first text", "second text", "third text"], "y": [1, 2, 1]}


def _inputs(tmp_path):
    t = pa.table(ROWS)
    pq.write_table(t, tmp_path / "one.parquet")
    (tmp_path / "parts").mkdir()
    pq.write_table(t.slice(0, 2), tmp_path / "parts" / "a.parquet")
    pq.write_table(t.slice(2), tmp_path / "parts" / "b.parquet")
    pd.DataFrame(ROWS).to_csv(tmp_path / "one.csv", index=False)
    return {
        "arrow": t,
        "reader": pa.RecordBatchReader.from_batches(t.schema, t.to_batches()),
        "polars": pl.DataFrame(ROWS),
        "lazy": pl.DataFrame(ROWS).lazy(),
        "pandas": pd.DataFrame(ROWS),
        "dict": dict(ROWS),
        "parquet": str(tmp_path / "one.parquet"),
        "csv": str(tmp_path / "one.csv"),
        "glob": str(tmp_path / "parts" / "*.parquet"),
        "folder": str(tmp_path / "parts"),
    }


@pytest.mark.parametrize(
    "kind", ["arrow", "reader", "polars", "lazy", "pandas", "dict", "parquet", "csv", "glob", "folder"]
)
def test_as_table_accepts_every_input(tmp_path, kind):
    t = as_table(_inputs(tmp_path)[kind], text="body", id="doc")
    assert t.column("id").to_pylist() == ROWS["doc"]
    assert t.column("text").to_pylist() == ROWS["body"]
    assert t.column("y").to_pylist() == ROWS["y"]


def test_id_is_created_when_absent():
    t = as_table({"text": ["x", "y", "z"]})
    assert t.column("id").to_pylist() == [0, 1, 2]


def test_missing_text_column_names_argument_and_columns():
    with pytest.raises(FineclassError) as e:
        as_table(ROWS, text="txt")
    assert e.value.argument == "text"
    assert "columns are: doc, body, y" in str(e.value) and "Pass `text=`" in str(e.value)


def test_numeric_text_column_is_refused():
    with pytest.raises(FineclassError, match="not text") as e:
        as_table(ROWS, text="y")
    assert e.value.argument == "text"


def test_null_and_blank_texts_are_reported_with_their_ids():
    data = {"id": ["a", "b", "c", "d"], "text": ["fine", None, "   ", "ok"], "label": [0, 1, 0, 1]}
    with pytest.raises(FineclassError) as e:
        as_table(data)
    msg = str(e.value)
    assert "2 documents" in msg and "'b'" in msg and "'c'" in msg and e.value.argument == "text"
    flagged = as_table(data, on_empty="flag")
    assert flagged.num_rows == 4  # kept, never dropped


def test_path_that_does_not_exist():
    with pytest.raises(FineclassError, match="does not exist") as e:
        read_table("/no/such/file.parquet")
    assert e.value.argument == "data"


def test_corrupt_parquet_is_named(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(FineclassError, match="bad.parquet"):
        read_table(str(bad))


def test_duplicate_ids_and_null_ids_are_refused():
    with pytest.raises(FineclassError, match="missing values") as e:
        as_table({"id": ["a", None], "text": ["x", "y"]})
    assert e.value.argument == "id"


# ---------------------------------------------------------------------- label shapes
def test_single_label_with_integer_codes_and_codebook():
    codebook = {1: "Macroeconomics", 2: "Civil rights", 3: {"name": "Health", "description": "health care"}}
    ds = labelled({"text": ["a", "b", "c", "d"], "label": [1, 2, 1, 3]}, codebook=codebook)
    assert ds.spec.kind == "single" and ds.spec.classes == ["1", "2", "3"] and ds.spec.value_type == "int"
    assert ds.spec.names["1"] == "Macroeconomics" and ds.spec.descriptions["3"] == "health care"
    assert ds.targets.tolist() == [0, 1, 0, 2]
    assert LabelSpec.from_dict(ds.spec.to_dict()) == ds.spec
    assert ds.spec.decode_value("3") == 3


def test_codebook_codes_sort_numerically():
    ds = labelled({"text": list("abcd"), "label": [10, 2, 1, 10]})
    assert ds.spec.classes == ["1", "2", "10"]


def test_multi_label_from_list_column_and_from_long_table():
    docs = {"id": [1, 2, 3], "text": ["x", "y", "z"], "subjects": [["Law", "Social Sciences"], ["Physics"], []]}
    a = labelled(docs, label="subjects")
    assert a.spec.kind == "multi" and a.spec.classes == ["Law", "Physics", "Social Sciences"]
    assert a.targets.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    long = {"id": [1, 1, 2], "subject": ["Law", "Social Sciences", "Physics"]}
    b = labelled({"id": [1, 2, 3], "text": ["x", "y", "z"]}, labels=long, label="subject")
    assert b.targets.tolist() == a.targets.tolist()


def test_dimension_level_from_the_flourishing_long_table(flourishing):
    labels = pq.read_table(flourishing / "labels.parquet")
    tweets = pq.read_table(flourishing / "tweets.parquet")
    ids = pq.read_table(flourishing / "labeled_ids.parquet")
    ids = ids.filter(pa.compute.equal(pa.compute.field("split"), "train"))
    docs = tweets.join(ids, "id", join_type="inner")
    ds = labelled(docs, labels=labels, label=("dimension", "level"))
    assert ds.spec.kind == "dimlevel" and len(ds.spec.classes) == 46 and ds.spec.levels == ["low", "medium", "high"]
    assert len(ds) == 1600
    train_rows = labels.filter(pa.compute.equal(labels.column("split"), "train")).num_rows
    assert int((ds.targets > 0).sum()) == train_rows  # every (tweet, dimension, level) row is encoded once


def test_two_levels_for_one_dimension_is_an_error():
    long = {"id": [1, 1], "dimension": ["happiness", "happiness"], "level": ["low", "high"]}
    with pytest.raises(FineclassError, match="two levels") as e:
        labelled({"id": [1], "text": ["x"]}, labels=long, label=("dimension", "level"))
    assert e.value.argument == "labels"


def test_unknown_levels_need_an_explicit_level_list():
    long = {"id": [1], "dimension": ["happiness"], "level": ["vitality"]}
    with pytest.raises(FineclassError, match="levels") as e:
        labelled({"id": [1], "text": ["x"]}, labels=long, label=("dimension", "level"))
    assert e.value.argument == "levels"


def test_one_class_label_is_refused():
    with pytest.raises(FineclassError, match="single class") as e:
        labelled({"text": ["a", "b"], "label": ["x", "x"]})
    assert e.value.argument == "label"


def test_missing_and_mixed_labels_are_refused():
    with pytest.raises(FineclassError, match="no label") as e:
        labelled({"id": [7, 8, 9], "text": ["a", "b", "c"], "label": ["x", None, "y"]})
    assert "8" in str(e.value)
    with pytest.raises(FineclassError, match="mixes types") as e:
        labelled(pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", 2, "z"]}))
    assert e.value.argument == "data"


def test_missing_label_column():
    with pytest.raises(FineclassError) as e:
        labelled({"text": ["a", "b"], "y": [0, 1]})
    assert e.value.argument == "label" and "Pass `label=`" in str(e.value)


def test_codebook_naming_unknown_classes_is_refused():
    with pytest.raises(FineclassError) as e:
        LabelSpec(kind="single", classes=["1", "2"], names={"3": "Health"})
    assert e.value.argument == "codebook"
