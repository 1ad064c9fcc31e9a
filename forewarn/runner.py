"""Run the flow in-process on files or in-memory lines (the embedded default)."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bytewax.inputs import Source
from bytewax.outputs import Sink
from bytewax.testing import TestingSink, cluster_main, run_main

from forewarn.connectors.files import JsonlFilesSource, JsonlSink, LinesSource, sort_jsonl
from forewarn.dataflows.flow import FlowConfig, Outputs, RunResults, build_flow
from forewarn.rules.reload import RulebookWatcher
from forewarn.rules.rulebook import Rulebook

OUTPUT_FILES = {
    "actions": ("actions.jsonl", ("event_time", "action_id")),
    "incidents": ("incidents.jsonl", ("event_time", "incident_id", "status")),
    "dead_letters": ("dead_letters.jsonl", ("source", "reason", "raw")),
    "care_context": ("care_context.jsonl", ("event_time", "context_id")),
    "care_status": ("care_status.jsonl", ("event_time", "subscriber_id")),
}


#: Collector thresholds for a flow process (CPython's default is (700, 10, 10)).
GC_THRESHOLDS = (1_000_000, 50, 100)


def tune_gc() -> None:
    """Collect cyclic garbage far less often than CPython's default.

    The flow's state is a large, long-lived heap (positions, profiles, incidents)
    that holds almost no reference cycles; the default thresholds make the cyclic
    collector walk it again and again as state grows, which cost about a third of
    the in-memory flow's time (`bench.flow_throughput`: ~30 k -> ~55 k events/s).
    A young generation of 1 M objects rather than 100 k: on Kafka the source holds
    read-ahead records (up to ~300 k in a backlog) that each young collection walked
    again; a 24 h backlog took 55 collections, 2.6 s of a 13 s run, against 3
    collections, 0.6 s (~0.2 s each: the longest pause it adds).
    Objects alive at start (modules, the rulebook) are frozen out of collection.
    Reference counting still frees everything else at once.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def execute(source: Source, outputs: Outputs, cfg: FlowConfig, workers: int = 1,
            epoch_s: float = 0.25) -> None:
    """Run to end of input with ``workers`` worker threads in this process."""
    flow = build_flow(source, outputs, cfg, workers=workers)
    interval = timedelta(seconds=epoch_s)
    if workers <= 1:
        run_main(flow, epoch_interval=interval)
    else:
        cluster_main(flow, [], 0, epoch_interval=interval, worker_count_per_proc=workers)


def file_outputs(out_dir: Path) -> Outputs:
    return Outputs(**{k: JsonlSink(out_dir / name) for k, (name, _) in OUTPUT_FILES.items()})


def run_to_dir(source: Source, out_dir: Path, book: Rulebook, workers: int = 1,
               watch: RulebookWatcher | None = None, propensity: bytes | None = None,
               action_format: str = "contract", shards: int = 1) -> RunResults:
    """Run and write the three JSONL outputs, canonically ordered; return what the run
    leaves besides them (the propensity model and its figures). ``shards``: how many
    input shards ``source`` has (its partitions: :mod:`forewarn.dataflows.shards`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = RunResults()
    execute(source, file_outputs(out_dir),
            FlowConfig(book=book, watch=watch, propensity=propensity, results=results,
                       action_format=action_format, shards=shards), workers)
    for name, keys in OUTPUT_FILES.values():
        (out_dir / name).touch()  # an output with nothing in it is an empty file, not none
        sort_jsonl(out_dir / name, keys)
    return results


def run_files(paths: Sequence[str | Path], out_dir: Path, book: Rulebook,
              workers: int = 1, watch: RulebookWatcher | None = None,
              propensity: bytes | None = None, action_format: str = "contract",
              partitions: int = 1, partitioner: str = "crc32") -> RunResults:
    return run_to_dir(JsonlFilesSource(paths, partitions, partitioner), out_dir, book,
                      workers, watch, propensity, action_format, shards=partitions)


def run_lines(lines: Sequence[bytes], out_dir: Path, book: Rulebook, workers: int = 1,
              propensity: bytes | None = None) -> RunResults:
    return run_to_dir(LinesSource(lines), out_dir, book, workers, propensity=propensity)


@dataclass
class Collected:
    """Outputs of an in-memory run: encoded JSON lines, and suppressed actions."""

    actions: list[bytes]
    incidents: list[bytes]
    dead_letters: list[bytes]
    care_context: list[bytes] = field(default_factory=list)
    care_status: list[bytes] = field(default_factory=list)
    suppressed: list = field(default_factory=list)  # forewarn.dataflows.care.Suppressed


def collect(source: Source, book: Rulebook, workers: int = 1, epoch_s: float = 0.25,
            watch: RulebookWatcher | None = None, shards: int = 1,
            durable: bool = False) -> Collected:
    """Run any source to its end and collect every output in memory. ``durable``: the
    stages as they run with recovery (snapshots made at every epoch, not stored)."""
    got: dict[str, list] = {k: [] for k in (*OUTPUT_FILES, "suppressed")}
    sinks: dict[str, Sink] = {k: TestingSink(v) for k, v in got.items()}
    execute(source, Outputs(**sinks),
            FlowConfig(book=book, watch=watch, shards=shards, durable=durable),
            workers, epoch_s=epoch_s)
    return Collected(**{k: [item for _, item in v] for k, v in got.items()})


def run_collect(lines: Sequence[bytes], book: Rulebook, workers: int = 1, *,
                batch: int = 1000, pause_s: float = 0.0, epoch_s: float = 0.25,
                partitions: int = 1, partitioner: str = "crc32",
                durable: bool = False) -> Collected:
    """Run over in-memory lines and collect the outputs (tests, backtests).

    ``batch``/``pause_s``/``epoch_s`` change the replay speed and epoch cut,
    never the outputs; ``partitions`` splits the input into that many shards, by
    ``partitioner`` (``kafka``: as a Kafka run on that many partitions reads them);
    ``durable``: the stages as they run with recovery, which change no output either.
    """
    return collect(LinesSource(lines, batch=batch, pause_s=pause_s, partitions=partitions,
                               partitioner=partitioner),
                   book, workers, epoch_s, shards=partitions, durable=durable)
