"""Inference: length-sorted, token-budget batches; streaming over Parquet into resumable shards.

``classify(data_or_path, model=..., output=DIR)`` reads the input as a stream of record batches, cuts it into
shards of ``shard_rows`` rows (by position in the input, so that every run cuts the same shards), scores each
shard, writes it atomically (temporary file, fsync, rename) and records it in a ledger with its size and
SHA-256. A rerun with ``resume=True`` skips the shards in the ledger whose files are intact and redoes the
others, so each id is written exactly once. ``shard="i/n"`` keeps the shards whose number is i modulo n: n jobs
together produce exactly the shards of one run, in one output folder or several.

Inside a shard, documents are sorted by token length and cut into batches by a token budget (rows x longest
row), so that little compute goes to padding; results go back into input order. An out-of-memory error halves
the budget and re-plans the remaining batches instead of ending the run.

An output folder belongs to one run: ``_run.json`` records the model, the input (file names, sizes and a hash
of each file's footer; or a hash of an in-memory table's ids and texts), the text and id columns and the shard
size. A folder holding finished shards of another run is refused, so results of two runs are never mixed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from .errors import FineclassError, warn_user

LEDGER = "_ledger.jsonl"
RUN_FILE = "_run.json"
DEFAULT_SHARD_ROWS = 20_000
READ_BATCH_ROWS = 8_192
ENCODE_ROWS = 2_048
_TAIL_BYTES = 65_536


def default_batch_tokens(device: torch.device) -> int:
    """Tokens per batch (rows x longest row): large on GPUs, moderate on CPUs (bigger does not help there)."""
    if device.type == "cuda":
        return 65_536
    if device.type == "mps":
        return 16_384
    return 8_192


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int = 1024) -> list[np.ndarray]:
    """Indices sorted by length (longest first), cut so that rows x longest row stays within the budget."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_rows, batch_tokens // longest))
        batches.append(order[start:start + size])
        start += size
    return batches


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    msg = str(e).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def score_ids(clf, ids_list: list, batch_tokens: int | None = None, progress=None) -> np.ndarray:
    """Probabilities for pre-tokenised documents (lists of token ids), in their original order.

    Documents are sorted by length and batched by a token budget (``batch_tokens``, rows x longest row). On an
    out-of-memory error the budget is halved and the batches not yet scored are planned again.
    """
    method, module, spec = clf.method_, clf.module_, clf.spec_
    device = clf.device_
    budget = int(batch_tokens or default_batch_tokens(device))
    n = len(ids_list)
    out = np.zeros((n, _width(clf)), dtype=np.float64)
    if n == 0:
        return out
    lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=n)
    module.eval()
    pending = deque(token_budget_batches(lengths, budget))
    autocast = device.type == "cuda" and torch.cuda.is_bf16_supported()
    # a method may keep work shared by all batches of this call (the generative method: the prompt head)
    session = getattr(method, "scoring_session", None)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast), \
            (session() if session is not None else contextlib.nullcontext()):
        while pending:
            idx = pending.popleft()
            try:
                batch = method.collate(clf.tokenizer_, [ids_list[i] for i in idx], device)
                probs = method.probabilities(module, batch, spec)
            except (RuntimeError, MemoryError) as e:
                if not _is_oom(e):
                    raise
                batch = None
                _free_memory(device)
                if len(idx) == 1:
                    raise FineclassError(
                        f"a single document of {int(lengths[idx[0]])} tokens does not fit in the memory of "
                        f"{device}; lower `max_length` when training, or use a device with more memory.",
                        "batch_tokens") from e
                # halve the budget and plan this batch and every batch still waiting again
                budget = max(budget // 2, 1)
                rest = np.concatenate([idx, *pending])
                pending = deque(rest[b] for b in token_budget_batches(lengths[rest], budget))
                warn_user(f"out of memory on {device}: the token budget is now {budget} tokens per batch.",
                          RuntimeWarning)
                continue
            out[idx] = probs
            if progress is not None:
                progress.update(len(idx))
    return out


def _width(clf) -> int:
    return clf.spec_.n_outputs


def score_texts(clf, texts: list[str], batch_tokens: int | None = None, progress=None):
    """(probabilities, truncated flags) for a list of texts, truncated to the model's ``max_length``.

    Texts are tokenised a few thousand at a time: the tokenizer's per-document objects (offsets, token
    strings) are dropped as soon as their ids are taken, which keeps memory flat on large shards.
    """
    max_length = clf.manifest_["config"]["max_length"]
    ids: list = []
    truncated = []
    for s in range(0, len(texts), ENCODE_ROWS):
        enc = clf.method_.encode(clf.tokenizer_, texts[s:s + ENCODE_ROWS], max_length)
        ids.extend(enc.ids)
        truncated.append(np.asarray(enc.truncated, dtype=bool))
        del enc
    truncated = np.concatenate(truncated) if truncated else np.zeros(0, dtype=bool)
    return score_ids(clf, ids, batch_tokens, progress), truncated


def _prediction_columns(clf, probs: np.ndarray, truncated: np.ndarray, empty: np.ndarray,
                        probabilities: bool) -> dict:
    from .classifier import decode
    cols = decode(probs, clf.spec_, clf.thresholds_)
    if empty.any():  # null or blank texts keep their row, with no prediction and a status saying why
        keep = pa.array(~empty)
        cols = {k: pc.if_else(keep, v, pa.scalar(None, v.type)) for k, v in cols.items()}
    cols["truncated"] = pa.array(truncated & ~empty)
    cols["status"] = pa.array(np.where(empty, "empty_text", "ok").tolist(), type=pa.string())
    if probabilities:
        for j, name in enumerate(clf.probability_names()):
            col = probs[:, j].copy()
            col[empty] = np.nan
            cols[name] = pa.array(col, mask=empty)
    return cols


def predict_batch(clf, table: pa.Table, batch_tokens: int | None = None, probabilities: bool = True,
                  progress=None) -> pa.Table:
    """Predictions for a table that already has `id` and `text` columns (null or blank texts are flagged)."""
    from .data import check_text
    _, empty = check_text(table, "text", on_empty="flag")
    n = table.num_rows
    col = table.column("text")
    if empty.any():
        keep = np.flatnonzero(~empty)
        texts = col.take(pa.array(keep)).to_pylist()
    else:
        keep = None
        texts = col.to_pylist()
    probs_k, trunc_k = score_texts(clf, texts, batch_tokens, progress)
    if keep is None:
        probs, truncated = probs_k, trunc_k
    else:
        probs = np.zeros((n, _width(clf)), dtype=np.float64)
        truncated = np.zeros(n, dtype=bool)
        probs[keep], truncated[keep] = probs_k, trunc_k
        if progress is not None:
            progress.update(int(empty.sum()))
    cols = {"id": table.column("id")}
    cols.update(_prediction_columns(clf, probs, truncated, empty, probabilities))
    return pa.table(cols)


def predict_table(clf, data: Any, *, text: str = "text", id: str | None = None, batch_tokens: int | None = None,
                  probabilities: bool = True, progress: bool = False) -> pa.Table:
    """Predictions for an in-memory input (one table out, in input order)."""
    from .data import check_text, read_table, with_id
    batch_tokens = _check_batch_tokens(batch_tokens)
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
    return tqdm(total=total, initial=initial, unit="doc", desc="classifying", dynamic_ncols=True, file=sys.stderr,
                smoothing=0.1)


def _check_batch_tokens(batch_tokens):
    if batch_tokens is None:
        return None
    if isinstance(batch_tokens, float) and batch_tokens.is_integer():
        batch_tokens = int(batch_tokens)  # R passes numbers as doubles
    if not isinstance(batch_tokens, int) or isinstance(batch_tokens, bool) or batch_tokens < 1:
        raise FineclassError(f"`batch_tokens` must be a positive whole number (tokens per batch, e.g. 8192); got "
                             f"{batch_tokens!r}.", "batch_tokens")
    return batch_tokens


# ---------------------------------------------------------------------- shards
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
    try:
        i, n = int(i), int(n)
    except (TypeError, ValueError):
        raise FineclassError(f"`shard` must look like 'i/n' (e.g. '0/3'); got {shard!r}.", "shard") from None
    if n < 1 or not (0 <= i < n):
        raise FineclassError(f"`shard` {i}/{n}: i must be in 0..n-1 and n at least 1.", "shard")
    return i, n


def _hash_input(table: pa.Table, columns: list[str]) -> str:
    """A SHA-256 of some columns' values that does not depend on how the table is cut into chunks."""
    h = hashlib.sha256()
    for name in columns:
        lengths, data = hashlib.sha256(), hashlib.sha256()
        col = table.column(name)
        for arr in col.chunks:
            if pa.types.is_dictionary(arr.type):
                arr = arr.cast(arr.type.value_type)
            nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=np.uint8)
            if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or \
                    pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
                wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
                bufs = arr.buffers()
                off = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)[arr.offset:arr.offset + len(arr) + 1]
                lengths.update(np.diff(off).astype(np.int64).tobytes())
                if bufs[2] is not None and off[-1] > off[0]:
                    data.update(memoryview(bufs[2])[int(off[0]):int(off[-1])])
            elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
                data.update(np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False)).astype(
                    np.float64 if pa.types.is_floating(arr.type) else np.int64).tobytes())
            else:
                data.update(repr(arr.to_pylist()).encode("utf-8"))
            lengths.update(nulls.tobytes())
        h.update(f"{name}\x1f{col.type}\x1f".encode())
        h.update(lengths.digest())
        h.update(data.digest())
    return h.hexdigest()


