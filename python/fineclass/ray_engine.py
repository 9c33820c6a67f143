"""The Ray engine: classify a corpus with a pool of Ray actors, one fineclass predictor per GPU or CPU worker.

``fineclass.classify(data, model=..., output=DIR, engine="ray")`` produces the output folder the local engine
produces: the same shards (``part-{k:06d}.parquet`` holds rows ``k*shard_rows`` to ``(k+1)*shard_rows - 1`` of
the input, in the order the local engine reads them), the same schema, ledger and run record. A run started
by one engine can be finished by the other, and ``shard="i/n"`` splits the shards the same way.

How the work is cut. Ray Data's Parquet reader cuts the input into blocks of its own choosing and does not
say where in the corpus a block starts, so it can give neither a shard its identity nor a row without an id
column its row number. The driver therefore plans the shards from the Parquet footers (row counts per file
and row group, no data read; the local engine's ``_open_source``), and the Ray dataset it builds holds one
row per shard still to do. An actor pool (``map_batches`` with a callable class and a fixed-size
``ActorPoolStrategy``) takes one shard number at a time, reads exactly that shard's rows with pyarrow (only
the row groups that hold them), scores them with the local engine's token-budget batching
(``infer.predict_batch``) and writes the shard file atomically. Only the driver appends to the ledger, once
per shard as the results stream back, so workers on many machines never append to one file at once (appends
from several NFS clients can overwrite each other). An actor that dies is restarted by Ray and its shard is
retried; a shard file written twice is replaced whole, and its ledger line is written once.

Ray stays optional: nothing else in fineclass imports this module, and it imports ``ray`` only when called.
"""
from __future__ import annotations

import io
import math
import os
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._checks import whole_number
from ._fs import atomic_file
from .errors import FineclassError, warn_user

INSTALL_HINT = "pip install fineclass[ray]"
# Fault injection, for tests and drills: a file ``crash-<shard>-<before|after>`` in this folder makes the actor
# that takes that shard exit abruptly, once (the file is renamed first), before or after it writes the shard.
FAULT_ENV = "FINECLASS_RAY_FAULT_DIR"


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise FineclassError(f"engine='ray' needs Ray, which is not installed here ({e}). Install it with "
                             f"`{INSTALL_HINT}`, or use engine='local'.", "engine") from None
    return ray


# ---------------------------------------------------------------------- driver side
def _model_source(model: Any, ray) -> tuple[dict, str | None, Any]:
    """The manifest (for the run fingerprint), and a model folder path or the saved files in the object store."""
    import json
    from .classifier import Classifier
    if model is None:
        raise FineclassError("`model` is required: a fitted Classifier or the folder of a saved one.", "model")
    if isinstance(model, Classifier):
        model._check_fitted()
        with tempfile.TemporaryDirectory(prefix="fineclass-ray-") as tmp:
            folder = Path(model.save(Path(tmp) / "model"))
            files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        return model.manifest_, None, ray.put(files)
    if not isinstance(model, (str, Path)):
        raise FineclassError(f"`model` must be a fitted Classifier or the folder of a saved one; got "
                             f"{type(model).__name__}.", "model")
    folder = Path(model)
    if not (folder / "fineclass.json").is_file():
        raise FineclassError(f"`model` {str(model)!r} is not the folder of a saved fineclass model (no "
                             f"fineclass.json). Save a classifier with clf.save(folder) and pass that folder.",
                             "model")
    manifest = json.loads((folder / "fineclass.json").read_text(encoding="utf-8"))
    # actors load the model by path: on a cluster, the folder must be on a file system every node sees
    return manifest, str(folder.resolve()), None


