"""fineclass.estimate, draw_sample and plan_budget on the flourishing tweets.

The 2,000 labelled tweets are the population: labels.parquet holds their human codes, llama2_7b_finetuned.parquet
the fine-tuned Llama-2-7B's codes (the "model codes"). Agreement with ppi-python is checked on the same inputs;
coverage is checked by repeated random human samples (bench/estimate_coverage.py runs the large simulation).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import fineclass
from fineclass import FineclassError, LabelSpec

RENAME = {
    "capability)": "mastery (ability, capability)",
    "mastery (ability or capability)": "mastery (ability, capability)",
}
COMMON = ["happiness", "expressing empathy", "having hope", "anxiety", "self-esteem"]


@pytest.fixture(scope="module")
def tweets(flourishing):
    """ids of the 2,000 labelled tweets, their human codes, the Llama codes (long, dimension names fixed)."""
    ids = pq.read_table(flourishing / "labeled_ids.parquet").select(["id"])
    labels = pq.read_table(flourishing / "labels.parquet")
    codes = pq.read_table(flourishing / "llama2_7b_finetuned.parquet")
    codes = codes.filter(pc.is_in(codes["id"], value_set=ids["id"]))
    dims = sorted(set(labels["dimension"].to_pylist()))
    codes = codes.set_column(0, "dimension", pa.array([RENAME.get(d, d) for d in codes["dimension"].to_pylist()]))
    codes = codes.filter(pc.is_in(codes["dimension"], value_set=pa.array(dims)))
    return {"ids": ids, "labels": labels, "codes": codes, "dims": dims, "keys": ids["id"].to_pylist()}


def presence(table, keys, dim):
    have = {i for i, d in zip(table["id"].to_pylist(), table["dimension"].to_pylist()) if d == dim}
    return np.array([1.0 if k in have else 0.0 for k in keys])


def human_codes(tweets, sample):
    return tweets["labels"].filter(pc.is_in(tweets["labels"]["id"], value_set=sample["id"]))


def truth(tweets, dims):
    return {d: presence(tweets["labels"], tweets["keys"], d).mean() for d in dims}


@pytest.fixture(scope="module")
def ppi():
    """ppi-python with its numba helpers run as plain Python: the same arithmetic, without a minute of JIT
    compilation on this machine."""
    pytest.importorskip("numba")
    from numba.core import config

    before = config.DISABLE_JIT
    config.DISABLE_JIT = True
    try:
        import ppi_py
    finally:
        config.DISABLE_JIT = before
    return ppi_py


# ================================================================================ agreement with ppi-python
@pytest.mark.parametrize("method,lam", [("ppi", 1), ("ppi++", None)])
def test_shares_match_ppi_python(tweets, ppi, method, lam):
    sample = fineclass.draw_sample(tweets["ids"], 200, seed=3)
    inside = set(sample["id"].to_pylist())
    S = [k for k in tweets["keys"] if k in inside]
    U = [k for k in tweets["keys"] if k not in inside]
    dims = ["happiness", "anxiety", "expressing empathy"]
    out = fineclass.estimate(
        tweets["codes"],
        human_codes(tweets, sample),
        data=tweets["ids"],
        sample=sample,
        labels=dims,
        method=method,
        population="superpopulation",
        small_sample=False,
    ).to_pylist()
    for row, d in zip(out, dims):
        Y, Yh, Yu = (presence(tweets["labels"], S, d), presence(tweets["codes"], S, d), presence(tweets["codes"], U, d))
        lo, hi = ppi.ppi_mean_ci(Y, Yh, Yu, alpha=0.05, lam=lam)
        point = ppi.ppi_mean_pointestimate(Y, Yh, Yu, lam=lam)
        assert row["term"] == d
        assert row["estimate"] == pytest.approx(float(np.ravel(point)[0]), abs=1e-6)
        assert row["conf_low"] == pytest.approx(float(np.ravel(lo)[0]), abs=1e-6)
        assert row["conf_high"] == pytest.approx(float(np.ravel(hi)[0]), abs=1e-6)
        assert (row["lambda"] == 1.0) if method == "ppi" else (0 < row["lambda"] < 1)


@pytest.mark.filterwarnings("ignore:'penalty' was deprecated:FutureWarning")  # inside ppi-python's sklearn call
@pytest.mark.parametrize("family", ["ols", "logistic"])
@pytest.mark.parametrize("method,lam", [("ppi", 1), ("ppi++", None)])
def test_regressions_match_ppi_python(tweets, ppi, family, method, lam):
    keys = tweets["keys"]
    sample = fineclass.draw_sample(tweets["ids"], 300, seed=5)
    inside = set(sample["id"].to_pylist())
    si = np.array([k in inside for k in keys])
    y = presence(tweets["labels"], keys, "happiness")
    f = presence(tweets["codes"], keys, "happiness")
    x = np.random.default_rng(0).normal(size=len(keys)) + 0.8 * y
    X = np.column_stack([np.ones(len(keys)), x])
    fit = ppi.ppi_ols_ci if family == "ols" else ppi.ppi_logistic_ci
    lo, hi = fit(X[si], y[si], f[si], X[~si], f[~si], alpha=0.05, lam=lam)
    data = tweets["ids"].append_column("x", pa.array(x))
    out = fineclass.estimate(
        tweets["codes"],
        human_codes(tweets, sample),
        data=data,
        sample=sample,
        regression=family,
        outcome="happiness",
        covariates="x",
        method=method,
        population="superpopulation",
        small_sample=False,
    ).to_pylist()
    assert [r["term"] for r in out] == ["(Intercept)", "x"]
    for j, r in enumerate(out):
        assert r["conf_low"] == pytest.approx(lo[j], abs=1e-6)
        assert r["conf_high"] == pytest.approx(hi[j], abs=1e-6)
        assert r["estimate"] == pytest.approx((lo[j] + hi[j]) / 2, abs=1e-6)


# ================================================================================ coverage by simulation
def test_coverage_on_repeated_samples(tweets):
    """PPI++ (the default) covers the population shares about 95% of the time; the naive model-only interval
    misses a share the model gets wrong; the model's codes make the interval narrower than the human sample's."""
    dims = COMMON + ["balance in the various aspects of own life"]
    true = truth(tweets, dims)
    draws, n = 120, 200
    cover = np.zeros(len(dims))
    human_cover = np.zeros(len(dims))
    width = np.zeros(len(dims))
    human_width = np.zeros(len(dims))
    model_cover = np.zeros(len(dims))
    for r in range(draws):
        sample = fineclass.draw_sample(tweets["ids"], n, seed=100 + r)
        t = fineclass.estimate(
            tweets["codes"], human_codes(tweets, sample), data=tweets["ids"], sample=sample, labels=dims
        )
        tv = np.array([true[d] for d in t["term"].to_pylist()])
        cover += (t["conf_low"].to_numpy() <= tv) & (tv <= t["conf_high"].to_numpy())
        human_cover += (t["human_conf_low"].to_numpy() <= tv) & (tv <= t["human_conf_high"].to_numpy())
        model_cover += (t["model_conf_low"].to_numpy() <= tv) & (tv <= t["model_conf_high"].to_numpy())
        width += t["conf_high"].to_numpy() - t["conf_low"].to_numpy()
        human_width += t["human_conf_high"].to_numpy() - t["human_conf_low"].to_numpy()
    pooled = cover.sum() / (draws * len(dims))
    assert 0.92 <= pooled <= 0.98, cover / draws
    assert (cover / draws).min() >= 0.88
    assert 0.92 <= human_cover.sum() / (draws * len(dims)) <= 0.98
    # the model marks "balance..." on 298 tweets where the coders saw 158: its own interval never covers
    assert model_cover[dims.index("balance in the various aspects of own life")] == 0
    assert np.median(width / human_width) < 0.95


def test_finite_population_interval_is_the_design_interval(tweets):
    """With small_sample=False and lambda=1, the finite-population interval is the textbook one for a simple random
    sample: mean of the codes + mean of the errors, variance (1 - n/N) s^2 / n."""
    sample = fineclass.draw_sample(tweets["ids"], 250, seed=9)
    inside = set(sample["id"].to_pylist())
    keys = tweets["keys"]
    si = np.array([k in inside for k in keys])
    t = fineclass.estimate(
        tweets["codes"],
        human_codes(tweets, sample),
        data=tweets["ids"],
        sample=sample,
        labels="anxiety",
        method="ppi",
        small_sample=False,
    ).to_pylist()[0]
    y, f = presence(tweets["labels"], keys, "anxiety"), presence(tweets["codes"], keys, "anxiety")
    e = y[si] - f[si]
    assert t["estimate"] == pytest.approx(f.mean() + e.mean(), abs=1e-12)
    assert t["std_error"] == pytest.approx(np.sqrt((1 - 250 / 2000) * e.var(ddof=1) / 250), rel=1e-10)
    assert t["n_human"] == 250 and t["n_total"] == 2000 and t["design"] == "srs"
    # PPI++ in a finite population: lambda = cov(y, f) / var(f) on the sample (the regression estimator)
    tuned = fineclass.estimate(
        tweets["codes"],
        human_codes(tweets, sample),
        data=tweets["ids"],
        sample=sample,
        labels="anxiety",
        small_sample=False,
    ).to_pylist()[0]
    lam = np.cov(y[si], f[si])[0, 1] / f[si].var(ddof=1)
    assert 0 < lam < 1 and tuned["lambda"] == pytest.approx(lam, rel=1e-10)
    e = y[si] - lam * f[si]
    assert tuned["estimate"] == pytest.approx(lam * f.mean() + e.mean(), abs=1e-12)
    assert tuned["std_error"] == pytest.approx(np.sqrt((1 - 250 / 2000) * e.var(ddof=1) / 250), rel=1e-10)


def test_dsl_pseudo_outcomes_are_the_mean_of_the_corrected_predictions():
    from fineclass.estimation import _shares

    rng = np.random.default_rng(3)
    g = rng.random((500, 2))
    rows = rng.choice(500, 80, replace=False)
    y = (rng.random((80, 2)) < g[rows]).astype(float)
    w = np.full(80, 500 / 80)
    fit = _shares.pseudo_outcomes(y, g[rows], g, w, pseudo=0)
    tilde = g.copy()
    tilde[rows] += w[:, None] * (y - g[rows])
    np.testing.assert_allclose(fit.estimate, tilde.mean(0), atol=1e-12)
    np.testing.assert_allclose(fit.variance, tilde.var(0, ddof=1) / 500, rtol=1e-10)
    assert np.all(_shares.pseudo_outcomes(y, g[rows], g, w, pseudo=1).variance > fit.variance)


def test_pseudo_documents_keep_a_sample_without_disagreements_from_a_zero_interval(tweets):
    # "seeking for forgiveness": 5 of 2,000 tweets; a sample of 100 almost never holds a disagreement
    sample = fineclass.draw_sample(tweets["ids"], 100, seed=1)
    human = human_codes(tweets, sample)
    args = dict(data=tweets["ids"], sample=sample, labels="seeking for forgiveness", method="ppi")
    plain = fineclass.estimate(tweets["codes"], human, small_sample=False, **args).to_pylist()[0]
    kept = fineclass.estimate(tweets["codes"], human, **args).to_pylist()[0]
    assert plain["std_error"] == 0.0
    assert kept["std_error"] > 0.005 and kept["estimate"] == plain["estimate"]
    assert kept["conf_low"] <= 5 / 2000 <= kept["conf_high"]


def test_stratified_and_poisson_designs_are_unbiased_and_cover(tweets):
    """Oversampling the tweets the model marks happy (stratified) or its uncertain ones (Poisson) changes the
    weights, not the answer."""
    keys = tweets["keys"]
    happy = presence(tweets["codes"], keys, "happiness")
    rng = np.random.default_rng(4)
    data = (
        tweets["ids"]
        .append_column("pred", pa.array(np.where(happy > 0, "happy", "other")))
        .append_column("unsure", pa.array(rng.random(len(keys)) * (1 + 2 * happy)))
    )
    dims = ["happiness", "expressing empathy", "anxiety"]
    true = np.array([truth(tweets, dims)[d] for d in dims])
    for how in (
        {"method": "stratified", "strata": "pred", "allocation": "equal"},
        {"method": "uncertainty", "uncertainty": "unsure"},
    ):
        est, cov = [], 0
        for r in range(60):
            sample = fineclass.draw_sample(data, 200, seed=r, **how)
            t = fineclass.estimate(tweets["codes"], human_codes(tweets, sample), data=data, sample=sample, labels=dims)
            est.append(t["estimate"].to_numpy())
            cov += ((t["conf_low"].to_numpy() <= true) & (true <= t["conf_high"].to_numpy())).sum()
            assert t["design"][0].as_py() == ("stratified" if how["method"] == "stratified" else "poisson")
        est = np.array(est)
        se = est.std(0, ddof=1) / np.sqrt(len(est))
        assert np.all(np.abs(est.mean(0) - true) < 3.5 * se + 1e-3), (how, est.mean(0), true)
        assert cov / (60 * len(dims)) >= 0.88


def test_regression_with_a_coded_covariate_covers(tweets):
    """x ~ happiness, with happiness coded: the model's errors bias its slope; PPI++ and DSL cover it."""
    keys = tweets["keys"]
    y = presence(tweets["labels"], keys, "happiness")
    x = np.random.default_rng(7).normal(size=len(keys)) + 0.8 * y
    data = tweets["ids"].append_column("x", pa.array(x))
    slope = np.polyfit(y, x, 1)[0]
    for method in ("ppi++", "dsl"):
        cover = model_cover = 0
        se, human_se = [], []
        for r in range(40):
            sample = fineclass.draw_sample(data, 300, seed=500 + r)
            row = fineclass.estimate(
                tweets["codes"],
                human_codes(tweets, sample),
                data=data,
                sample=sample,
                regression="ols",
                outcome="x",
                covariates="happiness",
                method=method,
            ).to_pylist()[1]
            assert row["term"] == "happiness" and row["outcome"] == "x"
            cover += row["conf_low"] <= slope <= row["conf_high"]
            model_cover += row["model_conf_low"] <= slope <= row["model_conf_high"]
            se.append(row["std_error"])
            human_se.append(row["human_std_error"])
        assert cover >= 34, (method, cover)
        assert np.mean(se) < 0.85 * np.mean(human_se)
        assert model_cover == 0


