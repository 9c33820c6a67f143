"""The codebook-aware methods (issue 19) on the packaged MiniLM and real data, and the decision rules they brought.

``codebook``: a frozen encoder, cosines to the codebook's definitions, logistic regressions fitted in closed form;
``description``: a fine-tuned encoder whose class vectors start at the definitions. Both train, predict, save and
load in the label shapes they serve; the multi-label decision rules (per-class thresholds, at least one label,
expected-Jaccard sets) and ``max_length="auto"`` are checked on their own.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

import fineclass
from fineclass import FineclassError
from fineclass.labels import LabelSpec
from fineclass.methods.codebook import fit_logistic
from fineclass.methods.description import pair_loss
from fineclass.methods.encoder import embed_texts
from fineclass.scoring import choose
from fineclass.training import choose_max_length, tune_thresholds

SENTIMENT = {
    0: {"name": "negative", "description": "a negative movie review: the critic disliked the film"},
    1: {"name": "positive", "description": "a positive movie review: the critic liked the film"},
}


@pytest.fixture(scope="module")
def tweets(flourishing):
    """64 training tweets, their (dimension, level) codes, and the coders' codebook of the 46 dimensions."""
    tw = pl.read_parquet(flourishing / "tweets.parquet")
    labels = pl.read_parquet(flourishing / "labels.parquet").filter(pl.col("split") == "train")
    ids = labels["id"].unique(maintain_order=True).head(64)
    codebook = fineclass.read_codebook(flourishing / "codebook.csv")  # the coders' file: dimension, definition
    return tw.filter(pl.col("id").is_in(ids.implode())), labels.filter(pl.col("id").is_in(ids.implode())), codebook


@pytest.fixture(scope="module")
def reviews(movie_reviews):
    """96 training and 120 test Rotten Tomatoes reviews, balanced, shuffled with a seed."""
    rt = movie_reviews.filter(pl.col("source") == "rotten_tomatoes").with_row_index("id")
    both = pl.concat([rt.filter(pl.col("label") == y).head(108) for y in (0, 1)])
    both = both.sample(fraction=1.0, seed=5, shuffle=True)
    return both.head(96), both.tail(120)


def _accuracy(clf, test) -> float:
    return float(np.mean(np.array(clf.predict(test).column("label").to_pylist()) == test["label"].to_numpy()))


def _same(a, b):
    assert a.column_names == b.column_names
    for name in a.column_names:
        if name.startswith("p_"):
            np.testing.assert_allclose(a.column(name).to_numpy(), b.column(name).to_numpy(), atol=1e-5)
        else:
            assert a.column(name).to_pylist() == b.column(name).to_pylist(), name


def _on_tweets(tweets, method: str, config: dict, codebook: bool = True):
    """``method`` trained on the 64 coded tweets (dimension -> level), with the coders' codebook or without."""
    tw, labels, book = tweets
    return fineclass.train(
        tw, labels=labels, label=("dimension", "level"), model="minilm", method=method,
        codebook=book if codebook else None, config=config, progress=False,
    )  # fmt: skip


# ---------------------------------------------------------------------- codebook
def test_codebook_method_on_tweets_reads_the_definitions_and_round_trips(tweets, tmp_path):
    tw, labels, codebook = tweets
    clf = _on_tweets(tweets, "codebook", {"extra": {"folds": 2}})
    m = clf.manifest_
    assert m["method"] == "codebook" and m["finetune"] == "frozen" and m["n_validation"] == 0
    assert m["history"][0]["folds"] == 2 and "out of fold (2 folds" in m["threshold_source"]
    k = len(clf.spec_.classes)
    # the regressions read, from the last layer and the middle one (3 of 6), the embedding and its cosines to each
    # dimension's "name: definition" and its name embedded at that layer
    assert clf.module_.anchors.shape == (2, 2 * k, 384) and clf.module_.layers.tolist() == [-1, 3]
    assert m["history"][0]["middle_layer"] == 3  # recorded as one number
    assert clf.module_.weight.shape == (k, 4, 2 * (384 + 2 * k))
    # max_length="auto": the 95th percentile of these tweets' token lengths, reported
    assert m["lengths"]["max_length"] == m["config"]["max_length"] >= m["lengths"]["length_p95"]
    pred = clf.predict(tw)
    p = np.column_stack([pred.column(c).to_numpy() for c in pred.column_names if c.startswith("p_")])
    np.testing.assert_allclose(p.reshape(len(p), k, 4).sum(2), 1.0, atol=1e-5)
    # fitted on these tweets, it codes them far better than chance: most coded dimensions are found
    truth = {(r["id"], r["dimension"]) for r in labels.to_dicts()}
    found = {(r["id"], r["dimension"]) for r in fineclass.classifier.to_long(pred).to_pylist()}
    assert len(truth & found) > 0.5 * len(truth)
    clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "codebook.safetensors").is_file() and (tmp_path / "m" / "model").is_dir()
    _same(pred, fineclass.load(tmp_path / "m").predict(tw))


