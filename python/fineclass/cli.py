"""The ``fineclass`` command: every subcommand in one table (``COMMANDS``), each a thin call of the Python API.

Each handler converts the parsed arguments, calls one function of the core, and prints or writes its result; a
FineclassError ends the command with status 2 and its message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .crowd.acceptance import CONFLICTS, RULES
from .labels import KINDS


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict]:
    """One argument of a subcommand, as ``argparse.add_argument`` takes it.

    Args:
        *flags: the name (``"data"``) or flags (``"--output", "-o"``).
        **options: ``add_argument``'s options (``default``, ``help``, ``type``...).

    Returns:
        ``(flags, options)``.
    """
    return flags, options


@dataclass
class Command:
    """One subcommand: its name, help, handler and arguments (or its own subcommands)."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int] | None
    arguments: list = field(default_factory=list)
    subcommands: list = field(default_factory=list)
    description: str | None = None


# ---------------------------------------------------------------------- shared helpers
def _write_table(table: Any, path: str) -> None:
    """A table to a .csv file (through the one CSV writer: formulas neutralised), or else a Parquet file."""
    import pyarrow.parquet as pq

    from ._fs import atomic_file
    from .sheets import write_table_csv

    p = Path(path)
    if p.suffix.lower() == ".csv":
        write_table_csv(table, p)  # atomic too
    else:
        with atomic_file(p) as tmp:  # a failed write leaves an earlier file as it was
            pq.write_table(table, str(tmp))


def _write_or_print(table: Any, output: str | None) -> None:
    if output:
        _write_table(table, output)
        print(f"wrote {table.num_rows} rows to {output}")
    else:
        print(table.to_pandas().to_string(max_rows=40))


def _print_table(table: Any, title: str) -> None:
    print(f"\n{title}")
    print(table.to_pandas().to_string(index=False))


def _named(args: Any, names: str) -> dict:
    """The values of command-line options (``names``, separated by spaces) for keywords of the same names."""
    return {name: getattr(args, name) for name in names.split()}


def _list_arg(value: str | None) -> list | None:
    """A comma-separated list; whole numbers become ints (class codes)."""
    if value is None:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    return [int(x) for x in items] if all(x.lstrip("-").isdigit() for x in items) else items


def _label_arg(label: str, long_table: Any) -> Any:
    """``--label``: one column, or ``dimension,level`` (two columns) together with a long ``--labels`` table."""
    return label.split(",") if long_table and label and "," in label else label


def _config_arg(value: str | None) -> dict | None:
    """``--config``: TrainConfig settings as a JSON object; anything else is an error naming ``config``."""
    from .errors import FineclassError

    if not value:
        return None
    try:
        config = json.loads(value)
    except json.JSONDecodeError as e:
        raise FineclassError(
            f"--config is not valid JSON ({e.msg} at character {e.pos}): {value!r}. Pass an object, e.g. "
            f'--config \'{{"epochs": 2, "learning_rate": 5e-5}}\' (keys and strings in double quotes).',
            "config",
        ) from None
    if not isinstance(config, dict):
        raise FineclassError(
            f"--config must be a JSON object of settings, e.g. '{{\"epochs\": 2}}'; got {value!r}.", "config"
        )
    return config


