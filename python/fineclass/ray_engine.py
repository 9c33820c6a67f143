"""The Ray engine: classify a corpus with a pool of Ray actors, one fineclass predictor per GPU or CPU worker.

``fineclass.classify(data, model=..., output=DIR, engine="ray")`` produces the output folder the local engine
produces: the same shards (``part-{k:06d}.parquet`` holds rows ``k*shard_rows`` to ``(k+1)*shard_rows - 1`` of
the input, in the order the local engine reads them), the same schema, ledger and run record. A run started
by one engine can be finished by the other, and ``shard="i/n"`` splits the shards the same way.

How the work is cut. Ray Data's Parquet reader cuts the input into blocks of its own choosing and does not
say where in the corpus a block starts, so it can give neither a shard its identity nor a row without an id
column its row number. The driver therefore plans the shards from the Parquet footers (row counts per file
and row group, no data read; ``sources.open_source``), and the Ray dataset it builds holds one
row per shard still to do. An actor pool (``map_batches`` with a callable class and a fixed-size
``ActorPoolStrategy``) takes one shard number at a time, reads exactly that shard's rows with pyarrow (only
the row groups that hold them), scores them with the token-budget batching of ``scoring.Scorer`` and writes
the shard file atomically (``ledger.write_shard``). Only the driver appends to the ledger, once
per shard as the results stream back, so workers on many machines never append to one file at once (appends
from several NFS clients can overwrite each other). An actor that dies is restarted by Ray and its shard is
retried; a shard file written twice is replaced whole, and its ledger line is written once.

Ray stays optional: this module imports ``ray`` only when called (``infer.ENGINES`` names it as ``"ray"``).
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._checks import number, whole_number
from .classifier import Classifier, load
from .errors import FineclassError
from .ledger import Run, RunOptions, model_identity, remove_stale_temporaries, report, weights_identity, write_shard
from .scoring import progress_bar
from .sources import FileSource, TableSource, hash_input, in_memory, open_source

INSTALL_HINT = "pip install fineclass[ray]"
# Fault injection, for tests and drills: a file ``crash-<shard>-<before|after>`` in this folder makes the actor
# that takes that shard exit abruptly, once (the file is renamed first), before or after it writes the shard.
FAULT_ENV = "FINECLASS_RAY_FAULT_DIR"


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise FineclassError(
            f"engine='ray' needs Ray, which is not installed here ({e}). Install it with "
            f"`{INSTALL_HINT}`, or use engine='local'.",
            "engine",
        ) from None
    return ray


# ---------------------------------------------------------------------- driver side
def _model_source(model: Any, ray) -> tuple[dict, str | None, Any, str | None]:
    """What the driver needs of the model: its manifest, where actors find it, and a saved copy's weight digest.

    Returns the manifest (for the run fingerprint), the model folder's path or the saved files in the object store,
    and for a classifier in memory its weights' digest (``ledger.weights_identity``) from the one copy saved here.
    """
    if model is None:
        raise FineclassError("`model` is required: a fitted Classifier or the folder of a saved one.", "model")
    if isinstance(model, Classifier):
        with tempfile.TemporaryDirectory(prefix="fineclass-ray-") as tmp:
            folder = Path(model.save(Path(tmp) / "model"))
            files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
            weights = weights_identity(folder)
        return model.manifest_, None, ray.put(files), weights
    if not isinstance(model, (str, Path)):
        raise FineclassError(
            f"`model` must be a fitted Classifier or the folder of a saved one; got {type(model).__name__}.", "model"
        )
    folder = Path(model)
    if not (folder / "fineclass.json").is_file():
        raise FineclassError(
            f"`model` {str(model)!r} is not the folder of a saved fineclass model (no "
            f"fineclass.json). Save a classifier with clf.save(folder) and pass that folder.",
            "model",
        )
    manifest = json.loads((folder / "fineclass.json").read_text(encoding="utf-8"))
    # actors load the model by path: on a cluster, the folder must be on a file system every node sees
    return manifest, str(folder.resolve()), None, None


def _reader_source(source, shard_rows: int, ray) -> tuple[dict, TableSource | None]:
    """What actors read shards from: Parquet files by row group (as planned), or one table in the object store.

    Also returns the table read here when the input had to be read whole (a stream or CSV files).
    """
    if isinstance(source, FileSource) and source.format == "parquet":
        return {"source": source, "total": source.total}, None
    table = in_memory(source, shard_rows)  # CSV has no row index to seek to, a stream can be read once only
    if table is None:
        return {"total": 0}, None
    return {"table": ray.put(table.table), "columns": table.columns, "total": table.total}, table


def _resources(ray, num_actors, gpus_per_actor, cpus_per_actor) -> tuple[int, float]:
    """Fill in the defaults from the cluster (one actor per GPU, else per CPU) and check that they fit."""
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 0))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    hint = " (0 for CPU workers, 0.5 for two actors on one GPU)"
    gpus_per_actor = number(gpus_per_actor, "gpus_per_actor", minimum=0, finite=True, hint=hint)
    if num_actors is None:
        num_actors = int(gpus // gpus_per_actor) if gpus_per_actor > 0 else int(cpus // cpus_per_actor)
        num_actors = max(num_actors, 1)
    if gpus_per_actor > 0 and num_actors * gpus_per_actor > gpus + 1e-9:
        raise FineclassError(
            f"{num_actors} actors with {gpus_per_actor:g} GPU each need {num_actors * gpus_per_actor:g} GPU(s); the "
            f"Ray cluster has {gpus:g}. Lower `num_actors`, or start the Ray workers with their GPUs "
            f"(`ray start ... --num-gpus=N`).",
            "num_actors",
        )
    if num_actors * cpus_per_actor > cpus + 1e-9:
        raise FineclassError(
            f"{num_actors} actors with {cpus_per_actor} CPU each need {num_actors * cpus_per_actor} CPU(s); the "
            f"Ray cluster has {cpus:g}. Lower `num_actors` or `cpus_per_actor`.",
            "num_actors",
        )
    return num_actors, gpus_per_actor


# ---------------------------------------------------------------------- the actor
def _maybe_fail(k: int, when: str) -> None:
    folder = os.environ.get(FAULT_ENV)
    if not folder:
        return
    marker = os.path.join(folder, f"crash-{k}-{when}")
    try:
        os.rename(marker, marker + ".fired")  # atomic: exactly one attempt fires
    except OSError:
        return
    os._exit(17)


class ShardPredictor:
    """One fineclass predictor per actor: loads the model once, then classifies whole shards by number."""

    def __init__(
        self,
        *,
        model_path: str | None,
        model_files: Any,
        reader: dict,
        options: RunOptions,
        output: str | None,
        threads: int,
    ):
        import ray
        import torch

        if options.device == "cpu":
            torch.set_num_threads(max(1, threads))
        self._tmp = None
        if model_path is None:  # a Classifier passed as an object: its saved files came through the object store
            self._tmp = tempfile.TemporaryDirectory(prefix="fineclass-model-")
            files = ray.get(model_files) if isinstance(model_files, ray.ObjectRef) else model_files
            for rel, blob in files.items():
                p = Path(self._tmp.name) / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(blob)
            model_path = self._tmp.name
        self.scorer = load(model_path, device=options.device).scorer()
        if "table" in reader:
            ref = reader["table"]
            self.source = TableSource(ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref, reader["columns"])
        else:
            self.source = reader["source"]
        self.options = options
        self.output = Path(output) if output is not None else None
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def _one(self, k: int) -> dict:
        t0 = time.time()
        shard_rows = self.options.shard_rows
        found = [chunk for j, chunk in self.source.shards(shard_rows, lambda j: j == k)]
        if len(found) != 1:
            raise RuntimeError(f"fineclass: shard {k} could not be read from the input (found {len(found)} pieces)")
        docs, input_hash = self.source.documents(k, found[0], shard_rows)
        out = self.scorer.predict_batch(docs, self.options.batch_tokens, self.options.probabilities, None)
        _maybe_fail(k, "before")
        if self.output is not None:
            entry, payload = write_shard(self.output, k, out, input_hash), b""
        else:
            entry = {"shard": k}
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, out.schema) as w:
                w.write_table(out)
            payload = sink.getvalue()
        _maybe_fail(k, "after")
        return {"entry": entry, "table": payload, "seconds": time.time() - t0, "worker": self.worker}

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Classify the shards of one Ray batch (one shard number per row).

        A problem in the input comes back as data (Ray keeps no exception chain), raised again by the driver.

        Args:
            batch: a table with a ``shard`` column.

        Returns:
            One row per shard: shard, entry (its ledger entry, JSON), error, table (Arrow IPC bytes when there is no
            output folder), seconds, worker.
        """
        results = []
        for k in batch.column("shard").to_pylist():
            try:
                results.append(self._one(int(k)))
            except FineclassError as e:  # a problem in the input: returned as data (Ray keeps no exception chain)
                results.append(
                    {
                        "entry": {"shard": int(k)},
                        "table": b"",
                        "seconds": 0.0,
                        "worker": self.worker,
                        "error": json.dumps({"message": str(e), "argument": e.argument}),
                    }
                )
        return pa.table(
            {
                "shard": pa.array([r["entry"]["shard"] for r in results], pa.int64()),
                "entry": pa.array([json.dumps(r["entry"]) for r in results], pa.string()),
                "error": pa.array([r.get("error") for r in results], pa.string()),
                "table": pa.array([r["table"] for r in results], pa.large_binary()),
                "seconds": pa.array([r["seconds"] for r in results], pa.float64()),
                "worker": pa.array([r["worker"] for r in results], pa.string()),
            }
        )


