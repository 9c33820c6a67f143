"""Data in: anything tabular becomes one pyarrow.Table (or a stream of record batches).

Accepted: pyarrow Table / RecordBatch / RecordBatchReader, polars DataFrame / LazyFrame,
pandas DataFrame, a dict of lists, and paths: a Parquet file, a CSV file, a glob, or a
folder of Parquet files.
"""
from __future__ import annotations

import glob as _glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .errors import FineclassError, preview
from .labels import LabelSpec, _canon

ID = "id"


def _is_path(data: Any) -> bool:
    return isinstance(data, (str, Path))


def resolve_files(path: str | Path, argument: str = "data") -> list[str]:
    """Files behind a path, a glob or a folder, sorted so that every run reads them in one order."""
    s = str(path)
    if any(ch in s for ch in "*?["):
        files = sorted(f for f in _glob.glob(s, recursive=True) if Path(f).is_file())
        if not files:
            raise FineclassError(f"the pattern {s!r} in `{argument}` matches no file.", argument)
        return files
    p = Path(s)
    if not p.exists():
        raise FineclassError(f"`{argument}`: the path {s!r} does not exist. Check the spelling, or pass "
                             f"a table.", argument)
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix in (".parquet", ".pq", ".csv"))
        if not files:
            raise FineclassError(f"the folder {s!r} in `{argument}` holds no .parquet or .csv file.", argument)
        return files
    return [str(p)]


def _format_of(files: list[str], argument: str) -> str:
    kinds = {("csv" if f.lower().endswith((".csv", ".tsv", ".csv.gz")) else "parquet") for f in files}
    if len(kinds) > 1:
        raise FineclassError(f"`{argument}` mixes CSV and Parquet files; pass one kind.", argument)
    return kinds.pop()


def open_dataset(path: str | Path, argument: str = "data") -> ds.Dataset:
    """A pyarrow dataset over the files behind ``path``; a corrupt file is named in the error."""
    files = resolve_files(path, argument)
    fmt = _format_of(files, argument)
    if fmt == "csv":
        dset = ds.dataset(files, format="csv")
        _check_csv_utf8(dset.schema, files, argument)
        return dset
    fragments_ok = []
    for f in files:
        try:
            import pyarrow.parquet as pq
            pq.ParquetFile(f).schema_arrow  # reads the footer: catches truncated files early
            fragments_ok.append(f)
        except Exception as e:  # pyarrow raises several types for damaged files
            raise FineclassError(f"`{argument}`: the file {f!r} is not a readable Parquet file ({e}). "
                                 f"Remove or re-create it.", argument) from None
    try:
        return ds.dataset(fragments_ok, format="parquet")
    except pa.ArrowInvalid as e:
        raise FineclassError(f"`{argument}`: the Parquet files do not share one schema ({e}).", argument) from None