# ---------------------------------------------------------------------- handlers
def _train(args) -> int:
    from ._fs import check_can_write_folder, check_replaceable
    from .classifier import train

    # the output folder is checked before training, so that a trained model is never lost to it
    check_replaceable(args.output, args.overwrite, "fineclass.json", "a fineclass model", "output")
    check_can_write_folder(args.output, "output")
    config = _config_arg(args.config) or {}
    for key in ("epochs", "max_length", "batch_size", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    clf = train(
        args.data,
        **_named(args, "text id labels model method codebook"),
        label=_label_arg(args.label, args.labels),
        config=config,
    )
    print(f"saved the fitted classifier to {clf.save(args.output, overwrite=args.overwrite)}")
    return 0


def _classify(args) -> int:
    from .infer import classify

    options = {}
    if args.engine == "ray":
        names = ("address", "num_actors", "gpus_per_actor", "cpus_per_actor", "max_retries")
        options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    elif args.engine == "llamacpp" and args.threads is not None:
        options = {"threads": args.threads}
    result = classify(
        args.input,
        **_named(args, "model output text id batch_tokens shard shard_rows engine"),
        resume=not args.no_resume,
        **options,
    )
    print(json.dumps(result, indent=2))
    return 0


def _split_filter(table: Any, split: str | None, argument: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    from .errors import FineclassError

    if split is None:
        return table
    if "split" not in table.column_names:
        raise FineclassError(
            f"--split needs a `split` column in {argument}; columns are: {', '.join(table.column_names)}.", "split"
        )
    out = table.filter(pc.equal(table.column("split").cast(pa.string()), split))
    if out.num_rows == 0:
        raise FineclassError(f"no row of {argument} has split == {split!r}.", "split")
    return out


def _evaluate(args) -> int:
    import warnings

    from .errors import FineclassError
    from .evaluation import EvaluationWarning, evaluate
    from .tables import read_table

    out = Path(args.output) if args.output else None
    if out is not None and out.suffix.lower() not in (".csv", ".json"):  # before the work, not after it
        raise FineclassError(f"--output must end in .csv or .json; got {str(out)!r}.", "output")
    truth = _split_filter(read_table(args.truth, "truth"), args.split, "TRUTH")
    ids = None
    if args.ids_from:
        ids = read_table(args.ids_from, "ids")
        if "split" in ids.column_names:
            ids = _split_filter(ids, args.split, "--ids-from")
    label = args.label.split(",") if args.label and "," in args.label else args.label
    with warnings.catch_warnings():  # what the warnings say is printed with the notes
        warnings.simplefilter("ignore", EvaluationWarning)
        ev = evaluate(
            args.predictions,
            truth,
            **_named(args, "spec kind id on_mismatch bootstrap confidence seed cluster"),
            label=label,
            ids=ids,
        )
    print(repr(ev))
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix.lower() == ".json":
                payload = {name: t.to_pylist() for name, t in ev.to_dict().items()}
                out.write_text(json.dumps(payload, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
            else:
                _write_table(ev.metrics, str(out))
        except OSError as e:
            raise FineclassError(
                f"--output {str(out)!r} could not be written ({e.strerror or e}); choose a path in a folder you "
                f"can write to.",
                "output",
            ) from None
        print(f"written to {out}")
    return 0


def _curve(args) -> int:
    from .curve import learning_curve
    from .tables import read_table

    test = read_table(args.test_ids, "test").column("id").to_pylist() if args.test_ids else None
    lc = learning_curve(
        args.data,
        sizes=[int(s) for s in args.sizes.split(",")],
        seeds=[int(s) for s in args.seeds.split(",")],
        test=test,
        **_named(args, "text id labels model method codebook target plot checkpoint"),
        label=_label_arg(args.label, args.labels),
        config=_config_arg(args.config),
    )
    print(lc)
    if args.output:
        _write_table(lc.table, args.output)
    return 0


def _zero_shot(args) -> int:
    from .methods.generative import generate
    from .zeroshot import zero_shot_classifier

    clf = zero_shot_classifier(
        args.model,
        labels=_list_arg(args.labels),
        **_named(args, "codebook kind prompt max_length engine"),
        levels=_list_arg(args.levels),
    )
    if args.save:
        print(f"saved the zero-shot classifier to {clf.save(args.save, overwrite=args.overwrite)}")
    table = (
        generate(clf, args.input, text=args.text, id=args.id, progress=True)
        if args.generate
        else clf.predict(args.input, text=args.text, id=args.id, progress=True)
    )
    _write_or_print(table, args.output)
    return 0


def _generate(args) -> int:
    from .deployment import load
    from .methods.generative import generate, generation_summary

    table = generate(
        load(args.model),
        args.input,
        **_named(args, "text id max_new_tokens batch_size"),
        progress=True,
    )
    print(json.dumps(generation_summary(table)))
    _write_or_print(table, args.output)
    return 0


def _export(args) -> int:
    from .deployment import export, load

    if args.format == "gguf":
        out = export(
            load(args.model),
            args.path,
            "gguf",
            quant=args.quant or "q4_k_m",
            data=None if args.no_fidelity else (args.data or "validation"),
            **_named(args, "overwrite text label id threads"),
        )
        print(f"wrote the GGUF export to {out}")
        return 0
    for flag, value in (("--quant", args.quant), ("--data", args.data)):
        if value is not None:
            raise SystemExit(f"fineclass export: {flag} is for --format gguf")
    print(f"wrote the merged model to {export(load(args.model), args.path, overwrite=args.overwrite)}")
    return 0


def _fidelity(args) -> int:
    from .deployment import fidelity
    from .manifest import write_json_atomic

    report = fidelity(args.model, args.against, args.data, **_named(args, "text label id metric bootstrap threads"))
    print(report)
    if args.output:
        write_json_atomic(args.output, report.to_dict())
        print(f"wrote the report to {args.output}")
    return 0


def _propose(args) -> int:
    from .classifier import load
    from .client import Endpoint
    from .crowd import propose
    from .errors import FineclassError

    proposers: dict[str, Any] = {}
    for m in args.model or []:
        proposers[Path(m).name] = load(m)
    for url, model in args.endpoint or []:
        ep = Endpoint(
            url,
            model,
            key_env=None if args.key_env.lower() == "none" else args.key_env,
            timeout=args.timeout,
            concurrency=args.concurrency,
            cache=args.cache if args.cache else True,
        )
        proposers[ep.label] = ep
    if not proposers:
        raise FineclassError("name at least one proposer: --model FOLDER and/or --endpoint URL MODEL.", "proposers")
    prompt = Path(args.prompt).read_text(encoding="utf-8") if args.prompt else None
    out, stats = propose(
        args.data, proposers, prompt=prompt, return_stats=True, progress=True, **_named(args, "text id spec")
    )
    _write_table(out, args.output)
    _print_table(stats, "proposers")
    print(f"\nwrote {out.num_rows} rows to {args.output}")
    return 0


def _review_export(args) -> int:
    from .crowd import export_review

    for p in export_review(
        args.proposals, args.output, **_named(args, "coders overlap seed texts text id documents overwrite")
    ):
        print(f"wrote {p}")
    return 0


def _review_import(args) -> int:
    from .crowd import acceptance_report, import_review

    decisions = import_review(
        args.sheets, args.proposals, complete=not args.partial, spec=args.spec, documents=args.documents
    )
    _write_table(decisions, args.output)
    for name, t in acceptance_report(decisions).items():
        titles = {"agreement": "agreement on the overlap", "additions": "codes added by coders"}
        _print_table(t, titles.get(name, f"acceptance by {name}"))
    print(f"\nwrote {decisions.num_rows} decisions to {args.output}")
    return 0


def _review_assemble(args) -> int:
    from .crowd import assemble_training_set

    table = assemble_training_set(
        args.decisions, rule=args.rule, conflict=args.conflict, priority=args.priority, kind=args.kind
    )
    _write_table(table, args.output)
    print(f"wrote {table.num_rows} rows to {args.output}")
    return 0


def _sample(args) -> int:
    from .estimation import draw_sample
    from .tables import read_table

    data = read_table(args.data, "data")  # read once: the sample and, with --rows-output, its rows
    table = draw_sample(
        data,
        args.size,
        **_named(args, "method strata allocation uncertainty seed"),
        id=args.id or "id",
    )
    _write_or_print(table, args.output)
    if args.rows_output:  # the drawn documents' rows of DATA: their codes, to export for review
        import pyarrow as pa

        from .evaluation.coded import id_array

        drawn = set(id_array(table, "id", "sample").to_pylist())
        keep = pa.array([k in drawn for k in id_array(data, args.id or "id", "data").to_pylist()])
        _write_table(data.filter(keep), args.rows_output)
        print(f"wrote the {table.num_rows} drawn documents' rows of {args.data} to {args.rows_output}")
    return 0


def _estimate(args) -> int:
    from .estimation import estimate

    table = estimate(
        args.codes,
        args.human,
        **_named(args, "data sample by labels regression outcome covariates method population confidence spec"),
        id=args.id or "id",
    )
    if args.output:
        _write_table(table, args.output)
        print(f"wrote {table.num_rows} estimates to {args.output}")
    shown = [c for c in table.column_names if c in (args.by or [])] + [
        "term",
        "estimate",
        "conf_low",
        "conf_high",
        "model_estimate",
        "human_estimate",
        "effective_n",
    ]
    _print_table(table.select(shown), f"{args.method} estimates ({args.population} population)")
    return 0


def _serve(args) -> int:
    from .serve import serve

    serve(
        args.model,
        **_named(args, "host port key_env name quiet allow_remote workers max_connections read_timeout idle_timeout"),
    )
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(**_named(args, "output n_train n_test epochs seed method"))
    return 0


def _gguf_install_converter(args) -> int:
    from .llamacpp.tools import install_converter

    print(f"llama.cpp converter in {install_converter(args.sdist, args.target)}")
    return 0


def _gguf_where(args) -> int:
    from .llamacpp.tools import converter_dir

    print(converter_dir())
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


# ---------------------------------------------------------------------- the table
DATA = "Parquet/CSV file, glob or folder"
COLUMNS = [
    arg("--text", default="text", help="the text column (default: text)"),
    arg("--id", default=None, help="the id column (default: a column named id, else the row number)"),
]

COMMANDS = [
    Command(
        "train",
        "fine-tune a classifier and save it to a folder",
        _train,
        [
            arg("data", help=f"training data: {DATA}"),
            arg("--output", "-o", required=True, help="folder for the fitted classifier"),
            *COLUMNS,
            arg("--label", default="label", help="label column; 'dimension,level' with --labels for that shape"),
            arg("--labels", default=None, help="a long label table (id + label, or id + dimension + level)"),
            arg("--model", default="minilm", help="alias (minilm, smollm2-135m), folder or hub id"),
            arg("--method", default="head", help="head or generative (a registered method)"),
            arg("--codebook", default=None, help="JSON file or table with code, name[, description]"),
            arg("--config", default=None, help="TrainConfig settings as JSON, e.g. '{\"epochs\": 2}'"),
            arg("--epochs", type=int),
            arg("--max-length", dest="max_length", type=int),
            arg("--batch-size", dest="batch_size", type=int),
            arg("--seed", type=int),
            arg("--overwrite", action="store_true"),
        ],
    ),
    Command(
        "classify",
        "classify a corpus into Parquet shards (resumable)",
        _classify,
        [
            arg("model", help="folder of a saved classifier"),
            arg("input", help=DATA),
            arg("--output", "-o", required=True, help="output folder for Parquet shards"),
            *COLUMNS,
            arg("--batch-tokens", dest="batch_tokens", type=int, default=None),
            arg("--shard", default=None, help="i/n: this job's share of the shards (e.g. a SLURM array)"),
            arg("--shard-rows", dest="shard_rows", type=int, default=20_000),
            arg("--no-resume", action="store_true", help="refuse to continue an existing output folder"),
            arg("--engine", default="local", choices=["local", "ray", "llamacpp"]),
            arg("--threads", type=int, default=None, help="llama.cpp: CPU threads (with --engine llamacpp)"),
            arg("--address", default=None, help="Ray cluster address (with --engine ray), e.g. auto"),
            arg("--num-actors", dest="num_actors", type=int, default=None, help="Ray: predictors in the pool"),
            arg("--gpus-per-actor", dest="gpus_per_actor", type=float, default=None),
            arg("--cpus-per-actor", dest="cpus_per_actor", type=float, default=None),
            arg("--max-retries", dest="max_retries", type=int, default=None, help="Ray: retries of a failed shard"),
        ],
    ),
    Command(
        "evaluate",
        "score predictions against human codes",
        _evaluate,
        [
            arg("predictions", help=f"predictions: {DATA}"),
            arg("truth", help=f"human codes: {DATA}"),
            arg("--kind", choices=KINDS, help="label shape (default: inferred)"),
            arg("--spec", help="a label spec JSON file (or a saved model folder)"),
            arg("--id", default="id", help="id column (default: id)"),
            arg("--label", help="label column, or DIMENSION,LEVEL columns"),
            arg("--ids-from", dest="ids_from", help="a table whose id column lists the documents to score"),
            arg("--split", help="keep only rows of TRUTH (and --ids-from) whose `split` column equals this"),
            arg("--on-mismatch", dest="on_mismatch", choices=("error", "intersect"), default="error"),
            arg("--bootstrap", type=int, default=1000, help="resamples for the intervals (0: none)"),
            arg("--confidence", type=float, default=0.95),
            arg("--seed", type=int, default=0),
            arg("--cluster", help="a column of TRUTH with each document's cluster"),
            arg("--output", help="write the result: .csv (the metrics table) or .json (every table)"),
        ],
        description="Score predictions against human codes and print the metrics with bootstrap intervals.",
    ),
    Command(
        "curve",
        "learning curve: train at several sizes and seeds, fit, extrapolate",
        _curve,
        [
            arg("data", help="training data: Parquet/CSV with id and text (and the label column)"),
            arg("--labels", default=None, help="long label table (id + label, or id + dimension + level)"),
            arg("--label", default="label", help="label column, or 'dimension,level' with --labels"),
            *COLUMNS,
            arg("--sizes", default="100,200,400,800"),
            arg("--seeds", default="0,1,2"),
            arg("--test-ids", dest="test_ids", default=None, help="Parquet/CSV with the test ids (column id)"),
            arg("--model", default="minilm"),
            arg("--method", default="head", help="head, generative, codebook, description, ensemble"),
            arg("--codebook", default=None, help="JSON file or table with code, name[, description]"),
            arg("--config", default=None, help="TrainConfig settings as JSON"),
            arg("--target", type=float, default=None),
            arg("--plot", default="learning-curve.png"),
            arg("--output", default=None, help="write the runs table to this CSV or Parquet file"),
            arg(
                "--checkpoint",
                default=None,
                help="JSON-lines file recording finished runs; rerun the same command to resume",
            ),
        ],
    ),
    Command(
        "zero-shot",
        "classify by prompting a causal LM without training",
        _zero_shot,
        [
            arg("input", help=DATA),
            arg("--model", default="smollm2-135m"),
            arg("--labels", default=None, help="comma-separated class codes (dimensions with --kind dimlevel)"),
            arg("--codebook", default=None, help="JSON file or table with code, name[, description]"),
            arg("--kind", default="single", choices=KINDS),
            arg("--levels", default=None, help="comma-separated ordered levels (dimlevel)"),
            arg("--prompt", default=None, help="template with {text} (and optionally {codebook})"),
            arg("--max-length", dest="max_length", type=int, default=256),
            *COLUMNS,
            arg("--generate", action="store_true", help="free generation, parsed strictly (the paper's way)"),
            arg("--output", "-o", default=None, help="Parquet file for the predictions"),
            arg("--save", default=None, help="also save the zero-shot classifier to this folder"),
            arg("--overwrite", action="store_true"),
            arg("--engine", default="torch", choices=["torch", "llamacpp"], help="llamacpp: a GGUF model"),
        ],
    ),
    Command(
        "generate",
        "free generation with a saved generative classifier",
        _generate,
        [
            arg("model", help="folder of a saved generative classifier"),
            arg("input", help=DATA),
            arg("--output", "-o", default=None, help="Parquet file for answers and parsed labels"),
            *COLUMNS,
            arg("--max-new-tokens", dest="max_new_tokens", type=int, default=None),
            arg("--batch-size", dest="batch_size", type=int, default=8),
        ],
    ),
    Command(
        "export",
        "write a generative classifier merged (safetensors) or as GGUF files for llama.cpp",
        _export,
        [
            arg("model", help="folder of a saved generative classifier"),
            arg("path", help="output folder"),
            arg("--overwrite", action="store_true"),
            arg("--format", default="safetensors", choices=["safetensors", "gguf"]),
            arg(
                "--quant",
                default=None,
                help="GGUF: quantization(s), comma-separated (default q4_k_m): f32, f16, bf16, q8_0, q6_k, q5_k_m, "
                "q5_k_s, q5_0, q4_k_m, q4_k_s, q4_0, q3_k_m, q2_k",
            ),
            arg("--data", default=None, help="GGUF: held-out documents for the fidelity check"),
            arg("--no-fidelity", dest="no_fidelity", action="store_true", help="GGUF: skip the fidelity check"),
            arg("--text", default="text"),
            arg("--label", default=None),
            arg("--id", default=None),
            arg("--threads", type=int, default=None, help="GGUF: CPU threads"),
        ],
    ),
    Command(
        "fidelity",
        "compare exported GGUF files with the model they came from",
        _fidelity,
        [
            arg("model", help="folder of the saved (torch) classifier: the reference"),
            arg("--against", nargs="+", required=True, help="exported .gguf files or an export folder"),
            arg("--data", required=True, help="held-out documents (Parquet/CSV), with human codes if known"),
            arg("--text", default="text"),
            arg("--label", default=None, help="column of human codes (default: label/labels when present)"),
            arg("--id", default=None),
            arg("--metric", default=None, help="metric to compare (default: accuracy, or jaccard)"),
            arg("--bootstrap", type=int, default=1000),
            arg("--threads", type=int, default=None, help="CPU threads for llama.cpp"),
            arg("--output", "-o", default=None, help="write the report as JSON"),
        ],
    ),
    Command(
        "propose",
        "ask models and endpoints to propose labels",
        _propose,
        [
            arg("data", help=f"documents: {DATA}"),
            arg("-o", "--output", required=True, help="proposals file (.parquet or .csv)"),
            arg("--model", action="append", metavar="FOLDER", help="a saved fineclass classifier (repeatable)"),
            arg(
                "--endpoint",
                action="append",
                nargs=2,
                metavar=("URL", "MODEL"),
                help="an OpenAI-compatible endpoint and model name (repeatable)",
            ),
            arg(
                "--key-env",
                default="OPENAI_API_KEY",
                metavar="VAR",
                help="variable holding the endpoints' key (default OPENAI_API_KEY; 'none' for no key)",
            ),
            arg("--spec", help="label spec JSON (needed when every proposer is an endpoint)"),
            arg("--prompt", help="file with instructions replacing the default prompt"),
            *COLUMNS,
            arg("--timeout", type=float, default=60.0),
            arg("--concurrency", type=int, default=4),
            arg("--cache", default=None, help="response cache folder (default ~/.cache/fineclass/chat)"),
        ],
        description="Ask fitted models and OpenAI-compatible endpoints for labels.",
    ),
    Command(
        "review",
        "review sheets: export, import, assemble",
        None,
        subcommands=[
            Command(
                "export",
                "write one review sheet per coder",
                _review_export,
                [
                    arg("proposals", help="proposals file from `fineclass propose`"),
                    arg("-o", "--output", required=True, help="folder/review.csv or folder/review.xlsx"),
                    arg("--coders", nargs="+", default=None),
                    arg("--overlap", type=float, default=0.1),
                    arg("--seed", type=int, default=0),
                    arg("--texts", default=None, help="documents, to show each text beside its proposals"),
                    *COLUMNS,
                    arg(
                        "--documents",
                        default=None,
                        help="file with an `id` column: documents to review even without proposals (a human sample)",
                    ),
                    arg("--overwrite", action="store_true"),
                ],
            ),
            Command(
                "import",
                "read filled sheets, validate, report acceptance",
                _review_import,
                [
                    arg("sheets", nargs="+", help="filled review sheets (.csv/.xlsx; globs allowed)"),
                    arg("--proposals", required=True),
                    arg("-o", "--output", required=True, help="decisions file (.parquet or .csv)"),
                    arg("--partial", action="store_true", help="allow proposals that are in no sheet"),
                    arg(
                        "--spec",
                        default=None,
                        help="label set (JSON file or model folder) that corrections and additions must belong to",
                    ),
                    arg("--documents", default=None, help="the --documents file given to `review export`"),
                ],
            ),
            Command(
                "assemble",
                "build a training set from decisions",
                _review_assemble,
                [
                    arg("decisions"),
                    arg("-o", "--output", required=True),
                    arg("--rule", choices=RULES, default="any-accept"),
                    arg("--conflict", choices=CONFLICTS, default="priority"),
                    arg("--priority", nargs="+", default=None, help="proposers, most trusted first"),
                    arg("--kind", choices=KINDS, default=None),
                ],
            ),
        ],
        description="Review sheets for the hybrid workflow.",
    ),
    Command(
        "sample",
        "draw the documents for human coding, with their probabilities",
        _sample,
        [
            arg("data", help="one row per document of the corpus (predictions, or any table with ids)"),
            arg("-n", "--size", type=int, required=True, help="documents to draw (expected number: uncertainty)"),
            arg("--method", choices=["simple", "stratified", "uncertainty"], default="simple"),
            arg("--strata", default=None, help="stratum column for --method stratified"),
            arg("--allocation", default="proportional", choices=["proportional", "equal"]),
            arg("--uncertainty", default=None, help="uncertainty column (default 1 - confidence)"),
            arg("--seed", type=int, default=0),
            arg("--id", default=None, help="the id column (default: id)"),
            arg("-o", "--output", default=None, help="sample file (.parquet or .csv); printed when absent"),
            arg(
                "--rows-output",
                default=None,
                help="also write the drawn documents' rows of DATA (e.g. their codes, for `review export`)",
            ),
        ],
        description="Draw a random sample to code by hand; `fineclass estimate` needs its probabilities.",
    ),
    Command(
        "estimate",
        "label shares or regression coefficients from model codes plus a human sample",
        _estimate,
        [
            arg("codes", help="the model's codes for every document (predictions, or a long table with --data)"),
            arg("human", help="the coders' codes for the sampled documents"),
            arg("--data", default=None, help="one row per document (needed when codes is a long table)"),
            arg("--sample", default=None, help="the file from `fineclass sample` (needed when human is long)"),
            arg("--by", nargs="+", default=None, help="column(s) of the documents to estimate shares by group"),
            arg("--labels", nargs="+", default=None, help="labels whose shares to estimate (default: all)"),
            arg("--regression", choices=["ols", "logistic"], default=None),
            arg("--outcome", default=None, help="the regression's outcome: a column or a label"),
            arg("--covariates", nargs="+", default=None, help="the regression's covariates: columns or labels"),
            arg("--method", choices=["ppi++", "ppi", "dsl"], default="ppi++"),
            arg("--population", choices=["finite", "superpopulation"], default="finite"),
            arg("--confidence", type=float, default=0.95),
            arg("--spec", default=None, help="label set (JSON file or model folder)"),
            arg("--id", default=None, help="the id column (default: id)"),
            arg("-o", "--output", default=None, help="estimates file (.parquet or .csv)"),
        ],
        description="Estimates whose intervals stay valid whatever the model's errors (PPI, PPI++, DSL).",
    ),
    Command(
        "serve",
        "serve a fitted classifier as an OpenAI-compatible endpoint",
        _serve,
        [
            arg("model", help="folder of a saved classifier"),
            arg("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"),
            arg("--port", type=int, default=8000, help="port (default 8000)"),
            arg(
                "--key-env",
                default=None,
                metavar="VAR",
                help="name of an environment variable holding the bearer key clients must send",
            ),
            arg("--name", default=None, help="model name to serve (default: the folder's name)"),
            arg("--quiet", action="store_true", help="do not log requests"),
            arg(
                "--allow-remote",
                action="store_true",
                help="allow a --host other machines can reach (a --key-env key is required too)",
            ),
            arg("--workers", type=int, default=None, help="threads serving connections (default 16)"),
            arg("--max-connections", type=int, default=None, help="open connections at most (default 64)"),
            arg("--read-timeout", type=float, default=None, help="seconds a request may take to arrive (default 10)"),
            arg("--idle-timeout", type=float, default=None, help="seconds one read may wait (default 5)"),
        ],
        description="Serve a fitted classifier at /v1/chat/completions and /v1/models.",
    ),
    Command(
        "demo",
        "fine-tune on movie reviews and compare with TF-IDF + logistic regression",
        _demo,
        [
            arg("--output", "-o", default="demo-output"),
            arg("--n-train", dest="n_train", type=int, default=2000),
            arg("--n-test", dest="n_test", type=int, default=1000),
            arg("--epochs", type=int, default=2),
            arg("--seed", type=int, default=0),
            arg("--method", default="head", choices=["head", "description"]),
        ],
    ),
    Command(
        "gguf",
        "llama.cpp's converter for GGUF export: install it, or say where it is",
        None,
        subcommands=[
            Command(
                "install-converter",
                "copy the converter out of llama-cpp-python's source package (scripts/setup.sh --with-gguf)",
                _gguf_install_converter,
                [
                    arg("--sdist", default=None, help="the source package (default: pip download it)"),
                    arg("--target", default=None, help="destination folder (default: <venv>/share/fineclass/...)"),
                ],
            ),
            Command("where", "print the converter folder fineclass uses", _gguf_where, []),
        ],
    ),
    Command("doctor", "report Python, torch, device and versions", _doctor, [arg("--json", action="store_true")]),
]


def _add(subparsers: Any, command: Command) -> None:
    p = subparsers.add_parser(command.name, help=command.help, description=command.description or command.help)
    for flags, options in command.arguments:
        p.add_argument(*flags, **options)
    if command.subcommands:
        sub = p.add_subparsers(dest=f"{command.name}_command", required=True)
        for child in command.subcommands:
            _add(sub, child)
    else:
        p.set_defaults(func=command.run)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fineclass`` command, built from ``COMMANDS``.

    Returns:
        An ``argparse.ArgumentParser`` whose parsed arguments carry ``func``, the subcommand's handler.
    """
    p = argparse.ArgumentParser(prog="fineclass", description="Fine-tune small open models to code text.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        _add(sub, command)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``fineclass`` command.

    Args:
        argv: the arguments (default: the command line's).

    Returns:
        The exit status: 0 on success, 2 after a FineclassError (its message on stderr), the handler's otherwise.

    Example:
        >>> main(["doctor", "--json"])  # doctest: +SKIP
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    from .errors import FineclassError

    try:
        return args.func(args)
    except FineclassError as e:
        print(f"fineclass: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