def _file_identity(path: str, root: str) -> dict:
    """Name (relative to the input), size and a hash of the file's last bytes (a Parquet file's footer)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL_BYTES))
        tail = hashlib.sha256(f.read()).hexdigest()
    return {"file": os.path.relpath(path, root) if root else os.path.basename(path), "bytes": size, "tail": tail}


def _missing_column(name: str, names: list, argument: str, where: str) -> FineclassError:
    return FineclassError(f"column `{name}` not found in {where}; columns are: {', '.join(names)}. "
                          f"Pass `{argument}=` with the name of the {argument} column.", argument)


class _Source:
    """The input of a sharded run: its columns, row count (when known), identity and shards."""

    kind: str = "table"
    total: int | None = None

    def shards(self, shard_rows: int, wanted: Callable[[int], bool],
               check: Callable[[int, pa.Table], None] | None = None) -> Iterator[tuple[int, pa.Table]]:
        raise NotImplementedError


class _TableSource(_Source):
    def __init__(self, table: pa.Table, columns: list[str]):
        self.kind = "table"
        self.table = table.select(columns)
        self.columns = columns
        self.total = table.num_rows

    def identity(self, shard_rows: int) -> dict:
        h = hashlib.sha256()
        for k in range(math.ceil(self.total / shard_rows)):
            h.update(_hash_input(self.table.slice(k * shard_rows, shard_rows), self.columns).encode())
        return {"kind": "table", "rows": self.total, "sha256": h.hexdigest()}

    def shards(self, shard_rows, wanted, check=None):
        for k in range(math.ceil(self.total / shard_rows)):
            if wanted(k):
                yield k, self.table.slice(k * shard_rows, shard_rows)


class _StreamSource(_Source):
    """A RecordBatchReader, read once and in order.

    Its identity is a hash of its first shard (read ahead and kept); later finished shards are checked against
    the input hash recorded in the ledger as the stream passes them.
    """

    def __init__(self, reader: pa.RecordBatchReader, columns: list[str]):
        self.kind = "stream"
        self.reader, self.columns, self.total = reader, columns, None
        self._chunks = None
        self._head = None

    def identity(self, shard_rows: int) -> dict:
        self._chunks = _rechunk((b.select(self.columns) for b in self.reader), shard_rows)
        self._head = next(self._chunks, None)
        head = _hash_input(self._head, self.columns) if self._head is not None else None
        return {"kind": "stream", "first_shard_sha256": head}

    def shards(self, shard_rows, wanted, check=None):
        if self._chunks is None:
            self.identity(shard_rows)
        chunks = self._chunks if self._head is None else _chain([self._head], self._chunks)
        self._head = None
        for k, chunk in enumerate(chunks):
            if wanted(k):
                yield k, chunk
            elif check is not None:
                check(k, chunk)


def _chain(first, rest):
    yield from first
    yield from rest


class _FileSource(_Source):
    """Parquet files read row group by row group (only the groups that hold wanted shards), or CSV files."""

    def __init__(self, path, columns: list[str], argument: str = "data"):
        from .data import _format_of, resolve_files
        self.files = resolve_files(path, argument)
        self.format = _format_of(self.files, argument)
        self.columns, self.argument = columns, argument
        self.kind = "files"
        p = str(path)
        self.root = p if os.path.isdir(p) else os.path.commonpath([os.path.dirname(os.path.abspath(f))
                                                                      for f in self.files])
        self.schemas = []
        if self.format == "parquet":
            self.row_groups = []  # per file: rows of each row group
            for f in self.files:
                try:
                    meta = pq.ParquetFile(f)
                    schema = meta.schema_arrow
                    self.row_groups.append([meta.metadata.row_group(g).num_rows
                                            for g in range(meta.metadata.num_row_groups)])
                    meta.close()
                    self.schemas.append(schema)
                except Exception as e:  # pyarrow raises several types for damaged files
                    raise FineclassError(f"`{argument}`: the file {f!r} is not a readable Parquet file "
                                         f"({type(e).__name__}: {e}). Remove or re-create it.", argument) from None
                for c in columns:
                    if c not in schema.names:
                        raise _missing_column(c, schema.names, "text" if c == columns[0] else "id",
                                              f"the file {f!r}")
            self.total = sum(sum(g) for g in self.row_groups)
        else:
            import pyarrow.dataset as ds
            try:
                self.dataset = ds.dataset(self.files, format="csv")
                names = self.dataset.schema.names
                self.schemas.append(self.dataset.schema)
            except (pa.ArrowInvalid, OSError) as e:
                raise FineclassError(f"`{argument}`: the CSV files could not be read ({e}).", argument) from None
            for c in columns:
                if c not in names:
                    raise _missing_column(c, names, "text" if c == columns[0] else "id", f"`{argument}`")
            self.total = None

    def has_column(self, name: str) -> bool:
        return all(name in s.names for s in self.schemas)

    def identity(self, shard_rows: int) -> dict:
        return {"kind": "files", "format": self.format, "rows": self.total,
                "files": [_file_identity(f, self.root) for f in self.files]}

    def _read_error(self, f, e) -> FineclassError:
        return FineclassError(f"`{self.argument}`: the file {f!r} could not be read ({type(e).__name__}: {e}). "
                              f"Remove or re-create it.", self.argument)

    def shards(self, shard_rows, wanted, check=None):
        if self.format != "parquet":
            yield from self._csv_shards(shard_rows, wanted)
            return
        total, R = self.total, shard_rows
        buf: list = []
        pos = 0
        for f, groups in zip(self.files, self.row_groups):
            pf = None
            try:
                for g, rows in enumerate(groups):
                    start, end = pos, pos + rows
                    pos = end
                    if rows == 0 or not any(wanted(k) for k in range(start // R, (end - 1) // R + 1)):
                        continue  # nothing of this row group is needed: it is not even read
                    if pf is None:
                        try:  # a modest read buffer: pages are read as needed, not whole column chunks
                            pf = pq.ParquetFile(f, buffer_size=1 << 20, pre_buffer=False)
                        except Exception as e:
                            raise self._read_error(f, e) from None
                    it = pf.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=[g], columns=self.columns,
                                         use_threads=False)
                    off = start
                    while True:
                        try:
                            batch = next(it)
                        except StopIteration:
                            break
                        except Exception as e:
                            raise self._read_error(f, e) from None
                        b0, off = off, off + batch.num_rows
                        s = b0
                        while s < off:  # cut the batch at shard boundaries
                            k = s // R
                            e_ = min(off, (k + 1) * R)
                            if wanted(k):
                                buf.append(batch.slice(s - b0, e_ - s))
                                if e_ == min((k + 1) * R, total):
                                    yield k, _concat(buf)
                                    buf = []
                            s = e_
            finally:
                if pf is not None:
                    pf.close()

    def _csv_shards(self, shard_rows, wanted):
        scanner = self.dataset.scanner(columns=self.columns, batch_size=READ_BATCH_ROWS)

        def batches():
            it = iter(scanner.to_batches())
            while True:
                try:
                    yield next(it)
                except StopIteration:
                    return
                except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
                    raise FineclassError(f"`{self.argument}`: a CSV file could not be read ({e}). Save it as "
                                         f"UTF-8 with one header row, or convert it to Parquet.",
                                         self.argument) from None
        for k, chunk in enumerate(_rechunk(batches(), shard_rows)):
            if wanted(k):
                yield k, chunk


def _concat(pieces: list) -> pa.Table:
    tables = [pa.Table.from_batches([p]) for p in pieces]
    if len({t.schema for t in tables}) == 1:
        return pa.concat_tables(tables)
    return pa.concat_tables(tables, promote_options="permissive")


def _open_source(data: Any, text: str, id: str | None) -> _Source:
    """The input as a source of shards; missing columns and unreadable files fail here, before any work.

    Without ``id``, an input column named ``id`` is used as the id (as in ``predict``); without one either,
    the id is the row number in the input.
    """
    from .data import ID, _is_path, read_table
    if _is_path(data):
        source = _FileSource(data, [text] + ([id] if id else []))
        if id is None and source.has_column(ID):
            source = _FileSource(data, [text, ID])
    else:
        if isinstance(data, pa.RecordBatchReader):
            names, table = data.schema.names, None
        else:
            table = read_table(data)
            names = table.column_names
        for c, arg in ((text, "text"), (id, "id")):
            if c is not None and c not in names:
                raise _missing_column(c, names, arg, "`data`")
        id_col = id if id is not None else (ID if ID in names else None)
        columns = [text] + ([id_col] if id_col and id_col != text else [])
        source = _StreamSource(data, columns) if table is None else _TableSource(table, columns)
    source.id_column = source.columns[1] if len(source.columns) > 1 else None
    return source


def _model_identity(clf) -> str:
    m = clf.manifest_
    return m.get("fingerprint") or hashlib.sha256(json.dumps(m, sort_keys=True, default=str).encode()).hexdigest()


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
                done[int(entry["shard"])] = entry  # a later line for the same shard (a redo) wins
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut by a crash: that shard is simply redone
    return done


def _shard_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_shard(folder: Path, entry: dict) -> bool:
    """A finished shard is trusted only if its file is there with the recorded size, SHA-256 and row count."""
    name = entry.get("file", "")
    if not isinstance(name, str) or os.path.basename(name) != name or not name.startswith("part-"):
        raise FineclassError(f"`output`: the ledger names a file {name!r} outside the output folder; the ledger "
                             f"is damaged. Delete {LEDGER} and rerun.", "output")
    path = folder / name
    try:
        if "bytes" in entry and path.stat().st_size != entry["bytes"]:
            return False
        if "sha256" in entry and _sha256_file(path) != entry["sha256"]:
            return False
        return pq.ParquetFile(path).metadata.num_rows == entry["rows"]
    except Exception:
        return False


def _write_shard(folder: Path, k: int, table: pa.Table, input_hash: str) -> dict:
    name = _shard_name(k)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=str(folder))
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        size, digest = os.path.getsize(tmp), _sha256_file(Path(tmp))
        os.replace(tmp, folder / name)
        _fsync_dir(folder)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    entry = {"shard": k, "file": name, "rows": table.num_rows, "bytes": size, "sha256": digest,
             "input_sha256": input_hash,
             "truncated": int(pc.sum(table.column("truncated")).as_py() or 0),
             "empty": int(pc.sum(pc.equal(table.column("status"), "empty_text")).as_py() or 0)}
    with open(folder / LEDGER, "a", encoding="utf-8") as f:
        # one write per entry; the leading newline keeps it apart from a line a killed process left unfinished
        f.write("\n" + json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
                yield _concat(buf)
                buf, n = [], 0
    if n:
        yield _concat(buf)


def _has_work(folder: Path) -> bool:
    if (folder / LEDGER).exists() and (folder / LEDGER).stat().st_size > 0:
        return True
    return any(p.name.startswith("part-") and p.name.endswith(".parquet") for p in folder.iterdir())


def _describe_difference(old: dict, new: dict) -> str:
    what = []
    if old.get("model") != new.get("model"):
        what.append("a different model")
    if old.get("input") != new.get("input"):
        oi, ni = old.get("input") or {}, new.get("input") or {}
        if isinstance(oi, dict) and isinstance(ni, dict) and oi.get("kind") == ni.get("kind") == "files":
            of = {f["file"]: f for f in oi.get("files", [])}
            nf = {f["file"]: f for f in ni.get("files", [])}
            changed = sorted(set(of) ^ set(nf)) + sorted(k for k in set(of) & set(nf) if of[k] != nf[k])
            what.append("different input files" + (f" ({', '.join(changed[:3])})" if changed else ""))
        else:
            what.append("a different input")
    for key, label in (("text", "text column"), ("id", "id column"), ("shard_rows", "shard_rows")):
        if old.get(key) != new.get(key):
            what.append(f"a different {label} ({old.get(key)!r} then, {new.get(key)!r} now)")
    return ", ".join(what) or "different settings"


def _claim_folder(folder: Path, fingerprint: dict, resume: bool) -> None:
    """Make ``folder`` this run's output folder, or refuse if it holds finished work of another run."""
    from .manifest import now, versions, write_json_atomic
    if folder.exists() and not folder.is_dir():
        raise FineclassError(f"`output` {str(folder)!r} is a file; pass a folder for the Parquet shards.", "output")
    folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_FILE
    work = _has_work(folder)
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous is None and work:
            raise FineclassError(f"`output` {str(folder)!r}: its run record {RUN_FILE} is damaged, so its shards "
                                 f"cannot be matched to this run. Use a new output folder.", "output")
        old = (previous or {}).get("fingerprint")
        if old == fingerprint:
            if work and not resume:
                raise FineclassError(f"`output` {str(folder)!r} already holds shards of this run; pass "
                                     f"resume=True to finish it, or use an empty folder.", "output")
            return
        if work:
            raise FineclassError(
                f"`output` {str(folder)!r} holds shards of another run ({_describe_difference(old or {}, fingerprint)})."
                f" Results of two runs are never mixed: use a new output folder, or delete this one to start "
                f"over.", "output")
    elif work:
        raise FineclassError(f"`output` {str(folder)!r} holds shard files or a ledger but no run record ({RUN_FILE});"
                             f" use an empty folder.", "output")
    write_json_atomic(run_file, {"fingerprint": fingerprint, "started": now(), "versions": versions()})


