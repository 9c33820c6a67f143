"""Evaluation: the paper's numbers on real data, agreement statistics, intervals, bad inputs, CLI."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    jaccard_score,
    precision_recall_fscore_support,
)

from fineclass.cli import main as cli_main
from fineclass.errors import FineclassError
from fineclass.evaluation import (
    CurveFit,
    EvaluationWarning,
    agreement,
    bootstrap_ci,
    evaluate,
    fit_curve,
    label_shares,
    labels_needed,
    model_vs_coders,
    paired_bootstrap,
)
from fineclass.labels import LabelSpec

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FINECLASS_DATA", REPO / ".." / "shared" / "data" / "flourishing"))


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fl():
    if not (DATA / "labels.parquet").exists():
        pytest.skip(f"flourishing data not found in {DATA.resolve()}; set FINECLASS_DATA to its folder")
    labels = pq.read_table(DATA / "labels.parquet")
    test = labels.filter(pc.equal(labels.column("split"), "test"))
    spec = LabelSpec(kind="dimlevel", classes=sorted(set(labels.column("dimension").to_pylist())))
    return {
        "labels": labels,
        "test": test,
        "spec": spec,
        "gpt4": DATA / "gpt4_zero_shot.parquet",
        "llama": DATA / "llama2_7b_finetuned.parquet",
    }


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EvaluationWarning)
        return fn(*a, **k)


def _no_nan(table: pa.Table) -> None:
    """Undefined numbers are nulls, never NaN passed off as a number."""
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type):
            assert not pc.any(pc.is_nan(col.drop_null())).as_py(), f"NaN in column {name}"


# ---------------------------------------------------------------------------------- the paper's numbers
@pytest.mark.parametrize("model, jac, accd, f1", [("gpt4", 0.490, 0.936, 0.532), ("llama", 0.559, 0.938, 0.614)])
def test_flourishing_reproduces_published_scores(fl, model, jac, accd, f1):
    # the test split keeps its `split` column: evaluate must ignore it
    with pytest.warns(EvaluationWarning) as rec:
        ev = evaluate(fl[model], fl["test"], spec=fl["spec"], bootstrap=200)
    assert any("outside `spec`" in str(w.message) for w in rec)
    assert ev.kind == "dimlevel" and ev.n == 400
    assert round(ev["jaccard"], 3) == jac
    assert round(ev["accD"], 3) == accd
    assert round(ev["presence_micro_f1"], 3) == f1
    for r in ev.metrics.to_pylist():  # every headline metric has an interval around its estimate
        assert r["lower"] <= r["estimate"] <= r["upper"] and r["n"] == 400
    assert ev.per_dimension.num_rows == 46
    _no_nan(ev.metrics)
    # without a spec the dimensions are those of the truth: the same 46 on this split, the same numbers
    ev2 = _quiet(evaluate, fl[model], fl["test"], bootstrap=0)
    assert [round(ev2[m], 3) for m in ("jaccard", "accD", "presence_micro_f1")] == [jac, accd, f1]
    assert ev2.metrics.column("lower").null_count == ev2.metrics.num_rows


def test_flourishing_absent_predictions_count_as_empty(fl):
    ev = _quiet(evaluate, fl["gpt4"], fl["test"], spec=fl["spec"], bootstrap=0)
    test_ids = set(fl["test"].column("id").to_pylist())
    gpt_ids = set(pq.read_table(fl["gpt4"]).column("id").to_pylist())
    assert ev.n_empty_predictions == len(test_ids - gpt_ids) == 22
    assert any("22 of the 400" in n for n in ev.notes)
    per_doc = {r["id"]: r for r in ev.per_document.to_pylist()}
    empty = sorted(test_ids - gpt_ids)[0]
    assert per_doc[empty]["n_predicted"] == 0 and per_doc[empty]["jaccard"] == 0.0
    # intersect instead drops them, which changes Jaccard
    ev_i = _quiet(evaluate, fl["gpt4"], fl["test"], spec=fl["spec"], bootstrap=0, on_mismatch="intersect")
    assert ev_i.n == 378 and ev_i["jaccard"] > ev["jaccard"]


def test_document_level_predictions_match_long(fl):
    """The Classifier's dimlevel table (list of structs per document) scores like the long table."""
    long = pq.read_table(fl["gpt4"])
    test_ids = sorted(set(fl["test"].column("id").to_pylist()))
    per = {i: [] for i in test_ids}

    def number(x):  # GPT-4's confidence column holds a few words ("confidence", "high")
        try:
            return float(x)
        except ValueError:
            return None

    for r in long.to_pylist():
        if r["id"] in per:
            per[r["id"]].append(
                {"dimension": r["dimension"], "level": r["level"], "confidence": number(r["confidence"])}
            )
    doc = pa.table({"id": test_ids, "labels": [per[i] for i in test_ids], "n_labels": [len(per[i]) for i in test_ids]})
    a = _quiet(evaluate, fl["gpt4"], fl["test"], spec=fl["spec"], bootstrap=0)
    b = _quiet(evaluate, doc, fl["test"], spec=fl["spec"], bootstrap=0)
    assert a.metrics.column("estimate").to_pylist() == pytest.approx(b.metrics.column("estimate").to_pylist())
    # a document-level table can say "no label", so a missing document there is a mismatch
    with pytest.raises(FineclassError, match="1 of the 400 documents to score have no prediction") as e:
        _quiet(evaluate, doc.slice(1), fl["test"], spec=fl["spec"], bootstrap=0)
    assert e.value.argument == "predictions"


