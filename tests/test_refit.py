"""Refit (``extra["refit"]``): after the epoch loop chooses its epoch on the validation split, the trainable parts
are trained again from their start on every document up to that epoch; what was chosen on held-out documents (the
epoch, the ensemble's weight, the decision rule) is kept. A refit that dies resumes from its own checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch

import fineclass
from fineclass import FineclassError

# the head on the tiny BERT: 240 reviews, a quarter held out, three epochs of which the validation loss picks one
pytestmark = pytest.mark.filterwarnings("ignore:.*were truncated")

CFG = {
    "epochs": 3,
    "max_length": 32,
    "batch_size": 16,
    "validation": 0.25,
    "early_stopping": None,
    "learning_rate": 3e-3,
}


def _train(data, model, config, **kw):
    return fineclass.train(data, model=model, config=config, progress=False, **kw)


def _probs(clf, data) -> np.ndarray:
    pred = clf.predict(data)
    return np.column_stack([pred.column(c).to_numpy() for c in pred.column_names if c.startswith("p_")])


def test_refit_trains_again_on_every_document_up_to_the_chosen_epoch(tiny_bert, reviews_small, capsys):
    plain = _train(reviews_small, tiny_bert, CFG)
    refit = fineclass.train(reviews_small, model=tiny_bert, config={**CFG, "extra": {"refit": True}}, progress=True)
    assert "then again on all 240 up to it" in capsys.readouterr().err
    m, record = refit.manifest_, refit.manifest_["refit"]
    assert plain.manifest_["refit"] is None and m["n_validation"] == 60
    # the epoch loop is the same run: the same history and the same chosen epoch
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in m["history"]] == [
        {k: v for k, v in h.items() if k != "seconds"} for h in plain.manifest_["history"]
    ]
    assert record["done"] and record["documents"] == 240
    assert record["chosen_epoch"] == m["best_epoch"] == plain.manifest_["best_epoch"]
    assert record["epochs"] == m["best_epoch"] == len(record["history"])
    # then it trained on all 240 reviews: another model than the one chosen, scoring the held-out quarter better
    held = reviews_small.filter(pl.col("id").is_in(refit.validation_["id"].to_pylist()))
    assert np.abs(_probs(plain, reviews_small) - _probs(refit, reviews_small)).max() > 1e-3
    truth = held["label"].to_numpy()
    p_plain, p_refit = _probs(plain, held), _probs(refit, held)
    nll = [-np.mean(np.log(p[np.arange(len(truth)), truth])) for p in (p_plain, p_refit)]
    assert nll[1] < nll[0]  # it has now seen them
    # the refit started from the start, not from the chosen epoch: with the last epoch chosen, it is the model a
    # run without a validation split trains
    assert m["best_epoch"] == CFG["epochs"]
    scratch = _train(reviews_small, tiny_bert, {**CFG, "validation": 0})
    np.testing.assert_allclose(_probs(refit, reviews_small), _probs(scratch, reviews_small), atol=1e-6)


def test_refit_keeps_what_was_chosen_on_held_out_tweets(flourishing):
    """The ensemble on 64 coded tweets: the weight and the decision rule are those of the run without refit, and
    only the description member changes; the codebook member is the same fit."""
    tw = pl.read_parquet(flourishing / "tweets.parquet")
    labels = pl.read_parquet(flourishing / "labels.parquet").filter(pl.col("split") == "train")
    ids = labels["id"].unique(maintain_order=True).head(64)
    tw, labels = tw.filter(pl.col("id").is_in(ids.implode())), labels.filter(pl.col("id").is_in(ids.implode()))
    book = fineclass.read_codebook(flourishing / "codebook.csv")
    base = {"epochs": 2, "validation": 0.25, "extra": {"min_steps": 0, "description_members": 1}}
    runs = [
        fineclass.train(
            tw, labels=labels, label=("dimension", "level"), model="minilm", method="ensemble", codebook=book,
            config={**base, "extra": {**base["extra"], "refit": r}}, progress=False,
        )
        for r in (False, True)
    ]  # fmt: skip
    plain, refit = runs
    assert refit.manifest_["refit"]["done"] and refit.manifest_["refit"]["documents"] == 64
    assert refit.thresholds_ == plain.thresholds_
    for key in ("description_weight", "validation_by_weight"):
        assert refit.manifest_["closed_form"][key] == plain.manifest_["closed_form"][key]
    a, b = plain.module_, refit.module_
    torch.testing.assert_close(a.codebook.weight, b.codebook.weight)
    moved = max((x - y).abs().max().item() for x, y in zip(a.description.parameters(), b.description.parameters()))
    assert moved > 1e-4


def test_a_refit_that_dies_resumes_to_the_same_model(tiny_bert, reviews_small, tmp_path):
    cfg = {**CFG, "epochs": 8, "extra": {"refit": True}}  # eight epochs, of which the tiny BERT overfits the last
    full = _train(reviews_small, tiny_bert, {**cfg, "checkpoint_dir": str(tmp_path / "a")})
    assert (tmp_path / "a" / "refit" / "latest.json").exists()
    chosen = full.manifest_["best_epoch"]
    # an epoch to resume from, and epochs after the chosen one that the refit must not run
    assert 1 < chosen < cfg["epochs"] and full.manifest_["refit"]["epochs"] == chosen
    # died during the refit's last epoch: its checkpoint is gone
    run = tmp_path / "b"
    _train(reviews_small, tiny_bert, {**cfg, "checkpoint_dir": str(run)})
    shutil.rmtree(run / "refit" / f"epoch-{chosen - 1}")
    (run / "refit" / "latest.json").write_text(json.dumps({"epoch": chosen - 2, "folder": f"epoch-{chosen - 2}"}))
    resumed = _train(reviews_small, tiny_bert, {**cfg, "checkpoint_dir": str(run)}, resume=True)
    np.testing.assert_allclose(_probs(full, reviews_small), _probs(resumed, reviews_small), atol=1e-6)
    assert resumed.manifest_["refit"]["epochs"] == chosen
    # died between the epoch loop and the refit: the refit starts from the beginning
    shutil.rmtree(run / "refit")
    again = _train(reviews_small, tiny_bert, {**cfg, "checkpoint_dir": str(run)}, resume=True)
    np.testing.assert_allclose(_probs(full, reviews_small), _probs(again, reviews_small), atol=1e-6)


def test_refit_without_a_validation_split_and_bad_values(tiny_bert, reviews_small):
    clf = _train(reviews_small, tiny_bert, {**CFG, "epochs": 1, "validation": 0, "extra": {"refit": True}})
    assert clf.manifest_["refit"] == {"done": False, "reason": "no validation split to add"}
    for bad in ("yes", 1, None):
        with pytest.raises(FineclassError) as e:
            _train(reviews_small, tiny_bert, {**CFG, "extra": {"refit": bad}})
        assert e.value.argument == "config" and "refit" in str(e.value)