def _remove_stale_temporaries(folder: Path, mine: Callable[[int], bool]) -> None:
    """Temporary shard files left by a killed run (only this job's shards: other jobs may be writing)."""
    for p in folder.glob(".part-*.tmp"):
        try:
            k = int(p.name.split("-", 1)[1].split(".", 1)[0])
        except (IndexError, ValueError):
            continue
        if mine(k):
            try:
                p.unlink()
            except OSError:
                pass


def classify(data: Any, model: Any = None, output: str | Path | None = None, *, text: str = "text",
             id: str | None = None, batch_tokens: int | None = None, resume: bool = True, shard: Any = None,
             shard_rows: int = DEFAULT_SHARD_ROWS, probabilities: bool = True, progress: bool = True,
             device: str = "auto", engine: str = "local", **engine_options) -> Any:
    """Classify a table or a Parquet/CSV corpus.

    With ``output=None``: returns a pyarrow Table (for small jobs). With ``output=DIR``: streams the input,
    writes Parquet shards and a ledger into DIR, and returns a summary dict (rows, truncated, empty, seconds,
    documents/s, where the output is). Read the result back with ``read_output(DIR)``.
    """
    from .classifier import Classifier, load
    from .data import check_text, with_id

    if engine == "llamacpp":  # [gguf hook] the local engine, with the model run by llama.cpp
        from .llamacpp.classifier import as_gguf_classifier
        model, engine, engine_options = as_gguf_classifier(model, **engine_options), "local", {}
    if engine != "local":
        if engine == "ray":
            from .ray_engine import classify_ray
            return classify_ray(data, model=model, output=output, text=text, id=id, batch_tokens=batch_tokens,
                                resume=resume, shard_rows=shard_rows, probabilities=probabilities,
                                **engine_options)
        raise FineclassError(f"`engine` must be 'local', 'ray' or 'llamacpp'; got {engine!r}.", "engine")
    if model is None:
        raise FineclassError("`model` is required: a fitted Classifier or the folder of a saved one.", "model")
    batch_tokens = _check_batch_tokens(batch_tokens)
    if isinstance(shard_rows, float) and shard_rows.is_integer():
        shard_rows = int(shard_rows)
    if not isinstance(shard_rows, int) or isinstance(shard_rows, bool) or shard_rows < 1:
        raise FineclassError(f"`shard_rows` must be a positive whole number; got {shard_rows!r}.", "shard_rows")
    i, n = parse_shard(shard)
    source = _open_source(data, text, id) if output is not None else None  # bad input fails before any work
    clf = model if isinstance(model, Classifier) else load(model, device=device)
    if output is None:
        return clf.predict(data, text=text, id=id, batch_tokens=batch_tokens, probabilities=probabilities,
                           progress=progress)

    folder = Path(output)
    fingerprint = {"model": _model_identity(clf), "input": source.identity(shard_rows), "text": text, "id": id,
                   "shard_rows": shard_rows}
    _claim_folder(folder, fingerprint, resume)

    def mine(k: int) -> bool:
        return k % n == i

    ledger = _read_ledger(folder)
    done, damaged = {}, []
    for k, e in ledger.items():
        if mine(k):
            (done.__setitem__(k, e) if _check_shard(folder, e) else damaged.append(e.get("file", str(k))))
    if damaged:
        warn_user(f"{len(damaged)} finished shard file(s) in {str(folder)!r} are missing or damaged "
                  f"({', '.join(damaged[:3])}); they are classified again.", RuntimeWarning)
    _remove_stale_temporaries(folder, mine)

    def check(k: int, chunk: pa.Table) -> None:  # a stream's finished shards must hold the same input
        e = ledger.get(k)
        if e is not None and e.get("input_sha256") and e["input_sha256"] != _hash_input(chunk, source.columns):
            raise FineclassError(f"`output` {str(folder)!r} holds shards of another run (a different input: shard "
                                 f"{k} differs). Use a new output folder.", "output")

    total = source.total
    n_shards = math.ceil(total / shard_rows) if total is not None else None
    mine_total = None
    if total is not None:
        mine_total = sum(min(shard_rows, total - k * shard_rows) for k in range(n_shards) if mine(k))
    already = sum(e["rows"] for k, e in done.items())
    bar = _bar(mine_total, progress, initial=already if mine_total is not None else 0)
    t0 = time.time()
    rows = truncated = empty = written = 0
    try:
        for k, chunk in source.shards(shard_rows, lambda k: mine(k) and k not in done, check):
            input_hash = _hash_input(chunk, source.columns)
            chunk = with_id(chunk, source.id_column, offset=k * shard_rows)
            chunk, _ = check_text(chunk, text, on_empty="flag")
            out = predict_batch(clf, chunk.select(["id", "text"]), batch_tokens, probabilities, bar)
            entry = _write_shard(folder, k, out, input_hash)
            rows += entry["rows"]
            truncated += entry["truncated"]
            empty += entry["empty"]
            written += 1
    finally:
        if bar is not None:
            bar.close()
    seconds = time.time() - t0
    ledger = _read_ledger(folder)
    summary = {"output": str(folder.resolve()), "rows_written": rows, "shards_written": written,
               "shards_skipped": len(done), "shards_redone": len(damaged), "truncated": truncated, "empty": empty,
               "rows_total": sum(e["rows"] for e in ledger.values()),
               "truncated_total": sum(e.get("truncated", 0) for e in ledger.values()),
               "empty_total": sum(e.get("empty", 0) for e in ledger.values()),
               "shards_total": n_shards, "complete": (n_shards is not None and len(ledger) == n_shards) or
               (n_shards is None and n == 1),
               "seconds": round(seconds, 2), "docs_per_second": round(rows / seconds, 1) if seconds > 0 else None,
               "shard": f"{i}/{n}"}
    if progress:
        rate = f" ({summary['docs_per_second']} docs/s)" if rows else ""
        print(f"fineclass: {rows} documents classified in {summary['seconds']} s{rate}; {truncated} truncated "
              f"to max_length, {empty} empty; {len(done)} shards already done; output in {summary['output']}",
              file=sys.stderr)
    return summary