def _reader_source(source, shard_rows: int, ray) -> dict:
    """What actors read shards from: Parquet files by row group (as planned), or one table in the object store."""
    from .infer import _FileSource, _TableSource
    if isinstance(source, _FileSource) and source.format == "parquet":
        return {"source": source, "total": source.total}
    if isinstance(source, _TableSource):
        table = source.table
    elif isinstance(source, _FileSource):  # CSV has no row index to seek to: read once, here, in order
        parts = [chunk for _, chunk in source.shards(shard_rows, lambda k: True)]
        table = pa.concat_tables(parts, promote_options="permissive") if parts else None
    else:  # a RecordBatchReader can be read once only: read it here, in order
        parts = [chunk for _, chunk in source.shards(shard_rows, lambda k: True)]
        table = pa.concat_tables(parts, promote_options="permissive") if parts else None
    if table is None or table.num_rows == 0:
        return {"total": 0}
    return {"table": ray.put(table), "columns": source.columns, "id_column": source.id_column,
            "total": table.num_rows, "local": table}


def _append_ledger(folder: Path, entry: dict) -> None:
    import json
    from .infer import LEDGER
    with open(folder / LEDGER, "a", encoding="utf-8") as f:
        # as the local engine writes it: the leading newline keeps it apart from a line a killed process left
        f.write("\n" + json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _resources(ray, num_actors, gpus_per_actor, cpus_per_actor) -> tuple[int, float]:
    """Fill in the defaults from the cluster (one actor per GPU, else per CPU) and check that they fit."""
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 0))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    if isinstance(gpus_per_actor, bool) or not isinstance(gpus_per_actor, (int, float)) or gpus_per_actor < 0:
        raise FineclassError(f"`gpus_per_actor` must be a number, 0 or more (0 for CPU workers, 0.5 for two actors "
                             f"on one GPU); got {gpus_per_actor!r}.", "gpus_per_actor")
    gpus_per_actor = float(gpus_per_actor)
    if num_actors is None:
        num_actors = int(gpus // gpus_per_actor) if gpus_per_actor > 0 else int(cpus // cpus_per_actor)
        num_actors = max(num_actors, 1)
    if gpus_per_actor > 0 and num_actors * gpus_per_actor > gpus + 1e-9:
        raise FineclassError(
            f"{num_actors} actors with {gpus_per_actor:g} GPU each need {num_actors * gpus_per_actor:g} GPU(s); the "
            f"Ray cluster has {gpus:g}. Lower `num_actors`, or start the Ray workers with their GPUs "
            f"(`ray start ... --num-gpus=N`).", "num_actors")
    if num_actors * cpus_per_actor > cpus + 1e-9:
        raise FineclassError(
            f"{num_actors} actors with {cpus_per_actor} CPU each need {num_actors * cpus_per_actor} CPU(s); the "
            f"Ray cluster has {cpus:g}. Lower `num_actors` or `cpus_per_actor`.", "num_actors")
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


def _write_part(folder: Path, k: int, table: pa.Table, input_hash: str) -> dict:
    """The shard file, written atomically, and its ledger entry (the local engine's fields); no ledger write."""
    from .infer import _sha256_file, _shard_name
    name = _shard_name(k)
    with atomic_file(folder / name) as tmp:
        pq.write_table(table, tmp)
        size, digest = os.path.getsize(tmp), _sha256_file(tmp)
    return {"shard": k, "file": name, "rows": table.num_rows, "bytes": size, "sha256": digest,
            "input_sha256": input_hash, **_counts(table)}


def _counts(table: pa.Table) -> dict:
    return {"truncated": int(pc.sum(table.column("truncated")).as_py() or 0),
            "empty": int(pc.sum(pc.equal(table.column("status"), "empty_text")).as_py() or 0)}


class ShardPredictor:
    """One fineclass predictor per actor: loads the model once, then classifies whole shards by number."""

    def __init__(self, *, model_path: str | None, model_files: Any, reader: dict, text: str, shard_rows: int,
                 batch_tokens: int | None, probabilities: bool, output: str | None, device: str, threads: int):
        import ray
        import torch
        from .classifier import load
        from .infer import _TableSource
        if device == "cpu":
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
        self.clf = load(model_path, device=device)
        if "table" in reader:
            ref = reader["table"]
            table = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
            self.source = _TableSource(table, reader["columns"])
            self.source.id_column = reader["id_column"]
        else:
            self.source = reader["source"]
        self.text, self.shard_rows = text, shard_rows
        self.batch_tokens, self.probabilities = batch_tokens, probabilities
        self.output = Path(output) if output is not None else None
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def _one(self, k: int) -> dict:
        from .tables import check_text, with_id
        from .infer import _hash_input, predict_batch
        t0 = time.time()
        found = [chunk for j, chunk in self.source.shards(self.shard_rows, lambda j: j == k)]
        if len(found) != 1:
            raise RuntimeError(f"fineclass: shard {k} could not be read from the input (found {len(found)} pieces)")
        chunk = found[0]
        input_hash = _hash_input(chunk, self.source.columns)
        chunk = with_id(chunk, self.source.id_column, offset=k * self.shard_rows)
        chunk, _ = check_text(chunk, self.text, on_empty="flag")
        out = predict_batch(self.clf, chunk.select(["id", "text"]), self.batch_tokens, self.probabilities, None)
        _maybe_fail(k, "before")
        if self.output is not None:
            entry, payload = _write_part(self.output, k, out, input_hash), b""
        else:
            entry = {"shard": k, "file": "", "rows": out.num_rows, **_counts(out)}
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, out.schema) as w:
                w.write_table(out)
            payload = sink.getvalue()
        _maybe_fail(k, "after")
        return {"entry": entry, "table": payload, "seconds": time.time() - t0, "worker": self.worker}

    def __call__(self, batch: pa.Table) -> pa.Table:
        import json
        results = []
        for k in batch.column("shard").to_pylist():
            try:
                results.append(self._one(int(k)))
            except FineclassError as e:  # a problem in the input: returned as data (Ray keeps no exception chain)
                results.append({"entry": {"shard": int(k)}, "table": b"", "seconds": 0.0, "worker": self.worker,
                                "error": json.dumps({"message": str(e), "argument": e.argument})})
        return pa.table({
            "shard": pa.array([r["entry"]["shard"] for r in results], pa.int64()),
            "entry": pa.array([json.dumps(r["entry"]) for r in results], pa.string()),
            "error": pa.array([r.get("error") for r in results], pa.string()),
            "table": pa.array([r["table"] for r in results], pa.large_binary()),
            "seconds": pa.array([r["seconds"] for r in results], pa.float64()),
            "worker": pa.array([r["worker"] for r in results], pa.string()),
        })