def test_small_sample_coefficients_use_satterthwaite_t(tweets):
    """A coefficient's interval is estimate +- t(df) * std_error, df the documents that carry its variance; the
    same call with small_sample=False gives the normal interval; shares have no df."""
    from scipy.stats import norm
    from scipy.stats import t as student

    keys = tweets["keys"]
    y = presence(tweets["labels"], keys, "happiness")
    data = tweets["ids"].append_column("x", pa.array(np.random.default_rng(3).normal(size=len(keys)) + y))
    sample = fineclass.draw_sample(data, 100, seed=4)
    args = dict(data=data, sample=sample, regression="ols", outcome="happiness", covariates="x")
    human = human_codes(tweets, sample)
    small = fineclass.estimate(tweets["codes"], human, **args).to_pylist()[1]
    plain = fineclass.estimate(tweets["codes"], human, small_sample=False, **args).to_pylist()[1]
    assert small["estimate"] == plain["estimate"] and small["std_error"] == plain["std_error"]
    assert 2 < small["df"] < 100 and plain["df"] is None
    q = student.ppf(0.975, small["df"])
    assert small["conf_high"] == pytest.approx(small["estimate"] + q * small["std_error"], rel=1e-12)
    assert plain["conf_high"] == pytest.approx(plain["estimate"] + norm.ppf(0.975) * plain["std_error"], rel=1e-12)
    shares = fineclass.estimate(tweets["codes"], human, data=data, sample=sample, labels="happiness")
    assert shares["df"].null_count == 1


