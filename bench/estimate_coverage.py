"""Coverage of fineclass.estimate() by simulation on the flourishing tweets (issue 20's acceptance).

The 2,000 labelled tweets are the population: their human codes (labels.parquet) give the true share of each of
the 46 dimensions. A model's codes for the same tweets (the paper's fine-tuned Llama-2-7B, or GPT-4 zero-shot)
are the "model codes" of every document. Each draw takes a simple random sample of n tweets as the "human
sample" (their codes from labels.parquet), calls fineclass.estimate() and records whether each 95% interval
covers the true share, and its width. Beside it: the naive model-only interval (the codes taken as the truth)
and the human-only one. Then the same for regression coefficients with a synthetic covariate
x = N(0, 1) + 0.8 * [the tweet has happiness], fixed once for the population:

- "happiness ~ x" (OLS, the coded label is the outcome): the slope of x;
- "x ~ happiness" (OLS, the coded label is a covariate): the slope of happiness;
- "happiness ~ x" (logistic): the slope of x.

The model's dimension names are mapped to the label set where they differ only in spelling ("capability)" and
"mastery (ability or capability)" -> "mastery (ability, capability)"); its codes outside the 46 dimensions are
dropped (they are counted in the output).

    FINECLASS_DATA=../shared/data/flourishing python bench/estimate_coverage.py --model llama2_7b_finetuned
    python bench/estimate_coverage.py --model gpt4_zero_shot --draws 1000

The label shares are computed without rebuilding Arrow tables for every draw: the codes are read into 0/1
matrices once (with estimate()'s own readers) and each draw calls estimate()'s arithmetic (the sampling design,
the share estimators, DSL's cross-fitting) on the sampled rows. The first ``--check-draws`` draws of every size
also call fineclass.estimate() itself, and the run stops if any interval differs by more than 1e-9: the fast
path is the same computation, not a copy of it. Regression coefficients go through estimate() on every draw
(``--regression-draws``; ``--no-regression`` skips them).

``--pseudo`` overrides the weight of the small-sample pseudo-documents per cell (default: estimate()'s own,
``small_sample=True``); with it set, the check against estimate() is skipped.

Writes bench/results/estimate-coverage-<model>.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))
import fineclass  # noqa: E402
import fineclass.estimation._shares as sh  # noqa: E402
from fineclass.estimation._design import make_design  # noqa: E402
from fineclass.estimation._dsl import code_features, crossfit  # noqa: E402
from fineclass.estimation._inputs import confidence_matrix, indicator, read_coded  # noqa: E402
from fineclass.estimation.core import SMALL_SAMPLE_PSEUDO, _effective_n  # noqa: E402

RENAME = {
    "capability)": "mastery (ability, capability)",
    "mastery (ability or capability)": "mastery (ability, capability)",
}
SHARE_RUNS = [("ppi++", "finite"), ("ppi", "finite"), ("dsl", "finite"), ("ppi++", "superpopulation")]
REGRESSIONS = [
    ("ols", "happiness", "x", "x"),
    ("ols", "x", "happiness", "happiness"),
    ("logistic", "happiness", "x", "x"),
]
REG_METHODS = ["ppi++", "dsl"]


def load(data_dir: Path, model: str):
    ids = pq.read_table(data_dir / "labeled_ids.parquet").select(["id"])
    labels = pq.read_table(data_dir / "labels.parquet")
    codes = pq.read_table(data_dir / f"{model}.parquet")
    codes = codes.filter(pc.is_in(codes["id"], value_set=ids["id"]))
    dims = sorted(set(labels["dimension"].to_pylist()))
    renamed = pa.array([RENAME.get(x, x) for x in codes["dimension"].to_pylist()])
    codes = codes.set_column(codes.column_names.index("dimension"), "dimension", renamed)
    inside = pc.is_in(codes["dimension"], value_set=pa.array(dims))
    dropped = codes.num_rows - pc.sum(inside).as_py()
    codes = codes.filter(inside)
    return ids, labels, codes, dims, dropped


def matrices(labels: pa.Table, codes: pa.Table, keys: list, dims: list):
    """0/1 matrices of the human codes and the model's codes (and its confidences), read as estimate() reads them."""
    hum = read_coded(labels, "human", id="id", label=None)
    cod = read_coded(codes, "codes", id="id", label=None)
    return indicator(hum.sets, keys, dims), indicator(cod.sets, keys, dims), confidence_matrix(cod, keys, dims)


