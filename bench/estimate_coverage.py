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


def presence(table: pa.Table, keys: list, dims: list) -> np.ndarray:
    pos = {k: i for i, k in enumerate(keys)}
    dj = {d: j for j, d in enumerate(dims)}
    out = np.zeros((len(keys), len(dims)))
    for i, d in zip(table["id"].to_pylist(), table["dimension"].to_pylist()):
        if i in pos and d in dj:
            out[pos[i], dj[d]] = 1
    return out


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
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data_dir = Path(args.data)
    ids, labels, codes, dims, dropped = load(data_dir, args.model)
    keys = ids["id"].to_pylist()
    N = len(keys)
    Y = presence(labels, keys, dims)
    F = presence(codes, keys, dims)
    truth = Y.mean(0)
    rng = np.random.default_rng(12345)
    x = rng.normal(size=N) + 0.8 * Y[:, dims.index("happiness")]
    corpus = ids.append_column("x", pa.array(x))
    regs = []
    for family, outcome, covariate, _term in REGRESSIONS:
        col = {"x": x, "happiness": Y[:, dims.index("happiness")]}
        X = np.column_stack([np.ones(N), col[covariate]])
        regs.append(population_coefficients(X, col[outcome], family)[1])
    sizes = [int(s) for s in args.sizes.split(",")]
    lab_ids = labels["id"]
    results = {
        "model": args.model,
        "draws": args.draws,
        "sizes": sizes,
        "dims": dims,
        "truth_count": Y.sum(0).astype(int).tolist(),
        "model_count": F.sum(0).astype(int).tolist(),
        "disagreements": (Y != F).sum(0).astype(int).tolist(),
        "dropped_codes": int(dropped),
        "regressions": [
            dict(zip(("family", "outcome", "covariate", "term"), r), truth=float(b)) for r, b in zip(REGRESSIONS, regs)
        ],
        "shares": {},
        "coefficients": {},
    }
    t0 = time.time()
    for n in sizes:
        cover = {f"{m}/{p}": np.zeros(len(dims)) for m, p in SHARE_RUNS}
        width = {f"{m}/{p}": np.zeros(len(dims)) for m, p in SHARE_RUNS}
        gain = {f"{m}/{p}": np.zeros(len(dims)) for m, p in SHARE_RUNS}
        hwidth = {f"{m}/{p}": np.zeros(len(dims)) for m, p in SHARE_RUNS}
        h_cover, h_width, m_cover = np.zeros(len(dims)), np.zeros(len(dims)), np.zeros(len(dims))
        # per regression and method: coverage, width, human-only coverage, human-only width
        rc = {f"{i}/{m}": np.zeros(4) for i in range(len(REGRESSIONS)) for m in REG_METHODS}
        rm = {i: 0.0 for i in range(len(REGRESSIONS))}
        for r in range(args.draws):
            sample = fineclass.draw_sample(ids, n, seed=args.seed * 1_000_003 + n * 10_007 + r)
            human = labels.filter(pc.is_in(lab_ids, value_set=sample["id"]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for m, p in SHARE_RUNS:
                    t = fineclass.estimate(codes, human, data=ids, sample=sample, labels=dims, method=m, population=p)
                    key = f"{m}/{p}"
                    lo, hi = t["conf_low"].to_numpy(), t["conf_high"].to_numpy()
                    cover[key] += (lo <= truth + 1e-12) & (truth - 1e-12 <= hi)
                    width[key] += hi - lo
                    gain[key] += t["effective_n"].to_numpy() / n
                    hwidth[key] += t["human_conf_high"].to_numpy() - t["human_conf_low"].to_numpy()
                    if key == "ppi++/finite":
                        hlo, hhi = t["human_conf_low"].to_numpy(), t["human_conf_high"].to_numpy()
                        h_cover += (hlo <= truth + 1e-12) & (truth - 1e-12 <= hhi)
                        h_width += hhi - hlo
                        mlo, mhi = t["model_conf_low"].to_numpy(), t["model_conf_high"].to_numpy()
                        m_cover += (mlo <= truth + 1e-12) & (truth - 1e-12 <= mhi)
                if not args.no_regression:
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
            if (r + 1) % 100 == 0:
                print(f"n={n}: {r + 1} draws ({time.time() - t0:.0f} s)", file=sys.stderr)
        R = args.draws
        results["shares"][str(n)] = {
            "coverage": {k: (v / R).tolist() for k, v in cover.items()},
            "width": {k: (v / R).tolist() for k, v in width.items()},
            "gain": {k: (v / R).tolist() for k, v in gain.items()},
            "human_width_by_run": {k: (v / R).tolist() for k, v in hwidth.items()},
            "human_coverage": (h_cover / R).tolist(),
            "human_width": (h_width / R).tolist(),
            "model_coverage": (m_cover / R).tolist(),
        }
        if not args.no_regression:
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
    print(f"\nwritten: {out} ({results['seconds']} s)")


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