# ================================================================================ DSL, groups, shapes
def test_dsl_uses_the_seed_and_the_model_codes(tweets):
    sample = fineclass.draw_sample(tweets["ids"], 200, seed=2)
    human = human_codes(tweets, sample)

    def run(seed):
        return fineclass.estimate(
            tweets["codes"],
            human,
            data=tweets["ids"],
            sample=sample,
            labels=COMMON,
            method="dsl",
            seed=seed,
        )

    a, b, c = run(0), run(0), run(1)
    assert a.equals(b)
    assert not np.allclose(a["estimate"].to_numpy(), c["estimate"].to_numpy())
    assert a["lambda"].null_count == a.num_rows
    # the codes carry information: DSL's intervals are narrower than the human sample's for these dimensions
    assert (a["std_error"].to_numpy() < a["human_std_error"].to_numpy()).sum() >= 4


def test_shares_by_group_and_document_level_codes():
    """Single-label predictions with a group column: shares per group; a group without human codes is null."""
    rng = np.random.default_rng(1)
    N = 1200
    true = rng.choice(["a", "b", "c"], N, p=[0.5, 0.3, 0.2])
    pred = np.where(rng.random(N) < 0.8, true, rng.choice(["a", "b", "c"], N))
    party = np.where(np.arange(N) < 1190, rng.choice(["x", "y"], N), "z")  # party z: 10 documents
    codes = pa.table({"id": np.arange(N), "label": pred, "confidence": rng.random(N), "party": party})
    sample = fineclass.draw_sample(codes.filter(pc.not_equal(codes["party"], "z")), 300, seed=2)
    sid = sample["id"].to_numpy()
    human = pa.table({"id": sid, "label": true[sid]})
    with pytest.warns(UserWarning, match="no human-coded document"):
        t = fineclass.estimate(codes, human, sample=sample.drop_columns(["probability", "design"]), by="party")
    assert t.column_names[:3] == ["party", "estimand", "outcome"]
    assert t.num_rows == 9
    rows = {(r["party"], r["term"]): r for r in t.to_pylist()}
    for p in "xy":
        m = party == p
        assert rows[(p, "a")]["n_total"] == m.sum()
        assert rows[(p, "a")]["n_human"] == np.isin(sid, np.flatnonzero(m)).sum()
        for lab in "abc":
            r = rows[(p, lab)]
            assert r["conf_low"] - 0.05 < (true[m] == lab).mean() < r["conf_high"] + 0.05
            assert r["model_estimate"] == pytest.approx((pred[m] == lab).mean())
    assert rows[("z", "a")]["estimate"] is None and rows[("z", "a")]["n_human"] == 0