def test_the_codebook_reads_the_middle_layer_and_older_models_still_load(tweets, tmp_path):
    """Rule 17: beside the last layer, the middle layer's pooled embedding and its cosines to the class texts
    embedded at that layer; ``extra["middle_layer"] = False`` reads the last layer alone, the layout of models
    saved before, which still load and predict as they did."""
    import torch.nn.functional as F
    from safetensors.torch import load_file, save_file

    from fineclass.manifest import weights_digest

    tw = tweets[0]
    clf = _on_tweets(tweets, "codebook", {"extra": {"folds": 2}})
    module, tok = clf.module_, clf.tokenizer_
    texts = tw["text"].head(4).to_list()
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        out = module.backbone(**batch, output_hidden_states=True)
        m = batch["attention_mask"].unsqueeze(-1).float()
        pooled = [F.normalize((h * m).sum(1) / m.sum(1), dim=-1) for h in (out.last_hidden_state, out.hidden_states[3])]
        x = module.features(batch)
    k2 = module.anchors.shape[1]
    want = torch.cat([pooled[0], pooled[0] @ module.anchors[0].T, pooled[1], pooled[1] @ module.anchors[1].T], 1)
    torch.testing.assert_close(x, want, atol=1e-5, rtol=1e-5)
    assert (module.anchors[0] - module.anchors[1]).abs().max() > 0.05 and x.shape[1] == 2 * (384 + k2)

    last = _on_tweets(tweets, "codebook", {"extra": {"folds": 2, "middle_layer": False}})
    assert last.module_.layers.tolist() == [-1] and last.module_.weight.shape[2] == 384 + k2
    assert last.manifest_["history"][0]["middle_layer"] is None
    pred = last.predict(tw)
    last.save(tmp_path / "old")
    head_file = tmp_path / "old" / "codebook.safetensors"
    head = load_file(str(head_file))  # as a model saved before the middle layer: 2-D anchors, no layers
    older = {"anchors": head["anchors"][0].contiguous(), "weight": head["weight"], "bias": head["bias"]}
    save_file(older, str(head_file))
    manifest_file = tmp_path / "old" / "fineclass.json"
    manifest = json.loads(manifest_file.read_text())
    manifest_file.write_text(json.dumps(dict(manifest, weights_sha256=weights_digest(tmp_path / "old"))))
    old = fineclass.load(tmp_path / "old")
    assert old.module_.layers.tolist() == [-1]
    _same(pred, old.predict(tw))
    with pytest.raises(FineclassError) as e:
        _on_tweets(tweets, "codebook", {"extra": {"middle_layer": "yes"}})
    assert e.value.argument == "config" and "middle_layer" in str(e.value)


def test_a_fixed_label_set_takes_the_codebook_passed_beside_it(tweets):
    """spec= and codebook= together: the definitions reach the label set (they were silently dropped before)."""
    from fineclass.data import labelled

    tw, labels, codebook = tweets
    bare = LabelSpec(kind="dimlevel", classes=sorted(codebook), levels=["low", "medium", "high"])
    ds = labelled(tw, labels=labels, label=("dimension", "level"), spec=bare, codebook=codebook)
    assert ds.spec.classes == bare.classes and ds.spec.descriptions["anxiety"].startswith("the text expresses")
    assert ds.spec.names["anxiety"] == "anxiety" and not bare.descriptions
    with pytest.raises(FineclassError) as e:
        labelled(tw, labels=labels, label=("dimension", "level"), spec=bare, codebook={"boredom": "boredom"})
    assert e.value.argument == "codebook" and "boredom" in str(e.value)


