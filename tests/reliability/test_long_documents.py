"""Long documents. The policy: a document longer than ``max_length`` tokens (TrainConfig, special tokens included)
is truncated to its first ``max_length`` tokens, by the same function in training and in inference, and counted:
training warns and records ``n_truncated`` in the manifest; predictions carry a ``truncated`` column; classify's
summary and ledger count them. Nothing is split or dropped. Here the counts are checked against the tokenizer itself,
and 1 MB documents go through training, predict and classify.
"""

from __future__ import annotations

import json
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fineclass
from fineclass.infer import LEDGER, read_output

pytestmark = pytest.mark.reliability

MAX_LENGTH = 24
MEGABYTE = ("an endless review that praises the acting and the plot of this film " * 15000)[:1_000_000]


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert)


def n_tokens(tokenizer, text: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(tokenizer(text, truncation=False)["input_ids"])  # special tokens included, as in training


@pytest.fixture(scope="module")
def corpus(movie_reviews):
    """Short and long real reviews (about half are longer than MAX_LENGTH tokens), balanced labels."""
    rt = movie_reviews.filter(pl.col("source") == "rotten_tomatoes")
    imdb = movie_reviews.filter(pl.col("source") != "rotten_tomatoes")
    parts = [rt.filter(pl.col("label") == y).head(25) for y in (0, 1)] + [
        imdb.filter(pl.col("label") == y).head(15) for y in (0, 1)
    ]
    return pl.concat(parts).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))


@pytest.fixture(scope="module")
def trained(tiny_bert, corpus):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = fineclass.train(
            corpus, model=tiny_bert, config={"epochs": 1, "max_length": MAX_LENGTH, "validation": 0}, progress=False
        )
    return clf, [str(w.message) for w in caught]


def test_training_and_inference_count_the_same_truncated_documents(trained, corpus, tokenizer, tmp_path):
    clf, messages = trained
    expected = [n_tokens(tokenizer, t) > MAX_LENGTH for t in corpus["text"]]
    n = sum(expected)
    assert 0 < n < len(expected)
    assert clf.manifest_["n_truncated"] == n
    warned = [m for m in messages if "truncated" in m]
    assert len(warned) == 1 and re.match(rf"{n} of {len(expected)} training documents", warned[0]), messages
    assert f"max_length={MAX_LENGTH}" in warned[0]

    pred = clf.predict(corpus)
    assert pred.column("truncated").to_pylist() == expected
    loaded = fineclass.load(clf.save(tmp_path / "m"))  # the rule travels with the saved model
    assert loaded.manifest_["config"]["max_length"] == MAX_LENGTH
    assert loaded.predict(corpus).column("truncated").to_pylist() == expected
    summary = fineclass.classify(corpus, model=loaded, output=tmp_path / "out", shard_rows=13, progress=False)
    assert summary["truncated"] == n and summary["truncated_total"] == n
    ledger = [json.loads(x) for x in (tmp_path / "out" / LEDGER).read_text().splitlines() if x.strip()]
    assert sum(e["truncated"] for e in ledger) == n
    assert read_output(tmp_path / "out").column("truncated").to_pylist() == expected


def test_a_truncated_document_is_scored_on_its_first_max_length_tokens(trained, tokenizer):
    """Whatever follows the first MAX_LENGTH tokens cannot change the prediction."""
    clf, _ = trained
    head = " ".join(["good"] * (MAX_LENGTH + 5))
    tails = [" terrible awful bad" * 50, " wonderful" * 500, MEGABYTE]
    out = clf.predict({"text": [head] + [head + t for t in tails]})
    assert out.column("truncated").to_pylist() == [True] * 4
    p = np.column_stack([out.column(c).to_numpy() for c in out.column_names if c.startswith("p_")])
    np.testing.assert_allclose(p, np.repeat(p[:1], 4, axis=0), atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["good", "bad", "film", "the", "acting", "plot", "!", "é", "unbelievably"]),
        max_size=MAX_LENGTH + 6,
    )
)
def test_the_truncation_flag_matches_the_tokenizer_at_the_boundary(hypothesis_examples, trained, tokenizer, words):
    hypothesis_examples.add("truncation flag vs the tokenizer, near max_length")
    clf, _ = trained
    text = " ".join(words) or "x"
    out = clf.predict({"text": [text]})
    assert out.column("truncated").to_pylist() == [n_tokens(tokenizer, text) > MAX_LENGTH]


def test_megabyte_documents_train_predict_and_classify(tiny_bert, tokenizer):
    texts = [MEGABYTE, "a short good review", "a short bad review", "b" * 1_000_000, "another bad one", "fine"]
    labels = [1, 1, 0, 0, 0, 1]
    data = {"id": [f"doc{i}" for i in range(6)], "text": texts, "label": labels}
    clf = fineclass.train(
        data, model=tiny_bert, config={"epochs": 1, "max_length": MAX_LENGTH, "validation": 0}, progress=False
    )
    expected = [n_tokens(tokenizer, t) > MAX_LENGTH for t in texts]
    assert expected[0] and not expected[3]  # one long word is a single [UNK]: long in bytes, short in tokens
    assert clf.manifest_["n_truncated"] == sum(expected)
    pred = clf.predict(data)
    assert pred.column("id").to_pylist() == data["id"] and pred.column("truncated").to_pylist() == expected
    assert pred.column("status").to_pylist() == ["ok"] * 6
    with tempfile.TemporaryDirectory() as d:
        summary = fineclass.classify(data, model=clf, output=Path(d), id="id", shard_rows=2, progress=False)
        assert summary["rows_total"] == 6 and summary["truncated_total"] == sum(expected)
        assert read_output(d).column("id").to_pylist() == data["id"]