def test_multilabel_lists_and_dimension_records_give_the_same_shares(tweets):
    """The same codes as a long table, as lists of labels and as lists of {dimension, level} records."""
    keys = tweets["keys"]
    sample = fineclass.draw_sample(tweets["ids"], 150, seed=8)
    per_doc = {k: [] for k in keys}
    for i, d, lv in zip(*(tweets["codes"][c].to_pylist() for c in ("id", "dimension", "level"))):
        per_doc[i].append({"dimension": d, "level": lv})
    records = pa.table({"id": keys, "labels": [per_doc[k] for k in keys]})
    lists = pa.table({"id": keys, "labels": [sorted({e["dimension"] for e in per_doc[k]}) for k in keys]})
    human = human_codes(tweets, sample)
    long = fineclass.estimate(tweets["codes"], human, data=tweets["ids"], sample=sample, labels=COMMON)
    for table in (records, lists):
        other = fineclass.estimate(table, human, sample=sample, labels=COMMON)
        np.testing.assert_allclose(other["estimate"].to_numpy(), long["estimate"].to_numpy(), atol=1e-12)
        np.testing.assert_allclose(other["std_error"].to_numpy(), long["std_error"].to_numpy(), atol=1e-12)


# ================================================================================ sampling
def test_draw_sample_simple_is_reproducible_and_ignores_row_order(tweets):
    ids = tweets["ids"]
    a = fineclass.draw_sample(ids, 50, seed=11)
    b = fineclass.draw_sample(ids.take(pa.array(np.random.default_rng(0).permutation(ids.num_rows))), 50, seed=11)
    c = fineclass.draw_sample(ids, 50, seed=12)
    assert a.column_names == ["id", "probability", "design", "stratum"]
    assert a.equals(b)
    assert a["id"].to_pylist() != c["id"].to_pylist()
    assert a.num_rows == 50 and len(set(a["id"].to_pylist())) == 50
    np.testing.assert_allclose(a["probability"].to_numpy(), 50 / 2000)


