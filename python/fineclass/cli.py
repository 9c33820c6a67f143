"""The `fineclass` command: thin subcommands over the Python API."""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import import_module

# modules that register their own subcommands with add_cli(subparsers)
PLUGINS = ("fineclass.curve", "fineclass.crowd", "fineclass.serve")


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


def _cli_labels(value: str | None):
    if value is None:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    return [int(x) for x in items] if all(x.lstrip("-").isdigit() for x in items) else items


def _write_or_print(table: "pyarrow.Table", output: str | None) -> None:
    if output:
        import pyarrow.parquet as pq
        from pathlib import Path
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output)
        print(f"wrote {table.num_rows} rows to {output}")
    else:
        print(table.to_pandas().to_string(max_rows=40))


def _cli_zero_shot(args) -> int:
    from .methods.generative import generate
    from .zeroshot import zero_shot_classifier
    clf = zero_shot_classifier(args.model, labels=_cli_labels(args.labels), codebook=args.codebook, kind=args.kind,
                               levels=_cli_labels(args.levels), prompt=args.prompt, max_length=args.max_length)
    if args.save:
        print(f"saved the zero-shot classifier to {clf.save(args.save, overwrite=args.overwrite)}")
    table = (generate(clf, args.input, text=args.text, id=args.id, progress=True) if args.generate else
             clf.predict(args.input, text=args.text, id=args.id, progress=True))
    _write_or_print(table, args.output)
    return 0


def _cli_generate(args) -> int:
    from .classifier import load
    from .methods.generative import generate, generation_summary
    table = generate(load(args.model), args.input, text=args.text, id=args.id, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size, progress=True)
    print(json.dumps(generation_summary(table)))
    _write_or_print(table, args.output)
    return 0


def _cli_export(args) -> int:
    from .classifier import load
    from .methods.generative import export_merged
    print(f"wrote the merged model to {export_merged(load(args.model), args.path, overwrite=args.overwrite)}")
    return 0


def _add_generative(subparsers) -> None:
    z = subparsers.add_parser("zero-shot", help="classify by prompting a causal LM without training")
    z.add_argument("input", help="Parquet/CSV file, glob or folder")
    z.add_argument("--model", default="smollm2-135m")
    z.add_argument("--labels", default=None, help="comma-separated class codes (dimensions with --kind dimlevel)")
    z.add_argument("--codebook", default=None, help="JSON file or table with code, name[, description]")
    z.add_argument("--kind", default="single", choices=["single", "multi", "dimlevel"])
    z.add_argument("--levels", default=None, help="comma-separated ordered levels (dimlevel)")
    z.add_argument("--prompt", default=None, help="template with {text} (and optionally {codebook})")
    z.add_argument("--max-length", dest="max_length", type=int, default=256)
    z.add_argument("--text", default="text")
    z.add_argument("--id", default=None)
    z.add_argument("--generate", action="store_true", help="free generation, parsed strictly (the paper's way)")
    z.add_argument("--output", "-o", default=None, help="Parquet file for the predictions")
    z.add_argument("--save", default=None, help="also save the zero-shot classifier to this folder")
    z.add_argument("--overwrite", action="store_true")
    z.set_defaults(func=_cli_zero_shot)

    g = subparsers.add_parser("generate", help="free generation with a saved generative classifier")
    g.add_argument("model", help="folder of a saved generative classifier")
    g.add_argument("input", help="Parquet/CSV file, glob or folder")
    g.add_argument("--output", "-o", default=None, help="Parquet file for answers and parsed labels")
    g.add_argument("--text", default="text")
    g.add_argument("--id", default=None)
    g.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=None)
    g.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    g.set_defaults(func=_cli_generate)

    e = subparsers.add_parser("export", help="write a generative classifier with its adapter merged (safetensors)")
    e.add_argument("model", help="folder of a saved generative classifier")
    e.add_argument("path", help="output folder (for vLLM, or llama.cpp's convert_hf_to_gguf.py)")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=_cli_export)


def _add_evaluate(subparsers) -> None:
    """Register ``fineclass evaluate PREDICTIONS TRUTH``."""
    p = subparsers.add_parser("evaluate", help="score predictions against human codes",
                              description="Score predictions against human codes and print the metrics with "
                                          "bootstrap intervals.")
    p.add_argument("predictions", help="predictions: a Parquet/CSV file, glob or folder")
    p.add_argument("truth", help="human codes: a Parquet/CSV file, glob or folder")
    p.add_argument("--kind", choices=("single", "multi", "dimlevel"), help="label shape (default: inferred)")
    p.add_argument("--spec", help="a label spec JSON file (or a saved model folder)")
    p.add_argument("--id", default="id", help="id column (default: id)")
    p.add_argument("--label", help="label column, or DIMENSION,LEVEL columns")
    p.add_argument("--ids-from", dest="ids_from", help="a table whose id column lists the documents to score")
    p.add_argument("--split", help="keep only rows of TRUTH (and --ids-from) whose `split` column equals this")
    p.add_argument("--on-mismatch", dest="on_mismatch", choices=("error", "intersect"), default="error")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals (0: none)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cluster", help="a column of TRUTH with each document's cluster")
    p.add_argument("--output", help="write the result: .csv (the metrics table) or .json (every table)")
    p.set_defaults(func=_cli_evaluate)


def _split_filter(t, split: str | None, argument: str):
    if split is None:
        return t
    import pyarrow as pa
    import pyarrow.compute as pc
    from .errors import FineclassError
    if "split" not in t.column_names:
        raise FineclassError(f"--split needs a `split` column in {argument}; columns are: "
                             f"{', '.join(t.column_names)}.", "split")
    out = t.filter(pc.equal(t.column("split").cast(pa.string()), split))
    if out.num_rows == 0:
        raise FineclassError(f"no row of {argument} has split == {split!r}.", "split")
    return out


def _cli_evaluate(args) -> int:
    import warnings
    from pathlib import Path
    from .errors import FineclassError
    from .evaluation import EvaluationWarning, evaluate
    from .tables import read_table
    truth = _split_filter(read_table(args.truth, "truth"), args.split, "TRUTH")
    ids = None
    if args.ids_from:
        it = read_table(args.ids_from, "ids")
        if "split" in it.column_names:
            it = _split_filter(it, args.split, "--ids-from")
        ids = it
    label = args.label.split(",") if args.label and "," in args.label else args.label
    with warnings.catch_warnings():  # what the warnings say is printed with the notes
        warnings.simplefilter("ignore", EvaluationWarning)
        ev = evaluate(args.predictions, truth, spec=args.spec, kind=args.kind, id=args.id, label=label, ids=ids,
                      on_mismatch=args.on_mismatch, bootstrap=args.bootstrap, confidence=args.confidence,
                      seed=args.seed, cluster=args.cluster)
    print(repr(ev))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            payload = {name: t.to_pylist() for name, t in ev.to_dict().items()}
            out.write_text(json.dumps(payload, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
        elif out.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv
            pcsv.write_csv(ev.metrics, str(out))
        else:
            raise FineclassError(f"--output must end in .csv or .json; got {str(out)!r}.", "output")
        print(f"written to {out}")
    return 0


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
    t.add_argument("--method", default="head", help="head or generative (a registered method)")
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
    c.add_argument("--engine", default="local", choices=["local", "ray"])
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

    _add_generative(sub)
    _add_evaluate(sub)
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
