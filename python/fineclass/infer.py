"""Classifying a corpus: ``classify()``, and the engines that run it.

With ``output=None`` the input is classified in memory and one table comes back. With ``output=DIR`` an engine
streams the input as numbered shards (``sources``), scores each shard (``scoring``) and writes it into the
output folder with its ledger (``ledger``), so that a rerun resumes and ``shard="i/n"`` splits the work among
jobs. Engines are registered by name in ``ENGINES``: ``local`` (this process) and ``ray`` (a pool of Ray
actors, ``ray_engine``) write the same folder, and a run started by one can be finished by the other.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Callable

from ._checks import whole_number
from .classifier import Classifier, load
from .errors import FineclassError
from .ledger import (
    DEFAULT_SHARD_ROWS,
    LEDGER,
    RUN_FILE,
    Run,
    model_identity,
    output_errors,
    parse_shard,
    read_output,
    report,
    weights_identity,
    write_shard,
)
from .ray_engine import classify_ray
from .scoring import check_batch_tokens, progress_bar
from .sources import hash_input, open_source

__all__ = ["classify", "read_output", "register_engine", "ENGINES", "LEDGER", "RUN_FILE", "DEFAULT_SHARD_ROWS"]


def _classify_local(
    data: Any,
    model: Any,
    output: str | Path | None,
    *,
    text: str,
    id: str | None,
    batch_tokens: int | None,
    resume: bool,
    shard: Any,
    shard_rows: int,
    probabilities: bool,
    progress: bool,
    device: str,
) -> Any:
    """The local engine: every shard of this job in this process, one after the other."""
    if model is None:
        raise FineclassError("`model` is required: a fitted Classifier or the folder of a saved one.", "model")
    batch_tokens = check_batch_tokens(batch_tokens)
    shard_rows = whole_number(shard_rows, "shard_rows")
    i, n = parse_shard(shard)
    source = open_source(data, text, id) if output is not None else None  # bad input fails before any work
    clf = model if isinstance(model, Classifier) else load(model, device=device)
    if output is None:
        return clf.predict(
            data, text=text, id=id, batch_tokens=batch_tokens, probabilities=probabilities, progress=progress
        )

    def mine(k: int) -> bool:
        return k % n == i

    # a folder was loaded just now, and load() checked its weights against the manifest's hash: no second read
    verified = clf.manifest_.get("weights_sha256") if clf is not model else None
    fingerprint = {
        "model": model_identity(clf.manifest_),
        "weights": verified or weights_identity(model),
        "input": source.identity(shard_rows),
        "text": text,
        "id": id,
        "shard_rows": shard_rows,
    }
    source.check_output(output)
    source.check_rows()
    run = Run.start(output, fingerprint, resume, mine, share=(i, n))
    scorer = clf.scorer()
    total = source.total
    n_shards = math.ceil(total / shard_rows) if total is not None else None
    mine_total = None
    if total is not None:
        mine_total = sum(min(shard_rows, total - k * shard_rows) for k in range(n_shards) if mine(k))
    already = sum(e["rows"] for e in run.done.values())
    bar = progress_bar(mine_total, progress, initial=already if mine_total is not None else 0)
    t0 = time.time()

    def passed(k, chunk):  # a stream's finished shards must hold the same input
        run.check_input(k, hash_input(chunk, source.columns))

    try:
        for k, chunk in source.shards(shard_rows, lambda k: mine(k) and k not in run.done, passed):
            docs, input_hash = source.documents(k, chunk, shard_rows)
            out = scorer.predict_batch(docs, batch_tokens, probabilities, bar)
            with output_errors(run.folder):
                run.record(write_shard(run.folder, k, out, input_hash))
    finally:
        if bar is not None:
            bar.close()
        run.close()
    source.check_rows()  # a CSV file or a stream: its rows are known now
    if n_shards is None and source.seen is not None:
        n_shards = math.ceil(source.seen / shard_rows)
    summary = run.summary(n_shards, n, f"{i}/{n}", time.time() - t0)
    if progress:
        report(summary)
    return summary


ENGINES: dict[str, Callable[..., Any]] = {"local": _classify_local, "ray": classify_ray}


def register_engine(name: str, run: Callable[..., Any]) -> None:
    """Make an engine available as ``classify(..., engine=name)``.

    Args:
        name: the engine's name.
        run: ``run(data, model, output, *, text, id, batch_tokens, resume, shard, shard_rows, probabilities,
            progress, device, **options)``, returning what :func:`classify` returns; it must write the output
            folder through ``ledger`` so that every engine can resume the others' runs.
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
        engine: a name in ``ENGINES``: ``"local"`` or ``"ray"``.
        **engine_options: settings of the engine (for Ray: ``address``, ``num_actors``, ``gpus_per_actor``,
            ``cpus_per_actor``, ``max_retries``, ``ray_init``).

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
    unknown = sorted(set(engine_options) - set(params)) if not takes_any else []
    if unknown:
        raise FineclassError(f"engine={engine!r} has no setting {', '.join(unknown)}.", unknown[0])
    return run(
        data,
        model,
        output,
        text=text,
        id=id,
        batch_tokens=batch_tokens,
        resume=resume,
        shard=shard,
        shard_rows=shard_rows,
        probabilities=probabilities,
        progress=progress,
        device=device,
        **engine_options,
    )