def test_codebook_method_learns_sentiment_on_held_out_reviews(reviews):
    train, test = reviews
    clf = fineclass.train(train, model="minilm", method="codebook", codebook=SENTIMENT, progress=False)
    assert clf.spec_.kind == "single" and clf.thresholds_ == {}
    assert _accuracy(clf, test) >= 0.68  # frozen MiniLM + LR; always-majority is 0.5 here


def test_fit_logistic_matches_scikit_learn():
    """The batched L-BFGS regressions reach scikit-learn's optimum: the same C for three answers or more; for two,
    the penalty on both rows of the softmax equals scikit-learn's binary regression at 2 C."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    binary = (x[:, 0] + rng.normal(size=200) > 0).astype(int)
    three = (x[:, 1] + rng.normal(size=200) > 0).astype(int) + (x[:, 2] > 0.5)
    y = np.stack([binary, three], axis=1)
    w, b, _ = fit_logistic(x, y, 3, c=0.5)  # two regressions in one fit (the binary one never sees answer 2)
    for g, c_ref in ((0, 1.0), (1, 0.5)):
        outputs = 2 if g == 0 else 3
        w_g, b_g, _ = fit_logistic(x, y[:, [g]], outputs, c=0.5)
        mine = torch.softmax(torch.from_numpy(x).float() @ w_g[0].T + b_g[0], dim=-1).numpy()
        ref = LogisticRegression(C=c_ref, max_iter=5000, tol=1e-8).fit(x, y[:, g]).predict_proba(x)
        np.testing.assert_allclose(mine, ref, atol=1e-4)
    # fitted together, the three-answer regression is the one fitted alone
    joint = torch.softmax(torch.from_numpy(x).float() @ w[1].T + b[1], dim=-1).numpy()
    np.testing.assert_allclose(joint, mine, atol=1e-4)
    # a fit on part of the documents started from the fit on all of them reaches its own optimum (the folds)
    cold_w, cold_b, cold_loss = fit_logistic(x[:120], y[:120], 3, c=0.5)
    warm_w, warm_b, warm_loss = fit_logistic(x[:120], y[:120], 3, c=0.5, start=(w, b))
    assert abs(warm_loss - cold_loss) < 1e-6 and not torch.allclose(w, cold_w, atol=1e-2)
    np.testing.assert_allclose(warm_w.numpy(), cold_w.numpy(), atol=2e-3)


# ---------------------------------------------------------------------- description
def test_description_method_learns_sentiment_and_round_trips(reviews, tmp_path):
    train, test = reviews
    clf = fineclass.train(
        train, model="minilm", method="description", codebook=SENTIMENT, progress=False,
        config={"epochs": 1, "batch_size": 16, "validation": 0, "extra": {"min_steps": 12}},
    )  # fmt: skip
    # 96 reviews are 6 batches an epoch: min_steps makes it 2 epochs
    assert clf.manifest_["epochs_run"] == 2 and clf.manifest_["finetune"] == "full"
    assert _accuracy(clf, test) >= 0.68
    clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "description.safetensors").is_file()
    _same(clf.predict(test), fineclass.load(tmp_path / "m").predict(test))


def test_description_method_on_tweets_picks_its_epoch_by_validation_jaccard(tweets, tmp_path):
    tw = tweets[0]
    clf = _on_tweets(tweets, "description", {"epochs": 1, "validation": 0.2, "extra": {"min_steps": 0}})
    row = clf.history_[0]
    assert 0.0 <= row["val_jaccard"] <= 1.0 and row["seconds"] > 0
    assert "validation split" in clf.manifest_["threshold_source"]
    pred = clf.predict(tw)
    assert pred.num_rows == tw.height
    clf.save(tmp_path / "m")
    _same(pred, fineclass.load(tmp_path / "m").predict(tw))


def test_a_validation_split_too_small_to_choose_an_epoch_trains_instead(reviews):
    train, test = reviews
    settings = {"epochs": 1, "batch_size": 16, "extra": {"min_steps": 12}}
    # 96 reviews at the default share of 10%: about 10 held out, fewer than the 100 the method needs to choose an
    # epoch, so they train too and the last epoch is kept
    clf = fineclass.train(
        train, model="minilm", method="description", codebook=SENTIMENT, config=settings, progress=False
    )
    m = clf.manifest_
    assert m["n_validation"] == 0 and m["n_train"] == 96
    assert m["best_epoch"] == m["epochs_run"] == 2 and "val_loss" not in clf.history_[-1]
    assert "min_validation=0" in m["validation_note"]
    assert _accuracy(clf, test) >= 0.68
    # extra min_validation=0 keeps the split, and its loss chooses the epoch
    kept = dict(settings, extra={"min_steps": 12, "min_validation": 0})
    clf = fineclass.train(train, model="minilm", method="description", codebook=SENTIMENT, config=kept, progress=False)
    n_val = clf.manifest_["n_validation"]
    assert 8 <= n_val <= 12 and clf.manifest_["n_train"] == 96 - n_val and clf.manifest_["validation_note"] is None
    assert f"a validation split of {n_val} documents is too small" in m["validation_note"]
    assert "val_loss" in clf.history_[0]
    with pytest.raises(FineclassError) as e:
        fineclass.train(
            train.head(16), model="minilm", method="description", progress=False,
            config={"extra": {"min_validation": -1}},
        )  # fmt: skip
    assert e.value.argument == "config" and "min_validation" in str(e.value)


def _pairs(clf, test) -> tuple[float, float, float]:
    """The test reviews' mean cosine within a class, across the classes, and their pair loss."""
    e = embed_texts(clf.module_.backbone, clf.tokenizer_, test["text"].to_list(), max_length=128)
    y = torch.as_tensor(test["label"].to_numpy())
    cos = e @ e.T
    same = y[:, None] == y[None, :]
    off = ~torch.eye(len(y), dtype=torch.bool)
    return float(cos[same & off].mean()), float(cos[~same].mean()), float(pair_loss(e, y))


