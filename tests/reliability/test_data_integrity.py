"""Issue 21's data and run items: what goes in is read as meant, or refused before anything is written.

Each test is a reproduction from the issue, made small; each failed before its fix.
"""

from __future__ import annotations

import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass import FineclassError
from fineclass.data import labelled

pytestmark = pytest.mark.reliability


def _csv(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------- 1. blank labels are missing labels
def test_blank_labels_are_refused_with_their_ids_in_training(tmp_path):
    path = _csv(tmp_path / "x.csv", "id,text,label\n1,good film,pos\n2,bad film,neg\n3,a film,\n4,another,   \n")
    with pytest.raises(FineclassError, match=r"2 documents have no label \(a missing or blank value\).*ids: 3, 4") as e:
        labelled(path)
    assert e.value.argument == "label"
    # nulls and blanks are the same thing: the same message for the same rows given as nulls
    with pytest.raises(FineclassError, match=r"2 documents have no label \(a missing or blank value\).*ids: 3, 4"):
        labelled({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"], "label": ["pos", "neg", None, None]})


def test_blank_entries_in_label_lists_and_long_label_tables_are_refused(tmp_path):
    docs = {"id": [1, 2, 3], "text": ["a", "b", "c"]}
    with pytest.raises(FineclassError, match=r"ids: 2") as e:
        labelled({**docs, "label": [["x"], ["y", " "], []]})
    assert e.value.argument == "label"
    long = _csv(tmp_path / "labels.csv", "id,label\n1,x\n2,\n3,y\n")
    with pytest.raises(FineclassError, match=r"missing or blank label \(ids: 2\)") as e:
        labelled(docs, labels=long)
    assert e.value.argument == "labels"


def test_blank_truth_labels_are_refused_in_evaluate(tmp_path):
    truth = _csv(tmp_path / "truth.csv", "id,label\n1,pos\n2,neg\n3,\n4,pos\n")
    preds = pa.table({"id": [1, 2, 3, 4], "label": ["pos", "neg", "neg", "pos"]})
    with pytest.raises(FineclassError, match=r"1 documents in `truth` have no label \(ids: 3\)") as e:
        fineclass.evaluate(preds, truth)
    assert e.value.argument == "truth"


# ---------------------------------------------------------------------- 13. conflicting duplicate ids in the truth
def test_repeated_truth_ids_warn_before_multi_label_metrics(tmp_path):
    from fineclass.evaluation import EvaluationWarning

    truth = _csv(tmp_path / "truth.csv", "id,label\n1,pos\n1,neg\n2,neg\n3,pos\n")
    preds = pa.table({"id": [1, 2, 3], "label": ["pos", "neg", "pos"]})
    with pytest.warns(EvaluationWarning, match=r"1 id on more than one row \(ids: '?1'?\).*kind='single'"):
        fineclass.evaluate(preds, truth)
    with pytest.raises(FineclassError, match=r"two different labels for document 1") as e:
        fineclass.evaluate(preds, truth, kind="single")
    assert e.value.argument == "truth"
    with warnings.catch_warnings():  # the user said what the rows mean: no warning
        warnings.simplefilter("error", EvaluationWarning)
        fineclass.evaluate(preds, truth, kind="multi")


# ---------------------------------------------------------------------- 5. Parquet folders that disagree on the id
def _classify(data, model, out, **kw):
    return fineclass.classify(data, model=model, output=out, shard_rows=4, progress=False, **kw)


def _no_shard_written(out) -> bool:
    return not out.exists() or not [p for p in out.iterdir() if p.name.startswith(("part-", ".part-"))]


def test_parquet_files_with_different_id_types_are_refused_before_the_first_shard(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["good", "bad", "fine"]}), folder / "a.parquet")
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["dull", "great"]}), folder / "b.parquet")
    out = tmp_path / "out"
    with pytest.raises(
        FineclassError, match=r"id column `id` is int64 in .*a.parquet.* but string in .*b.parquet"
    ) as e:
        _classify(folder, tiny_classifier, out)
    assert e.value.argument == "id"
    assert _no_shard_written(out)