def read_table(data: Any, argument: str = "data", columns: Sequence[str] | None = None) -> pa.Table:
    """Read any accepted input into one pyarrow.Table."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.read_all()
    if isinstance(data, ds.Dataset):
        return data.to_table(columns=columns)
    if _is_path(data):
        files = resolve_files(data, argument)
        if _format_of(files, argument) == "csv":
            return _read_csv(files, argument)
        dset = open_dataset(data, argument)
        try:
            return dset.to_table(columns=[c for c in columns if c in dset.schema.names] if columns else None)
        except (pa.ArrowInvalid, OSError) as e:
            raise FineclassError(f"`{argument}`: could not read {str(data)!r}: {e}", argument) from None
    if isinstance(data, Mapping):
        scalar = [str(k) for k, v in data.items() if isinstance(v, (str, bytes))]
        if scalar:
            raise FineclassError(f"`{argument}`: the entry `{scalar[0]}` of the dict is a single value, not a "
                                 f"column; pass a list (e.g. [\"...\"]).", argument)
        try:
            return pa.table({str(k): list(v) if not isinstance(v, (pa.Array, pa.ChunkedArray, np.ndarray)) else v
                             for k, v in data.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, UnicodeError) as e:
            raise FineclassError(f"`{argument}`: the dict could not become a table ({e}). Pass lists of equal "
                                 f"length with one type each.", argument) from None
    mod = type(data).__module__
    if mod.startswith("polars"):
        if type(data).__name__ == "LazyFrame":
            data = data.collect()
        return data.to_arrow()
    if mod.startswith("pandas"):
        try:
            return pa.Table.from_pandas(data, preserve_index=False)
        except UnicodeError as e:
            raise FineclassError(f"`{argument}`: a text is not valid Unicode ({e}).", argument) from None
        except (pa.ArrowTypeError, pa.ArrowInvalid) as e:
            raise FineclassError(f"`{argument}`: a column mixes types and cannot become one Arrow column ({e}). "
                                 f"Give each column one type (e.g. all labels as text).", argument) from None
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if isinstance(data, (list, tuple)) and all(isinstance(x, str) for x in data):
        try:
            return pa.table({"text": list(data)})
        except UnicodeError as e:
            raise FineclassError(f"`{argument}`: a text is not valid Unicode ({e}).", argument) from None
    raise FineclassError(
        f"`{argument}` must be a table (pyarrow, polars, pandas, a dict of lists) or a path to Parquet/CSV; "
        f"got {type(data).__name__}.", argument)


def _read_csv(files: list[str], argument: str) -> pa.Table:
    import pyarrow.csv as pcsv
    tables = []
    for f in files:
        try:
            tables.append(pcsv.read_csv(f, read_options=pcsv.ReadOptions(encoding="utf8")))
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise FineclassError(f"`{argument}`: could not read the CSV file {f!r} ({e}). Save it as UTF-8, or "
                                 f"read it yourself and pass a table.", argument) from None
        _check_csv_utf8(tables[-1].schema, [f], argument)
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as e:
        raise FineclassError(f"`{argument}`: the CSV files do not share one schema ({e}).", argument) from None


def _check_csv_utf8(schema: pa.Schema, files: list[str], argument: str) -> None:
    """Arrow reads a CSV column with bytes that are not UTF-8 as binary: say so, rather than 'not text' later."""
    bad = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if bad:
        raise FineclassError(f"`{argument}`: the CSV file {files[0]!r}{' (or another of its files)' if len(files) > 1 else ''} "
                             f"holds bytes that are not UTF-8 in column `{bad[0]}`. Save it as UTF-8, or read it "
                             f"yourself with its encoding and pass a table.", argument)


def check_column(table: pa.Table, name: str, argument: str, what: str = "") -> None:
    if name not in table.column_names:
        raise FineclassError(
            f"column `{name}` not found in `data`; columns are: {', '.join(table.column_names)}. "
            f"Pass `{argument}=` with the name of the {what or argument} column.", argument)


def with_id(table: pa.Table, id: str | None, offset: int = 0) -> pa.Table:
    """Return the table with an ``id`` column: the user's (renamed) or a row number starting at ``offset``."""
    if id is None:
        if ID in table.column_names:
            id = ID
        else:
            return table.append_column(ID, pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))
    check_column(table, id, "id")
    col = table.column(id)
    if pa.types.is_nested(col.type):
        raise FineclassError(f"the id column `{id}` holds {col.type} values; ids must be numbers or text.", "id")
    if col.null_count:
        raise FineclassError(f"the id column `{id}` holds {col.null_count} missing values; every row needs an id.", "id")
    if id != ID:
        if ID in table.column_names:
            table = table.drop_columns([ID])
        table = table.rename_columns([ID if c == id else c for c in table.column_names])
    return table