def test_the_pair_term_lowers_the_pair_loss_of_held_out_reviews_and_is_checked(reviews):
    train, test = reviews
    seen = {}
    for w in (0.0, 1.0):
        settings = {"epochs": 1, "batch_size": 16, "extra": {"min_steps": 24, "pair_weight": w}}
        clf = fineclass.train(
            train, model="minilm", method="description", codebook=SENTIMENT, config=settings, progress=False
        )
        seen[w] = _pairs(clf, test)
    (within0, _, loss0), (within1, _, loss1) = seen[0.0], seen[1.0]
    # SetFit's objective (cosine 1 within a class, 0 across) on reviews the model never saw: lower, mostly by
    # drawing each class's reviews together
    assert loss1 < loss0 - 0.03 and within1 > within0 + 0.05, seen
    for bad in (-0.5, "0.3", float("nan")):
        with pytest.raises(FineclassError) as e:
            fineclass.train(
                train.head(16), model="minilm", method="description", progress=False,
                config={"extra": {"pair_weight": bad}},
            )  # fmt: skip
        assert e.value.argument == "config" and "pair_weight" in str(e.value)


def test_read_codebook_reads_the_coders_file_as_it_is(flourishing, tmp_path):
    book = pl.read_csv(flourishing / "codebook.csv")
    assert book.columns[:2] == ["dimension", "definition"]
    read = fineclass.read_codebook(flourishing / "codebook.csv")
    assert list(read) == book["dimension"].to_list() and len(read) == 46
    first = book.row(0, named=True)
    assert read[first["dimension"]] == {"name": first["dimension"], "description": first["definition"]}
    # the package's own columns, and a table with codes and names only
    pl.DataFrame({"code": [1, 2], "name": ["a", "b"]}).write_csv(tmp_path / "cb.csv")
    assert fineclass.read_codebook(tmp_path / "cb.csv") == {
        1: {"name": "a", "description": None},
        2: {"name": "b", "description": None},
    }
    pl.DataFrame({"topic": [1], "title": ["a"]}).write_csv(tmp_path / "bad.csv")
    with pytest.raises(FineclassError) as e:
        fineclass.read_codebook(tmp_path / "bad.csv")
    assert e.value.argument == "codebook" and "dimension" in str(e.value) and "topic, title" in str(e.value)


