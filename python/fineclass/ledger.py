"""The output folder of a classification run: numbered Parquet shards, a ledger, a run record.

``classify(..., output=DIR)`` writes each shard atomically (temporary file, fsync, rename) and records it in the
ledger (``_ledger.jsonl``, one JSON line per finished shard, with its size, SHA-256, rows and the hash of its
input). A rerun with ``resume=True`` skips the shards in the ledger whose files are intact and redoes the others,
so each id is written exactly once. ``shard="i/n"`` keeps the shards whose number is ``i`` modulo ``n``: ``n``
jobs together produce exactly the shards of one run, in one output folder or several.

An output folder belongs to one run: ``_run.json`` records the model (its training record and a hash of its
weights), the input's identity, the text and id columns and the shard size; the ledger's per-shard input hashes
are compared as a CSV file or a stream passes finished shards (an in-place edit keeps a file's size). A folder
holding finished shards of another run is refused, so results of two runs are never mixed. Every engine
(``infer.ENGINES``) writes the same folder through this module.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._fs import atomic_file
from .errors import FineclassError, warn_user
from .manifest import now, versions, weights_digest, write_json_atomic

LEDGER = "_ledger.jsonl"
RUN_FILE = "_run.json"
LOCK_PREFIX = "_lock-"  # one advisory lock file per job share: _lock-{i}-of-{n}.json
DEFAULT_SHARD_ROWS = 20_000


def parse_shard(shard: Any) -> tuple[int, int]:
    """This job's share of the shards.

    Args:
        shard: ``"i/n"`` (or a pair): the shards whose number is ``i`` modulo ``n``; None for all of them.

    Returns:
        ``(i, n)``.

    Raises:
        FineclassError: naming ``shard`` when it does not have that form, or ``i`` is not in ``0..n-1``.
    """
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


def model_identity(manifest: dict) -> str:
    """The model's part of a run's identity: its training fingerprint, else a hash of its whole manifest.

    Args:
        manifest: the model's ``fineclass.json``.

    Returns:
        A hex string.
    """
    m = manifest
    return m.get("fingerprint") or hashlib.sha256(json.dumps(m, sort_keys=True, default=str).encode()).hexdigest()


def weights_identity(model: Any) -> str | None:
    """The model's weights in a run's identity: two models whose training records agree still differ here.

    A saved model and the same model in memory give the same digest (the one of the files ``save()`` writes), so
    a run begun with either can be finished with the other.

    Args:
        model: the folder of a saved model, or a fitted classifier in memory (saved to a temporary folder to be
            hashed).

    Returns:
        The SHA-256 of the weight files (``manifest.weights_digest``), or None when there are none.
    """
    if isinstance(model, (str, Path)):
        return weights_digest(model)
    if not callable(getattr(model, "save", None)):
        return None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fineclass-weights-") as tmp:
        return weights_digest(model.save(Path(tmp) / "model"))


def read_ledger(folder: Path) -> dict[int, dict]:
    """The finished shards a folder's ledger records (a line cut by a crash is skipped: its shard is redone).

    Args:
        folder: the output folder.

    Returns:
        ``{shard number: entry}``; a later line for the same shard wins.
    """
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


def shard_name(k: int) -> str:
    """The file name of shard ``k``.

    Args:
        k: the shard's number.

    Returns:
        ``part-{k:06d}.parquet``.
    """
    return f"part-{k:06d}.parquet"


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_shard(folder: Path, entry: dict) -> bool:
    """Whether a finished shard's file is there with the recorded size, SHA-256 and row count.

    Args:
        folder: the output folder.
        entry: the shard's ledger entry.

    Returns:
        True when the file can be trusted.

    Raises:
        FineclassError: naming ``output`` when the ledger names a file outside the folder.
    """
    name = entry.get("file", "")
    if not isinstance(name, str) or os.path.basename(name) != name or not name.startswith("part-"):
        raise FineclassError(
            f"`output`: the ledger names a file {name!r} outside the output folder; the ledger "
            f"is damaged. Delete {LEDGER} and rerun.",
            "output",
        )
    path = folder / name
    try:
        if "bytes" in entry and path.stat().st_size != entry["bytes"]:
            return False
        if "sha256" in entry and sha256_file(path) != entry["sha256"]:
            return False
        return pq.ParquetFile(path).metadata.num_rows == entry["rows"]
    except Exception:
        return False


def _has_work(folder: Path) -> bool:
    if (folder / LEDGER).exists() and (folder / LEDGER).stat().st_size > 0:
        return True
    return any(p.name.startswith("part-") and p.name.endswith(".parquet") for p in folder.iterdir())


def _describe_difference(old: dict, new: dict) -> str:
    what = []
    if old.get("model") != new.get("model"):
        what.append("a different model")
    elif old.get("weights") != new.get("weights"):
        what.append("a different model (the same training record, but other weights)")
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


def claim_folder(folder: Path, fingerprint: dict, resume: bool) -> None:
    """Make ``folder`` this run's output folder, or refuse if it holds finished work of another run.

    Args:
        folder: the output folder (made when missing).
        fingerprint: the run's identity, written into the run record.
        resume: whether this run's own shards may be continued.

    Raises:
        FineclassError: naming ``output`` when the folder is a file, holds another run's shards or shards without a
            run record, or this run's shards and ``resume`` is false.
    """
    if folder.exists() and not folder.is_dir():
        raise FineclassError(f"`output` {str(folder)!r} is a file; pass a folder for the Parquet shards.", "output")
    with output_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
    run_file = folder / RUN_FILE
    work = _has_work(folder)
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous is None and work:
            raise FineclassError(
                f"`output` {str(folder)!r}: its run record {RUN_FILE} is damaged, so its shards "
                f"cannot be matched to this run. Use a new output folder.",
                "output",
            )
        old = (previous or {}).get("fingerprint")
        if old == fingerprint:
            if work and not resume:
                raise FineclassError(
                    f"`output` {str(folder)!r} already holds shards of this run; pass "
                    f"resume=True to finish it, or use an empty folder.",
                    "output",
                )
            return
        if work:
            raise FineclassError(
                f"`output` {str(folder)!r} holds shards of another run "
                f"({_describe_difference(old or {}, fingerprint)})."
                f" Results of two runs are never mixed: use a new output folder, or delete this one to start "
                f"over.",
                "output",
            )
    elif work:
        raise FineclassError(
            f"`output` {str(folder)!r} holds shard files or a ledger but no run record ({RUN_FILE});"
            f" use an empty folder.",
            "output",
        )
    with output_errors(folder):
        write_json_atomic(run_file, {"fingerprint": fingerprint, "started": now(), "versions": versions()})


@contextlib.contextmanager
def output_errors(folder: Path) -> Iterator[None]:
    """Turn the file system's refusals (read-only, full, no permission, not a folder) into a FineclassError.

    Args:
        folder: the output folder, named in the error.

    Yields:
        Nothing; an ``OSError`` raised inside becomes a FineclassError naming ``output``.

    Raises:
        FineclassError: naming ``output``, with the cause and the fix.
    """
    try:
        yield
    except FineclassError:
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "free some space (or choose a folder on another disk), then rerun with resume=True to continue"
        elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "choose a folder you can write to"
        else:
            fix = "choose another folder"
        raise FineclassError(
            f"`output` {str(folder)!r} could not be written ({e.strerror or e}): {fix}.", "output"
        ) from None


# ---------------------------------------------------------------------- the advisory lock of a job share
def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (Linux), so that a reused pid is not taken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(owner: dict) -> bool:
    """Whether the process that wrote a lock on this host still runs (the same pid and start time)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, under another user
    ticks = owner.get("start_ticks")
    return ticks is None or _start_ticks(pid) in (None, ticks)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two job shares ``i/n`` hold a shard in common (k = i mod n and k = i' mod n' for some k)."""
    return (a[0] - b[0]) % math.gcd(a[1], b[1]) == 0


def _read_lock(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        return owner if isinstance(owner, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half written by a process killed at that moment: no pid, so stale on this host


def lock_folder(folder: Path, share: tuple[int, int]) -> Path:
    """Take the advisory lock of this job's share of an output folder.

    The lock is a file ``_lock-{i}-of-{n}.json`` holding the owner's pid, host and start time. A lock of a
    process that is gone (its pid is not running on this host) is stale and taken over; a live one of a share
    that overlaps this one is refused, so two processes never write the same shards.

    Args:
        folder: the output folder (it exists).
        share: ``(i, n)`` of ``shard="i/n"``.

    Returns:
        The lock file (give it to :func:`unlock_folder` when the job ends).

    Raises:
        FineclassError: naming ``output`` when another live process holds this share or one that overlaps it.
    """
    host = socket.gethostname()
    me = {"pid": os.getpid(), "host": host, "start_ticks": _start_ticks(os.getpid()), "since": now()}
    mine = folder / f"{LOCK_PREFIX}{share[0]}-of-{share[1]}.json"

    def refuse(path: Path, owner: dict) -> FineclassError:
        return FineclassError(
            f"`output` {str(folder)!r} is being written by another process (pid {owner.get('pid')} on "
            f"{owner.get('host')!r}, since {owner.get('since')}). Wait for it to finish, or use another output "
            f"folder (or another shard='i/n'). If that process is gone (e.g. it ran on another machine), delete "
            f"{str(path)!r} and rerun.",
            "output",
        )

    def stale(owner: dict) -> bool:
        if not owner:  # no owner written: being written this instant, or left half-written by a killed process
            try:
                return time.time() - mine.stat().st_mtime > 10
            except OSError:
                return True
        return owner.get("host") == host and not _alive(owner)

    with output_errors(folder):
        for _ in range(3):
            try:
                fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = _read_lock(mine)
                if owner is None:
                    continue  # released meanwhile: try again
                if not stale(owner):
                    raise refuse(mine, owner) from None
                try:
                    mine.unlink()  # a dead process's lock: taken over
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            break
        else:
            raise refuse(mine, _read_lock(mine) or {})
        for other in folder.glob(f"{LOCK_PREFIX}*-of-*.json"):  # live locks of overlapping shares
            if other == mine:
                continue
            try:
                i, n = (int(x) for x in other.name[len(LOCK_PREFIX) : -len(".json")].split("-of-"))
            except ValueError:
                continue
            owner = _read_lock(other)
            if owner is not None and _overlap(share, (i, n)) and not stale(owner):
                unlock_folder(mine)
                raise refuse(other, owner)
    return mine


def unlock_folder(lock: Path | None) -> None:
    """Release a lock taken by :func:`lock_folder` (only this process's own).

    Args:
        lock: the lock file, or None.
    """
    if lock is None:
        return
    owner = _read_lock(lock)
    if owner is not None and owner.get("pid") == os.getpid():
        try:
            lock.unlink()
        except OSError:
            pass


def remove_stale_temporaries(folder: Path, mine: Callable[[int], bool]) -> None:
    """Remove temporary shard files left by a killed run (only this job's: other jobs may be writing).

    Args:
        folder: the output folder.
        mine: which shard numbers this job writes.
    """
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


def write_shard(folder: Path, k: int, table: pa.Table, input_hash: str) -> dict:
    """Write one shard's predictions atomically; the ledger is not touched (see :meth:`Run.record`).

    Args:
        folder: the output folder.
        k: the shard's number.
        table: the shard's predictions.
        input_hash: the hash of the shard's input (``sources.hash_input``).

    Returns:
        The shard's ledger entry: shard, file, rows, bytes, sha256, input_sha256, truncated, empty.
    """
    name = shard_name(k)
    with atomic_file(folder / name) as tmp:
        pq.write_table(table, tmp)
        size, digest = os.path.getsize(tmp), sha256_file(tmp)
    return {
        "shard": k,
        "file": name,
        "rows": table.num_rows,
        "bytes": size,
        "sha256": digest,
        "input_sha256": input_hash,
        "truncated": int(pc.sum(table.column("truncated")).as_py() or 0),
        "empty": int(pc.sum(pc.equal(table.column("status"), "empty_text")).as_py() or 0),
    }


def _append(folder: Path, entry: dict) -> None:
    with open(folder / LEDGER, "a", encoding="utf-8") as f:
        # one write per entry; the leading newline keeps it apart from a line a killed process left unfinished
        f.write("\n" + json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Run:
    """One job's pass over an output folder: what was done before, and what this pass writes.

    Made by :meth:`start`; an engine calls :meth:`check_input` for the finished shards a stream passes,
    :meth:`record` once per shard it finishes, and :meth:`summary` at the end.
    """

    folder: Path
    mine: Callable[[int], bool]
    done: dict = field(default_factory=dict)  # this job's finished shards that were found intact
    damaged: list = field(default_factory=list)  # the files of finished shards that must be redone
    ledger: dict = field(default_factory=dict)  # the ledger as it was at the start
    lock: Path | None = None  # this job's lock file (released by close())
    rows: int = 0
    truncated: int = 0
    empty: int = 0
    written: int = 0

    @classmethod
    def start(
        cls,
        output: str | Path,
        fingerprint: dict,
        resume: bool,
        mine: Callable[[int], bool],
        share: tuple[int, int] = (0, 1),
    ) -> "Run":
        """Lock this job's share of the folder, claim the folder for this run, and find this job's finished shards.

        Args:
            output: the output folder.
            fingerprint: the run's identity (model, weights, input, text and id columns, shard_rows).
            resume: whether a folder that holds shards of this run may be continued.
            mine: which shard numbers this job writes.
            share: ``(i, n)`` of ``shard="i/n"`` (which lock this job takes).

        Returns:
            The run, with ``done`` (intact finished shards) and ``damaged`` (files to redo, with a warning); call
            :meth:`close` when the job ends.

        Raises:
            FineclassError: naming ``output`` when it holds another run's shards, or this run's without
                ``resume``, when another live process writes the same shards, or the folder cannot be written.
        """
        folder = Path(output)
        if folder.exists() and not folder.is_dir():
            raise FineclassError(f"`output` {str(folder)!r} is a file; pass a folder for the Parquet shards.", "output")
        with output_errors(folder):
            folder.mkdir(parents=True, exist_ok=True)
        lock = lock_folder(folder, share)
        try:
            claim_folder(folder, fingerprint, resume)
            run = cls(folder, mine, ledger=read_ledger(folder), lock=lock)
            for k, e in run.ledger.items():
                if mine(k):
                    if check_shard(folder, e):
                        run.done[k] = e
                    else:
                        run.damaged.append(e.get("file", str(k)))
            if run.damaged:
                warn_user(
                    f"{len(run.damaged)} finished shard file(s) in {str(folder)!r} are missing or damaged "
                    f"({', '.join(run.damaged[:3])}); they are classified again.",
                    RuntimeWarning,
                )
            remove_stale_temporaries(folder, mine)
        except BaseException:
            unlock_folder(lock)
            raise
        return run

    def close(self) -> None:
        """Release this job's lock on the folder (a killed job's lock is found stale by the next one)."""
        unlock_folder(self.lock)
        self.lock = None

    def check_input(self, k: int, input_hash: str) -> None:
        """A finished shard of a stream must hold the same input as this run's shard ``k``.

        Args:
            k: the shard's number.
            input_hash: the hash of this run's input for that shard.

        Raises:
            FineclassError: naming ``output`` when the ledger recorded another input for it.
        """
        e = self.ledger.get(k)
        if e is not None and e.get("input_sha256") and e["input_sha256"] != input_hash:
            raise FineclassError(
                f"`output` {str(self.folder)!r} holds shards of another run (a different input: "
                f"shard {k} differs). Use a new output folder.",
                "output",
            )

    def record(self, entry: dict) -> None:
        """Append a finished shard's entry to the ledger and count it in this pass's summary.

        Args:
            entry: as :func:`write_shard` returns it.
        """
        _append(self.folder, entry)
        self.rows += entry["rows"]
        self.truncated += entry["truncated"]
        self.empty += entry["empty"]
        self.written += 1

    def summary(self, n_shards: int | None, jobs: int, shard: str, seconds: float, **extra: Any) -> dict:
        """The run's summary, as ``classify(..., output=DIR)`` returns it.

        Args:
            n_shards: the input's number of shards, or None where it is not known (a stream).
            jobs: ``n`` of ``shard="i/n"``: a stream read by one job is complete when the job ends.
            shard: ``"i/n"``.
            seconds: how long this pass took.
            **extra: engine-specific entries (``engine``, ``actors``, ``workers``).

        Returns:
            output, rows_written, shards_written, shards_skipped, shards_redone, truncated, empty, rows_total,
            truncated_total, empty_total, shards_total, complete, seconds, docs_per_second, shard, and ``extra``.
        """
        ledger = read_ledger(self.folder)
        complete = len(ledger) == n_shards if n_shards is not None else jobs == 1
        if n_shards is not None:
            record_shards_total(self.folder, n_shards)
        return {
            "output": str(self.folder.resolve()),
            "rows_written": self.rows,
            "shards_written": self.written,
            "shards_skipped": len(self.done),
            "shards_redone": len(self.damaged),
            "truncated": self.truncated,
            "empty": self.empty,
            "rows_total": sum(e["rows"] for e in ledger.values()),
            "truncated_total": sum(e.get("truncated", 0) for e in ledger.values()),
            "empty_total": sum(e.get("empty", 0) for e in ledger.values()),
            "shards_total": n_shards,
            "complete": complete,
            "seconds": round(seconds, 2),
            "docs_per_second": round(self.rows / seconds, 1) if self.rows and seconds > 0 else None,
            "shard": shard,
            **extra,
        }


def record_shards_total(folder: Path, n_shards: int) -> None:
    """Keep the input's number of shards in the run record, where the input did not say it at the start.

    A CSV file or a stream is counted only by reading it whole; once a job has, :func:`read_output` can tell a
    finished run from an unfinished one.

    Args:
        folder: the output folder.
        n_shards: the input's number of shards.
    """
    run_file = folder / RUN_FILE
    try:
        record = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or record.get("shards_total") == n_shards:
        return
    record["shards_total"] = n_shards
    with output_errors(folder):
        write_json_atomic(run_file, record)


def report(summary: dict, how: str = "") -> None:
    """Say on stderr what a run did and where its output is.

    Args:
        summary: from :meth:`Run.summary`.
        how: words after "classified" (e.g. ``" with Ray (4 actors)"``).
    """
    rate = f" ({summary['docs_per_second']} docs/s)" if summary["rows_written"] else ""
    print(
        f"fineclass: {summary['rows_written']} documents classified{how} in {summary['seconds']} s{rate}; "
        f"{summary['truncated']} truncated to max_length, {summary['empty']} empty; {summary['shards_skipped']} "
        f"shards already done; output in {summary['output']}",
        file=sys.stderr,
    )


def read_output(output: str | Path) -> pa.Table:
    """All finished shards of an output folder as one table, in input order (shards in the ledger only).

    For outputs larger than memory, scan the shards lazily instead: ``polars.scan_parquet(f"{output}/part-*.parquet")``
    or ``pyarrow.dataset.dataset(sorted(Path(output).glob("part-*.parquet")))``.

    Args:
        output: the folder ``classify(..., output=DIR)`` wrote.

    Returns:
        One table: the columns of ``predict()`` (id, label(s), confidence, truncated, status, probabilities).

    Raises:
        FineclassError: naming ``output`` when it is not a folder, holds no finished shard, or a shard file is
            missing or damaged (rerun classify with resume=True to redo it). A run not yet finished gives a
            warning saying how many shards are missing.

    Example:
        >>> fineclass.classify("corpus/*.parquet", model="my-model", output="out")  # doctest: +SKIP
        >>> fineclass.read_output("out")  # doctest: +SKIP
    """
    folder = Path(output)
    if not folder.is_dir():
        raise FineclassError(f"`output` {str(folder)!r} is not a folder.", "output")
    entries = sorted(read_ledger(folder).values(), key=lambda e: e["shard"])
    tables = []
    for e in entries:
        if not check_shard(folder, e):
            raise FineclassError(
                f"`output`: shard file {e['file']!r} in {str(folder)!r} is missing or damaged; "
                f"rerun classify with resume=True to redo it.",
                "output",
            )
        tables.append(pq.read_table(folder / e["file"]))
    if not tables:
        raise FineclassError(f"`output` {str(folder)!r} holds no finished shard.", "output")
    try:
        run = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        rows = run["fingerprint"]["input"].get("rows")
        expected = math.ceil(rows / run["fingerprint"]["shard_rows"]) if rows is not None else None
        if expected is None:  # a CSV file or a stream: counted by the first job that read it whole
            expected = run.get("shards_total", -1)
    except (OSError, KeyError, TypeError, ValueError, AttributeError):
        expected = None
    if expected == -1:
        warn_user(
            f"{str(folder)!r} holds {len(entries)} shards, but no job has read the whole input yet, so the run "
            f"is not finished (rerun classify with resume=True).",
            RuntimeWarning,
        )
    elif expected is not None and len(entries) < expected:
        warn_user(
            f"{str(folder)!r} holds {len(entries)} of {expected} shards; the run is not finished "
            f"(rerun classify with resume=True).",
            RuntimeWarning,
        )
    return pa.concat_tables(tables, promote_options="permissive")