def sample_rows(keys: list, n: int, seed: int) -> np.ndarray:
    """The rows fineclass.draw_sample(ids, n, seed=seed) draws (a simple random sample without replacement)."""
    order = np.array(sorted(range(len(keys)), key=lambda i: keys[i]), dtype=np.int64)
    rows = np.sort(order[np.random.default_rng(seed).choice(len(keys), n, replace=False)])
    return np.array(sorted(rows, key=lambda r: keys[r]), dtype=np.int64)


def share_fits(Y, F, feats, rows, method, population, pseudo, folds=5, seed=0):
    """estimate()'s shares for one simple random sample (no groups): the fit and the human-only fit."""
    N, L = F.shape
    n = len(rows)
    design = make_design("srs", None, None, n, N)
    dom = np.ones(n, bool)
    Ys = Y[rows]
    if method == "dsl":
        A = crossfit(feats, Ys, rows, folds=folds, seed=seed)
        lam = 1.0
    else:
        A, lam = F, ("tune" if method == "ppi++" else 1.0)
    if population == "finite":
        hfit = sh.finite(Ys, np.zeros_like(Ys), np.zeros(L), design, dom, 0.0, pseudo)
        fit = sh.finite(Ys, A[rows], A.mean(0), design, dom, lam, pseudo)
        return fit, hfit
    out = np.ones(N, bool)
    out[rows] = False
    zero = np.zeros((n, L))
    if method == "dsl":
        fit = sh.pseudo_outcomes(Ys, A[rows], A, design.weights, pseudo)
    else:
        fit = sh.superpopulation(Ys, A[rows], A[out], lam, pseudo)
    return fit, sh.superpopulation(Ys, zero, np.zeros((int(out.sum()), L)), 0.0, pseudo)


def interval(fit, z: float):
    """The clipped interval estimate() reports for each share."""
    se = np.sqrt(np.maximum(fit.variance, 0.0))
    return np.maximum(fit.estimate - z * se, 0.0), np.minimum(fit.estimate + z * se, 1.0)