# ---------------------------------------------------------------------- the engine
def classify_ray(data: Any, model: Any = None, output: str | Path | None = None, *, text: str = "text",
                 id: str | None = None, batch_tokens: int | None = None, resume: bool = True,
                 shard_rows: int | None = None, probabilities: bool = True, address: str | None = None,
                 num_actors: int | None = None, gpus_per_actor: float | None = None, cpus_per_actor: int = 1,
                 max_retries: int = 3, shard: Any = None, progress: bool = True, device: str = "auto",
                 ray_init: dict | None = None) -> Any:
    """Classify a corpus with a pool of Ray actors; the same output as the local engine.

    Settings beyond the local engine's:

    address: ``None`` starts a local Ray instance for this call (or uses the one this process already
        initialised); ``"auto"`` joins the cluster this machine belongs to (``ray start`` ran here);
        ``"ray://host:10001"`` connects through Ray Client.
    num_actors: predictors to run; default one per GPU in the cluster (``gpus_per_actor=1``), or one per
        ``cpus_per_actor`` CPUs when the cluster has no GPU.
    gpus_per_actor: GPUs each actor holds (default 1 where the cluster has GPUs, else 0; 0.5 puts two actors
        on one GPU).
    cpus_per_actor: CPUs each actor holds; on CPU workers also its number of torch threads.
    max_retries: how many times a shard is retried after its actor died (a lost machine, a killed process).
    ray_init: extra keyword arguments for ``ray.init`` (e.g. ``{"num_cpus": 8}``), when this call starts Ray.

    With ``output=DIR``: the local engine's summary (plus ``engine``, ``actors`` and ``workers``, the number of
    worker processes that delivered shards). With ``output=None``: the prediction table, in input order.
    """
    from .infer import (DEFAULT_SHARD_ROWS, _bar, _check_batch_tokens, _check_shard, _claim_folder, _hash_input,
                        _model_identity, _open_source, _read_ledger, _remove_stale_temporaries, parse_shard)
    ray = _import_ray()
    batch_tokens = _check_batch_tokens(batch_tokens)
    shard_rows = whole_number(DEFAULT_SHARD_ROWS if shard_rows is None else shard_rows, "shard_rows")
    num_actors = whole_number(num_actors, "num_actors", allow_none=True)
    cpus_per_actor = whole_number(cpus_per_actor, "cpus_per_actor")
    max_retries = whole_number(max_retries, "max_retries", minimum=0)
    if address is not None and not isinstance(address, str):
        raise FineclassError(f"`address` must be None (a local Ray instance), 'auto' (the cluster this machine "
                             f"joined) or 'ray://host:port'; got {address!r}.", "address")
    i, n = parse_shard(shard)
    source = _open_source(data, text, id)  # bad input fails here, before Ray starts

    started = False
    if not ray.is_initialized():
        init = {"include_dashboard": False}
        init.update(ray_init or {})
        try:
            ray.init(address=address, **init)
        except ConnectionError as e:
            raise FineclassError(f"`address` {address!r}: no Ray cluster answered ({e}). Start one with "
                                 f"`ray start --head` (see docs/scale-out.md), or leave `address` out for a Ray "
                                 f"instance on this machine alone.", "address") from None
        started = True
    try:
        manifest, model_path, model_files = _model_source(model, ray)
        n_actors, gpus = _resources(ray, num_actors, gpus_per_actor, cpus_per_actor)
        # the input's identity first: a stream's is its first shard, read ahead before the rest is read
        identity = source.identity(shard_rows) if output is not None else None
        reader = _reader_source(source, shard_rows, ray)
        total = reader.pop("total")
        stream_table = reader.pop("local", None) if source.total is None else None
        reader.pop("local", None)
        n_shards = math.ceil(total / shard_rows)

        def mine(k: int) -> bool:
            return k % n == i

        folder, done, damaged = None, {}, []
        if output is not None:
            folder = Path(output)
            fingerprint = {"model": _model_identity(SimpleNamespace(manifest_=manifest)),
                           "input": identity, "text": text, "id": id, "shard_rows": shard_rows}
            _claim_folder(folder, fingerprint, resume)
            for k, e in _read_ledger(folder).items():
                if mine(k):
                    (done.__setitem__(k, e) if _check_shard(folder, e) else damaged.append(e.get("file", str(k))))
            if stream_table is not None:  # a stream's identity is its content: check the finished shards hold it
                for k, e in done.items():
                    piece = stream_table.slice(k * shard_rows, shard_rows)
                    if e.get("input_sha256") and e["input_sha256"] != _hash_input(piece, source.columns):
                        raise FineclassError(f"`output` {str(folder)!r} holds shards of another run (a different "
                                             f"input: shard {k} differs). Use a new output folder.", "output")
            if damaged:
                warn_user(f"{len(damaged)} finished shard file(s) in {str(folder)!r} are missing or damaged "
                          f"({', '.join(damaged[:3])}); they are classified again.", RuntimeWarning)
            _remove_stale_temporaries(folder, mine)
        todo = [k for k in range(n_shards) if mine(k) and k not in done]
        n_actors = max(1, min(n_actors, len(todo)))
        if device == "auto":
            device = "cuda" if gpus > 0 else "cpu"

        def rows_of(ks):
            return sum(min(shard_rows, total - k * shard_rows) for k in ks)

        bar = _bar(rows_of([k for k in range(n_shards) if mine(k)]), progress,
                   initial=rows_of([k for k in done if k < n_shards]))
        t0 = time.time()
        tables: dict[int, bytes] = {}
        counts = {"rows": 0, "truncated": 0, "empty": 0, "written": 0}
        workers: set[str] = set()
        try:
            if todo:
                kwargs = dict(model_path=model_path, model_files=model_files, reader=reader, text=text,
                              shard_rows=shard_rows, batch_tokens=batch_tokens, probabilities=probabilities,
                              output=str(folder.resolve()) if folder is not None else None, device=device,
                              threads=cpus_per_actor)
                for k, entry, table, worker in _run_pool(todo, n_actors=n_actors, gpus=gpus, cpus=cpus_per_actor,
                                                         max_retries=max_retries, kwargs=kwargs):
                    if k in tables:
                        continue  # a second result for one shard: the ledger keeps one line per shard
                    tables[k] = table
                    workers.add(worker)
                    if folder is not None:
                        _append_ledger(folder, entry)
                    counts["rows"] += entry["rows"]
                    counts["truncated"] += entry["truncated"]
                    counts["empty"] += entry["empty"]
                    counts["written"] += 1
                    if bar is not None:
                        bar.update(entry["rows"])
        finally:
            if bar is not None:
                bar.close()
        seconds = time.time() - t0
        if folder is not None:
            _remove_stale_temporaries(folder, mine)  # left by actors that died while writing (their shards are done)
    finally:
        if started:
            ray.shutdown()

    if folder is None:
        if not tables:  # no rows: the local engine's empty table
            from .infer import predict_table
            return predict_table(_load_for_empty(model), pa.table({"text": pa.array([], pa.string())}),
                                 probabilities=probabilities)
        return pa.concat_tables([pa.ipc.open_stream(tables[k]).read_all() for k in sorted(tables)])
    ledger = _read_ledger(folder)
    rows = counts["rows"]
    summary = {"output": str(folder.resolve()), "rows_written": rows, "shards_written": counts["written"],
               "shards_skipped": len(done), "shards_redone": len(damaged), "truncated": counts["truncated"],
               "empty": counts["empty"], "rows_total": sum(e["rows"] for e in ledger.values()),
               "truncated_total": sum(e.get("truncated", 0) for e in ledger.values()),
               "empty_total": sum(e.get("empty", 0) for e in ledger.values()),
               "shards_total": n_shards, "complete": len(ledger) == n_shards,
               "seconds": round(seconds, 2), "docs_per_second": round(rows / seconds, 1) if rows and seconds else None,
               "shard": f"{i}/{n}", "engine": "ray", "actors": n_actors if todo else 0, "workers": len(workers)}
    if progress:
        rate = f" ({summary['docs_per_second']} docs/s)" if rows else ""
        print(f"fineclass: {rows} documents classified with Ray ({summary['actors']} actors) in {summary['seconds']} s"
              f"{rate}; {counts['truncated']} truncated to max_length, {counts['empty']} empty; {len(done)} shards "
              f"already done; output in {summary['output']}", file=sys.stderr)
    return summary


def _load_for_empty(model):
    from .classifier import Classifier, load
    return model if isinstance(model, Classifier) else load(model, device="cpu")


def _run_pool(todo: list[int], *, n_actors: int, gpus: float, cpus: int, max_retries: int, kwargs: dict):
    """The actor pool's results, one (shard, ledger entry, table bytes, worker) per finished shard, as they come."""
    import json
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
            ds = items.map_batches(ShardPredictor, fn_constructor_kwargs=kwargs, compute=compute, batch_size=1,
                                   batch_format="pyarrow", num_cpus=cpus, num_gpus=gpus or None,
                                   max_restarts=-1, max_task_retries=max_retries)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for r in batch.to_pylist():
                if r["error"]:
                    err = json.loads(r["error"])
                    raise FineclassError(err["message"], err["argument"])
                yield int(r["shard"]), json.loads(r["entry"]), r["table"], r["worker"]
    finally:
        ctx.enable_progress_bars = saved