def test_a_parquet_file_without_the_id_column_is_refused_not_given_row_numbers(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(pa.table({"id": [101, 102, 103], "text": ["good", "bad", "fine"]}), folder / "a.parquet")
    pq.write_table(pa.table({"text": ["dull", "great"]}), folder / "b.parquet")
    out = tmp_path / "out"
    with pytest.raises(FineclassError, match=r"1 files have an id column `id` but 1 do not.*b.parquet") as e:
        _classify(folder, tiny_classifier, out)
    assert e.value.argument == "id"
    assert _no_shard_written(out)


def test_csv_files_with_different_id_types_are_refused_before_the_first_shard(tiny_classifier, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _csv(folder / "a.csv", "id,text\n1,good\n2,bad\n3,fine\n4,ok\n5,meh\n")
    _csv(folder / "b.csv", "id,text\nx,dull\ny,great\n")
    out = tmp_path / "out"
    with pytest.raises(FineclassError, match=r"id column `id` is int64 in .*a.csv.* but string in .*b.csv"):
        _classify(folder, tiny_classifier, out)
    assert _no_shard_written(out)


# ---------------------------------------------------------------------- 11. encodings and delimiters
def test_a_latin1_csv_is_reported_as_not_utf8_with_the_fix(tiny_classifier, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,text\n1,un film très réussi\n2,mauvais\n".encode("latin-1"))
    for call in (
        lambda: _classify(str(path), tiny_classifier, tmp_path / "out"),
        lambda: fineclass.as_table(str(path)),
    ):
        with pytest.raises(FineclassError, match=r"is not UTF-8.*Save it as UTF-8") as e:
            call()
        assert e.value.argument == "data"


def test_a_tsv_file_is_read_as_tab_separated(tiny_classifier, tmp_path):
    path = _csv(tmp_path / "docs.tsv", "id\ttext\n7\ta good, solid film\n8\tbad, bad, bad\n")
    table = fineclass.as_table(path)
    assert table.column("id").to_pylist() == [7, 8]
    assert table.column("text").to_pylist() == ["a good, solid film", "bad, bad, bad"]
    _classify(path, tiny_classifier, tmp_path / "out")
    assert fineclass.read_output(tmp_path / "out").column("id").to_pylist() == [7, 8]


# ---------------------------------------------------------------------- 4. the run's identity: input content, weights
def test_resume_refuses_a_csv_input_edited_in_place_at_the_same_size(tiny_classifier, tmp_path):
    path = tmp_path / "docs.csv"
    note = "x" * 10_000  # a column not read, so that the edit lies before the file's last 64 KB
    rows = [f"{i},a {'good' if i % 2 else 'poor'} film number {i:02d},{note}" for i in range(12)]
    path.write_text("id,text,note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    _classify(str(path), tiny_classifier, out)
    before = path.stat().st_size
    path.write_text(path.read_text(encoding="utf-8").replace("good film number 01", "gold film number 01"))
    assert path.stat().st_size == before
    with pytest.raises(FineclassError, match=r"a different input: shard 0 differs.*new output folder") as e:
        _classify(str(path), tiny_classifier, out)
    assert e.value.argument == "output"


def _other_weights(clf, folder):
    """The same classifier (same training record) with one tensor changed, saved to ``folder``."""
    import torch

    other = fineclass.load(clf.save(folder / "a"))
    with torch.no_grad():
        p = next(t for name, t in other.module_.named_parameters() if name.endswith("bias"))
        p.add_(0.5)
    assert other.manifest_ == fineclass.load(folder / "a").manifest_
    return other.save(folder / "b"), other


def test_resume_refuses_a_different_model_with_the_same_training_record(tiny_classifier, tmp_path):
    a = tiny_classifier.save(tmp_path / "models" / "saved")
    b, b_in_memory = _other_weights(tiny_classifier, tmp_path / "models")
    data = pa.table({"id": list(range(12)), "text": [f"a film, take {i}" for i in range(12)]})
    for first, second in ((a, b), (tiny_classifier, b_in_memory)):
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        _classify(data, first, out, shard="0/2")  # half the shards, then "resume" with the other model
        with pytest.raises(FineclassError, match=r"another run \(a different model.*other weights") as e:
            _classify(data, second, out)
        assert e.value.argument == "output"
        _classify(data, first, out)  # the model that started the run finishes it
        assert fineclass.read_output(out).column("id").to_pylist() == list(range(12))