def test_paired_bootstrap_gpt4_vs_llama(fl):
    t = _quiet(
        paired_bootstrap,
        fl["gpt4"],
        fl["llama"],
        fl["test"],
        spec=fl["spec"],
        metric=["jaccard", "presence_micro_f1"],
        bootstrap=500,
    )
    rows = {r["metric"]: r for r in t.to_pylist()}
    j = rows["jaccard"]
    assert round(j["a"], 3) == 0.490 and round(j["b"], 3) == 0.559
    assert j["difference"] == pytest.approx(j["a"] - j["b"])
    assert j["lower"] < j["difference"] < j["upper"] < 0  # fine-tuned Llama is better, clearly
    assert 0 <= j["p_value"] < 0.05 and j["n"] == 400
    # a model against itself: zero difference, every resample zero
    same = _quiet(
        paired_bootstrap, fl["llama"], fl["llama"], fl["test"], spec=fl["spec"], metric="jaccard", bootstrap=100
    ).to_pylist()[0]
    assert same["difference"] == 0 and same["lower"] == 0 == same["upper"] and same["p_value"] == 1.0
    with pytest.raises(FineclassError) as e:
        _quiet(paired_bootstrap, fl["gpt4"], fl["llama"], fl["test"], metric="accuracy")
    assert e.value.argument == "metric"