# ---------------------------------------------------------------------- bad input
def test_bad_settings_name_the_argument(reviews, tmp_path):
    train = reviews[0].head(16)
    with pytest.raises(FineclassError) as e:
        fineclass.train(train, model="minilm", method="description", config={"finetune": "lora"}, progress=False)
    assert e.value.argument == "finetune" and "method='head'" in str(e.value)
    with pytest.raises(FineclassError) as e:
        fineclass.train(train, model="minilm", method="codebook", config={"extra": {"C": 0}}, progress=False)
    assert e.value.argument == "config" and "'C'" in str(e.value)
    with pytest.raises(FineclassError) as e:
        fineclass.TrainConfig(max_length="long")
    assert e.value.argument == "max_length" and "'auto'" in str(e.value)


def test_a_saved_codebook_model_without_its_regressions_is_refused(reviews, tmp_path):
    from safetensors.torch import load_file, save_file

    clf = fineclass.train(reviews[0].head(16), model="minilm", method="codebook", progress=False)
    clf.save(tmp_path / "m")
    head_file = tmp_path / "m" / "codebook.safetensors"
    head = load_file(str(head_file))
    head_file.unlink()
    with pytest.raises(FineclassError) as e:  # the weights digest save() recorded no longer matches
        fineclass.load(tmp_path / "m")
    assert e.value.argument == "path" and "do not match the hash" in str(e.value)
    # a model saved without the digest (an older fineclass) is still checked by the method itself
    manifest_file = tmp_path / "m" / "fineclass.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["weights_sha256"]
    manifest_file.write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="older fineclass"), pytest.raises(FineclassError) as e:
        fineclass.load(tmp_path / "m")
    assert e.value.argument == "path" and "codebook.safetensors" in str(e.value)
    save_file({k: v for k, v in head.items() if k != "bias"}, str(head_file))  # one regression tensor lost
    with pytest.warns(UserWarning, match="older fineclass"), pytest.raises(FineclassError) as e:
        fineclass.load(tmp_path / "m")
    assert e.value.argument == "path" and "bias" in str(e.value) and "random values" in str(e.value)


# ---------------------------------------------------------------------- ensemble
def _probs(clf, data) -> np.ndarray:
    pred = clf.predict(data)
    return np.column_stack([pred.column(c).to_numpy() for c in pred.column_names if c.startswith("p_")])


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_the_ensemble_holds_out_a_fifth_unless_told_and_other_methods_a_tenth(tweets, tiny_bert, reviews_small):
    """Rule 16: the ensemble refits on every document, so by default it holds out a fifth (13 of 64 tweets) to
    choose its epoch, weight and rule; other methods a tenth. A share given in ``config`` wins (16 of 64 in the
    test below); a share that is not a number is refused naming ``validation``."""
    clf = _on_tweets(tweets, "ensemble", {"epochs": 1, "extra": {"min_steps": 0, "description_members": 1}})
    assert clf.manifest_["n_validation"] == 13 and clf.manifest_["config"]["validation"] == 0.2
    assert clf.manifest_["closed_form"]["codebook_middle_layer"] == 3
    assert clf.manifest_["refit"]["documents"] == 64
    head = fineclass.train(reviews_small, model=tiny_bert, config={"epochs": 1, "max_length": 16}, progress=False)
    assert head.manifest_["n_validation"] == 24 and head.manifest_["config"]["validation"] == 0.1
    for bad in ("a fifth", True, 0.95):
        with pytest.raises(FineclassError) as e:
            fineclass.TrainConfig(validation=bad)
        assert e.value.argument == "validation" and "[0, 0.9)" in str(e.value)
    assert fineclass.TrainConfig(validation=np.float32(0.25)).validation == 0.25  # any real number


