"""Single-label prediction speed: the packaged description method against the head, side by side.

    PYTHONPATH=python python bench/accuracy/predict_speed.py [--n-train 64] [--n 500] [--rounds 3]

Both are trained on the same movie reviews (the head for one epoch: its speed does not depend on training),
then predict the same --n test reviews in alternating order (A B B A ...) with one torch thread, so that a load
that drifts hits both alike. Prints documents per second for each and the ratio (description / head time).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reviews import CODEBOOK, load_reviews


def main() -> None:
    import fineclass

    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    trains, test = load_reviews(args.n, [args.n_train], 0)
    train = trains[args.n_train]
    models = {
        "head": fineclass.train(train, model="minilm", epochs=1, seed=0, progress=False),
        "description": fineclass.train(
            train, model="minilm", method="description", codebook=CODEBOOK, seed=0, progress=False
        ),
    }
    for name, clf in models.items():
        print(f"{name}: max_length {clf.manifest_['config']['max_length']}", flush=True)
        clf.predict(test.head(16))  # warm-up
    times: dict = {k: [] for k in models}
    for r in range(args.rounds):
        for name in list(models) if r % 2 == 0 else list(models)[::-1]:
            t = time.perf_counter()
            models[name].predict(test)
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k}: {args.n / v:.1f} documents/s (best of {args.rounds}: {v:.2f} s; all {times[k]})")
    print(f"description / head time: {best['description'] / best['head']:.2f}")


if __name__ == "__main__":
    main()
