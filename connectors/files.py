"""File and in-memory sources and sinks (the embedded default: no broker).

Sources emit ``(source_name, raw_line)``; sinks take ``(key, line)`` with one
partition per file, so every line of a file is written by one worker.

>>> cell = b'{"type":"cell","cell_id":"C1","site_id":"S1"}'
>>> def loc(at):
...     return (b'{"type":"location","subscriber_id":"U1","cell_id":"C1","event_time":'
...             b'"2026-01-01T00:00:%02dZ"}' % at)
>>> merged = merge_by_time([("a", [loc(2)]), ("b", [cell, loc(1)])])
>>> [(name, orjson.loads(line).get("event_time", "-")[-3:]) for name, line in merged]
[('b', '-'), ('b', '01Z'), ('a', '02Z')]
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from forewarn import tmf681
from forewarn.codec import merge_time
from forewarn.dataflows.sequencer import AHEAD_S
from forewarn.dataflows.shards import ShardSource, owner

BATCH = 5000  # lines per batch: work per site and per care key is per batch (as for Kafka)


def _sort_key(line: bytes, previous: float) -> float:
    """A line's time in the merge (:func:`~forewarn.codec.merge_time`: its record's stream
    time, as the Kafka merge reads it); dead letters keep their place (``previous``), and
    so do timeless records (``-inf`` never raises the file's running maximum)."""
    at = merge_time(line)
    return previous if at is None else at


#: A record this far past its input's running maximum (a file; a Kafka partition in
#: :mod:`forewarn.connectors.kafka_source`) that a later record falls back from (that far), before
#: LEAP_CONFIRM timed records in line with it came, keeps its place in the merge: one bad
#: clock must not hold the rest of its input back behind the others. As far as the
#: sequencer calls a record ahead of the stream.
LEAP_S = AHEAD_S
LEAP_CONFIRM = 8


def _keyed(name: str, lines: Iterable[bytes]) -> Iterator[tuple[float, str, bytes]]:
    """``(merge time, name, line)``: the running maximum of the file's stream times,
    except that a leap far ahead stays unconfirmed until :data:`LEAP_CONFIRM` lines
    follow in line with it, and is undone (its lines keep the time before it) when a
    line falls back.

    >>> t = lambda s: (b'{"type":"location","subscriber_id":"U1","cell_id":"C1",'
    ...                b'"event_time":"2026-01-01T%sZ"}' % s.encode())
    >>> [k - 1767225600 for k, _, _ in _keyed("a", [t("00:00:00"), t("09:00:00"),
    ...                                             t("00:00:05")])]
    [0.0, 0.0, 5.0]
    """
    last = float("-inf")
    held: list[tuple[float, bytes]] = []  # lines since an unconfirmed leap
    top = last  # the leap's running maximum
    agree = 0  # timed lines since the leap, in line with it
    for line in lines:
        at = _sort_key(line, float("nan"))  # NaN: timeless or unreadable, keeps its place
        if held:
            if at < top - LEAP_S:  # falls back: the leap was bad clocks, they keep their place
                yield from ((last, name, held_line) for _, held_line in held)
                held.clear()
            else:
                held.append((at, line))
                if at == at:
                    top, agree = max(top, at), agree + 1
                if agree >= LEAP_CONFIRM:  # the file really moved on
                    for held_at, held_line in held:
                        last = max(last, held_at) if held_at == held_at else last
                        yield last, name, held_line
                    held.clear()
                continue
        if at == at and last != float("-inf") and at - last > LEAP_S:
            held.append((at, line))
            top, agree = at, 0
            continue
        last = max(last, at) if at == at else last
        yield last, name, line
    for held_at, held_line in held:  # the end of the file: nothing contradicted them
        last = max(last, held_at) if held_at == held_at else last
        yield last, name, held_line


def merge_by_time(inputs: Sequence[tuple[str, Iterable[bytes]]]) -> Iterator[tuple[str, bytes]]:
    """Merge per-source streams (each in time order) into one, by stream time."""
    if len(inputs) == 1:
        name, lines = inputs[0]
        yield from ((name, line) for line in lines)
        return
    merged = heapq.merge(*(_keyed(n, ls) for n, ls in inputs), key=lambda x: x[0])
    yield from ((name, line) for _, name, line in merged)


def read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


class _IterPartition(StatefulSourcePartition[tuple[str, bytes], int]):
    def __init__(self, items: Iterator[tuple[str, bytes]], resume: int | None,
                 batch: int = BATCH, pause_s: float = 0.0):
        self._pos = resume or 0
        self._it = itertools.islice(items, self._pos, None)
        self._batch = batch
        self._pause = timedelta(seconds=pause_s)
        self._awake: datetime | None = None

    def next_batch(self) -> list[tuple[str, bytes]]:
        batch = list(itertools.islice(self._it, self._batch))
        if not batch:
            raise StopIteration
        self._pos += len(batch)
        if self._pause:
            self._awake = datetime.now(UTC) + self._pause
        return batch

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._pos


def shard_lines(items: Iterable[tuple[str, bytes]], shard: int, shards: int,
                partitioner: str = "crc32") -> Iterator[tuple[ShardSource, bytes]]:
    """One shard's part of an input (:mod:`forewarn.dataflows.shards`): the lines of its own
    subscribers, and every other line, as its own on shard 0 and as context elsewhere.
    ``partitioner``: how a key picks its shard (:data:`~forewarn.dataflows.shards.PARTITIONERS`).

    >>> lines = [("f", b'{"type":"cell"}'), ("f", b'{"type":"call","subscriber_id":"U1"}'),
    ...          ("f", b'{"type":"call","subscriber_id":"U4"}')]
    >>> [(line, src.context) for src, line in shard_lines(lines, 1, 2)]
    [(b'{"type":"cell"}', True), (b'{"type":"call","subscriber_id":"U4"}', False)]
    """
    names: dict[str, tuple[ShardSource, ShardSource]] = {}
    for name, line in items:
        sources = names.get(name)
        if sources is None:
            sources = names[name] = (ShardSource(name, shard, False),
                                     ShardSource(name, shard, shard != 0))
        at = owner(line, shards, partitioner)
        if at is None:
            yield sources[1], line
        elif at == shard:
            yield sources[0], line


class JsonlFilesSource(FixedPartitionedSource[tuple[str, bytes], int]):
    """JSONL files merged by stream time into one ordered partition (resumable); or,
    with ``partitions`` > 1, into that many shards of it (:func:`shard_lines`), each
    read and decoded by whichever worker holds it (``partitioner``: how a key picks its
    shard, :data:`~forewarn.dataflows.shards.PARTITIONERS`)."""

    def __init__(self, paths: Sequence[str | Path], partitions: int = 1,
                 partitioner: str = "crc32"):
        self.paths = [Path(p) for p in paths]
        self.partitions = partitions
        self.partitioner = partitioner
        for p in self.paths:
            if not p.is_file():
                raise FileNotFoundError(f"input file {p} does not exist (check --input)")

    def list_parts(self) -> list[str]:
        if self.partitions > 1:
            return [f"shard-{i}" for i in range(self.partitions)]
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        streams = [(p.name, read_lines(p)) for p in self.paths]
        merged: Iterator = merge_by_time(streams)
        if self.partitions > 1:
            merged = shard_lines(merged, int(for_part.split("-")[1]), self.partitions,
                                 self.partitioner)
        return _IterPartition(merged, resume_state)


class LinesSource(FixedPartitionedSource[tuple[str, bytes], int]):
    """In-memory lines (the demo's simulator output) as one ordered partition, or
    ``partitions`` shards of it (:func:`shard_lines`).

    ``batch`` and ``pause_s`` set the replay speed: lines per poll, and the
    wall-clock pause between polls.
    """

    def __init__(self, lines: Sequence[bytes], name: str = "simulator", batch: int = BATCH,
                 pause_s: float = 0.0, partitions: int = 1, partitioner: str = "crc32"):
        self.lines = lines
        self.name = name
        self.batch = batch
        self.pause_s = pause_s
        self.partitions = partitions
        self.partitioner = partitioner

    def list_parts(self) -> list[str]:
        if self.partitions > 1:
            return [f"shard-{i}" for i in range(self.partitions)]
        return ["lines"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        items: Iterator = ((self.name, line) for line in self.lines)
        if self.partitions > 1:
            items = shard_lines(items, int(for_part.split("-")[1]), self.partitions,
                                self.partitioner)
        return _IterPartition(items, resume_state, self.batch, self.pause_s)


class _FilePartition(StatefulSinkPartition[bytes, int]):
    def __init__(self, path: Path, resume: int | None):
        self._fh = path.open("r+b" if resume is not None and path.exists() else "wb")
        if resume is not None:
            self._fh.truncate(resume)
            self._fh.seek(resume)

    def write_batch(self, items: list[bytes]) -> None:
        self._fh.write(b"".join(line + b"\n" for line in items))

    def snapshot(self) -> int:
        self._fh.flush()
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


class JsonlSink(FixedPartitionedSink[bytes, int]):
    """One JSONL file; on resume it is cut back to the last snapshot."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def list_parts(self) -> list[str]:
        return [self.path.name]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return _FilePartition(self.path, resume_state)


def sort_jsonl(path: Path, key_fields: tuple[str, ...]) -> int:
    """Rewrite a JSONL output in a canonical order (same bytes for any worker count)."""
    if not path.exists():
        return 0
    rows = [orjson.loads(line) for line in read_lines(path)]
    rows.sort(key=lambda r: tuple(str((tmf681.to_contract(r) if tmf681.is_message(r) else r)
                                      .get(k) or "") for k in key_fields))
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return len(rows)