def population_coefficients(X: np.ndarray, y: np.ndarray, family: str) -> np.ndarray:
    if family == "ols":
        return np.linalg.lstsq(X, y, rcond=None)[0]
    beta = np.zeros(X.shape[1])
    for _ in range(50):
        mu = 1 / (1 + np.exp(-X @ beta))
        step = np.linalg.solve((X * (mu * (1 - mu))[:, None]).T @ X, X.T @ (y - mu))
        beta += step
        if np.abs(step).max() < 1e-12:
            break
    return beta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", default=os.environ.get("FINECLASS_DATA", str(REPO.parent / "shared" / "data" / "flourishing"))
    )
    ap.add_argument("--model", default="llama2_7b_finetuned", choices=["llama2_7b_finetuned", "gpt4_zero_shot"])
    ap.add_argument("--sizes", default="100,200,400")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-regression", action="store_true")
    ap.add_argument("--regression-draws", type=int, default=None, help="draws for the coefficients (default: --draws)")
    ap.add_argument("--runs", default=",".join(f"{m}/{p}" for m, p in SHARE_RUNS), help="method/population list")
    ap.add_argument("--check-draws", type=int, default=20, help="draws per size also checked against estimate()")
    ap.add_argument("--pseudo", type=float, default=None, help="pseudo-document weight per cell (default: estimate's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data_dir = Path(args.data)
    ids, labels, codes, dims, dropped = load(data_dir, args.model)
    keys = ids["id"].to_pylist()
    N = len(keys)
    Y, F, C = matrices(labels, codes, keys, dims)
    feats = code_features(F, C, None)
    truth = Y.mean(0)
    z = 1.959963984540054
    pseudo = SMALL_SAMPLE_PSEUDO if args.pseudo is None else args.pseudo
    rng = np.random.default_rng(12345)
    x = rng.normal(size=N) + 0.8 * Y[:, dims.index("happiness")]
    corpus = ids.append_column("x", pa.array(x))
    regs = []
    for family, outcome, covariate, _term in REGRESSIONS:
        col = {"x": x, "happiness": Y[:, dims.index("happiness")]}
        X = np.column_stack([np.ones(N), col[covariate]])
        regs.append(population_coefficients(X, col[outcome], family)[1])
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [tuple(r.split("/")) for r in args.runs.split(",")]
    lab_ids = labels["id"]
    reg_draws = 0 if args.no_regression else min(args.regression_draws or args.draws, args.draws)
    results = {
        "model": args.model,
        "draws": args.draws,
        "regression_draws": reg_draws,
        "pseudo": pseudo,
        "sizes": sizes,
        "dims": dims,
        "truth_count": Y.sum(0).astype(int).tolist(),
        "model_count": F.sum(0).astype(int).tolist(),
        "disagreements": (Y != F).sum(0).astype(int).tolist(),
        "dropped_codes": int(dropped),
        "population": N,
        "regressions": [
            dict(zip(("family", "outcome", "covariate", "term"), r), truth=float(b)) for r, b in zip(REGRESSIONS, regs)
        ],
        "shares": {},
        "coefficients": {},
        "checked_draws": 0,
    }
    mlo, mhi = interval(sh.model_only(F), z)
    m_cover = ((mlo <= truth + 1e-12) & (truth - 1e-12 <= mhi)).astype(float)
    t0 = time.time()
    for n in sizes:
        cover = {f"{m}/{p}": np.zeros(len(dims)) for m, p in runs}
        width = {f"{m}/{p}": np.zeros(len(dims)) for m, p in runs}
        gain = {f"{m}/{p}": np.zeros(len(dims)) for m, p in runs}
        hwidth = {f"{m}/{p}": np.zeros(len(dims)) for m, p in runs}
        h_cover, h_width = np.zeros(len(dims)), np.zeros(len(dims))
        # per regression and method: coverage, width, human-only coverage, human-only width
        rc = {f"{i}/{m}": np.zeros(4) for i in range(len(REGRESSIONS)) for m in REG_METHODS}
        rm = {i: 0.0 for i in range(len(REGRESSIONS))}
        for r in range(args.draws):
            seed = args.seed * 1_000_003 + n * 10_007 + r
            rows = sample_rows(keys, n, seed)
            check = args.pseudo is None and r < args.check_draws
            if check or r < reg_draws:
                sample = fineclass.draw_sample(ids, n, seed=seed)
                if sample["id"].to_pylist() != [keys[i] for i in rows]:
                    raise SystemExit(f"draw {r} at n={n}: the fast sampler differs from fineclass.draw_sample")
                human = labels.filter(pc.is_in(lab_ids, value_set=sample["id"]))
            for m, p in runs:
                fit, hfit = share_fits(Y, F, feats, rows, m, p, pseudo)
                key = f"{m}/{p}"
                lo, hi = interval(fit, z)
                hlo, hhi = interval(hfit, z)
                if check:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        t = fineclass.estimate(
                            codes, human, data=ids, sample=sample, labels=dims, method=m, population=p
                        )
                    for got, want in [
                        (lo, "conf_low"),
                        (hi, "conf_high"),
                        (hlo, "human_conf_low"),
                        (hhi, "human_conf_high"),
                        (mlo, "model_conf_low"),
                        (mhi, "model_conf_high"),
                    ]:
                        gap = np.abs(got - t[want].to_numpy()).max()
                        if gap > 1e-9:
                            raise SystemExit(f"draw {r} at n={n}, {key}: {want} differs from estimate() by {gap:.2e}")
                    results["checked_draws"] += 1
                cover[key] += (lo <= truth + 1e-12) & (truth - 1e-12 <= hi)
                width[key] += hi - lo
                eff = [_effective_n(v, vh, n, N, p == "finite") for v, vh in zip(fit.variance, hfit.variance)]
                gain[key] += np.array([np.nan if e is None else e for e in eff]) / n
                hwidth[key] += hhi - hlo
                if key == "ppi++/finite":
                    h_cover += (hlo <= truth + 1e-12) & (truth - 1e-12 <= hhi)
                    h_width += hhi - hlo
            if r < reg_draws:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for i, (family, outcome, covariate, _term) in enumerate(REGRESSIONS):
                        for m in REG_METHODS:
                            t = fineclass.estimate(
                                codes,
                                human,
                                data=corpus,
                                sample=sample,
                                regression=family,
                                outcome=outcome,
                                covariates=[covariate],
                                method=m,
                            )
                            row = t.to_pylist()[1]
                            b = regs[i]
                            rc[f"{i}/{m}"] += [
                                row["conf_low"] <= b <= row["conf_high"],
                                row["conf_high"] - row["conf_low"],
                                row["human_conf_low"] <= b <= row["human_conf_high"],
                                row["human_conf_high"] - row["human_conf_low"],
                            ]
                            if m == REG_METHODS[0]:
                                rm[i] += row["model_conf_low"] <= b <= row["model_conf_high"]
            if (r + 1) % 500 == 0:
                print(f"n={n}: {r + 1} draws ({time.time() - t0:.0f} s)", file=sys.stderr)
        R = args.draws
        results["shares"][str(n)] = {
            "coverage": {k: (v / R).tolist() for k, v in cover.items()},
            "width": {k: (v / R).tolist() for k, v in width.items()},
            "gain": {k: (v / R).tolist() for k, v in gain.items()},
            "human_width_by_run": {k: (v / R).tolist() for k, v in hwidth.items()},
            "human_coverage": (h_cover / R).tolist(),
            "human_width": (h_width / R).tolist(),
            "model_coverage": m_cover.tolist(),
        }
        if reg_draws:
            R = reg_draws
            results["coefficients"][str(n)] = {
                k: {"coverage": v[0] / R, "width": v[1] / R, "human_coverage": v[2] / R, "human_width": v[3] / R}
                for k, v in rc.items()
            }
            results["coefficients"][str(n)]["model_coverage"] = {str(i): v / R for i, v in rm.items()}
    results["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out or REPO / "bench" / "results" / f"estimate-coverage-{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    report(results)
    print(
        f"\nwritten: {out} ({results['seconds']} s; {results['checked_draws']} share runs checked against estimate())"
    )


def p_none(N: int, d: int, n: int) -> float:
    """The chance that a simple random sample of n of N documents holds none of the d disagreements."""
    return float(np.exp(sum(np.log((N - d - k) / (N - k)) for k in range(n)))) if d <= N - n else 0.0


def report(res: dict) -> None:
    dims, sizes = res["dims"], res["sizes"]
    print(
        f"\n### {res['model']}: {res['draws']} draws per size, 46 dimension shares "
        f"({res['dropped_codes']} codes outside the label set dropped)\n"
    )
    print(
        "| n | method | median coverage | min | max | dims in [93%, 97%] | below 93% | above 97% | "
        "median width / human-only (same population) | median effective n / n |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        s = res["shares"][str(n)]
        rows = [
            (k, np.array(v), np.array(s["width"][k]) / np.array(s["human_width_by_run"][k]), np.median(s["gain"][k]))
            for k, v in s["coverage"].items()
        ]
        rows.append(("human sample only", np.array(s["human_coverage"]), np.ones(len(dims)), 1.0))
        rows.append(("model codes only", np.array(s["model_coverage"]), None, None))
        for k, cv, ratio, g in rows:
            inside = int(((cv >= 0.93) & (cv <= 0.97)).sum())
            print(
                f"| {n} | {k} | {np.median(cv):.3f} | {cv.min():.3f} | {cv.max():.3f} | {inside} | "
                f"{int((cv < 0.93).sum())} | {int((cv > 0.97).sum())} | "
                f"{'' if ratio is None else f'{np.median(ratio):.2f}'} | {'' if g is None else f'{g:.2f}'} |"
            )
    print(
        "\nWhich dimensions can land in [93%, 97%] (ppi++, finite): with few disagreements between model and coders,"
        " the sample often holds none, the estimate is then the model's share whatever the interval, and coverage"
        " moves in steps of P(no disagreement in the sample) (hypergeometric)\n"
    )
    print(
        "| n | dims with >= 3 expected disagreements | of them in [93%, 97%] | misses among them "
        "| misses among the rest |"
    )
    print("|---|---|---|---|---|")
    dis = np.array(res["disagreements"])
    for n in sizes:
        cv = np.array(res["shares"][str(n)]["coverage"]["ppi++/finite"])
        ok = (cv >= 0.93) & (cv <= 0.97)
        enough = dis * n / res["population"] >= 3
        miss = [f"{dims[j]} {cv[j]:.3f} (P0 {p_none(res['population'], dis[j], n):.2f})" for j in np.flatnonzero(~ok)]
        many = [m for j, m in zip(np.flatnonzero(~ok), miss) if enough[j]]
        few = [m for j, m in zip(np.flatnonzero(~ok), miss) if not enough[j]]
        print(f"| {n} | {int(enough.sum())} | {int((ok & enough).sum())} | {'; '.join(many)} | {'; '.join(few)} |")
    print(
        "\nPer dimension (ppi++, finite population, the default): coverage by n; expected disagreements between "
        "model and coders in a sample of the smallest n; the model-only interval's coverage\n"
    )
    print(
        "| dimension | true / model count of 2,000 | disagreements (exp. in smallest n) | "
        + " | ".join(f"cov. n={n}" for n in sizes)
        + " | width / human n="
        + str(sizes[-1])
        + " | model-only cov. |"
    )
    print("|---|---|---|" + "---|" * len(sizes) + "---|---|")
    big = res["shares"][str(sizes[-1])]
    for j, d in enumerate(dims):
        cov = " | ".join(f"{res['shares'][str(n)]['coverage']['ppi++/finite'][j]:.3f}" for n in sizes)
        ratio = big["width"]["ppi++/finite"][j] / big["human_width"][j]
        dis = res["disagreements"][j]
        print(
            f"| {d} | {res['truth_count'][j]} / {res['model_count'][j]} | {dis} ({dis * sizes[0] / 2000:.1f}) | "
            f"{cov} | {ratio:.2f} | {big['model_coverage'][j]:.3f} |"
        )
    if res["coefficients"]:
        print("\nRegression coefficients (finite population), synthetic covariate x = N(0,1) + 0.8 happiness\n")
        print(
            "| n | regression | coefficient (population value) | method | coverage | width / human-only | "
            "human-only coverage | model-only coverage |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for n in sizes:
            c = res["coefficients"][str(n)]
            for i, r in enumerate(res["regressions"]):
                for m in REG_METHODS:
                    v = c[f"{i}/{m}"]
                    print(
                        f"| {n} | {r['family']} {r['outcome']} ~ {r['covariate']} | {r['term']} ({r['truth']:.4f}) "
                        f"| {m} | {v['coverage']:.3f} | {v['width'] / v['human_width']:.2f} | "
                        f"{v['human_coverage']:.3f} | {c['model_coverage'][str(i)]:.3f} |"
                    )


if __name__ == "__main__":
    main()