def test_draw_sample_stratified_probabilities_are_the_drawn_fractions():
    labels = np.array(["a"] * 70 + ["b"] * 25 + ["c"] * 5)
    data = pa.table({"id": [f"d{i}" for i in range(100)], "label": labels})
    s = fineclass.draw_sample(data, 20, method="stratified", strata="label", seed=0)
    got = {
        r["stratum"]: r for r in s.group_by("stratum").aggregate([("id", "count"), ("probability", "max")]).to_pylist()
    }
    # proportional (14, 5, 1), at least 2 each: the largest stratum gives one to the smallest
    assert {k: v["id_count"] for k, v in got.items()} == {"a": 13, "b": 5, "c": 2}
    for h, size in (("a", 70), ("b", 25), ("c", 5)):
        assert got[h]["probability_max"] == pytest.approx(got[h]["id_count"] / size)
    eq = fineclass.draw_sample(data, 12, method="stratified", strata="label", allocation="equal", seed=0)
    assert sorted(pc.value_counts(eq["stratum"]).field("counts").to_pylist()) == [4, 4, 4]
    given = fineclass.draw_sample(data, 10, method="stratified", strata="label", allocation={"a": 3, "b": 3, "c": 4})
    assert sorted(pc.value_counts(given["stratum"]).field("counts").to_pylist()) == [3, 3, 4]


