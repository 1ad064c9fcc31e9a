"""Check a Bytewax recovery directory before Bytewax opens it.

Bytewax 0.21.1 keeps recovery in ``part-N.sqlite3`` SQLite databases (WAL mode), one
per partition, with five tables::

    parts   (part_index, part_count)                 one row: which partition this is
    exs     (ex_num, worker_count, resume_epoch)     one row per execution (run)
    fronts  (ex_num, worker_index, worker_frontier)  each worker's progress in a run
    commits (part_index, commit_epoch)               this partition's last commit
    snaps   (step_id, state_key, snap_epoch, ser_change)   pickled state per key

A run resumes from the epoch every worker of the last execution reached (``exs`` and
``fronts``, which may sit in any partition), and each key from its latest snapshot
before that epoch, in whichever partition the key hashes to. Every partition gets a
``commits`` row at every epoch, whether or not it holds snapshots. Bytewax itself
notices a partition that is *ahead* of the others, but not one that is behind: a
partition whose last writes were lost (a damaged WAL, an old backup) resumes its keys
from stale snapshots, silently. A damaged or truncated file makes it panic without
naming the file.

:func:`check_store` refuses, with a message naming the file, what is wrong and what
to do, any directory that is not exactly what an interrupted run leaves:

* a directory or database writable by group or others (anyone who can write a
  snapshot can run code as Forewarn: Bytewax stores snapshots with pickle);
* a file SQLite cannot read or whose ``PRAGMA quick_check`` fails (read-only
  connection, WAL included);
* a WAL whose checksum chain breaks before frames of committed transactions (SQLite
  would silently drop those transactions);
* partitions missing, doubled or from different sets (``part_count``);
* a partition whose last commit is more than :data:`MAX_COMMIT_LAG` epochs behind the
  resume epoch, or ahead of it;
* a snapshot pickle that names anything Forewarn's state is not made of
  (:func:`forewarn.safe_pickle.check_pickle`), a state record of a stage or version this
  Forewarn does not have, or of another stage than the step that holds it.
"""

from __future__ import annotations

import sqlite3
import stat
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from forewarn.safe_pickle import UnsafePickle, check_pickle, loads

__all__ = [
    "MAX_COMMIT_LAG",
    "Partition",
    "RecoveryStoreError",
    "StoreReport",
    "check_permissions",
    "check_store",
    "resume_epoch",
    "secure_new_dir",
    "wal_lost_commits",
]

#: Epochs a partition's last commit may trail the resume epoch. Every partition commits
#: each epoch once all workers' progress is written, so after a crash its commit is one
#: epoch behind the resume epoch, two when the crash fell between the progress write of
#: the next epoch and the commits. More means writes to that partition were lost.
MAX_COMMIT_LAG = 2

_TABLES = ("parts", "exs", "fronts", "commits", "snaps")

#: What to do when the store is inconsistent (appended to every such refusal).
START_FRESH = (
    "Restore the whole directory from a backup taken at one moment (every partition "
    "together), or move it aside (mv {dir} {dir}.broken) and start again: the flow then "
    "reads its input topics from the beginning and the sinks skip the actions, incidents "
    "and dead letters already delivered (action-id dedupe)."
)


class RecoveryStoreError(Exception):
    """The recovery directory cannot be trusted; the message says where and what to do."""


@dataclass(frozen=True)
class Partition:
    """What one ``part-N.sqlite3`` says about itself."""

    path: Path
    index: int
    count: int
    commit_epoch: int | None
    exs: tuple[tuple[int, int, int], ...]  # (ex_num, worker_count, resume_epoch)
    fronts: tuple[tuple[int, int, int], ...]  # (ex_num, worker_index, worker_frontier)
    snapshots: int


@dataclass
class StoreReport:
    """A checked directory: its partitions, resume epoch (None: a share), blobs checked."""

    partitions: list[Partition] = field(default_factory=list)
    resume_epoch: int | None = None
    snapshots_checked: int = 0