def read_output(output: str | Path) -> pa.Table:
    """All finished shards of an output folder as one table, in input order (shards in the ledger only).

    A shard file that is missing or damaged raises an error naming it (rerun classify with resume=True to redo
    it); a run not yet finished gives a warning saying how many shards are missing. For outputs larger than
    memory, scan the shards lazily instead: ``polars.scan_parquet(f"{output}/part-*.parquet")`` or
    ``pyarrow.dataset.dataset(sorted(Path(output).glob("part-*.parquet")))``.
    """
    folder = Path(output)
    if not folder.is_dir():
        raise FineclassError(f"`output` {str(folder)!r} is not a folder.", "output")
    entries = sorted(_read_ledger(folder).values(), key=lambda e: e["shard"])
    tables = []
    for e in entries:
        if not _check_shard(folder, e):
            raise FineclassError(f"`output`: shard file {e['file']!r} in {str(folder)!r} is missing or damaged; "
                                 f"rerun classify with resume=True to redo it.", "output")
        tables.append(pq.read_table(folder / e["file"]))
    if not tables:
        raise FineclassError(f"`output` {str(folder)!r} holds no finished shard.", "output")
    try:
        run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        rows = run["fingerprint"]["input"].get("rows")
        expected = math.ceil(rows / run["fingerprint"]["shard_rows"]) if rows is not None else None
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        expected = None
    if expected is not None and len(entries) < expected:
        warn_user(f"{str(folder)!r} holds {len(entries)} of {expected} shards; the run is not finished "
                  f"(rerun classify with resume=True).", RuntimeWarning)
    return pa.concat_tables(tables, promote_options="permissive")
