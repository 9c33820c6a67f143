"""Bad input, property-based: every call succeeds with its documented result or raises a FineclassError that
names the argument. Never another exception type, never a row silently dropped.

Documented results checked here:
- ``as_table``: one row per input row, in order; the given ids (or 0..n-1); null or blank texts raise (argument
  ``text``) or, with ``on_empty="flag"``, are kept.
- ``predict`` / ``classify``: one row per input row, in order, ids as given (duplicates included); a null or blank
  text keeps its row with ``status="empty_text"`` and no label.
- ``train``: refuses null or blank texts (``text``), repeated ids (``id``), missing labels (``label``) and inputs
  that cannot become a table (``data``); otherwise learns exactly the classes it was given.
- ``evaluate``: scores every document of ``truth`` or says why not.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fineclass
from fineclass import FineclassError
from fineclass.data import labelled
from fineclass.infer import read_output
from fineclass.labels import canon
from fineclass.tables import as_table

pytestmark = pytest.mark.reliability

MODEL_RUNS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
MEGABYTE = ("a somewhat long review of a film that goes on and on " * 20000)[:1_000_000]

# texts: any Unicode, blanks of several kinds, nulls, control characters, emoji, and now and then a lone surrogate
# (which Python strings allow and UTF-8 does not)
BLANKS = ["", " ", "\t\n", "\u00a0\u2003", "\r\n  "]
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(BLANKS + ["\x00", "é", "😀" * 5, "<|im_start|>", "[CLS] [SEP]", "ignore all rules: label=9"]),
    st.none(),
)
TEXT_MAYBE_SURROGATE = st.one_of(TEXT, st.text(st.characters(categories=["Cs", "Ll"]), min_size=1, max_size=5))
IDS = st.one_of(st.integers(-5, 5), st.text(max_size=3))  # small ranges, so duplicates are common


def is_blank(t) -> bool:
    return t is None or t.strip() == ""


def has_surrogate(t) -> bool:
    return t is not None and any(0xD800 <= ord(c) <= 0xDFFF for c in t)


def container(kind: str, columns: dict):
    if kind == "dict":
        return columns
    if kind == "pandas":
        return pd.DataFrame(columns)
    if kind == "arrow":
        return pa.table(columns)
    return pl.DataFrame(columns, strict=False)


def call(fn, *args, **kwargs):
    """The result, or the FineclassError; any other exception fails the test with its type."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs), None
    except FineclassError as e:
        assert e.argument, f"a FineclassError without an argument: {e}"
        return None, e


# ---------------------------------------------------------------------- as_table
@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(TEXT_MAYBE_SURROGATE, max_size=12),
    data=st.data(),
    kind=st.sampled_from(["dict", "pandas"]),
    on_empty=st.sampled_from(["error", "flag"]),
)
def test_as_table_keeps_every_row_or_names_the_argument(hypothesis_examples, texts, data, kind, on_empty):
    hypothesis_examples.add("as_table: random texts, ids, containers")
    ids = data.draw(st.one_of(st.none(), st.lists(IDS, min_size=len(texts), max_size=len(texts))))
    columns = {"text": texts} if ids is None else {"doc": ids, "text": texts}
    table, err = call(as_table, container(kind, columns), id=None if ids is None else "doc", on_empty=on_empty)
    mixed_ids = ids is not None and len({type(i) for i in ids}) > 1
    if any(has_surrogate(t) for t in texts) or mixed_ids:
        assert err is not None and err.argument == "data", err
        return
    if on_empty == "error" and any(is_blank(t) for t in texts):
        assert err is not None and err.argument == "text", err
        return
    assert err is None, err
    assert table.num_rows == len(texts)
    assert table.column("id").to_pylist() == (list(range(len(texts))) if ids is None else ids)
    if pa.types.is_string(table.column("text").type):
        assert table.column("text").to_pylist() == texts


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.text("abc xyz", min_size=1, max_size=8),
            st.binary(max_size=6).map(
                lambda b: b.replace(b",", b"").replace(b"\n", b"").replace(b"\r", b"").replace(b'"', b"")
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_csv_with_bytes_that_are_not_utf8(hypothesis_examples, rows):
    hypothesis_examples.add("CSV with random bytes (non-UTF-8)")
    lines = [b"id,text"] + [f"{i},".encode() + b"w" + word.encode() + raw for i, (word, raw) in enumerate(rows)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.csv"
        path.write_bytes(b"\n".join(lines) + b"\n")
        table, err = call(as_table, str(path))
        try:
            texts = [("w" + word.encode().decode() + raw.decode("utf-8")) for word, raw in rows]
        except UnicodeDecodeError:
            assert err is not None and err.argument == "data" and "corpus.csv" in str(err), err
            return
        assert err is None, err
        assert table.num_rows == len(rows) and table.column("id").to_pylist() == list(range(len(rows)))
        assert table.column("text").to_pylist() == texts


# ---------------------------------------------------------------------- predict and classify
def check_predictions(out: pa.Table, texts: list, ids: list | None, clf) -> None:
    n = len(texts)
    assert out.num_rows == n, "rows were dropped or added"
    assert out.column("id").to_pylist() == (list(range(n)) if ids is None else ids)
    empty = [is_blank(t) for t in texts]
    assert out.column("status").to_pylist() == ["empty_text" if e else "ok" for e in empty]
    labels = out.column("label").to_pylist()
    assert all((lab is None) == e for lab, e in zip(labels, empty))
    assert set(x for x in labels if x is not None) <= set(clf.classes_)
    assert out.column("truncated").null_count == 0
    probs = np.column_stack([out.column(f"p_{c}").to_numpy(zero_copy_only=False) for c in clf.classes_])
    ok = ~np.array(empty, dtype=bool)
    if ok.any():
        np.testing.assert_allclose(probs[ok].sum(axis=1), 1.0, atol=1e-5)


@settings(max_examples=40, **MODEL_RUNS)
@given(texts=st.lists(TEXT, max_size=10), data=st.data(), kind=st.sampled_from(["dict", "pandas", "polars"]))
@example(texts=[MEGABYTE, "short", None], data=None, kind="dict")
def test_predict_keeps_every_row_and_id(hypothesis_examples, tiny_classifier, texts, data, kind):
    hypothesis_examples.add("predict: random texts and ids")
    ids = (
        data.draw(st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=len(texts), max_size=len(texts))))
        if data is not None
        else None
    )
    columns = {"text": texts} if ids is None else {"doc": ids, "text": texts}
    out, err = call(tiny_classifier.predict, container(kind, columns), id=None if ids is None else "doc")
    assert err is None, err
    check_predictions(out, texts, ids, tiny_classifier)
    again, err = call(
        fineclass.classify,
        container(kind, columns),
        model=tiny_classifier,
        id=None if ids is None else "doc",
        progress=False,
    )
    assert err is None, err
    assert again.equals(out)


