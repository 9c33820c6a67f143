"""The input of a classification run, cut into numbered shards.

A shard is ``shard_rows`` rows of the input by position (shard ``k`` holds rows ``k * shard_rows`` to
``(k + 1) * shard_rows - 1``), so that every run, job and engine cuts the same shards. A source reads only the
shards a job wants: Parquet files row group by row group (groups that hold no wanted row are not read), CSV
files and record-batch streams in one pass, tables by slicing. Each source has an identity (file names, sizes
and footer hashes; a hash of a table's columns; a hash of a stream's first shard) that the output folder's run
record keeps, so that shards of two inputs are never mixed.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import FineclassError
from .tables import (
    ID,
    check_csv_utf8,
    check_id_types,
    check_text,
    column_error,
    csv_error,
    csv_format,
    file_format,
    is_path,
    read_table,
    resolve_files,
    with_id,
)

READ_BATCH_ROWS = 8_192
_TAIL_BYTES = 65_536


def hash_input(table: pa.Table, columns: list[str]) -> str:
    """A SHA-256 of some columns' values that does not depend on how the table is cut into chunks.

    Args:
        table: the rows.
        columns: the columns hashed, in this order.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    for name in columns:
        lengths, data = hashlib.sha256(), hashlib.sha256()
        col = table.column(name)
        for arr in col.chunks:
            if pa.types.is_dictionary(arr.type):
                arr = arr.cast(arr.type.value_type)
            nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=np.uint8)
            if (
                pa.types.is_string(arr.type)
                or pa.types.is_large_string(arr.type)
                or pa.types.is_binary(arr.type)
                or pa.types.is_large_binary(arr.type)
            ):
                wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
                bufs = arr.buffers()
                off = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)[
                    arr.offset : arr.offset + len(arr) + 1
                ]
                lengths.update(np.diff(off).astype(np.int64).tobytes())
                if bufs[2] is not None and off[-1] > off[0]:
                    data.update(memoryview(bufs[2])[int(off[0]) : int(off[-1])])
            elif pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
                data.update(
                    np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False))
                    .astype(np.float64 if pa.types.is_floating(arr.type) else np.int64)
                    .tobytes()
                )
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


class Source:
    """The input of a sharded run.

    Attributes:
        kind: ``"table"``, ``"stream"`` or ``"files"``.
        columns: the columns read: the text column, then the id column when there is one.
        id_column: the id column's name, or None (the id is then the row number in the input).
        total: the number of rows, or None where it is only known at the end (CSV files, streams).
        seen: for those, the number of rows once :meth:`shards` has read the whole input (else None).
    """

    kind: str = "table"
    total: int | None = None
    seen: int | None = None

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.id_column = self.columns[1] if len(self.columns) > 1 else None

    def check_output(self, output: str | Path) -> None:
        """Refuse an output folder that the input would read (only a folder of files can hold one).

        Args:
            output: the output folder.
        """

    def check_rows(self) -> None:
        """Refuse an input without rows (there would be a run with no shard to read back).

        Raises:
            FineclassError: naming ``data`` when the input is known to have no rows.
        """
        rows = self.total if self.total is not None else self.seen
        if rows == 0:
            raise FineclassError(
                "`data` has no rows: there is nothing to classify (nothing is written). Check the path or filter.",
                "data",
            )

    def identity(self, shard_rows: int) -> dict:
        """What the run record keeps to recognise this input again.

        Args:
            shard_rows: the rows per shard of the run.

        Returns:
            A JSON-able dict (its ``kind`` and the hashes or file identities).
        """
        raise NotImplementedError

    def shards(
        self, shard_rows: int, wanted: Callable[[int], bool], check: Callable[[int, pa.Table], None] | None = None
    ) -> Iterator[tuple[int, pa.Table]]:
        """The wanted shards, in order.

        Args:
            shard_rows: the rows per shard.
            wanted: which shard numbers to yield.
            check: called with the shards a stream or a CSV file passes without yielding them (to check that
                finished shards of an earlier run hold the same input: a CSV file edited in place keeps its size).

        Yields:
            ``(k, table)``: the shard's number and its rows (the ``columns`` only).
        """
        raise NotImplementedError

    def documents(self, k: int, chunk: pa.Table, shard_rows: int) -> tuple[pa.Table, str]:
        """One shard as the scorer takes it, and the hash of its input that the ledger records.

        Args:
            k: the shard's number.
            chunk: the shard's rows, as :meth:`shards` yields them.
            shard_rows: the rows per shard (a row's number in the input is its id when there is no id column).

        Returns:
            ``(table, input_hash)``: ``table`` has the columns ``id`` and ``text``; null or blank texts are kept.
        """
        input_hash = hash_input(chunk, self.columns)
        chunk = with_id(chunk, self.id_column, offset=k * shard_rows)
        chunk, _ = check_text(chunk, self.columns[0], on_empty="flag")
        return chunk.select([ID, "text"]), input_hash