# ---------------------------------------------------------------------- the engine
def classify_ray(
    data: Any,
    model: Any,
    output: str | Path | None,
    options: RunOptions,
    *,
    address: str | None = None,
    num_actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: int = 1,
    max_retries: int = 3,
    ray_init: dict | None = None,
) -> Any:
    """Classify a corpus with a pool of Ray actors; the same output as the local engine.

    Args:
        data: see ``fineclass.classify``.
        model: a fitted Classifier (sent to the actors through the object store) or a saved model's folder (on a
            cluster, on a file system every node sees).
        output: see ``fineclass.classify``.
        options: what ``fineclass.classify``'s keywords say; ``options.device`` is the actors' device
            (``"auto"``: CUDA when they hold GPUs, else CPU).
        address: None starts a local Ray instance for this call (or uses the one this process already
            initialised); ``"auto"`` joins the cluster this machine belongs to (``ray start`` ran here);
            ``"ray://host:10001"`` connects through Ray Client.
        num_actors: predictors to run; default one per GPU in the cluster (``gpus_per_actor=1``), or one per
            ``cpus_per_actor`` CPUs when the cluster has no GPU.
        gpus_per_actor: GPUs each actor holds (default 1 where the cluster has GPUs, else 0; 0.5 puts two actors
            on one GPU).
        cpus_per_actor: CPUs each actor holds; on CPU workers also its number of torch threads.
        max_retries: how many times a shard is retried after its actor died (a lost machine, a killed process).
        ray_init: extra keyword arguments for ``ray.init`` (e.g. ``{"num_cpus": 8}``), when this call starts Ray.

    Returns:
        With ``output=DIR``: the local engine's summary, plus ``engine``, ``actors`` and ``workers`` (the worker
        processes that delivered shards). With ``output=None``: the prediction table, in input order.

    Raises:
        FineclassError: naming the argument at fault (``engine`` when Ray is not installed).
    """
    ray = _import_ray()
    num_actors = whole_number(num_actors, "num_actors", allow_none=True)
    cpus_per_actor = whole_number(cpus_per_actor, "cpus_per_actor")
    max_retries = whole_number(max_retries, "max_retries", minimum=0)
    if address is not None and not isinstance(address, str):
        raise FineclassError(
            f"`address` must be None (a local Ray instance), 'auto' (the cluster this machine "
            f"joined) or 'ray://host:port'; got {address!r}.",
            "address",
        )
    shard_rows, mine = options.shard_rows, options.mine
    source = open_source(data, options.text, options.id)  # bad input fails here, before Ray starts
    if output is not None:
        source.check_output(output)
        source.check_rows()

    started = False
    run = None
    if not ray.is_initialized():
        init = {"include_dashboard": False}
        init.update(ray_init or {})
        try:
            ray.init(address=address, **init)
        except ConnectionError as e:
            raise FineclassError(
                f"`address` {address!r}: no Ray cluster answered ({e}). Start one with "
                f"`ray start --head` (see docs/scale-out.md), or leave `address` out for a Ray "
                f"instance on this machine alone.",
                "address",
            ) from None
        started = True
    try:
        manifest, model_path, model_files, weights = _model_source(model, ray)
        n_actors, gpus = _resources(ray, num_actors, gpus_per_actor, cpus_per_actor)
        # the input's identity first: a stream's is its first shard, read ahead before the rest is read
        identity = source.identity(shard_rows) if output is not None else None
        reader, whole = _reader_source(source, shard_rows, ray)
        total = reader.pop("total")
        n_shards = math.ceil(total / shard_rows)
        if output is not None and total == 0:  # a CSV file or a stream, read whole now
            source.seen = 0
            source.check_rows()
        if output is not None:
            weights = weights if isinstance(model, Classifier) else weights_identity(model)
            fingerprint = options.fingerprint(model_identity(manifest), weights, identity)
            run = Run.start(output, fingerprint, options.resume, mine, share=options.share)
            if source.total is None and whole is not None:  # a stream's finished shards must hold the same input
                for k in run.done:
                    run.check_input(k, hash_input(whole.table.slice(k * shard_rows, shard_rows), source.columns))
        done = run.done if run is not None else {}
        todo = [k for k in range(n_shards) if mine(k) and k not in done]
        n_actors = max(1, min(n_actors, len(todo)))
        if options.device == "auto":
            options = replace(options, device="cuda" if gpus > 0 else "cpu")
        bar = progress_bar(
            options.rows([k for k in range(n_shards) if mine(k)], total),
            options.progress,
            initial=options.rows([k for k in done if k < n_shards], total),
        )
        t0 = time.time()
        tables: dict[int, bytes] = {}
        workers: set[str] = set()
        try:
            if todo:
                folder = str(run.folder.resolve()) if run is not None else None
                kwargs = {"model_path": model_path, "model_files": model_files, "reader": reader}
                kwargs.update(options=options, output=folder, threads=cpus_per_actor)
                for k, entry, table, worker in _run_pool(
                    todo, n_actors=n_actors, gpus=gpus, cpus=cpus_per_actor, max_retries=max_retries, kwargs=kwargs
                ):
                    if k in tables:
                        continue  # a second result for one shard: the ledger keeps one line per shard
                    tables[k] = table
                    workers.add(worker)
                    if run is not None:
                        run.record(entry)
                    if bar is not None:
                        bar.update(options.rows([k], total))
        finally:
            if bar is not None:
                bar.close()
        seconds = time.time() - t0
        if run is not None:  # left by actors that died while writing (their shards are done)
            remove_stale_temporaries(run.folder, mine)
    finally:
        if run is not None:
            run.close()
        if started:
            ray.shutdown()

    if run is None:
        if not tables:  # no rows: the local engine's empty table
            clf = model if isinstance(model, Classifier) else load(model, device="cpu")
            return clf.predict(pa.table({"text": pa.array([], pa.string())}), probabilities=options.probabilities)
        return pa.concat_tables([pa.ipc.open_stream(tables[k]).read_all() for k in sorted(tables)])
    i, n = options.share
    summary = run.summary(
        n_shards, n, f"{i}/{n}", seconds, engine="ray", actors=n_actors if todo else 0, workers=len(workers)
    )
    if options.progress:
        report(summary, f" with Ray ({summary['actors']} actors)")
    return summary