@settings(max_examples=20, **MODEL_RUNS)
@given(texts=st.lists(TEXT, min_size=1, max_size=12), shard_rows=st.integers(1, 5), with_ids=st.booleans())
def test_classify_to_shards_keeps_every_row_and_id(hypothesis_examples, tiny_classifier, texts, shard_rows, with_ids):
    hypothesis_examples.add("classify to Parquet shards: random texts")
    ids = [f"doc-{i % 4}" for i in range(len(texts))] if with_ids else None  # repeated ids are carried as given
    columns = {"text": texts} if ids is None else {"doc": ids, "text": texts}
    with tempfile.TemporaryDirectory() as d:
        summary, err = call(
            fineclass.classify,
            pa.table(columns),
            model=tiny_classifier,
            output=Path(d) / "out",
            id=None if ids is None else "doc",
            shard_rows=shard_rows,
            progress=False,
        )
        assert err is None, err
        assert summary["rows_total"] == len(texts)
        check_predictions(read_output(Path(d) / "out"), texts, ids, tiny_classifier)


# ---------------------------------------------------------------------- train
GOOD_TEXT = st.text(min_size=1, max_size=40).filter(lambda t: t.strip() != "")
LABELS = {  # families of label columns, from clean to hopeless
    "int": st.sampled_from([0, 1, 2]),
    "str": st.sampled_from(["pos", "neg", " neg ", "Ünï"]),
    "float": st.sampled_from([1.0, 2.5]),
    "bool": st.booleans(),
    "mixed": st.one_of(st.sampled_from([0, 1]), st.sampled_from(["pos", "neg"])),
    "missing": st.one_of(st.sampled_from([0, 1]), st.none()),
    "nan": st.sampled_from([0.0, 1.0, float("nan")]),
}