class TableSource(Source):
    """An in-memory table, cut by slicing."""

    def __init__(self, table: pa.Table, columns: list[str]):
        super().__init__(columns)
        self.kind = "table"
        self.table = table.select(self.columns)
        self.total = table.num_rows

    def identity(self, shard_rows: int) -> dict:
        h = hashlib.sha256()
        for k in range(math.ceil(self.total / shard_rows)):
            h.update(hash_input(self.table.slice(k * shard_rows, shard_rows), self.columns).encode())
        return {"kind": "table", "rows": self.total, "sha256": h.hexdigest()}

    def shards(self, shard_rows, wanted, check=None):
        for k in range(math.ceil(self.total / shard_rows)):
            if wanted(k):
                yield k, self.table.slice(k * shard_rows, shard_rows)


class StreamSource(Source):
    """A RecordBatchReader, read once and in order.

    Its identity is a hash of its first shard (read ahead and kept); later finished shards are checked against
    the input hash recorded in the ledger as the stream passes them.
    """

    def __init__(self, reader: pa.RecordBatchReader, columns: list[str]):
        super().__init__(columns)
        self.kind = "stream"
        self.reader = reader
        self._chunks = None
        self._head = None

    def identity(self, shard_rows: int) -> dict:
        self._chunks = _rechunk((b.select(self.columns) for b in self.reader), shard_rows)
        self._head = next(self._chunks, None)
        head = hash_input(self._head, self.columns) if self._head is not None else None
        return {"kind": "stream", "first_shard_sha256": head}

    def shards(self, shard_rows, wanted, check=None):
        if self._chunks is None:
            self.identity(shard_rows)
        chunks = self._chunks if self._head is None else _chain([self._head], self._chunks)
        self._head = None
        yield from _pass(self, chunks, wanted, check)


def _chain(first, rest):
    yield from first
    yield from rest


class FileSource(Source):
    """Parquet files read row group by row group (only the groups that hold wanted shards), or CSV files."""

    def __init__(self, path, columns: list[str], argument: str = "data", id: str | None = None):
        super().__init__(columns)
        self.path = str(path)
        self.files = resolve_files(path, argument)
        self.format = file_format(self.files, argument)
        self.argument = argument
        self.kind = "files"
        p = str(path)
        self.root = (
            p if os.path.isdir(p) else os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in self.files])
        )
        self.schemas = []
        if self.format == "parquet":
            self.row_groups = []  # per file: rows of each row group
            for f in self.files:
                try:
                    meta = pq.ParquetFile(f)
                    schema = meta.schema_arrow
                    self.row_groups.append(
                        [meta.metadata.row_group(g).num_rows for g in range(meta.metadata.num_row_groups)]
                    )
                    meta.close()
                    self.schemas.append(schema)
                except Exception as e:  # pyarrow raises several types for damaged files
                    raise FineclassError(
                        f"`{argument}`: the file {f!r} is not a readable Parquet file "
                        f"({type(e).__name__}: {e}). Remove or re-create it.",
                        argument,
                    ) from None
                for c in columns:
                    if c not in schema.names:
                        raise column_error(c, schema.names, "text" if c == columns[0] else "id", f"the file {f!r}")
            check_id_types(self.schemas, self.files, id, argument)
            self.total = sum(sum(g) for g in self.row_groups)
        else:
            import pyarrow.dataset as ds

            for f in self.files:  # each file's own schema: its encoding, columns and id type
                try:
                    schema = ds.dataset(f, format=csv_format([f], argument)).schema
                except (pa.ArrowInvalid, OSError) as e:
                    raise csv_error(f, e, argument) from None
                check_csv_utf8(schema, [f], argument)
                for c in columns:
                    if c not in schema.names:
                        raise column_error(c, schema.names, "text" if c == columns[0] else "id", f"the file {f!r}")
                self.schemas.append(schema)
            check_id_types(self.schemas, self.files, id, argument)
            # the text is text in every file, even where one file's texts all look like numbers
            fmt = csv_format(self.files, argument, {columns[0]: pa.string()})
            self.dataset = ds.dataset(self.files, format=fmt)
            self.total = None
        self._check_read_ahead()

    def _check_read_ahead(self) -> None:
        """Read the id column (and a CSV file's text) once before any work.

        A missing id, an id a file cannot hold in its column's type, or bytes that are not UTF-8 are so refused
        before the first shard, not after some shards are written.
        """
        if self.format == "parquet" and self.id_column is None:
            return
        position, missing = 0, []
        for f, batches in self._read_ahead_batches():
            try:
                for batch in batches:
                    if self.id_column is not None and batch.column(self.id_column).null_count:
                        nulls = np.flatnonzero(batch.column(self.id_column).is_null().to_numpy(zero_copy_only=False))
                        missing.extend((nulls + position).tolist()[: 5 - len(missing)])
                    position += batch.num_rows
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as e:
                raise (self._read_error(f, e) if f else csv_error(None, e, self.argument)) from None
        if missing:
            raise FineclassError(
                f"the id column `{self.id_column}` has missing values (rows {', '.join(map(str, missing))} of "
                f"`{self.argument}`, counted from 0 over its files in order); every row needs an id.",
                "id",
            )

    def _read_ahead_batches(self):
        """(file, batches) of the columns read ahead: Parquet's id column file by file, CSV's columns at once."""
        if self.format != "parquet":
            yield None, self.dataset.scanner(columns=self.columns, batch_size=READ_BATCH_ROWS).to_batches()
            return
        for f in self.files:
            try:
                pf = pq.ParquetFile(f)
            except Exception as e:
                raise self._read_error(f, e) from None
            yield f, pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=[self.id_column], use_threads=False)

    def check_output(self, output: str | Path) -> None:
        """An output folder inside the input folder would be read as input by the next run: refuse it.

        Args:
            output: the output folder.

        Raises:
            FineclassError: naming ``output`` when it lies inside the input folder.
        """
        if not os.path.isdir(self.path):
            return
        inside = os.path.realpath(self.path)
        out = os.path.realpath(output)
        if os.path.commonpath([inside, out]) == inside:
            raise FineclassError(
                f"`output` {str(output)!r} lies inside the input folder {self.path!r}: its shards would be read "
                f"as input by the next run. Choose an output folder outside the input folder.",
                "output",
            )

    def has_column(self, name: str) -> bool:
        """Whether every file has a column.

        Args:
            name: the column.

        Returns:
            True when all do.
        """
        return all(name in s.names for s in self.schemas)

    def identity(self, shard_rows: int) -> dict:
        return {
            "kind": "files",
            "format": self.format,
            "rows": self.total,
            "files": [_file_identity(f, self.root) for f in self.files],
        }

    def _read_error(self, f, e) -> FineclassError:
        return FineclassError(
            f"`{self.argument}`: the file {f!r} could not be read ({type(e).__name__}: {e}). Remove or re-create it.",
            self.argument,
        )

    def shards(self, shard_rows, wanted, check=None):
        if self.format != "parquet":
            yield from self._csv_shards(shard_rows, wanted, check)
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
                    it = pf.iter_batches(
                        batch_size=READ_BATCH_ROWS, row_groups=[g], columns=self.columns, use_threads=False
                    )
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

    def _csv_shards(self, shard_rows, wanted, check=None):
        scanner = self.dataset.scanner(columns=self.columns, batch_size=READ_BATCH_ROWS)

        def batches():
            it = iter(scanner.to_batches())
            while True:
                try:
                    yield next(it)
                except StopIteration:
                    return
                except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
                    raise csv_error(None, e, self.argument) from None

        # a CSV file is read whole anyway: finished shards are checked as they pass
        yield from _pass(self, _rechunk(batches(), shard_rows), wanted, check)