def check_permissions(directory: Path) -> None:
    """Refuse a directory, or a database file in it, that group or others may write.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     Path(tmp).chmod(0o775)
    ...     check_permissions(Path(tmp))
    Traceback (most recent call last):
    ...
    forewarn.recovery_store.RecoveryStoreError: recovery directory ... is writable by ...
    """
    loose = [p for p in (directory, *sorted(_db_files(directory)))
             if p.exists() and p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
    if loose:
        who = _who(loose[0].stat().st_mode)
        names = ", ".join(str(p) for p in loose[:4]) + (" ..." if len(loose) > 4 else "")
        raise RecoveryStoreError(
            f"recovery directory {directory} is writable by {who} ({names}, mode "
            f"{stat.filemode(loose[0].stat().st_mode)}): snapshots are pickles, so anyone "
            f"who can write them can run code as Forewarn. Run: chmod -R go-w {directory}")


def _who(mode: int) -> str:
    parts = [w for w, bit in (("group", stat.S_IWGRP), ("other users", stat.S_IWOTH))
             if mode & bit]
    return " and ".join(parts)


def _db_files(directory: Path) -> Iterable[Path]:
    for p in directory.iterdir():
        if p.suffix == ".sqlite3" or p.name.endswith((".sqlite3-wal", ".sqlite3-shm")):
            yield p


# ---- one database ----------------------------------------------------------------------


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection (it reads the WAL too, and never checkpoints or writes)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def _read_partition(path: Path) -> Partition:
    try:
        conn = _connect_ro(path)
    except sqlite3.Error as exc:
        raise _damaged(path, f"SQLite cannot open it ({exc})") from None
    try:
        try:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check")]
        except sqlite3.Error as exc:
            raise _damaged(path, f"SQLite cannot read it ({exc})") from None
        if problems != ["ok"]:
            raise _damaged(path, f"PRAGMA quick_check reports: {'; '.join(problems[:3])}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not set(_TABLES) <= tables:
            missing = ", ".join(t for t in _TABLES if t not in tables)
            raise _damaged(path, f"it is not a Bytewax recovery partition (no table {missing})")
        try:
            parts = conn.execute("SELECT part_index, part_count FROM parts").fetchall()
            commits = conn.execute("SELECT part_index, commit_epoch FROM commits").fetchall()
            exs = conn.execute("SELECT ex_num, worker_count, resume_epoch FROM exs").fetchall()
            fronts = conn.execute(
                "SELECT ex_num, worker_index, worker_frontier FROM fronts").fetchall()
            snapshots = conn.execute("SELECT COUNT(*) FROM snaps").fetchone()[0]
        except sqlite3.Error as exc:
            raise _damaged(path, f"SQLite cannot read its tables ({exc})") from None
    finally:
        conn.close()
    if len(parts) != 1:
        raise _damaged(path, f"its parts table has {len(parts)} rows (one expected)")
    index, count = parts[0]
    own = [epoch for part, epoch in commits if part == index]
    return Partition(path, index, count, max(own) if own else None, tuple(exs), tuple(fronts),
                     snapshots)


def _damaged(path: Path, what: str) -> RecoveryStoreError:
    return RecoveryStoreError(
        f"recovery partition {path} is damaged: {what}. Forewarn will not resume from a "
        f"partial state. " + START_FRESH.format(dir=path.parent))


_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_HEADER = 32
_FRAME_HEADER = 24


def _wal_checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_lost_commits(wal: Path) -> str | None:
    """Why SQLite would silently drop committed transactions of this WAL, or None.

    SQLite replays a WAL's frames while their salts match the header and the cumulative
    checksum holds, and stops at the first frame that fails: anything after it is
    ignored. Frames of an interrupted write at the end are normal; a frame of the
    current WAL generation that *commits* a transaction after a broken one is not. A
    header that fails its own checksum drops the whole file.
    """
    data = wal.read_bytes()
    if len(data) < _WAL_HEADER:
        return None
    magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I",
                                                                           data[:_WAL_HEADER])
    if magic not in _WAL_MAGIC:
        return (f"its header is damaged (magic {magic:#x}): SQLite would ignore the "
                f"{len(data) - _WAL_HEADER} bytes of transactions it holds"
                if any(data[_WAL_HEADER:]) else None)
    big = magic & 1 == 1
    if _wal_checksum(data[:24], big, 0, 0) != (c1, c2):
        return (f"its header fails its checksum: SQLite would ignore the "
                f"{len(data) - _WAL_HEADER} bytes of transactions it holds")
    frame = _FRAME_HEADER + page_size
    s0, s1 = c1, c2
    pos, n = _WAL_HEADER, 0
    broken_at = None
    while pos + frame <= len(data):
        page_no, commit_size, f_salt1, f_salt2, f_c1, f_c2 = struct.unpack(
            ">6I", data[pos:pos + _FRAME_HEADER])
        current = (f_salt1, f_salt2) == (salt1, salt2)
        if broken_at is None:
            if current:
                t0, t1 = _wal_checksum(data[pos:pos + 8], big, s0, s1)
                t0, t1 = _wal_checksum(data[pos + _FRAME_HEADER:pos + frame], big, t0, t1)
                if (t0, t1) == (f_c1, f_c2) and page_no > 0:
                    s0, s1 = t0, t1
                else:
                    broken_at = n
            else:
                broken_at = n
        elif current and commit_size:
            return (f"frame {broken_at} (byte {_WAL_HEADER + broken_at * frame}) fails its "
                    f"checksum, and frame {n} after it commits a transaction: SQLite would "
                    f"silently drop every transaction from frame {broken_at} on")
        pos += frame
        n += 1
    return None


# ---- the directory ---------------------------------------------------------------------


def resume_epoch(partitions: Iterable[Partition]) -> int:
    """The epoch Bytewax 0.21.1 resumes from, computed as it does (``resume_from``):
    the smallest frontier over the workers of the last execution (at least its
    ``resume_epoch``); 1 when nothing has run.

    >>> p = Partition(Path("p"), 0, 1, 11, ((1, 2, 11),), ((1, 0, 13), (1, 1, 12)), 0)
    >>> resume_epoch([p])
    12
    """
    exs = [e for p in partitions for e in p.exs]
    if not exs:
        return 1
    ex_num, workers, start = max(exs)
    best = dict.fromkeys(range(workers), start)
    for p in partitions:
        for ex, worker, frontier in p.fronts:
            if ex == ex_num and worker in best:
                best[worker] = max(best[worker], frontier)
    return min(best.values())


def check_store(directory: Path, *, complete: bool = True, scan: bool = True,
                resume: Callable[[str, bytes], None] | None = None,
                inputs: tuple[str, list[str]] | None = None) -> StoreReport:
    """Check ``directory`` (see the module docs); raise :class:`RecoveryStoreError`.

    ``complete``: the directory must hold every partition (one process); with several
    processes each holds a share, and only what a share can tell is checked.
    ``scan``: check every snapshot pickle too. ``resume(stage, snapshot)``: raise
    :class:`~forewarn.safe_pickle.UnsafePickle` unless the run could resume that step
    from that snapshot (the flow's :func:`~forewarn.dataflows.flow.check_resume`); called
    for every snapshot that passes the pickle check. ``inputs``: ``(input step, its
    source partitions in this run)``, checked (:func:`check_input_parts`) before the
    snapshots, so that a store of another partition count is refused as that, not by
    the first snapshot that does not fit the new shards.
    """
    report = StoreReport()
    check_permissions(directory)
    paths = sorted(p for p in directory.iterdir() if p.suffix == ".sqlite3")
    if not paths:
        return report
    for path in paths:
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            lost = wal_lost_commits(wal)
            if lost:
                raise _damaged(path, f"its write-ahead log {wal.name} {lost}")
        report.partitions.append(_read_partition(path))
    _check_partition_set(directory, report.partitions, complete)
    _check_epochs(directory, report, complete)
    if inputs is not None:
        check_input_parts(directory, *inputs, complete=complete)
    if scan:
        for part in report.partitions:
            report.snapshots_checked += _scan_snapshots(part.path, resume,
                                                        report.resume_epoch)
    return report


def _check_partition_set(directory: Path, parts: list[Partition], complete: bool) -> None:
    counts = sorted({p.count for p in parts})
    if len(counts) > 1:
        by = {c: [p.path.name for p in parts if p.count == c] for c in counts}
        listing = "; ".join(f"{', '.join(v)} of {c}" for c, v in by.items())
        raise RecoveryStoreError(
            f"recovery directory {directory} mixes partitions of different sets ({listing}): "
            f"they come from different directories. " + START_FRESH.format(dir=directory))
    seen: dict[int, Path] = {}
    for p in parts:
        if p.index in seen:
            raise RecoveryStoreError(
                f"recovery partitions {seen[p.index]} and {p.path} are both partition "
                f"{p.index} of {p.count}: a copy was left in the directory; move the one "
                f"that does not belong out of {directory}")
        seen[p.index] = p.path
    missing = sorted(set(range(counts[0])) - set(seen))
    if complete and missing:
        names = ", ".join(f"part-{i}.sqlite3" for i in missing[:8])
        raise RecoveryStoreError(
            f"recovery directory {directory} holds {len(seen)} of its {counts[0]} partitions: "
            f"{names} {'is' if len(missing) == 1 else 'are'} missing, so the keys "
            f"{'it holds' if len(missing) == 1 else 'they hold'} would restart empty. Put "
            f"the missing file(s) back (with their -wal files), or: "
            + START_FRESH.format(dir=directory))


def _check_epochs(directory: Path, report: StoreReport, complete: bool) -> None:
    parts = report.partitions
    commits = [p.commit_epoch or 0 for p in parts]
    if complete:
        resume = report.resume_epoch = resume_epoch(parts)
        low = resume - MAX_COMMIT_LAG
    else:  # a share: every partition commits each epoch, whatever process holds it
        resume = None
        low = max(commits) - MAX_COMMIT_LAG
    if not any(p.exs or p.fronts or p.commit_epoch for p in parts):
        return  # never run
    for p, c in zip(parts, commits, strict=True):
        if resume is not None and c > resume:
            raise RecoveryStoreError(
                f"recovery partition {p.path} committed epoch {c}, but the progress recorded "
                f"across the directory only reaches epoch {resume}: the progress rows of the "
                f"last run were lost (a damaged or restored partition). "
                + START_FRESH.format(dir=directory))
        if c < low:
            head = (f"the others and the run's progress reach epoch {resume}" if complete
                    else f"the other partitions here reached epoch {max(commits)}")
            raise RecoveryStoreError(
                f"recovery partition {p.path} last committed epoch {c}, but {head}: its "
                f"later writes were lost (a damaged write-ahead log, or a partition restored "
                f"from an older backup), and resuming would restart its keys from stale "
                f"state. " + START_FRESH.format(dir=directory))


def _scan_snapshots(path: Path, resume: Callable[[str, bytes], None] | None = None,
                    upto: int | None = None) -> int:
    """Check every snapshot pickle in ``path``; ``resume`` those of each key a resume
    from epoch ``upto`` (None: any) can load: its latest at or before ``upto``, and its
    latest before it (which of the two Bytewax reads is its own business; none if the
    key dropped its state), as older rows are never read."""
    conn = _connect_ro(path)
    checked = 0
    key_now: tuple[str, str] | None = None
    at_or_before = before = False  # the key's row of each kind was met
    try:
        rows = conn.execute("SELECT rowid, step_id, state_key, snap_epoch, ser_change "
                            "FROM snaps ORDER BY step_id, state_key, snap_epoch DESC")
        for rowid, step, key, epoch, blob in rows:
            if (step, key) != key_now:
                key_now, at_or_before, before = (step, key), False, False
            if upto is None:
                loaded = not at_or_before
                at_or_before = True
            else:
                loaded = (epoch <= upto and not at_or_before) or (epoch < upto and not before)
                at_or_before, before = at_or_before or epoch <= upto, before or epoch < upto
            if blob is None:
                continue  # (the key dropped its state at that epoch)
            stage = step.rpartition(".")[2]
            try:
                record = check_pickle(bytes(blob))
                if record is not None and record[0] != stage:
                    raise UnsafePickle(f"it holds the state record of the {record[0]} stage")
            except UnsafePickle as exc:
                raise RecoveryStoreError(
                    f"recovery partition {path}: the snapshot of step {step!r}, key "
                    f"{_show_key(step, key, rowid)}, epoch {epoch} is refused: {exc}. Forewarn "
                    f"never writes such a snapshot: someone or something else wrote to the "
                    f"recovery directory. Find out who, then " + _lower(START_FRESH).format(
                        dir=path.parent)) from None
            if loaded and resume is not None:
                inner = loads(bytes(blob))
                try:
                    if isinstance(inner, bytes):
                        resume(stage, inner)
                except UnsafePickle as exc:
                    raise RecoveryStoreError(
                        f"recovery partition {path}: the snapshot of step {step!r}, key "
                        f"{_show_key(step, key, rowid)}, epoch {epoch} does not fit this "
                        f"Forewarn: {exc}. It was written by another version of Forewarn, or "
                        f"changed by hand: resume with the version that wrote it, or "
                        + _lower(START_FRESH).format(dir=path.parent)) from None
            checked += 1
    except sqlite3.Error as exc:
        raise _damaged(path, f"SQLite cannot read its snapshots ({exc})") from None
    finally:
        conn.close()
    return checked


def snapshot_keys(directory: Path, step_id: str) -> set[str]:
    """The state keys of ``step_id`` that have snapshots in the partitions here (a
    process with ``-a`` holds a share of them)."""
    keys: set[str] = set()
    for path in sorted(directory.glob("part-*.sqlite3")):
        conn = _connect_ro(path)
        try:
            keys.update(r[0] for r in conn.execute(
                "SELECT DISTINCT state_key FROM snaps WHERE step_id = ?", (step_id,)))
        except sqlite3.Error as exc:
            raise _damaged(path, f"SQLite cannot read its snapshots ({exc})") from None
        finally:
            conn.close()
    return keys


def check_input_parts(directory: Path, step_id: str, expected: list[str], *,
                      complete: bool = True) -> None:
    """Refuse a store whose input snapshots are of another input layout (on Kafka: the
    topics' partition count, one input shard each, changed since it was written): its
    positions and its sequencers' state would not fit the shards of this run.
    ``complete``: the store here holds every partition (else a share: only keys it
    should not have are caught).

    >>> import tempfile
    >>> check_input_parts(Path(tempfile.mkdtemp()), "forewarn.input", ["kafka"])
    """
    found = snapshot_keys(directory, step_id)
    unknown = sorted(found - set(expected))
    if unknown or (complete and found and found != set(expected)):
        raise RecoveryStoreError(
            f"recovery directory {directory}: its input snapshots are of the source "
            f"partitions {', '.join(sorted(found))}, this run reads {', '.join(expected)}: "
            f"the input topics' partition count (one input shard each) changed since it was "
            f"written, and its positions and state do not fit the new shards. Keep the old "
            f"partition count, or move the directory aside (mv {directory} "
            f"{directory}.old) and start with a new one: the flow then reads its input "
            f"topics from the beginning and the sinks skip the actions, incidents and dead "
            f"letters already delivered (action-id dedupe).")


def _show_key(step: str, key: str, rowid: int) -> str:
    """A care key is a subscriber id (personal data, never shown): the row is named."""
    if step.endswith(".care") and not key.startswith("care-"):
        return f"<a subscriber id: SELECT state_key FROM snaps WHERE rowid = {rowid}>"
    return repr(key)


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


def secure_new_dir(directory: Path) -> None:
    """Make a directory Forewarn just created (and its partitions) writable by it alone,
    whatever the umask."""
    directory.chmod(0o700)
    for p in _db_files(directory):
        p.chmod(p.stat().st_mode & ~(stat.S_IWGRP | stat.S_IWOTH) & 0o7777)