def check_text(table: pa.Table, text: str, on_empty: str = "error") -> tuple[pa.Table, np.ndarray]:
    """Check the text column; returns the table with a ``text`` column and a mask of empty/null rows.

    ``on_empty="error"`` raises with the ids of null or blank texts; ``"flag"`` returns the mask so the
    caller keeps those rows and marks them.
    """
    check_column(table, text, "text")
    col = table.column(text)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if col.null_count == len(col):  # no text at all (no rows, or every text missing), whatever the type
            col = pa.chunked_array([pa.nulls(len(col), pa.string())])
        elif pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        else:
            raise FineclassError(f"the text column `{text}` holds {col.type} values, not text. Pass `text=` with "
                                 f"the name of the column that holds the documents.", "text")
    stripped = pc.utf8_trim_whitespace(col)
    empty = pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_length(stripped), 0))
    mask = np.asarray(pc.fill_null(empty, True).to_numpy(zero_copy_only=False), dtype=bool)
    if mask.any() and on_empty == "error":
        ids = np.asarray(table.column(ID).to_pylist(), dtype=object)[mask] if ID in table.column_names else np.flatnonzero(mask)
        raise FineclassError(f"{int(mask.sum())} documents have a missing or empty text (ids: {preview(ids)}). "
                             f"Remove them or fill them in before training.", "text")
    if text != "text":
        names = [c for c in table.column_names if c != "text"]
        table = table.select(names)
        table = table.rename_columns(["text" if c == text else c for c in table.column_names])
    if col.type != table.column("text").type or pa.types.is_large_string(col.type):
        table = table.set_column(table.column_names.index("text"), "text", col.cast(pa.string()))
    return table, mask


@dataclass
class Labelled:
    """A training table: ids, texts and encoded targets under a LabelSpec."""
    ids: list
    texts: list[str]
    targets: np.ndarray
    spec: LabelSpec
    id_type: pa.DataType

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> "Labelled":
        return Labelled([self.ids[i] for i in idx], [self.texts[i] for i in idx], self.targets[idx], self.spec,
                        self.id_type)

    def strata(self) -> np.ndarray:
        """A label per document for stratified splits (the most frequent present class otherwise)."""
        t = self.targets
        if t.ndim == 1:
            return t
        present = (t > 0)
        freq = present.sum(axis=0)
        out = np.full(len(t), -1)
        for i in range(len(t)):
            cols = np.flatnonzero(present[i])
            if len(cols):
                out[i] = cols[np.argmin(freq[cols])]
        return out


def _fold_long(table: pa.Table, labels: Any, label: Any, argument: str = "labels"):
    """Join a long label table (id + label, or id + dimension + level) onto the documents' ids."""
    lt = read_table(labels, argument)
    if isinstance(label, (list, tuple)) and len(label) == 2:
        dim_col, level_col = label
    else:
        dim_col, level_col = (label or "label"), None
    check_column_in(lt, ID, argument, "id")
    check_column_in(lt, dim_col, argument, "label")
    if level_col is not None:
        check_column_in(lt, level_col, argument, "level")
    ids = table.column(ID).to_pylist()
    pos = {i: k for k, i in enumerate(ids)}
    lid = lt.column(ID).cast(table.column(ID).type) if lt.column(ID).type != table.column(ID).type else lt.column(ID)
    values: list = [dict() if level_col else [] for _ in ids]
    unknown = set()
    dims = lt.column(dim_col).to_pylist()
    levels = lt.column(level_col).to_pylist() if level_col else None
    for k, i in enumerate(lid.to_pylist()):
        p = pos.get(i)
        if p is None:
            unknown.add(i)
            continue
        if dims[k] is None:
            continue
        if level_col:
            d = _canon(dims[k])
            prev = values[p].get(d)
            if prev is not None and prev != levels[k]:
                raise FineclassError(f"document {i!r} has two levels for dimension {d!r} in `{argument}` "
                                     f"({prev!r} and {levels[k]!r}); keep one.", argument)
            values[p][d] = levels[k]
        else:
            values[p].append(dims[k])
    return values, unknown


def check_column_in(table: pa.Table, name: str, argument: str, what: str) -> None:
    if name not in table.column_names:
        raise FineclassError(f"column `{name}` not found in `{argument}`; columns are: "
                             f"{', '.join(table.column_names)}. Pass the name of its {what} column.", argument)


def _check_unique_ids(table: pa.Table) -> None:
    """Training needs one row per document: a repeated id would make its labels ambiguous."""
    col = table.column(ID)
    if table.num_rows < 2 or pc.count_distinct(col).as_py() == table.num_rows:
        return
    counts = pc.value_counts(col)
    dup = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1)).to_pylist()
    raise FineclassError(f"{len(dup)} ids appear on more than one row (ids: {preview(dup)}); training needs one row "
                         f"per document. Remove the duplicated rows, give each row its own id, or pass several "
                         f"labels per document as a long `labels=` table.", "id")