def test_ensemble_on_tweets_averages_its_members_and_round_trips(tweets, tmp_path):
    from fineclass.methods.codebook import CodebookMethod
    from fineclass.methods.description import DescriptionMethod
    from fineclass.methods.ensemble import WEIGHTS

    tw = tweets[0]
    clf = _on_tweets(
        tweets, "ensemble", {"epochs": 1, "validation": 0.25, "extra": {"min_steps": 0, "description_members": 1}}
    )
    m = clf.manifest_
    assert m["method"] == "ensemble" and m["n_validation"] == 16 and "validation split" in m["threshold_source"]
    # every weight of the grid is scored on the 16 validation tweets; too few to check another weight than 1/2
    w, scores = m["closed_form"]["description_weight"], m["closed_form"]["validation_by_weight"]
    assert w == 0.5 and set(scores) == {str(x) for x in WEIGHTS}
    if max(scores.values()) > scores["0.5"]:
        assert "fewer than 20" in m["closed_form"]["weight_check"]["reason"]
    assert float(clf.module_.mix) == w and clf.thresholds_
    # the members: a fine-tuned description model and the frozen codebook regressions, fitted
    module = clf.module_
    assert module.codebook.weight.abs().sum() > 0
    assert all(not p.requires_grad for p in module.codebook.parameters())
    batch = clf.method_.collate(
        clf.tokenizer_, [clf.tokenizer_(t)["input_ids"][:96] for t in tw["text"].head(8)], "cpu"
    )
    d = DescriptionMethod().probabilities(module.description, batch, clf.spec_)
    c = CodebookMethod().probabilities(module.codebook, batch, clf.spec_)
    assert np.abs(d - c).max() > 0.05  # two different models
    with torch.no_grad():
        module.mix.fill_(0.25)
    np.testing.assert_allclose(clf.method_.probabilities(module, batch, clf.spec_), 0.25 * d + 0.75 * c, atol=1e-6)
    # what predict() reports is that mixture, and a saved and loaded model gives the same
    mixed = _probs(clf, tw)
    with torch.no_grad():
        module.mix.fill_(1.0)
    only_d = _probs(clf, tw)
    with torch.no_grad():
        module.mix.fill_(0.0)
    only_c = _probs(clf, tw)
    np.testing.assert_allclose(mixed, 0.25 * only_d + 0.75 * only_c, atol=1e-5)
    with torch.no_grad():
        module.mix.fill_(w)
    pred = clf.predict(tw)
    clf.save(tmp_path / "m")
    for f in ("description.safetensors", "codebook.safetensors", "model", "codebook-model"):
        assert (tmp_path / "m" / f).exists(), f
    loaded = fineclass.load(tmp_path / "m")
    assert float(loaded.module_.mix) == w
    _same(pred, loaded.predict(tw))


def test_ensemble_trains_two_description_members_by_default_averages_them_and_round_trips(tweets, tmp_path):
    from fineclass.methods.description import DescriptionMethod

    tw = tweets[0]
    clf = _on_tweets(tweets, "ensemble", {"epochs": 1, "validation": 0.25, "extra": {"min_steps": 4}})
    module, m = clf.module_, clf.manifest_
    assert len(module.others) == 1  # two members by default
    assert m["refit"]["done"] and m["refit"]["documents"] == 64  # and refitted on every tweet by default (rule 15)
    assert m["config"]["max_grad_norm"] == pytest.approx(1 / np.sqrt(2))  # each member clipped as a lone run
    # the members started alike and were trained on the same batches; their dropout made them differ
    a, b = module.description, module.others[0]
    moved = [(pa - pb).abs().max().item() for pa, pb in zip(a.backbone.parameters(), b.backbone.parameters())]
    assert max(moved) > 0
    batch = clf.method_.collate(
        clf.tokenizer_, [clf.tokenizer_(t)["input_ids"][:96] for t in tw["text"].head(8)], "cpu"
    )
    pa, pb = (DescriptionMethod().probabilities(x, batch, clf.spec_) for x in (a, b))
    assert np.abs(pa - pb).max() > 1e-4
    with torch.no_grad():
        module.mix.fill_(1.0)
    np.testing.assert_allclose(clf.method_.probabilities(module, batch, clf.spec_), (pa + pb) / 2, atol=1e-6)
    with torch.no_grad():
        module.mix.fill_(m["closed_form"]["description_weight"])
    pred = clf.predict(tw)
    clf.save(tmp_path / "m")
    assert (tmp_path / "m" / "description-2.safetensors").exists() and (tmp_path / "m" / "description-2-model").is_dir()
    assert json.loads((tmp_path / "m" / "fineclass.json").read_text())["description_members"] == 2
    _same(pred, fineclass.load(tmp_path / "m").predict(tw))
    # a member count that is not a positive whole number is refused before any training
    for bad in (0, 1.5, "two"):
        with pytest.raises(FineclassError) as e:
            _on_tweets(tweets, "ensemble", {"extra": {"description_members": bad}}, codebook=False)
        assert e.value.argument == "config" and "description_members" in str(e.value)


