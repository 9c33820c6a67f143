"""Inference: length-sorted, token-budget batches; streaming over Parquet into resumable shards.

``classify(data_or_path, model=..., output=DIR)`` reads the input as a stream of record batches, cuts it into
shards of ``shard_rows`` rows (by position in the stream, so that every run cuts the same shards), scores each
shard, writes it atomically (temporary file, fsync, rename) and records it in a ledger. A rerun with
``resume=True`` skips the shards in the ledger, so each id is written exactly once. ``shard="i/n"`` keeps the
shards whose number is i modulo n: n jobs together produce exactly the shards of one run.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .errors import FineclassError

LEDGER = "_ledger.jsonl"
RUN_FILE = "_run.json"
DEFAULT_SHARD_ROWS = 20_000


def default_batch_tokens(device: torch.device) -> int:
    return 65_536 if device.type == "cuda" else 8_192


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int = 1024) -> list[np.ndarray]:
    """Indices sorted by length (longest first), cut so that rows x longest row stays within the budget."""
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_rows, batch_tokens // longest))
        batches.append(order[start:start + size])
        start += size
    return batches


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, getattr(torch.cuda, "OutOfMemoryError", ())) or "out of memory" in str(e).lower()


def score_ids(clf, ids_list: list, batch_tokens: int | None = None, progress=None) -> np.ndarray:
    """Probabilities for pre-tokenised documents, in their original order."""
    method, module, spec = clf.method_, clf.module_, clf.spec_
    device = clf.device_
    budget = batch_tokens or default_batch_tokens(device)
    lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(ids_list))
    out = np.zeros((len(ids_list), _width(clf)), dtype=np.float64)
    module.eval()
    pending = token_budget_batches(lengths, budget)
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    while pending:
        idx = pending.pop(0)
        try:
            batch = method.collate(clf.tokenizer_, [ids_list[i] for i in idx], device)
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out[idx] = method.probabilities(module, batch, spec)
        except (RuntimeError, MemoryError) as e:
            if not _is_oom(e) or len(idx) == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(idx) // 2  # halve the budget for this batch and retry its two halves
            pending[:0] = [idx[:half], idx[half:]]
            budget = max(budget // 2, 1)
            continue
        if progress is not None:
            progress.update(len(idx))
    return out


def _width(clf) -> int:
    return clf.spec_.n_outputs


def score_texts(clf, texts: list[str], batch_tokens: int | None = None, progress=None):
    enc = clf.method_.encode(clf.tokenizer_, texts, clf.manifest_["config"]["max_length"])
    return score_ids(clf, enc.ids, batch_tokens, progress), enc.truncated


def _prediction_columns(clf, probs: np.ndarray, truncated: np.ndarray, empty: np.ndarray,
                        probabilities: bool) -> dict:
    from .classifier import decode
    cols = decode(probs, clf.spec_, clf.thresholds_)
    if empty.any():  # null or blank texts keep their row, with no prediction and a status saying why
        keep = pa.array(~empty)
        cols = {k: pa.compute.if_else(keep, v, pa.scalar(None, v.type)) for k, v in cols.items()}
    cols["truncated"] = pa.array(truncated & ~empty)
    cols["status"] = pa.array(np.where(empty, "empty_text", "ok"))
    if probabilities:
        for j, name in enumerate(clf.probability_names()):
            col = probs[:, j].copy()
            col[empty] = np.nan
            cols[name] = pa.array(col, mask=empty)
    return cols


def predict_batch(clf, table: pa.Table, batch_tokens: int | None = None, probabilities: bool = True,
                  progress=None) -> pa.Table:
    """Predictions for a table that already has `id` and `text` columns."""
    from .data import check_text
    _, empty = check_text(table, "text", on_empty="flag")
    texts = [t if not e else "" for t, e in zip(table.column("text").to_pylist(), empty)]
    probs, truncated = score_texts(clf, texts, batch_tokens, progress)
    cols = {"id": table.column("id")}
    cols.update(_prediction_columns(clf, probs, truncated, empty, probabilities))
    return pa.table(cols)


def predict_table(clf, data: Any, *, text: str = "text", id: str | None = None, batch_tokens: int | None = None,
                  probabilities: bool = True, progress: bool = False) -> pa.Table:
    from .data import check_text, read_table, with_id
    table = with_id(read_table(data), id)
    table, _ = check_text(table, text, on_empty="flag")
    bar = _bar(table.num_rows, progress)
    try:
        return predict_batch(clf, table.select(["id", "text"]), batch_tokens, probabilities, bar)
    finally:
        if bar is not None:
            bar.close()


def _bar(total, enabled, initial: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="doc", desc="classifying", dynamic_ncols=True, file=sys.stderr)


# ---------------------------------------------------------------------- streaming to shards
def parse_shard(shard: Any) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, (tuple, list)) and len(shard) == 2:
        i, n = shard
    else:
        try:
            i, n = (int(x) for x in str(shard).split("/"))
        except ValueError:
            raise FineclassError(f"`shard` must look like 'i/n' (e.g. '0/3'); got {shard!r}.", "shard") from None
    i, n = int(i), int(n)
    if n < 1 or not (0 <= i < n):
        raise FineclassError(f"`shard` {i}/{n}: i must be in 0..n-1 and n at least 1.", "shard")
    return i, n


def _fingerprint(clf, data: Any, text: str, id: str | None, shard_rows: int) -> dict:
    if isinstance(data, (str, Path)):
        from .data import resolve_files
        files = resolve_files(data)
        source = [{"file": os.path.abspath(f), "bytes": os.path.getsize(f)} for f in files]
    else:
        source = "in-memory table"
    model_id = clf.manifest_.get("fingerprint") or hashlib.sha256(
        json.dumps(clf.manifest_, sort_keys=True, default=str).encode()).hexdigest()
    return {"model": model_id, "input": source, "text": text, "id": id, "shard_rows": shard_rows}


def _read_ledger(folder: Path) -> dict[int, dict]:
    done = {}
    path = folder / LEDGER
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that shard is simply redone
            done[int(entry["shard"])] = entry
    return done


def _shard_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def _check_shard(folder: Path, entry: dict) -> bool:
    """A finished shard is trusted only if its file is there, readable and holds the recorded row count."""
    name = entry.get("file", "")
    if os.path.basename(name) != name or not name.startswith("part-"):
        raise FineclassError(f"`output`: the ledger names a file {name!r} outside the output folder; the ledger "
                             f"is damaged. Delete {LEDGER} and rerun.", "output")
    path = folder / name
    try:
        return pq.ParquetFile(path).metadata.num_rows == entry["rows"]
    except Exception:
        return False


def _write_shard(folder: Path, k: int, table: pa.Table) -> dict:
    name = _shard_name(k)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=str(folder))
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    entry = {"shard": k, "file": name, "rows": table.num_rows,
             "truncated": int(pa.compute.sum(table.column("truncated")).as_py() or 0)}
    with open(folder / LEDGER, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def _rechunk(batches, rows: int):
    """Record batches regrouped into tables of exactly ``rows`` rows (the last may be shorter)."""
    buf, n = [], 0
    for b in batches:
        while b.num_rows:
            take = min(rows - n, b.num_rows)
            buf.append(b.slice(0, take))
            n += take
            b = b.slice(take)
            if n == rows:
                yield pa.Table.from_batches(buf)
                buf, n = [], 0
    if n:
        yield pa.Table.from_batches(buf)


def classify(data: Any, model: Any = None, output: str | Path | None = None, *, text: str = "text",
             id: str | None = None, batch_tokens: int | None = None, resume: bool = True, shard: Any = None,
             shard_rows: int = DEFAULT_SHARD_ROWS, probabilities: bool = True, progress: bool = True,
             device: str = "auto", engine: str = "local", **engine_options) -> Any:
    """Classify a table or a Parquet/CSV corpus.

    With ``output=None``: returns a pyarrow Table (for small jobs). With ``output=DIR``: streams the input,
    writes Parquet shards and a ledger into DIR, and returns a summary dict (rows, truncated, seconds, where).
    """
    from .classifier import Classifier, load
    from .data import stream_batches, with_id, check_text

    if engine != "local":
        if engine == "ray":
            from .ray_engine import classify_ray
            return classify_ray(data, model=model, output=output, text=text, id=id, batch_tokens=batch_tokens,
                                resume=resume, shard_rows=shard_rows, probabilities=probabilities,
                                **engine_options)
        raise FineclassError(f"`engine` must be 'local' or 'ray'; got {engine!r}.", "engine")
    if model is None:
        raise FineclassError("`model` is required: a fitted Classifier or the folder of a saved one.", "model")
    clf = model if isinstance(model, Classifier) else load(model, device=device)
    if output is None:
        return clf.predict(data, text=text, id=id, batch_tokens=batch_tokens, probabilities=probabilities,
                           progress=progress)
    if not isinstance(shard_rows, int) or shard_rows < 1:
        raise FineclassError(f"`shard_rows` must be a positive whole number; got {shard_rows!r}.", "shard_rows")
    i, n = parse_shard(shard)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(clf, data, text, id, shard_rows)
    run_file = folder / RUN_FILE
    if run_file.exists():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != fp:
            changed = [k for k in fp if previous.get("fingerprint", {}).get(k) != fp[k]]
            raise FineclassError(
                f"`output` {str(folder)!r} holds shards of another run (different {', '.join(changed)}). Use a new "
                f"output folder, or delete that one to start over; results of two runs are never mixed.", "output")
        if not resume:
            raise FineclassError(f"`output` {str(folder)!r} already holds this run's shards; pass resume=True to "
                                 f"finish it, or use an empty folder.", "output")
    else:
        stray = [p.name for p in folder.iterdir() if p.name.startswith("part-")]
        if stray:
            raise FineclassError(f"`output` {str(folder)!r} holds shard files ({stray[0]}, ...) but no run record; "
                                 f"use an empty folder.", "output")
        from .manifest import write_json_atomic, versions, now
        write_json_atomic(run_file, {"fingerprint": fp, "started": now(), "versions": versions()})
    done = {k: e for k, e in _read_ledger(folder).items() if _check_shard(folder, e)}

    columns = [text] + ([id] if id else [])
    schema, batches, total = stream_batches(data, columns=_input_columns(data, text, id))
    if text not in schema.names:
        raise FineclassError(f"column `{text}` not found in `data`; columns are: {', '.join(schema.names)}. "
                             f"Pass `text=` with the name of the text column.", "text")
    if id is not None and id not in schema.names:
        raise FineclassError(f"column `{id}` not found in `data`; columns are: {', '.join(schema.names)}. "
                             f"Pass `id=` with the name of the id column.", "id")
    del columns
    mine_total = None
    if total is not None:
        n_shards = -(-total // shard_rows)
        mine = [k for k in range(n_shards) if k % n == i]
        mine_total = sum(min(shard_rows, total - k * shard_rows) for k in mine)
    already = sum(e["rows"] for k, e in done.items() if k % n == i)
    bar = _bar(mine_total, progress, initial=already if mine_total else 0)
    t0, rows, truncated, written = time.time(), 0, 0, 0
    try:
        for k, chunk in enumerate(_rechunk(batches, shard_rows)):
            if k % n != i or k in done:
                continue
            chunk = with_id(chunk, id, offset=k * shard_rows)
            chunk, _ = check_text(chunk, text, on_empty="flag")
            out = predict_batch(clf, chunk.select(["id", "text"]), batch_tokens, probabilities, bar)
            entry = _write_shard(folder, k, out)
            rows += entry["rows"]
            truncated += entry["truncated"]
            written += 1
    finally:
        if bar is not None:
            bar.close()
    ledger = _read_ledger(folder)
    summary = {"output": str(folder.resolve()), "rows_written": rows, "shards_written": written,
               "shards_skipped": len([k for k in done if k % n == i]), "truncated": truncated,
               "rows_total": sum(e["rows"] for e in ledger.values()),
               "truncated_total": sum(e.get("truncated", 0) for e in ledger.values()),
               "seconds": round(time.time() - t0, 2), "shard": f"{i}/{n}"}
    if progress:
        print(f"fineclass: {summary['rows_written']} documents classified in {summary['seconds']} s "
              f"({summary['truncated']} truncated); {summary['shards_skipped']} shards already done; "
              f"output in {summary['output']}", file=sys.stderr)
    return summary


def _input_columns(data, text, id):
    return [text] + ([id] if id else [])


def read_output(output: str | Path) -> pa.Table:
    """All finished shards of an output folder as one table (shards listed in the ledger only)."""
    folder = Path(output)
    entries = sorted(_read_ledger(folder).values(), key=lambda e: e["shard"])
    tables = []
    for e in entries:
        if not _check_shard(folder, e):
            raise FineclassError(f"`output`: shard {e['file']!r} is missing or damaged; rerun classify with "
                                 f"resume=True to redo it.", "output")
        tables.append(pq.read_table(folder / e["file"]))
    if not tables:
        raise FineclassError(f"`output` {str(folder)!r} holds no finished shard.", "output")
    return pa.concat_tables(tables)