def test_draw_sample_by_uncertainty_draws_each_document_with_its_probability():
    u = np.r_[np.zeros(30), np.linspace(0.1, 1, 30)]
    data = pa.table({"id": np.arange(60), "confidence": 1 - u})
    first = fineclass.draw_sample(data, 12, method="uncertainty", seed=0)
    prob = dict(zip(first["id"].to_pylist(), first["probability"].to_pylist()))
    expected = 12 * (0.5 / 60 + 0.5 * u / u.sum())
    for i, p in prob.items():
        assert p == pytest.approx(expected[i])
    counts, sizes = np.zeros(60), []
    draws = 1500
    for seed in range(draws):
        s = fineclass.draw_sample(data, 12, method="uncertainty", seed=seed)
        counts[s["id"].to_numpy()] += 1
        sizes.append(s.num_rows)
    freq = counts / draws
    assert np.all(np.abs(freq - expected) < 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-3)
    assert abs(np.mean(sizes) - 12) < 0.3
    # a certain model still leaves every document a chance; probabilities are capped at 1
    capped = fineclass.draw_sample(data, 55, method="uncertainty", uniform_share=0.05, seed=0)
    assert capped["probability"].to_numpy().max() <= 1.0


# ================================================================================ budget
def test_plan_budget_from_a_learning_curve():
    from fineclass.evaluation import fit_curve, labels_needed

    sizes = np.repeat([100, 200, 400, 800], 3)
    scores = 0.7 - 0.9 * sizes**-0.5 + np.tile([-0.004, 0.0, 0.004], 4)
    needed = labels_needed(fit_curve(sizes, scores, seed=0), 0.66)
    n = needed["labels"][0].as_py()
    plan = fineclass.plan_budget(
        needed,
        {
            "llama": {"acceptance": 0.5, "seconds": 10, "cost": 0.002},
            "gpt4": {"acceptance": 0.8, "seconds": 12, "items": 2},
        },
        scratch_seconds=60,
        correction_seconds=30,
        hourly_rate=20,
    )
    rows = {(r["route"], r["proposer"]): r for r in plan.to_pylist()}
    assert set(rows) == {
        ("scratch", None),
        ("review", "llama"),
        ("review", "gpt4"),
        ("review+correct", "llama"),
        ("review+correct", "gpt4"),
    }
    assert rows[("scratch", None)]["coder_hours"] == pytest.approx(n * 60 / 3600)
    assert rows[("review", "llama")]["documents"] == int(np.ceil(n / 0.5))
    assert rows[("review", "llama")]["coder_hours"] == pytest.approx(n / 0.5 * 10 / 3600)
    assert rows[("review", "llama")]["api_cost"] == pytest.approx(n / 0.5 * 0.002)
    assert rows[("review", "gpt4")]["proposals"] == int(np.ceil(n / 0.8 * 2))
    assert rows[("review+correct", "gpt4")]["coder_hours"] == pytest.approx(n * (2 * 12 + 0.2 * 30) / 3600)
    assert rows[("review", "llama")]["speedup"] == pytest.approx(60 / 20)
    lo, hi = needed["lower"][0].as_py(), needed["upper"][0].as_py()
    assert rows[("scratch", None)]["coder_hours_low"] == pytest.approx(lo * 60 / 3600)
    assert rows[("scratch", None)]["coder_hours_high"] == pytest.approx(hi * 60 / 3600)
    assert rows[("scratch", None)]["total_cost"] == pytest.approx(n * 60 / 3600 * 20)
    # the acceptance report's proposer table (rate) with the coders' seconds added
    table = pa.table({"proposer": ["a"], "decisions": [10], "accepted": [4], "rate": [0.4], "seconds": [5.0]})
    assert fineclass.plan_budget(100, table, scratch_seconds=30).to_pylist()[1]["documents"] == 250