def _run_pool(todo: list[int], *, n_actors: int, gpus: float, cpus: int, max_retries: int, kwargs: dict):
    """The actor pool's results, one (shard, ledger entry, table bytes, worker) per finished shard, as they come."""
    import ray.data as rd

    ctx = rd.DataContext.get_current()
    saved = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # fineclass shows its own bar, in documents
    try:
        try:
            items = rd.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
        except TypeError:  # Ray before 2.10
            items = rd.from_items([{"shard": k} for k in todo], parallelism=len(todo))
        try:  # one shard at a time per actor: a free actor takes the next shard, none waits behind a slow one
            compute = rd.ActorPoolStrategy(size=n_actors, max_tasks_in_flight_per_actor=1)
        except TypeError:
            compute = rd.ActorPoolStrategy(size=n_actors)
        with warnings.catch_warnings():
            # max_restarts / max_task_retries have no named parameter in Ray 2.60; Ray Data's own default retries
            # forever, which would turn a shard that always kills its worker into a run that never ends
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = items.map_batches(
                ShardPredictor,
                fn_constructor_kwargs=kwargs,
                compute=compute,
                batch_size=1,
                batch_format="pyarrow",
                num_cpus=cpus,
                num_gpus=gpus or None,
                max_restarts=-1,
                max_task_retries=max_retries,
            )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for r in batch.to_pylist():
                if r["error"]:
                    err = json.loads(r["error"])
                    raise FineclassError(err["message"], err["argument"])
                yield int(r["shard"]), json.loads(r["entry"]), r["table"], r["worker"]
    finally:
        ctx.enable_progress_bars = saved