def labelled(data: Any, *, text: str = "text", label: Any = "label", id: str | None = None,
             labels: Any = None, spec: LabelSpec | None = None, kind: str | None = None,
             codebook: Any = None, levels: Sequence[str] | None = None) -> Labelled:
    """Read a training table and encode its labels.

    - ``label="col"``: single-label when the column holds scalars, multi-label when it holds lists.
    - ``labels=long_table`` with ``label="col"``: multi-label from one row per (id, label).
    - ``labels=long_table`` with ``label=("dimension", "level")``: the dimension->level shape.
      Documents without a row in ``labels`` have every dimension absent.
    """
    from .labels import read_codebook
    table = with_id(read_table(data), id)
    table, _ = check_text(table, text, on_empty="error")
    _check_unique_ids(table)
    if labels is not None:
        values, unknown = _fold_long(table, labels, label)
        kind = kind or ("dimlevel" if isinstance(label, (list, tuple)) else "multi")
    else:
        if isinstance(label, (list, tuple)):
            raise FineclassError("`label` names two columns (dimension, level) only together with a long "
                                 "`labels=` table.", "label")
        check_column(table, label, "label")
        col = table.column(label)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            kind = kind or "multi"
            values = [list(v or []) for v in col.to_pylist()]
        else:
            kind = kind or "single"
            values = col.to_pylist()
            missing = [i for i, v in zip(table.column(ID).to_pylist(), values) if v is None or (isinstance(v, float) and np.isnan(v))]
            if missing:
                raise FineclassError(f"{len(missing)} documents have no label in column `{label}` (ids: "
                                     f"{preview(missing)}). Remove them, or classify them after training.", "label")
            types = {type(v).__name__ for v in values}
            if len(types) > 1:
                raise FineclassError(f"the label column `{label}` mixes types ({', '.join(sorted(types))}); "
                                     f"use one type for all labels.", "label")
    if spec is None:
        spec = LabelSpec.infer(values, kind=kind, levels=levels, codebook=read_codebook(codebook))
    targets = spec.encode(values, argument="label")
    return Labelled(table.column(ID).to_pylist(), table.column("text").to_pylist(), targets, spec,
                    table.column(ID).type)


def stream_batches(data: Any, columns: list[str], batch_rows: int = 8192,
                   argument: str = "data") -> tuple[pa.Schema, Iterator[pa.RecordBatch], int | None]:
    """A schema and a stream of record batches; paths are never loaded whole."""
    if _is_path(data):
        dset = open_dataset(data, argument)
        missing = [c for c in columns if c not in dset.schema.names]
        if missing:
            raise FineclassError(f"column `{missing[0]}` not found in `{argument}`; columns are: "
                                 f"{', '.join(dset.schema.names)}.", "text" if missing[0] not in ("id",) else "id")
        scanner = dset.scanner(columns=columns, batch_size=batch_rows)

        def it():
            try:
                yield from scanner.to_batches()
            except (pa.ArrowInvalid, OSError) as e:
                raise FineclassError(f"`{argument}`: a file could not be read while streaming ({e}).",
                                     argument) from None
        return scanner.projected_schema, it(), dset.count_rows()
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data), None
    table = read_table(data, argument)
    return table.schema, iter(table.to_batches(max_chunksize=batch_rows)), table.num_rows


def as_table(data: Any, *, text: str = "text", id: str | None = None, on_empty: str = "error") -> pa.Table:
    """Any accepted input as one pyarrow.Table with checked ``id`` and ``text`` columns (other columns kept).

    ``id`` names the id column; without one, ``id`` is created as the row number and carried through to every
    output. Null or blank texts raise an error listing their ids (``on_empty="flag"`` keeps them).
    """
    table = with_id(read_table(data), id)
    table, _ = check_text(table, text, on_empty=on_empty)
    return table