def test_ensemble_learns_sentiment_on_held_out_reviews(reviews):
    train, test = reviews
    clf = fineclass.train(
        train, model="minilm", method="ensemble", codebook=SENTIMENT, progress=False,
        config={"epochs": 1, "batch_size": 16, "validation": 0.25, "extra": {"min_steps": 12}},
    )  # fmt: skip
    record = clf.manifest_["closed_form"]
    assert set(record["validation_by_weight"]) and clf.thresholds_ == {}
    assert record["description_weight"] == float(clf.module_.mix)
    assert _accuracy(clf, test) >= 0.68


def test_ensemble_weight_choice_and_fixed_weight(reviews):
    from fineclass.methods.ensemble import choose_weight, mix

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 50)
    good = np.eye(2)[truth] * 0.8 + 0.1
    noise = rng.dirichlet([1, 1], 50)

    def likelihood(p):
        return float(np.log(p[np.arange(len(truth)), truth]).mean())

    w, scores = choose_weight(good, noise, likelihood)
    assert w == 1.0 and scores["1.0"] == pytest.approx(np.log(0.9), abs=1e-4)  # the better member alone
    assert choose_weight(noise, good, likelihood)[0] == 0.0
    assert choose_weight(good, good, likelihood)[0] == 0.5  # ties keep the even mixture
    np.testing.assert_allclose(mix(good, noise, 0.25), 0.25 * good + 0.75 * noise)
    with pytest.raises(FineclassError) as e:
        fineclass.train(
            reviews[0].head(16), model="minilm", method="ensemble", progress=False,
            config={"extra": {"description_weight": 2}},
        )  # fmt: skip
    assert e.value.argument == "config" and "description_weight" in str(e.value)
    # the pair term: off unless extra["pair_weight"] is set, then used (it was silently ignored before)
    from fineclass.config import TrainConfig
    from fineclass.methods.ensemble import EnsembleMethod
    from fineclass.models import resolve

    spec = LabelSpec(kind="single", classes=["negative", "positive"])
    for extra, expected in (({}, 0.0), ({"pair_weight": 0.5}, 0.5)):
        method = EnsembleMethod()
        method.build(resolve("minilm"), spec, TrainConfig(extra=dict(extra, description_members=1)), "cpu")
        assert method.desc.pair_weight == expected
    with pytest.raises(FineclassError) as e:
        fineclass.train(
            reviews[0].head(16), model="minilm", method="ensemble", progress=False,
            config={"extra": {"pair_weight": -1}},
        )  # fmt: skip
    assert e.value.argument == "config" and "pair_weight" in str(e.value)


# ---------------------------------------------------------------------- decision rules, max_length
def test_per_class_thresholds_and_at_least_one():
    spec = LabelSpec(kind="multi", classes=["a", "b", "c"])
    presence = np.array([[0.9, 0.2, 0.1], [0.3, 0.35, 0.1], [0.1, 0.1, 0.2]])
    rule = {"presence": 0.5, "per_class": {"b": 0.3}}
    assert choose(presence, rule, spec).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    rule["at_least_one"] = True  # the empty third document gets its most probable class
    assert choose(presence, rule, spec).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    # expected-Jaccard sets: a document's k most probable classes for the best k
    sets = choose(presence, {"decoder": "expected_jaccard", "gamma": 1.0}, spec)
    assert sets.sum(1).min() >= 1 and sets[0].tolist() == [True, False, False]