def test_plan_budget_errors():
    from fineclass.evaluation import fit_curve, labels_needed

    sizes = np.repeat([100, 200, 400], 2)
    fit = fit_curve(sizes, 0.5 - 0.5 * sizes**-0.5 + np.tile([-0.001, 0.001], 3), seed=0)
    with pytest.warns(UserWarning):
        never = labels_needed(fit, 0.9)
    with pytest.raises(FineclassError, match="does not reach") as e:
        fineclass.plan_budget(never, scratch_seconds=30)
    assert e.value.argument == "labels"
    with pytest.raises(FineclassError) as e:
        fineclass.plan_budget(100, {"m": {"acceptance": 0, "seconds": 3}}, scratch_seconds=30)
    assert e.value.argument == "proposers"
    with pytest.raises(FineclassError) as e:
        fineclass.plan_budget(100, scratch_seconds=-1)
    assert e.value.argument == "scratch_seconds"


# ================================================================================ bad input
@pytest.fixture(scope="module")
def small():
    N = 200
    rng = np.random.default_rng(0)
    codes = pa.table({"id": [f"t{i}" for i in range(N)], "label": rng.choice(["pos", "neg"], N)})
    sample = fineclass.draw_sample(codes, 40, seed=0)
    human = pa.table(
        {"id": sample["id"], "label": rng.choice(["pos", "neg"], 40), "probability": sample["probability"]}
    )
    return codes, human, sample


def _err(argument, *args, match=None, **kwargs):
    with pytest.raises(FineclassError, match=match) as e:
        fineclass.estimate(*args, **kwargs)
    assert e.value.argument == argument, str(e.value)
    return str(e.value)


def test_bad_inputs_name_the_argument(small, tweets):
    codes, human, sample = small
    stray = pa.concat_tables([human, pa.table({"id": ["nope"], "label": ["pos"], "probability": [0.2]})])
    assert "nope" in _err("human", codes, stray, match="not in `codes`")
    bad_p = human.set_column(2, "probability", pa.array([0.0] + [0.2] * 39))
    _err("probability", codes, bad_p, match=r"outside \(0, 1\]")
    _err("probability", codes, human.set_column(2, "probability", pa.array([1.5] * 40)))
    _err("human", codes, human.slice(0, 0), match="empty")
    spec = LabelSpec(kind="single", classes=["pos", "neg"])
    odd = human.set_column(1, "label", pa.array(["pos"] * 39 + ["maybe"]))
    assert "maybe" in _err("human", codes, odd, spec=spec, match="not in the label set")
    _err("labels", codes, human, labels=["neutral"], match="not in the label set")
    _err(
        "data",
        tweets["codes"],
        human_codes(tweets, fineclass.draw_sample(tweets["ids"], 50, seed=0)),
        match="long table",
    )
    _err("sample", tweets["codes"], tweets["labels"], data=tweets["ids"], match="long table")
    _err("human", codes, human, sample=sample.slice(0, 30), match="not in `sample`")
    _err("method", codes, human, method="ipw")
    _err("population", codes, human, population="infinite")
    _err("confidence", codes, human, confidence=95)
    _err("folds", codes, human, method="dsl", folds=30, match="at least 60")
    _err("regression", codes, human, regression="probit")
    _err("outcome", codes, human, regression="ols", outcome="income", match="neither")
    _err("outcome", codes, human, regression="ols", outcome="id", covariates=[], match="no coded label")
    _err("by", codes, human, regression="ols", outcome="pos", by="label")
    _err(
        "covariates",
        codes.append_column("party", pa.array(["a", "b"] * 100)),
        human,
        regression="ols",
        outcome="pos",
        covariates=["party"],
        match="numeric",
    )
    _err(
        "outcome",
        codes.append_column("score", pa.array([0.5] * 200)),
        human,
        regression="logistic",
        outcome="score",
        covariates=["pos"],
        match="0/1",
    )
    _err("by", codes, human, by="party", match="not found")


