"""Issue 21's data and run items: what goes in is read as meant, or refused before anything is written.

Each test is a reproduction from the issue, made small; each failed before its fix.
"""

from __future__ import annotations

import warnings

import pyarrow as pa
import pyarrow.csv as pcsv
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