def test_tuned_thresholds_give_a_rare_class_its_own():
    """Class b is scored low but ranked well: its own threshold finds it, and the held-out Jaccard rises."""
    rng = np.random.default_rng(1)
    n = 300
    truth = rng.random((n, 2)) < [0.5, 0.3]
    probs = np.where(truth, [0.8, 0.25], [0.2, 0.05]) + rng.normal(0, 0.03, (n, 2))
    spec = LabelSpec(kind="multi", classes=["a", "b"])
    shared, shared_score = tune_thresholds(probs, truth.astype(float), spec, per_class=False)
    rule, score = tune_thresholds(probs, truth.astype(float), spec)
    assert score > shared_score and score > 0.95
    assert rule["per_class"]["b"] < rule["per_class"].get("a", rule["presence"])


def test_per_class_thresholds_are_kept_only_where_they_carry_over():
    """Ten classes scored alike: a threshold of their own fits the noise of 160 documents, and the check sees it."""
    rng = np.random.default_rng(3)
    n, k = 160, 10
    truth = rng.random((n, k)) < 0.25
    probs = np.clip(np.where(truth, 0.55, 0.35) + rng.normal(0, 0.15, (n, k)), 0.001, 0.999)
    spec = LabelSpec(kind="multi", classes=[f"c{j}" for j in range(k)])
    forced, forced_score = tune_thresholds(probs, truth.astype(float), spec, per_class=True)
    checked, checked_score = tune_thresholds(probs, truth.astype(float), spec)
    assert forced.get("per_class") and forced_score > checked_score  # in sample, noise always "helps"
    assert "per_class" not in checked
    assert checked == tune_thresholds(probs, truth.astype(float), spec, per_class=False)[0]


def test_max_length_auto_follows_the_documents():
    from transformers import AutoTokenizer

    from fineclass.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("minilm"))
    short = ["a short review"] * 19 + ["a much longer review " * 10]
    chosen, report = choose_max_length(tok, None, short, "auto")
    assert chosen == 16 and report["n_truncated"] == 1  # the floor; the one long review is cut and counted
    chosen, report = choose_max_length(tok, None, ["word " * 400] * 3, "auto")
    assert chosen == 256 and report["length_p95"] > 400  # the cap
    chosen, report = choose_max_length(tok, None, short, 64)
    assert chosen == 64 and report["rule"] == "given"


def test_ensemble_weight_other_than_half_is_kept_only_where_a_split_half_check_agrees():
    from fineclass.methods.ensemble import MIN_CHECK, check_weight, choose_weight
    from fineclass.training import HeldOutScore

    spec = LabelSpec(kind="single", classes=["a", "b"])
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    score = HeldOutScore(truth, spec)

    def member(right_share, confidence):
        said = np.where(rng.random(200) < right_share, truth, 1 - truth)
        return np.eye(2)[said] * (2 * confidence - 1) + (1 - confidence)

    # the codebook member is far better: the halves agree, so the weight that favours it is kept
    weak, strong = member(0.6, 0.95), member(0.9, 0.7)  # the weak one sure of itself, often wrong
    best, _ = choose_weight(weak, strong, score)
    w, record = check_weight(weak, strong, best, score)
    assert best < 0.5 and w == best and record["split_half_gain"] > 0
    # a weight that wins on all the documents by one tweet but does not carry over: the even mixture is kept
    first, second = np.array_split(np.random.default_rng(0).permutation(200), 2)
    d = np.eye(2)[truth] * 0.9 + 0.05
    c = d.copy()
    for rows, d_right, c_right in ((first[:3], 0.51, 0.485), (second[:2], 0.48, 0.53)):
        d[rows] = np.where(np.eye(2)[truth[rows]] == 1, d_right, 1 - d_right)
        c[rows] = np.where(np.eye(2)[truth[rows]] == 1, c_right, 1 - c_right)
    best, scores = choose_weight(d, c, score)
    assert best == 0.75 and scores["0.75"] == pytest.approx(scores["0.5"] + 1 / 200, abs=1e-4)
    w, record = check_weight(d, c, best, score)
    assert record["halves_chose"] == [0.75, 0.5] and record["split_half_gain"] < 0 and w == 0.5
    # too few held-out documents to check: the even mixture
    few = np.arange(MIN_CHECK - 1)
    small = HeldOutScore(truth[few], spec)
    w, record = check_weight(weak[few], strong[few], 0.0, small)
    assert w == 0.5 and "fewer than" in record["reason"]