def test_bad_designs_name_the_argument(small):
    codes, human, sample = small
    strata = pa.array(["s1"] * 39 + ["s2"])
    _err("stratum", codes, human.append_column("stratum", strata), match="one sampled document")
    mixed = human.set_column(2, "probability", pa.array([0.2] * 20 + [0.1] * 20))
    _err(
        "probability",
        codes,
        mixed.append_column("stratum", pa.array(["s1"] * 30 + ["s2"] * 10)),
        match="different probabilities",
    )
    _err("design", codes, mixed, design="srs")
    _err("population", codes, mixed, population="superpopulation")
    with pytest.warns(UserWarning, match="add up to"):
        fineclass.estimate(
            codes, human.set_column(2, "probability", pa.array([0.5] * 40)), design="stratified", stratum="label"
        )


def test_sampling_errors_name_the_argument(small):
    codes = small[0]
    for kwargs, argument in (
        ({"size": 0}, "size"),
        ({"size": 201}, "size"),
        ({"size": 10, "method": "cluster"}, "method"),
        ({"size": 10, "method": "stratified"}, "strata"),
        ({"size": 10, "method": "stratified", "strata": "party"}, "strata"),
        ({"size": 3, "method": "stratified", "strata": "label"}, "size"),
        ({"size": 10, "method": "uncertainty"}, "uncertainty"),
        ({"size": 10, "seed": -1}, "seed"),
    ):
        with pytest.raises(FineclassError) as e:
            fineclass.draw_sample(codes, **kwargs)
        assert e.value.argument == argument
    neg = codes.append_column("u", pa.array([-1.0] * 200))
    with pytest.raises(FineclassError) as e:
        fineclass.draw_sample(neg, 10, method="uncertainty", uncertainty="u")
    assert e.value.argument == "uncertainty"


def test_root_names_stay_functions():
    import importlib

    importlib.import_module("fineclass.estimation.sampling")
    assert callable(fineclass.estimate) and fineclass.estimate.__name__ == "estimate"
    assert fineclass.draw_sample.__name__ == "draw_sample" and fineclass.plan_budget.__name__ == "plan_budget"


# ================================================================================ the command line
def test_cli_sample_and_estimate_give_the_python_results(tweets, tmp_path, capsys):
    from fineclass.cli import main as cli_main

    for name in ("ids", "labels", "codes"):
        pq.write_table(tweets[name], tmp_path / f"{name}.parquet")
    run = lambda *argv: cli_main([str(a) for a in argv])  # noqa: E731
    out = ("-o", tmp_path / "sample.parquet", "--rows-output", tmp_path / "drawn.parquet")
    assert run("sample", tmp_path / "ids.parquet", "-n", 200, "--seed", 4, *out) == 0
    sample = pq.read_table(tmp_path / "sample.parquet")
    assert sample.equals(fineclass.draw_sample(tweets["ids"], 200, seed=4))
    assert pq.read_table(tmp_path / "drawn.parquet").column("id").to_pylist() == sample.column("id").to_pylist()
    pq.write_table(human_codes(tweets, sample), tmp_path / "human.parquet")
    labels = ["happiness", "mastery (ability, capability)"]  # a label with a comma stays one label
    files = (tmp_path / "codes.parquet", tmp_path / "human.parquet", "--data", tmp_path / "ids.parquet")
    argv = ("estimate", *files, "--sample", tmp_path / "sample.parquet", "--labels", *labels)
    assert run(*argv, "-o", tmp_path / "est.parquet") == 0
    assert "happiness" in capsys.readouterr().out
    got = pq.read_table(tmp_path / "est.parquet")
    want = fineclass.estimate(
        tweets["codes"], human_codes(tweets, sample), data=tweets["ids"], sample=sample, labels=labels
    )
    assert got.column("term").to_pylist() == labels
    for c in ("estimate", "conf_low", "conf_high", "model_estimate", "human_estimate", "effective_n"):
        assert got.column(c).to_pylist() == pytest.approx(want.column(c).to_pylist(), abs=1e-12)
    # bad input: status 2 and the argument named
    assert run(*argv, "--confidence", 95) == 2
    assert "confidence" in capsys.readouterr().err
