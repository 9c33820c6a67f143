"""The `fineclass` command: thin subcommands over the Python API."""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import import_module

# modules that register their own subcommands with add_cli(subparsers)
PLUGINS = ("fineclass.evaluation", "fineclass.curve", "fineclass.crowd", "fineclass.serve",
           "fineclass.methods.generative", "fineclass.deployment")  # [gguf hook] export (zero-shot, generate) and fidelity


def _train(args) -> int:
    import fineclass
    config = json.loads(args.config) if args.config else {}
    for key in ("epochs", "max_length", "batch_size", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    label = args.label.split(",") if args.labels and "," in args.label else args.label
    clf = fineclass.train(args.data, text=args.text, label=label, id=args.id, labels=args.labels,
                          model=args.model, method=args.method, codebook=args.codebook, config=config)
    where = clf.save(args.output, overwrite=args.overwrite)
    print(f"saved the fitted classifier to {where}")
    return 0


def _classify(args) -> int:
    from .infer import classify
    result = classify(args.input, model=args.model, output=args.output, text=args.text, id=args.id,
                      batch_tokens=args.batch_tokens, resume=not args.no_resume, shard=args.shard,
                      shard_rows=args.shard_rows, engine=args.engine, **_ray_options(args))
    print(json.dumps(result, indent=2))
    return 0


def _ray_options(args) -> dict:
    if args.engine != "ray":
        return {}
    names = ("address", "num_actors", "gpus_per_actor", "cpus_per_actor", "max_retries")
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _demo(args) -> int:
    from .demo import run_demo
    run_demo(output=args.output, n_train=args.n_train, n_test=args.n_test, epochs=args.epochs, seed=args.seed)
    return 0


def _doctor(args) -> int:
    from .doctor import doctor
    report = doctor()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:>14}: {v}")
    return 0 if report.get("problems") in (None, "none") else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fineclass", description="Fine-tune small open models to code text.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="fine-tune a classifier and save it to a folder")
    t.add_argument("data", help="training data: Parquet/CSV file, glob or folder")
    t.add_argument("--output", "-o", required=True, help="folder for the fitted classifier")
    t.add_argument("--text", default="text")
    t.add_argument("--label", default="label", help="label column; 'dimension,level' with --labels for that shape")
    t.add_argument("--labels", default=None, help="a long label table (id + label, or id + dimension + level)")
    t.add_argument("--id", default=None)
    t.add_argument("--model", default="minilm", help="alias (minilm, smollm2-135m), folder or hub id")
    t.add_argument("--method", default="head", choices=["head", "generative"])
    t.add_argument("--codebook", default=None, help="JSON file or table with code, name[, description]")
    t.add_argument("--config", default=None, help="TrainConfig settings as JSON, e.g. '{\"epochs\": 2}'")
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-length", dest="max_length", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=_train)

    c = sub.add_parser("classify", help="classify a corpus into Parquet shards (resumable)")
    c.add_argument("model", help="folder of a saved classifier")
    c.add_argument("input", help="Parquet/CSV file, glob or folder")
    c.add_argument("--output", "-o", required=True, help="output folder for Parquet shards")
    c.add_argument("--text", default="text")
    c.add_argument("--id", default=None)
    c.add_argument("--batch-tokens", dest="batch_tokens", type=int, default=None)
    c.add_argument("--shard", default=None, help="i/n: this job's share of the shards (e.g. a SLURM array)")
    c.add_argument("--shard-rows", dest="shard_rows", type=int, default=20_000)
    c.add_argument("--no-resume", action="store_true", help="refuse to continue an existing output folder")
    c.add_argument("--engine", default="local", choices=["local", "ray", "llamacpp"])
    c.add_argument("--address", default=None, help="Ray cluster address (with --engine ray), e.g. auto")
    c.add_argument("--num-actors", dest="num_actors", type=int, default=None, help="Ray: predictors in the pool")
    c.add_argument("--gpus-per-actor", dest="gpus_per_actor", type=float, default=None)
    c.add_argument("--cpus-per-actor", dest="cpus_per_actor", type=float, default=None)
    c.add_argument("--max-retries", dest="max_retries", type=int, default=None, help="Ray: retries of a failed shard")
    c.set_defaults(func=_classify)

    d = sub.add_parser("demo", help="fine-tune on movie reviews and compare with TF-IDF + logistic regression")
    d.add_argument("--output", "-o", default="demo-output")
    d.add_argument("--n-train", dest="n_train", type=int, default=2000)
    d.add_argument("--n-test", dest="n_test", type=int, default=1000)
    d.add_argument("--epochs", type=int, default=2)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)

    o = sub.add_parser("doctor", help="report Python, torch, device and versions")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=_doctor)

    for name in PLUGINS:
        try:
            module = import_module(name)
        except ImportError:
            continue
        if hasattr(module, "add_cli"):
            module.add_cli(sub)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import FineclassError
    try:
        return args.func(args)
    except FineclassError as e:
        print(f"fineclass: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