def _pass(source: Source, chunks, wanted, check):
    """Yield the wanted shards of a one-pass input, check the others, and count the rows (``source.seen``)."""
    rows = 0
    for k, chunk in enumerate(chunks):
        rows += chunk.num_rows
        if wanted(k):
            yield k, chunk
        elif check is not None:
            check(k, chunk)
    source.seen = rows


def _concat(pieces: list) -> pa.Table:
    tables = [pa.Table.from_batches([p]) for p in pieces]
    if len({t.schema for t in tables}) == 1:
        return pa.concat_tables(tables)
    return pa.concat_tables(tables, promote_options="permissive")


def open_source(data: Any, text: str, id: str | None) -> Source:
    """The input as a source of shards; missing columns and unreadable files fail here, before any work.

    Args:
        data: a path (Parquet/CSV file, glob or folder), a RecordBatchReader, or any table ``read_table`` reads.
        text: the text column.
        id: the id column; without it an input column named ``id`` is used (as in ``predict``), and without
            one either the id is the row number in the input.

    Returns:
        A :class:`FileSource`, :class:`StreamSource` or :class:`TableSource`.

    Raises:
        FineclassError: naming ``text``, ``id`` or ``data`` for a missing column or an unreadable file.
    """
    if is_path(data):
        source = FileSource(data, [text] + ([id] if id else []), id=id)
        if id is None and source.has_column(ID):
            source = FileSource(data, [text, ID], id=id)
    else:
        if isinstance(data, pa.RecordBatchReader):
            names, table = data.schema.names, None
        else:
            table = read_table(data)
            names = table.column_names
        for c, arg in ((text, "text"), (id, "id")):
            if c is not None and c not in names:
                raise column_error(c, names, arg, "`data`")
        id_col = id if id is not None else (ID if ID in names else None)
        columns = [text] + ([id_col] if id_col and id_col != text else [])
        source = StreamSource(data, columns) if table is None else TableSource(table, columns)
    return source


def in_memory(source: Source, shard_rows: int) -> TableSource | None:
    """A source read whole into one table (for engines whose workers need to seek to any shard).

    Args:
        source: any source; a :class:`TableSource` is returned as it is.
        shard_rows: the rows per shard (how the source is read).

    Returns:
        A :class:`TableSource` over the same rows and columns, or None when the input has no rows.
    """
    if isinstance(source, TableSource):
        return source if source.total else None
    parts = [chunk for _, chunk in source.shards(shard_rows, lambda k: True)]
    if not parts or not sum(p.num_rows for p in parts):
        return None
    return TableSource(pa.concat_tables(parts, promote_options="permissive"), source.columns)


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
