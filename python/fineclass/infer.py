"""Classifying a corpus: ``classify()``, and the engines that run it.

With ``output=None`` the input is classified in memory and one table comes back. With ``output=DIR`` an engine
streams the input as numbered shards (``sources``), scores each shard (``scoring``) and writes it into the
output folder with its ledger (``ledger``), so that a rerun resumes and ``shard="i/n"`` splits the work among
jobs. Engines are registered by name in ``ENGINES``: ``local`` (this process), ``ray`` (a pool of Ray
actors, ``ray_engine``) and ``llamacpp`` (the local engine with a GGUF file scored by llama.cpp) write the same
folder, and a run started by one can be finished by another.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .classifier import Classifier
from .deployment import load  # a saved folder, or a GGUF export (then scored by llama.cpp)
from .errors import FineclassError
from .ledger import (
    DEFAULT_SHARD_ROWS,
    LEDGER,
    RUN_FILE,
    Run,
    RunOptions,
    model_identity,
    output_errors,
    read_output,
    report,
    weights_identity,
    write_shard,
)
from .llamacpp.classifier import DECODE_TOKENS, as_gguf_classifier
from .ray_engine import classify_ray
from .scoring import progress_bar
from .sources import hash_input, open_source

__all__ = ["classify", "read_output", "register_engine", "ENGINES", "LEDGER", "RUN_FILE", "DEFAULT_SHARD_ROWS"]


def _classify_local(data: Any, model: Any, output: str | Path | None, options: RunOptions) -> Any:
    """The local engine: every shard of this job in this process, one after the other."""
    if model is None:
        raise FineclassError("`model` is required: a fitted Classifier or the folder of a saved one.", "model")
    shard_rows, mine = options.shard_rows, options.mine
    source = open_source(data, options.text, options.id) if output is not None else None  # fails before any work
    clf = model if isinstance(model, Classifier) else load(model, device=options.device)
    if output is None:
        return clf.scorer().predict(data, options)

    # a folder was loaded just now, and load() checked its weights against the manifest's hash: no second read;
    # a GGUF classifier digests its one file itself
    verified = clf.manifest_.get("weights_sha256") if clf is not model else None
    weights = verified or getattr(clf, "weights_sha256_", None) or weights_identity(model)
    fingerprint = options.fingerprint(model_identity(clf.manifest_), weights, source.identity(shard_rows))
    source.check_output(output)
    source.check_rows()
    run = Run.start(output, fingerprint, options.resume, mine, share=options.share)
    scorer = clf.scorer()
    total = source.total
    n_shards = math.ceil(total / shard_rows) if total is not None else None
    mine_total = options.rows([k for k in range(n_shards) if mine(k)], total) if total is not None else None
    already = sum(e["rows"] for e in run.done.values())
    bar = progress_bar(mine_total, options.progress, initial=already if mine_total is not None else 0)
    t0 = time.time()

    def passed(k, chunk):  # a stream's finished shards must hold the same input
        run.check_input(k, hash_input(chunk, source.columns))

    try:
        for k, chunk in source.shards(shard_rows, lambda k: mine(k) and k not in run.done, passed):
            docs, input_hash = source.documents(k, chunk, shard_rows)
            out = scorer.predict_batch(docs, options.batch_tokens, options.probabilities, bar)
            with output_errors(run.folder):
                run.record(write_shard(run.folder, k, out, input_hash))
    finally:
        if bar is not None:
            bar.close()
        run.close()
    source.check_rows()  # a CSV file or a stream: its rows are known now
    if n_shards is None and source.seen is not None:
        n_shards = math.ceil(source.seen / shard_rows)
    i, n = options.share
    summary = run.summary(n_shards, n, f"{i}/{n}", time.time() - t0)
    if options.progress:
        report(summary)
    return summary


def _classify_llamacpp(
    data: Any,
    model: Any,
    output: str | Path | None,
    options: RunOptions,
    *,
    threads: int | None = None,
    decode_tokens: int = DECODE_TOKENS,
) -> Any:
    """The llama.cpp engine: the local engine, with a GGUF model scored by llama.cpp on ``threads`` CPU threads.

    ``model`` is a GGUF export (a .gguf file or its folder), or a Classifier loaded from one.
    """
    return _classify_local(data, as_gguf_classifier(model, threads, decode_tokens), output, options)


ENGINES: dict[str, Callable[..., Any]] = {
    "local": _classify_local,
    "ray": classify_ray,
    "llamacpp": _classify_llamacpp,
}


def register_engine(name: str, run: Callable[..., Any]) -> None:
    """Make an engine available as ``classify(..., engine=name)``.

    Args:
        name: the engine's name.
        run: ``run(data, model, output, options, **engine_options)``, with ``options`` a
            :class:`fineclass.ledger.RunOptions` (what :func:`classify`'s keywords say) and ``engine_options``
            the engine's own settings, returning what :func:`classify` returns; it must write the output folder
            through ``ledger`` so that every engine can resume the others' runs.
    """
    ENGINES[name] = run


def classify(
    data: Any,
    model: Any = None,
    output: str | Path | None = None,
    *,
    text: str = "text",
    id: str | None = None,
    batch_tokens: int | None = None,
    resume: bool = True,
    shard: Any = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    probabilities: bool = True,
    progress: bool = True,
    device: str = "auto",
    engine: str = "local",
    **engine_options: Any,
) -> Any:
    """Classify a table or a Parquet/CSV corpus.

    Args:
        data: a table (pyarrow, polars, pandas, dict of lists), a RecordBatchReader, or a path: a Parquet or CSV
            file, a glob, or a folder of Parquet files. Paths and streams are read shard by shard, never whole.
        model: a fitted Classifier, or the folder of a saved one.
        output: None to get one table back (small jobs); a folder for Parquet shards and a ledger.
        text: the text column.
        id: the id column (None: a column named ``id``, else the row number in the input).
        batch_tokens: tokens per batch (rows x longest row); None for the device's default.
        resume: continue an output folder that holds shards of this same run.
        shard: ``"i/n"``: this job's share of the shards (e.g. a SLURM array task).
        shard_rows: rows per shard.
        probabilities: add the probability columns.
        progress: show a progress bar and a closing line.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        engine: a name in ``ENGINES``: ``"local"``, ``"ray"`` or ``"llamacpp"`` (a GGUF export, run by
            llama.cpp in this process).
        **engine_options: settings of the engine (for Ray: ``address``, ``num_actors``, ``gpus_per_actor``,
            ``cpus_per_actor``, ``max_retries``, ``ray_init``; for llama.cpp: ``threads``, ``decode_tokens``).

    Returns:
        With ``output=None``, the prediction table (as ``Classifier.predict``). With ``output=DIR``, a summary
        dict: rows and shards written, skipped and redone, truncated and empty documents, seconds,
        documents/s, whether the run is complete, and where the output is. Read it with :func:`read_output`.

    Raises:
        FineclassError: naming the argument at fault (``model``, ``data``, ``text``, ``output``, ``shard``,
            ``engine``, ...).

    Example:
        >>> summary = fineclass.classify("corpus/*.parquet", model="my-model", output="out")  # doctest: +SKIP
        >>> table = fineclass.read_output("out")  # doctest: +SKIP
    """
    run = ENGINES.get(engine)
    if run is None:
        raise FineclassError(f"`engine` must be one of {', '.join(ENGINES)}; got {engine!r}.", "engine")
    params = inspect.signature(run).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    settings = {name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(engine_options) - settings) if not takes_any else []
    if unknown:
        raise FineclassError(f"engine={engine!r} has no setting {', '.join(unknown)}.", unknown[0])
    options = RunOptions(text=text, id=id, batch_tokens=batch_tokens, probabilities=probabilities, progress=progress)
    options = replace(options, resume=resume, shard=shard, shard_rows=shard_rows, device=device)
    return run(data, model, output, options, **engine_options)