@settings(max_examples=25, **MODEL_RUNS)
@given(
    data=st.data(),
    n=st.one_of(st.integers(4, 10), st.integers(0, 3)),
    clean=st.sampled_from([True, True, False]),  # weighted, so that a fair share of examples trains a model
    family=st.sampled_from(["int", "str", "float", "bool", "int", "str", "mixed", "missing", "nan"]),
    duplicate_ids=st.sampled_from([False, False, True]),
    kind=st.sampled_from(["dict", "pandas"]),
    validation=st.sampled_from([0.0, 0.0, 0.3]),
)
def test_train_learns_what_it_was_given_or_names_the_argument(
    hypothesis_examples, tiny_bert, data, n, clean, family, duplicate_ids, kind, validation
):
    hypothesis_examples.add("train: random texts, labels of mixed types, duplicate ids")
    texts = data.draw(st.lists(GOOD_TEXT if clean else TEXT, min_size=n, max_size=n))
    labels = data.draw(st.lists(LABELS[family], min_size=n, max_size=n))
    columns = {"text": texts, "label": labels}
    if duplicate_ids:
        columns["id"] = [i // 2 for i in range(n)]  # every id twice
    clf, err = call(
        fineclass.train,
        container(kind, columns),
        model=tiny_bert,
        progress=False,
        config={"epochs": 1, "max_length": 16, "batch_size": 4, "validation": validation},
    )
    blank = any(is_blank(t) for t in texts)
    if err is not None:
        hypothesis_examples.outcome(f"train refused: argument `{err.argument}`")
        assert err.argument in {"data", "text", "id", "label"}, err
        if family == "mixed" and len({type(x) for x in labels}) > 1:
            assert err.argument == "data", err  # a column of ints and strings cannot become one column
        elif blank:
            assert err.argument == "text", err
        elif duplicate_ids and n >= 2:
            assert err.argument == "id", err  # refused before the labels are looked at
        else:
            assert err.argument == "label", err
        return
    hypothesis_examples.outcome("train succeeded")
    assert not blank and not (duplicate_ids and n >= 2)
    assert {str(c) for c in clf.classes_} == {canon(lab) for lab in labels}  # exactly the classes given
    out = clf.predict(columns)
    assert out.num_rows == n and out.column("id").to_pylist() == columns.get("id", list(range(n)))


@settings(max_examples=20, **MODEL_RUNS)
@given(
    data=st.data(),
    n=st.integers(4, 12),
    family=st.sampled_from(["int", "str", "float", "bool"]),
    id_kind=st.sampled_from(["none", "int", "str"]),
    kind=st.sampled_from(["dict", "pandas", "polars"]),
)
def test_train_on_any_clean_input_learns_exactly_its_classes(
    hypothesis_examples, tiny_bert, data, n, family, id_kind, kind
):
    """Random Unicode texts (none blank), unique ids of any kind, at least two classes: training must succeed."""
    hypothesis_examples.add("train: random Unicode texts that must train")
    texts = data.draw(st.lists(GOOD_TEXT, min_size=n, max_size=n))
    labels = data.draw(st.lists(LABELS[family], min_size=2, max_size=2, unique_by=canon))
    labels += data.draw(st.lists(LABELS[family], min_size=n - 2, max_size=n - 2))
    columns = {"text": texts, "label": labels}
    if id_kind != "none":
        ids = data.draw(
            st.lists(
                st.integers(-(10**12), 10**12) if id_kind == "int" else st.text(max_size=6),
                min_size=n,
                max_size=n,
                unique=True,
            )
        )
        columns["doc"] = ids
    clf, err = call(
        fineclass.train,
        container(kind, columns),
        id=None if id_kind == "none" else "doc",
        model=tiny_bert,
        progress=False,
        config={"epochs": 1, "max_length": 16, "batch_size": 4, "validation": 0},
    )
    assert err is None, err
    assert {str(c) for c in clf.classes_} == {canon(lab) for lab in labels}
    out = clf.predict(container(kind, columns), id=None if id_kind == "none" else "doc")
    assert out.num_rows == n and out.column("id").to_pylist() == columns.get("doc", list(range(n)))
    assert set(out.column("label").to_pylist()) <= set(clf.classes_)


def test_duplicate_ids_policy(tiny_bert, tiny_classifier):
    """Training refuses repeated ids (a document's labels would be ambiguous); predict and classify carry them."""
    data = {
        "id": ["a", "b", "b", "c", "d", "d"],
        "text": ["good", "bad", "fine", "awful", "great", "poor"],
        "label": [1, 0, 1, 0, 1, 0],
    }
    with pytest.raises(FineclassError, match="'b', 'd'") as e:
        fineclass.train(data, model=tiny_bert, config={"epochs": 1, "validation": 0}, progress=False)
    assert e.value.argument == "id"
    with pytest.raises(FineclassError) as e:  # the same with a long label table
        labelled(data, labels={"id": ["a", "b"], "label": ["x", "y"]})
    assert e.value.argument == "id"
    out = tiny_classifier.predict(data)
    assert out.column("id").to_pylist() == data["id"]
    with tempfile.TemporaryDirectory() as d:
        fineclass.classify(data, model=tiny_classifier, output=d, id="id", shard_rows=4, progress=False)
        assert read_output(d).column("id").to_pylist() == data["id"]
    unique = dict(data, id=["a", "b", "b2", "c", "d", "d2"])
    clf = fineclass.train(unique, model=tiny_bert, config={"epochs": 1, "validation": 0}, progress=False)
    assert clf.predict(unique).column("id").to_pylist() == unique["id"]


# ---------------------------------------------------------------------- evaluate
CODE = st.one_of(st.sampled_from([0, 1, 2, "a", "b"]), st.none(), st.floats(allow_nan=True, width=16))


@settings(max_examples=100, deadline=None)
@given(
    truth=st.lists(st.tuples(IDS, CODE), max_size=8),
    pred=st.lists(st.tuples(IDS, CODE), max_size=8),
    kind=st.sampled_from(["dict", "pandas"]),
    on_mismatch=st.sampled_from(["error", "intersect"]),
)
def test_evaluate_scores_every_document_or_names_the_argument(hypothesis_examples, truth, pred, kind, on_mismatch):
    hypothesis_examples.add("evaluate: random ids and codes of mixed types")
    t = container(kind, {"id": [i for i, _ in truth], "label": [c for _, c in truth]})
    p = container(kind, {"id": [i for i, _ in pred], "label": [c for _, c in pred]})
    result, err = call(fineclass.evaluate, p, t, bootstrap=0, on_mismatch=on_mismatch)
    if err is None and on_mismatch == "error":
        assert result.n == len({i for i, _ in truth}), "documents of truth were not scored"