def test_cli_evaluate_on_flourishing(fl, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert (
        _quiet(
            cli_main,
            [
                "evaluate",
                str(fl["llama"]),
                str(DATA / "labels.parquet"),
                "--split",
                "test",
                "--bootstrap",
                "50",
                "--output",
                str(out),
            ],
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "dimlevel, 400 documents" in printed and "jaccard" in printed and "0.559" in printed
    payload = json.loads(out.read_text())
    assert {"metrics", "per_dimension", "per_document", "notes"} <= set(payload)
    assert round([r for r in payload["metrics"] if r["metric"] == "accD"][0]["estimate"], 3) == 0.938
    csv = tmp_path / "scores.csv"
    assert (
        _quiet(
            cli_main,
            [
                "evaluate",
                str(fl["gpt4"]),
                str(DATA / "labels.parquet"),
                "--split",
                "test",
                "--ids-from",
                str(DATA / "labeled_ids.parquet"),
                "--bootstrap",
                "0",
                "--output",
                str(csv),
            ],
        )
        == 0
    )
    import pyarrow.csv as pcsv

    metrics = pcsv.read_csv(csv)
    assert metrics.column_names == ["metric", "estimate", "lower", "upper", "n"]
    assert round(metrics.column("estimate")[1].as_py(), 3) == 0.490  # jaccard, with labeled_ids' 400 test ids


def test_spec_is_a_saved_models_folder(tiny_classifier, reviews_small, tmp_path, capsys):
    """`spec=MODEL_DIR` and `fineclass evaluate --spec MODEL_DIR` read the label set a saved model keeps in
    labels.json (they looked for label_spec.json, which no model writes, and failed with IsADirectoryError)."""
    folder = tiny_classifier.save(tmp_path / "model")
    docs = reviews_small.to_arrow().select(["id", "text", "label"]).slice(0, 60)
    pred = tiny_classifier.predict(docs, probabilities=False).select(["id", "label"])
    truth = docs.select(["id", "label"])
    ev = evaluate(pred, truth, spec=folder, bootstrap=0)
    assert ev.n == 60 and ev.spec.classes == tiny_classifier.spec_.classes
    assert ev.get("accuracy") == evaluate(pred, truth, spec=tiny_classifier.spec_, bootstrap=0).get("accuracy")
    pq.write_table(pred, tmp_path / "pred.parquet")
    pq.write_table(truth, tmp_path / "truth.parquet")
    assert (
        cli_main(
            [
                "evaluate",
                str(tmp_path / "pred.parquet"),
                str(tmp_path / "truth.parquet"),
                "--spec",
                folder,
                "--bootstrap",
                "0",
            ]
        )
        == 0
    )
    assert "single, 60 documents" in capsys.readouterr().out
    with pytest.raises(FineclassError) as e:
        evaluate(pred, truth, spec=tmp_path)  # a folder that is not a saved model
    assert e.value.argument == "spec" and "labels.json" in str(e.value)


# ------------------------------------------------------------------------------ single and multi-label
def _random_single(n=300, k=4, seed=1, acc=0.7):
    rng = np.random.default_rng(seed)
    yt = rng.integers(0, k, n)
    yp = np.where(rng.random(n) < acc, yt, rng.integers(0, k, n))
    return yt, yp


def test_single_label_matches_scikit_learn():
    yt, yp = _random_single()
    ids = [f"d{i}" for i in range(len(yt))]
    # the truth's rows in another order, with an extra column: alignment goes by id
    order = np.random.default_rng(2).permutation(len(yt))
    truth = {"id": [ids[i] for i in order], "label": [int(yt[i]) for i in order], "split": ["test"] * len(yt)}
    ev = evaluate({"id": ids, "label": yp.tolist()}, truth, bootstrap=300)
    labels = [0, 1, 2, 3]
    assert ev["accuracy"] == pytest.approx(accuracy_score(yt, yp), abs=1e-12)
    assert ev["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"), abs=1e-12)
    assert ev["weighted_f1"] == pytest.approx(f1_score(yt, yp, average="weighted"), abs=1e-12)
    assert ev["kappa"] == pytest.approx(cohen_kappa_score(yt, yp), abs=1e-12)
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels)
    pc_ = ev.per_class.to_pydict()
    assert pc_["class"] == ["0", "1", "2", "3"]
    assert pc_["precision"] == pytest.approx(p) and pc_["recall"] == pytest.approx(r)
    assert pc_["f1"] == pytest.approx(f) and pc_["support"] == s.tolist()
    cm = confusion_matrix(yt, yp, labels=labels)
    got = {(x["truth"], x["predicted"]): x["n"] for x in ev.confusion.to_pylist()}
    assert all(got[(str(a), str(b))] == cm[a, b] for a in labels for b in labels)
    assert ev.confusion.num_rows == 16
    # the interval of accuracy is the bootstrap engine's interval of the per-document hits, same seed
    # (documents in the truth's order: that is the order evaluate resamples)
    est, lo, hi = bootstrap_ci((yt[order] == yp[order]).astype(float), resamples=300, seed=0)
    row = ev.metrics.to_pylist()[0]
    assert (row["estimate"], row["lower"], row["upper"]) == pytest.approx((est, lo, hi))
    text = repr(ev)
    assert "accuracy" in text and "single, 300 documents" in text
    d = ev.to_dict()
    assert set(d) == {"metrics", "per_class", "confusion", "per_document", "notes"}
    assert all(isinstance(t, pa.Table) for t in d.values())


def test_same_seed_same_intervals_and_string_ids_match_integers():
    yt, yp = _random_single(n=120, seed=5)
    a = evaluate(
        {"id": list(range(120)), "label": yp.tolist()},
        {"id": [str(i) for i in range(120)], "label": yt.tolist()},
        seed=7,
        bootstrap=200,
    )
    b = evaluate(
        {"id": list(range(120)), "label": yp.tolist()},
        {"id": list(range(120)), "label": yt.tolist()},
        seed=7,
        bootstrap=200,
    )
    assert a.metrics.equals(b.metrics)
    c = evaluate(
        {"id": list(range(120)), "label": yp.tolist()},
        {"id": list(range(120)), "label": yt.tolist()},
        seed=8,
        bootstrap=200,
    )
    assert not c.metrics.equals(b.metrics)


def test_multi_label_matches_scikit_learn_long_and_document_tables():
    rng = np.random.default_rng(3)
    n, k = 200, 5
    Y = (rng.random((n, k)) < 0.3).astype(int)
    Z = np.where(rng.random((n, k)) < 0.8, Y, 1 - Y)
    Y[:5] = 0
    Z[:3] = 0  # some documents without labels, some both empty
    classes = ["a", "b", "c", "d", "e"]
    ids = list(range(n))
    # truth in long form (one row per label; documents without labels come in through ids=)
    truth = {
        "id": [i for i in ids for j in range(k) if Y[i, j]],
        "label": [classes[j] for i in ids for j in range(k) if Y[i, j]],
    }
    pred_doc = {"id": ids, "labels": [[classes[j] for j in range(k) if Z[i, j]] for i in ids]}
    ev = evaluate(pred_doc, truth, ids=ids, kind="multi", bootstrap=100)
    assert ev.kind == "multi" and ev.n == n
    assert ev["exact_match"] == pytest.approx(accuracy_score(Y, Z))
    assert ev["hamming_loss"] == pytest.approx(hamming_loss(Y, Z))
    assert ev["jaccard"] == pytest.approx(jaccard_score(Y, Z, average="samples", zero_division=1.0))
    assert ev["micro_f1"] == pytest.approx(f1_score(Y, Z, average="micro"))
    assert ev["macro_f1"] == pytest.approx(f1_score(Y, Z, average="macro"))
    assert ev.per_class.column("f1").to_pylist() == pytest.approx(f1_score(Y, Z, average=None).tolist())
    assert any("no rows in `truth`" in x for x in ev.notes)
    # long predictions, kind inferred from repeated ids in the truth: same numbers
    pred_long = {
        "id": [i for i in ids for j in range(k) if Z[i, j]],
        "label": [classes[j] for i in ids for j in range(k) if Z[i, j]],
    }
    ev2 = evaluate(pred_long, truth, ids=ids, bootstrap=0)
    assert ev2.kind == "multi"
    assert ev2.metrics.column("estimate").to_pylist() == pytest.approx(ev.metrics.column("estimate").to_pylist())


# ------------------------------------------------------------------------------------------ bad inputs
def test_different_id_sets_raise_with_counts_and_intersect_on_request():
    yt, yp = _random_single(n=50)
    truth = {"id": list(range(50)), "label": yt.tolist()}
    pred = {"id": list(range(3, 53)), "label": yp.tolist()}  # 3 truth ids missing, 3 extra
    with pytest.raises(FineclassError) as e:
        evaluate(pred, truth)
    assert e.value.argument == "predictions"
    assert "3 of the 50 documents to score have no prediction in `predictions` (ids: 0, 1, 2)" in str(e.value)
    assert "holds 3 documents that are not in `truth` (ids: 50, 51, 52)" in str(e.value)
    with pytest.raises(FineclassError, match=r"3 of the 50 documents to score have no prediction"):
        evaluate({"id": list(range(3, 50)), "label": yp[3:].tolist()}, truth)
    ev = evaluate(pred, truth, on_mismatch="intersect", bootstrap=0)
    assert ev.n == 47
    assert ev["accuracy"] == pytest.approx(np.mean(yt[3:50] == yp[:47]))
    assert any("not in `truth`" in x for x in ev.notes) and any("no prediction" in x for x in ev.notes)
    # ids= restricts both; an id outside the truth is named
    with pytest.raises(FineclassError, match=r"1 of the 3 documents in `ids` are not in `truth`") as e:
        evaluate(pred, truth, ids=[10, 11, 99])
    assert e.value.argument == "ids"
    assert evaluate(pred, truth, ids=[10, 11, 12], bootstrap=0).n == 3


def test_labels_outside_the_spec_are_wrong_predictions_with_a_warning():
    spec = LabelSpec(kind="single", classes=["econ", "health", "defence"])
    truth = {"id": [1, 2, 3, 4], "label": ["econ", "health", "defence", "econ"]}
    pred = {"id": [1, 2, 3, 4], "label": ["econ", "culture", "defence", "culture"]}
    with pytest.warns(EvaluationWarning, match=r"2 labels outside `spec` \(1 class: 'culture'\)"):
        ev = evaluate(pred, truth, spec=spec, bootstrap=0)
    assert ev["accuracy"] == 0.5
    assert any("culture" in x for x in ev.notes)
    conf = {(r["truth"], r["predicted"]): r["n"] for r in ev.confusion.to_pylist()}
    assert conf[("econ", "culture")] == 1 and conf[("health", "culture")] == 1
    # truth outside the spec is a data error
    with pytest.raises(FineclassError, match="not in `spec`") as e:
        evaluate(truth, {"id": [1, 2, 3, 4], "label": ["econ", "sport", "defence", "econ"]}, spec=spec)
    assert e.value.argument == "truth"
    # dimlevel: an invented dimension and an invented level are kept, wrong, and counted
    dspec = LabelSpec(kind="dimlevel", classes=["joy", "trust"])
    dtruth = {"id": [1, 1, 2], "dimension": ["joy", "trust", "joy"], "level": ["high", "low", "low"]}
    dpred = {
        "id": [1, 1, 2, 2],
        "dimension": ["joy", "trust", "joy", "hope"],
        "level": ["high", "vitality", "low", "high"],
    }
    with pytest.warns(EvaluationWarning) as rec:
        ev = evaluate(dpred, dtruth, spec=dspec, bootstrap=0)
    msgs = " ".join(str(w.message) for w in rec)
    assert "'vitality'" in msgs and "'hope'" in msgs
    assert ev["jaccard"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert ev["accD"] == pytest.approx((1 / 2 + 2 / 2) / 2)  # 'hope' is not a cell of accD
    assert ev["presence_micro_f1"] == pytest.approx(2 * 3 / (3 + 4))


def test_one_class_data_gives_null_not_nan():
    truth = {"id": [1, 2, 3], "label": ["a", "a", "a"]}
    with pytest.warns(EvaluationWarning) as rec:
        ev = evaluate({"id": [1, 2, 3], "label": ["a", "a", "a"]}, truth, bootstrap=50)
    msgs = " ".join(str(w.message) for w in rec)
    assert "single class" in msgs and "kappa is undefined" in msgs
    assert ev["kappa"] is None and ev["accuracy"] == 1.0
    row = [r for r in ev.metrics.to_pylist() if r["metric"] == "kappa"][0]
    assert row["lower"] is None and row["upper"] is None
    _no_nan(ev.metrics)
    _no_nan(ev.per_class)
    # agreement: coders who always give the same single value
    with pytest.warns(EvaluationWarning, match="undefined"):
        t = agreement({"id": [1, 2, 1, 2], "coder": ["x", "x", "y", "y"], "label": [1, 1, 1, 1]})
    assert t.filter(pc.match_substring(t.column("statistic"), "krippendorff")).column("estimate")[0].as_py() is None
    assert t.filter(pc.equal(t.column("statistic"), "cohen_kappa")).column("estimate")[0].as_py() is None
    _no_nan(t)
    # multi-label data with no labels at all: F1 undefined
    with pytest.warns(EvaluationWarning) as rec:
        ev = evaluate(
            {"id": [1, 2], "labels": [[], []]},
            {"id": [1, 2], "labels": [[], []]},
            kind="multi",
            spec=LabelSpec(kind="multi", classes=["a", "b"]),
            bootstrap=0,
        )
    msgs = " ".join(str(w.message) for w in rec)
    assert "micro_f1 is undefined" in msgs and "macro_f1 is undefined" in msgs
    assert ev["micro_f1"] is None and ev["jaccard"] == 1.0 and ev["exact_match"] == 1.0


def test_bad_arguments_name_the_argument():
    t = {"id": [1, 2], "label": ["a", "b"]}
    cases = [
        (dict(kind="binary"), "kind"),
        (dict(confidence=95), "confidence"),
        (dict(bootstrap=-1), "bootstrap"),
        (dict(on_mismatch="drop"), "on_mismatch"),
        (dict(id="doc"), "id"),
        (dict(label="topic"), "label"),
        (dict(cluster="school"), "cluster"),
        (dict(spec=42), "spec"),
    ]
    for kwargs, arg in cases:
        with pytest.raises(FineclassError) as e:
            evaluate(t, t, **kwargs)
        assert e.value.argument == arg, kwargs
    with pytest.raises(FineclassError) as e:
        evaluate("/nonexistent/predictions.parquet", t)
    assert e.value.argument == "predictions"
    with pytest.raises(FineclassError, match="the dimlevel shape") as e:
        evaluate(t, {"id": [1, 2], "dimension": ["x", "y"], "level": ["low", "low"]}, kind="single")
    assert e.value.argument == "kind"
    with pytest.raises(FineclassError, match="two different labels") as e:
        evaluate(t, {"id": [1, 1, 2], "dimension": ["x", "x", "y"], "level": ["low", "high", "low"]})
    assert e.value.argument == "truth"


def test_duplicated_cells_keep_the_most_confident_then_the_first_row():
    truth = {"id": ["a", "b"], "dimension": ["joy", "joy"], "level": ["high", "low"]}
    pred = {
        "id": ["a", "a", "b", "b"],
        "dimension": ["joy"] * 4,
        "level": ["low", "high", "low", "high"],
        "confidence": [0.2, 0.9, None, None],
    }
    with pytest.warns(EvaluationWarning, match="2 times"):
        ev = evaluate(pred, truth, bootstrap=0)
    # a: 0.9 beats 0.2 -> high (right); b: no confidence -> first row, low (right)
    assert ev["accD"] == 1.0 and ev["jaccard"] == 1.0
    pred["level"] = ["high", "low", "high", "low"]
    ev = _quiet(evaluate, pred, truth, bootstrap=0)
    assert ev["jaccard"] == 0.0


# ------------------------------------------------------------------------------------- intervals
def test_bootstrap_interval_coverage_is_nominal():
    """Known true accuracy 0.8; 95% percentile intervals over 1000 simulated test sets of 300 documents."""
    rng = np.random.default_rng(2024)
    p, n, reps = 0.8, 300, 1000
    hits = rng.random((reps, n)) < p
    covered = 0
    for r in range(reps):
        _, lo, hi = bootstrap_ci(hits[r].astype(float), resamples=1000, seed=r)
        covered += lo <= p <= hi
    assert 0.93 <= covered / reps <= 0.97, covered / reps


def test_cluster_bootstrap_widens_intervals_for_clustered_errors():
    rng = np.random.default_rng(0)
    n_clusters, size = 40, 10
    cluster_acc = rng.choice([0.3, 0.95], n_clusters)  # whole clusters are easy or hard
    hit = (rng.random((n_clusters, size)) < cluster_acc[:, None]).ravel()
    ids = list(range(n_clusters * size))
    truth = {"id": ids, "label": ["y"] * len(ids), "school": np.repeat(np.arange(n_clusters), size).tolist()}
    pred = {"id": ids, "label": np.where(hit, "y", "n").tolist()}
    plain = _quiet(evaluate, pred, truth, bootstrap=500).metrics.to_pylist()[0]
    clus = _quiet(evaluate, pred, truth, bootstrap=500, cluster="school").metrics.to_pylist()[0]
    assert plain["estimate"] == clus["estimate"]
    assert (clus["upper"] - clus["lower"]) > 1.5 * (plain["upper"] - plain["lower"])


def test_label_shares_by_group():
    rng = np.random.default_rng(4)
    n = 600
    ids = list(range(n))
    party = rng.choice(["left", "right"], n).tolist()
    year = rng.choice([2020, 2021], n).tolist()
    topic = [("health" if rng.random() < (0.6 if p == "left" else 0.2) else "economy") for p in party]
    groups = {"id": ids, "party": party, "year": year}
    t = label_shares({"id": ids, "label": topic}, groups, by=["party", "year"], bootstrap=400, seed=1)
    assert t.column_names == ["party", "year", "label", "documents", "n", "share", "lower", "upper"]
    assert t.num_rows == 2 * 2 * 2
    for r in t.to_pylist():
        members = [i for i in ids if party[i] == r["party"] and year[i] == r["year"]]
        n_label = sum(topic[i] == r["label"] for i in members)
        assert r["documents"] == len(members) and r["n"] == n_label
        assert r["share"] == pytest.approx(n_label / len(members))
        assert r["lower"] < r["share"] < r["upper"]
    left = [r for r in t.to_pylist() if r["party"] == "left" and r["label"] == "health"]
    right = [r for r in t.to_pylist() if r["party"] == "right" and r["label"] == "health"]
    assert min(x["lower"] for x in left) > max(x["upper"] for x in right)
    again = label_shares({"id": ids, "label": topic}, groups, by=["party", "year"], bootstrap=400, seed=1)
    assert again.equals(t)
    with pytest.raises(FineclassError) as e:
        label_shares({"id": ids, "label": topic}, groups, by=["region"])
    assert e.value.argument == "by"


def test_label_shares_dimlevel_on_flourishing(fl):
    """Share of tweets per dimension by split, from the human codes themselves (long table, by from ids)."""
    ids = pq.read_table(DATA / "labeled_ids.parquet")
    t = label_shares(fl["labels"].select(["id", "dimension", "level"]), ids, by="split", bootstrap=100)
    rows = {(r["split"], r["label"]): r for r in t.to_pylist()}
    assert rows[("test", "happiness")]["documents"] == 400
    tests = fl["test"].filter(pc.equal(fl["test"].column("dimension"), "happiness"))
    assert rows[("test", "happiness")]["n"] == len(set(tests.column("id").to_pylist()))


# ------------------------------------------------------------------------------------------ agreement
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units,
# values 1-5, missing values as None. Reported: nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797.
KRIPP = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def _kripp_long():
    rows = [(u + 1, c, v) for c, vs in KRIPP.items() for u, v in enumerate(vs) if v is not None]
    return {"id": [r[0] for r in rows], "coder": [r[1] for r in rows], "label": [r[2] for r in rows]}


@pytest.mark.parametrize(
    "level, expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_worked_example(level, expected):
    long = agreement(_kripp_long(), level=level)
    alpha = long.filter(pc.equal(long.column("statistic"), f"krippendorff_alpha_{level}")).to_pylist()[0]
    assert round(alpha["estimate"], 3) == expected
    assert alpha["n"] == 11  # unit 12 has a single value and is not pairable
    wide = agreement({"id": list(range(1, 13)), **KRIPP}, coder=["A", "B", "C", "D"], level=level)
    assert wide.equals(long)


def test_alpha_nominal_by_hand_on_the_example():
    """Nominal alpha from its definition (coincidence matrix), independent of the package."""
    units = list(zip(*KRIPP.values()))
    o = {}
    for vals in units:
        vals = [v for v in vals if v is not None]
        m = len(vals)
        if m < 2:
            continue
        for i, a in enumerate(vals):
            for j, b in enumerate(vals):
                if i != j:
                    o[(a, b)] = o.get((a, b), 0) + 1 / (m - 1)
    n_c = {}
    for (a, _), w in o.items():
        n_c[a] = n_c.get(a, 0) + w
    n = sum(n_c.values())
    d_o = sum(w for (a, b), w in o.items() if a != b)
    d_e = sum(n_c[a] * n_c[b] for a in n_c for b in n_c if a != b) / (n - 1)
    by_hand = 1 - d_o / d_e
    t = agreement(_kripp_long())
    assert t.filter(pc.equal(t.column("statistic"), "krippendorff_alpha_nominal")).column("estimate")[
        0
    ].as_py() == pytest.approx(by_hand, abs=1e-12)


def test_cohen_kappa_matches_scikit_learn_on_random_data():
    rng = np.random.default_rng(11)
    n = 250
    a = rng.integers(0, 4, n)
    b = np.where(rng.random(n) < 0.6, a, rng.integers(0, 4, n))
    c = np.where(rng.random(n) < 0.5, a, rng.integers(0, 4, n)).astype(float)
    c[rng.random(n) < 0.2] = np.nan  # coder c skipped some units
    t = agreement(
        {"unit": list(range(n)), "a": a.tolist(), "b": b.tolist(), "c": [None if np.isnan(x) else int(x) for x in c]},
        unit="unit",
        coder=["a", "b", "c"],
    )
    k = {(r["coder_a"], r["coder_b"]): r for r in t.to_pylist() if r["statistic"] == "cohen_kappa"}
    assert abs(k[("a", "b")]["estimate"] - cohen_kappa_score(a, b)) < 1e-9
    joint = ~np.isnan(c)
    assert abs(k[("a", "c")]["estimate"] - cohen_kappa_score(a[joint], c[joint].astype(int))) < 1e-9
    assert k[("a", "c")]["n"] == joint.sum() and k[("a", "b")]["n"] == n
    # weighted kappa for ordinal values with an explicit order
    names = np.array(["low", "medium", "high", "very high"])
    tw = agreement(
        {"id": list(range(n)) * 2, "coder": ["a"] * n + ["b"] * n, "label": names[a].tolist() + names[b].tolist()},
        level="ordinal",
        weights="quadratic",
        order=["low", "medium", "high", "very high"],
    )
    kw = tw.filter(pc.equal(tw.column("statistic"), "cohen_kappa_quadratic")).column("estimate")[0].as_py()
    assert abs(kw - cohen_kappa_score(a, b, weights="quadratic")) < 1e-9
    with pytest.raises(FineclassError) as e:
        agreement({"id": [1, 2], "coder": ["a", "b"], "label": ["x", "y"]}, level="ordinal")
    assert e.value.argument == "order"
    with pytest.raises(FineclassError) as e:
        agreement({"id": [1, 1], "coder": ["a", "a"], "label": [1, 2]})
    assert e.value.argument == "table"


def test_model_vs_coders():
    long = _kripp_long()
    # a model that copies coder D, except on units 6 and 8
    model = {"id": list(range(1, 13)), "label": [1, 2, 3, 3, 2, 1, 4, 2, 2, 5, 1, 3]}
    t = model_vs_coders(model, long)
    rows = t.to_pylist()
    mk = {r["coder_b"]: r for r in rows if r["statistic"] == "cohen_kappa" and r["coder_a"] == "model"}
    assert set(mk) == {"A", "B", "C", "D"}
    dvals = [v for v in KRIPP["D"]]
    joint = [u for u in range(12) if dvals[u] is not None]
    expected = cohen_kappa_score([model["label"][u] for u in joint], [dvals[u] for u in joint])
    assert mk["D"]["estimate"] == pytest.approx(expected, abs=1e-12) and mk["D"]["n"] == len(joint)
    alphas = {r["coder_a"]: r["estimate"] for r in rows if r["statistic"] == "krippendorff_alpha_nominal"}
    assert round(alphas["coders"], 3) == 0.743 and "coders+model" in alphas
    means = {r["coder_a"]: r["estimate"] for r in rows if r["statistic"] == "cohen_kappa_mean"}
    assert means["model"] == pytest.approx(np.mean([mk[c]["estimate"] for c in "ABCD"]))


# ------------------------------------------------------------------------------------- learning curves
def test_fit_curve_recovers_a_known_curve_and_labels_needed():
    rng = np.random.default_rng(0)
    a, b, c = 0.85, 2.0, 0.5
    sizes = np.repeat([100, 200, 400, 800, 1600], 3)
    scores = a - b * sizes ** (-c) + rng.normal(0, 0.005, sizes.size)
    fit = fit_curve(sizes, scores, resamples=200)
    assert isinstance(fit, CurveFit)
    assert fit.a == pytest.approx(a, abs=0.03) and fit.c == pytest.approx(c, abs=0.2)
    assert fit.predict([1600])[0] == pytest.approx(a - b * 1600**-c, abs=0.01)
    target = 0.75  # truly reached at n = (b / (a - target)) ** (1 / c) = 400
    row = labels_needed(fit, target).to_pylist()[0]
    assert row["labels"] == pytest.approx(400, rel=0.1)
    assert row["lower"] < 400 < row["upper"] and row["reachable_share"] == 1.0
    assert row["extrapolation"] == pytest.approx(row["labels"] / 1600)
    near = labels_needed(fit, 0.80).to_pylist()[0]  # truly 1600: near the asymptote, much less certain
    assert (near["upper"] - near["lower"]) / near["labels"] > 2 * (row["upper"] - row["lower"]) / row["labels"]
    with pytest.warns(EvaluationWarning, match="extrapolated far"):
        far = labels_needed(fit, 0.82).to_pylist()[0]
    assert far["labels"] > 3200 and far["extrapolation"] > 2
    with pytest.warns(EvaluationWarning, match="never reaches"):
        assert labels_needed(fit, 0.95).to_pylist()[0]["labels"] is None
    # a falling loss curve inverts too
    loss = fit_curve(sizes, 0.1 + 3.0 * sizes**-0.6 + rng.normal(0, 0.002, sizes.size))
    assert loss.b < 0 and loss.a == pytest.approx(0.1, abs=0.03)
    with pytest.raises(FineclassError) as e:
        fit_curve([100, 200, 100], [0.5, 0.6, 0.5])
    assert e.value.argument == "sizes"


def test_public_functions_are_not_hidden_by_submodules():
    """Importing every submodule must not rebind fineclass.train / evaluate to a module."""
    import importlib
    import pkgutil

    import fineclass

    for m in pkgutil.walk_packages(fineclass.__path__, "fineclass."):
        importlib.import_module(m.name)
    for name in ("train", "evaluate", "classify", "load", "learning_curve", "zero_shot", "propose"):
        assert callable(getattr(fineclass, name)) and not isinstance(getattr(fineclass, name), type(fineclass)), name


def test_labels_needed_refuses_a_curve_that_does_not_improve():
    """Scores that fall with more labels never 'reach' a higher target: null with a warning, not a tiny n."""
    sizes = np.repeat([20, 40, 80], 2)
    falling = 0.03 + 0.2 * sizes**-0.5 + np.tile([0.001, -0.001], 3)
    fit = fit_curve(sizes, falling, resamples=50)
    assert fit.b < 0
    with pytest.warns(EvaluationWarning, match="does not rise"):
        row = labels_needed(fit, 0.45).to_pylist()[0]
    assert row["labels"] is None and row["reachable_share"] == 0.0
    # the same falling curve, read as an error rate, does reach a lower target
    row = labels_needed(fit, 0.045, higher_is_better=False).to_pylist()[0]
    assert row["labels"] == pytest.approx((0.2 / 0.015) ** 2, rel=0.05)
