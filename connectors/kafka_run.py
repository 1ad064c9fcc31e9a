"""``forewarn run --bootstrap``: the flow on the contract's Kafka topics.

Input: every input topic, merged by event time (:mod:`forewarn.connectors.kafka_source`).
Output: ``care.actions`` (key ``subscriber_id``), ``noc.incidents`` (key
``incident_id``), ``forewarn.deadletter`` (key: source topic) through idempotent,
loss-refusing producers (:mod:`forewarn.connectors.kafka_sink`).

Recovery (``--recovery DIR``): Bytewax snapshots input positions and the state
of every stage (positions, profiles, open incidents, pending timers, contact
history) every ``--snapshot-interval`` seconds into ``DIR``; the directory and
its partitions are created on first use (``--recovery-partitions``, default
the larger of 8 and the worker count: rescaling above it needs a new directory).
After a crash, a restart on the same directory resumes from the last snapshot;
outputs since then are produced again and skipped by the sinks when already
delivered (see docs/kafka.md). Before Bytewax opens the directory,
:func:`forewarn.recovery_store.check_store` checks it (permissions, every partition
readable and present, consistent epochs, every snapshot pickle) and the run is
refused, naming the file and what to do, when anything is off.

Stopping: SIGINT (Ctrl-C) or SIGTERM stops the workers where they are, as a crash
would (recovery resumes from the last snapshot; without it a restart reads the
topics again and the sinks skip what was delivered), logs one line and exits 0.

Scale-out: ``-w N`` worker threads; ``-i K -a "host0:port;host1:port"`` for
processes (the same arguments on every process but ``-i``).

``--topic-prefix P`` puts every topic name behind ``P`` (``P`` + ``oss.alarms``),
for shared clusters and tests.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from forewarn.connectors.kafka_config import (
    KafkaConfigError,
    KafkaUnreachableError,
    check_reachable,
    config_from_args,
)
from forewarn.connectors.kafka_publish import CONTRACT_TOPICS, Topics
from forewarn.connectors.kafka_sink import (
    KafkaOutSink,
    action_identity,
    cleared_status,
    dead_letter_identity,
    value_identity,
)
from forewarn.connectors.kafka_source import KafkaMergeSource, input_parts
from forewarn.connectors.topics import copartition_problem, partition_counts
from forewarn.dataflows.flow import FlowConfig, Outputs, build_flow, check_resume, is_care_bucket
from forewarn.malloc import keep_large_buffers_mapped
from forewarn.recovery_store import (
    RecoveryStoreError,
    check_store,
    secure_new_dir,
    snapshot_keys,
)
from forewarn.rules.rulebook import Rulebook

__all__ = [
    "Topics",
    "add_run_arguments",
    "build_kafka_flow",
    "care_keyed_per_subscriber",
    "ensure_recovery_dir",
    "prepare_recovery",
    "run_kafka",
]

log = logging.getLogger("forewarn.kafka")

DEFAULT_LATENESS_S = 2.0
DEFAULT_SNAPSHOT_S = 5.0
# epoch without recovery: an action waits two or three (forewarn.dataflows.frontier)
FAST_EPOCH_S = 0.05
DEFAULT_DEDUPE_TAIL = 20_000
STOP_GRACE_S = 30.0  # after SIGINT/SIGTERM, the workers get this long to stop


def missing_topics(config: Mapping[str, str], topics: Topics) -> list[str]:
    """Contract topics (with prefix) the cluster does not have."""
    metadata = check_reachable(config)
    return [t for t in topics.all if t not in metadata.topics]


def ensure_recovery_dir(path: Path, partitions: int) -> Path:
    """Create ``path`` and its recovery partitions unless they exist (process-safe).

    What it creates is writable by this user only (whatever the umask): the store is
    trusted storage (snapshots are pickles)."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
    with open(path / ".forewarn-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = sorted(path.glob("part-*.sqlite3"))
        if not existing:
            init_db_dir(path, partitions)
            secure_new_dir(path)
            log.info("recovery directory created", extra={"dir": str(path),
                                                          "partitions": partitions})
        elif len(existing) < partitions:  # e.g. one process's share (deploy/, init container)
            log.info("recovery directory holds a share of the partitions", extra={
                "dir": str(path), "partitions_here": len(existing), "partitions": partitions})
    return path


def prepare_recovery(path: Path, partitions: int, *, complete: bool = True,
                     resume: Callable[[str, bytes], None] | None = None,
                     inputs: list[str] | None = None) -> None:
    """Create the directory if new, then check it before Bytewax opens it.

    ``complete``: one process holds every partition (with ``-a``, each holds a share).
    ``resume``: whether a step can resume from a snapshot; ``inputs``: the input's
    source partitions in this run (see :func:`~forewarn.recovery_store.check_store`).
    Raises :class:`~forewarn.recovery_store.RecoveryStoreError` (the message says which
    file, what is wrong and what to do) or ``OSError``."""
    ensure_recovery_dir(path, partitions)
    began = time.monotonic()
    report = check_store(path, complete=complete, resume=resume,
                         inputs=None if inputs is None else ("forewarn.input", inputs))
    log.info("recovery directory checked", extra={
        "dir": str(path), "partitions_here": len(report.partitions),
        "resume_epoch": report.resume_epoch, "snapshots_checked": report.snapshots_checked,
        "seconds": round(time.monotonic() - began, 3)})


#: ONAP's VES collector publishes fault events here (DMaaP / Strimzi topic).
ONAP_FAULT_TOPIC = "unauthenticated.SEC_FAULT_OUTPUT"


def feed_topics(args: argparse.Namespace) -> list[str]:
    """The operators' alarm feed topics of ``--ves-topic`` / ``--tmf642-topic`` (as
    named: no ``--topic-prefix``; the collector owns them)."""
    return [t for t in (getattr(args, "ves_topic", None), getattr(args, "tmf642_topic", None))
            if t]


def build_kafka_flow(config: Mapping[str, str], book: Rulebook, *, topics: Topics = CONTRACT_TOPICS,
                     durable: bool = False, lateness_s: float = DEFAULT_LATENESS_S,
                     exit_at_end: bool = False, dedupe_tail: int = DEFAULT_DEDUPE_TAIL,
                     from_end: bool = False, propensity: bytes | None = None,
                     action_format: str = "contract",
                     feeds: list[str] | None = None, shards: int = 1,
                     workers: int = 1, care_per_subscriber: bool = False) -> Dataflow:
    """The Forewarn dataflow wired to Kafka (see the module docs).

    ``shards``: the input topics' partition count, when above 1: partition index ``i``
    of every keyed input topic is shard ``i``'s, read, decoded and ordered by its own
    source partition and sequencer (:mod:`forewarn.dataflows.shards`); each shard reads the
    topology, alarm and maintenance topics whole.

    ``workers``: every process's workers together (:func:`build_flow`'s).

    ``care_per_subscriber``: the recovery store keeps care per subscriber
    (:func:`care_keyed_per_subscriber`), resumed so.

    ``feeds``: topics of operators' alarm feeds (VES fault events, TMF642 alarm
    notifications), read besides the contract's and mapped through the rulebook's
    ``adapters`` tables; each carries alarms only (anything else read there is a dead
    letter ``wrong_topic``)."""
    feeds = list(feeds or [])
    first = max(topics.ranks) + 1
    source = KafkaMergeSource(config, [*topics.inputs, *feeds],
                              [*topics.ranks, *range(first, first + len(feeds))],
                              exit_at_end=exit_at_end, durable=durable, from_end=from_end,
                              types=[*topics.input_types, *(["alarm"] * len(feeds))],
                              adapters=book.adapters, shards=shards)
    outputs = Outputs(  # with recovery, no batch returns before it is delivered
        actions=KafkaOutSink(config, topics.actions, action_identity, dedupe_tail, durable),
        incidents=KafkaOutSink(config, topics.incidents, value_identity, dedupe_tail, durable),
        dead_letters=KafkaOutSink(config, topics.dead_letters, dead_letter_identity,
                                  dedupe_tail, durable),
        care_context=KafkaOutSink(config, topics.care_context, value_identity, dedupe_tail,
                                  durable),
        # compacted: a repeat is harmless (the last value per key counts), so no dedupe
        care_status=KafkaOutSink(config, topics.care_status, None, 0, durable,
                                 tombstone=cleared_status),
    )
    return build_flow(source, outputs, flow_config(book, durable=durable,
                                                   lateness_s=lateness_s,
                                                   propensity=propensity,
                                                   action_format=action_format,
                                                   shards=shards,
                                                   care_per_subscriber=care_per_subscriber),
                      workers=workers)


def flow_config(book: Rulebook, *, durable: bool, lateness_s: float,
                propensity: bytes | None, action_format: str, shards: int,
                care_per_subscriber: bool = False) -> FlowConfig:
    """The configuration of the Kafka flow's stages (what a resumed step is built with)."""
    return FlowConfig(book=book, durable=durable, lateness_s=lateness_s,
                      propensity=propensity, action_format=action_format, shards=shards,
                      care_per_subscriber=care_per_subscriber)


def care_keyed_per_subscriber(path: Path) -> bool:
    """Whether the recovery store at ``path`` keeps care state under a key per
    subscriber, as Forewarn did before care had buckets with recovery
    (:func:`~forewarn.dataflows.flow.care_bucket`): such a store is resumed in that
    layout, since its subscribers' state is under those keys. A new store, or one with
    no care state yet, takes buckets. With ``-a`` each process sees its own share of
    the partitions only, so such a store is refused there (``run_kafka``)."""
    if not any(path.glob("part-*.sqlite3")):
        return False
    return any(not is_care_bucket(k) for k in snapshot_keys(path, "forewarn.care"))


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``forewarn run`` for Kafka mode (``--bootstrap``/``--recovery`` exist)."""
    g = p.add_argument_group("Kafka mode (with --bootstrap)")
    g.add_argument("--config", metavar="FILE", type=Path,
                   help="librdkafka client properties file (key=value lines)")
    g.add_argument("-X", dest="kafka_settings", metavar="KEY=VALUE", action="append",
                   default=[], help="one librdkafka setting, e.g. -X security.protocol=SSL")
    g.add_argument("--topic-prefix", default="", metavar="PREFIX",
                   help="prefix of every topic name (default none)")
    g.add_argument("-i", "--process-id", type=int, metavar="K",
                   help="this process's index in a multi-process cluster (with -a)")
    g.add_argument("-a", "--addresses", metavar="HOST:PORT;...",
                   help="every process's host:port, ';'-separated, the same on all (with -i)")
    g.add_argument("--snapshot-interval", type=float, default=DEFAULT_SNAPSHOT_S,
                   metavar="S", help=f"recovery snapshot (epoch) interval in seconds "
                   f"(default {DEFAULT_SNAPSHOT_S:g})")
    g.add_argument("--recovery-partitions", type=int, metavar="N",
                   help="partitions of a new --recovery directory (default max(8, workers))")
    g.add_argument("--lateness", type=float, default=DEFAULT_LATENESS_S, metavar="S",
                   help=f"event-time reorder window for skew between producers "
                   f"(default {DEFAULT_LATENESS_S:g} s)")
    g.add_argument("--dedupe-tail", type=int, default=DEFAULT_DEDUPE_TAIL, metavar="N",
                   help="messages per output partition read at start to skip outputs "
                   f"already delivered (default {DEFAULT_DEDUPE_TAIL}; 0: off)")
    g.add_argument("--exit-at-end", action="store_true",
                   help="stop once every input partition is read to its end (backfills)")
    g.add_argument("--ves-topic", nargs="?", const=ONAP_FAULT_TOPIC, metavar="TOPIC",
                   help="also read ONAP VES 7.x fault events from TOPIC (alone: ONAP's "
                   f"{ONAP_FAULT_TOPIC}), mapped to alarms by the rulebook's adapters "
                   "(docs/adapters.md)")
    g.add_argument("--tmf642-topic", metavar="TOPIC",
                   help="also read TMF642 alarm notifications from TOPIC (docs/adapters.md)")
    g.add_argument("--from-end", action="store_true",
                   help="without a recovery snapshot, start at the end of the input topics "
                   "(default: the beginning)")


def _fail(message: object) -> int:
    print(f"forewarn run: {message}", file=sys.stderr)
    return 2


class StopRequested(BaseException):  # noqa: N818 - a request, like KeyboardInterrupt
    """SIGINT or SIGTERM: raised in the main thread, where Bytewax checks for signals,
    so that it stops its workers (without a panic) and returns this to the caller."""


_STOPPED = threading.Event()  # set once a requested stop has completed


def _on_stop_signal(signum: int, _frame: object) -> None:
    name = signal.Signals(signum).name
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal: see _watchdog
        signal.signal(sig, signal.SIG_IGN)
    _STOPPED.clear()
    threading.Thread(target=_watchdog, args=(name,), daemon=True).start()
    raise StopRequested(name)


def _watchdog(name: str) -> None:
    """Workers stuck (a delivery that cannot complete): exit anyway after the grace time."""
    if _STOPPED.wait(STOP_GRACE_S):
        return
    log.error("workers did not stop in time; exiting", extra={
        "signal": name, "grace_s": STOP_GRACE_S})
    logging.shutdown()
    os._exit(1)


def _run_flow(flow: Dataflow, args: argparse.Namespace, addresses: list[str] | None,
              epoch_s: float, recovery: RecoveryConfig | None) -> None:
    """Run ``flow`` until it ends (or a signal raises :class:`StopRequested`).

    ``addresses`` is never None for Bytewax here: with it ``cli_main`` takes its
    cluster path even for one worker, where the main thread watches for signals while
    the workers run (its single-worker path turns a signal into a panic)."""
    cli_main(flow, workers_per_process=args.workers, process_id=args.process_id,
             addresses=addresses or [], epoch_interval=timedelta(seconds=epoch_s),
             recovery_config=recovery)


def run_kafka(args: argparse.Namespace, book: Rulebook, propensity: bytes | None = None) -> int:
    """Run until stopped (or, with ``--exit-at-end``, until the input is read).

    SIGINT and SIGTERM, at any point (the recovery check of a large store takes a
    while), stop it with one log line and 0. ``propensity`` warm-starts the model when
    there is no recovery snapshot yet."""
    handlers = {sig: signal.signal(sig, _on_stop_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run_kafka(args, book, propensity)
    except StopRequested as stop:
        _STOPPED.set()
        log.info("kafka flow stopped", extra={"signal": str(stop)})
        return 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _run_kafka(args: argparse.Namespace, book: Rulebook, propensity: bytes | None) -> int:
    try:
        config = config_from_args(args)
    except KafkaConfigError as exc:
        return _fail(exc)
    if (args.process_id is None) != (args.addresses is None):
        return _fail("give -i/--process-id and -a/--addresses together (or neither)")
    addresses = args.addresses.split(";") if args.addresses else None
    if addresses is not None and not 0 <= args.process_id < len(addresses):
        return _fail(f"--process-id {args.process_id} is not an index of the "
                     f"{len(addresses)} --addresses")
    topics = Topics(args.topic_prefix)
    try:
        missing = missing_topics(config, topics)
    except KafkaConfigError as exc:
        return _fail(exc)
    except KafkaUnreachableError as exc:
        return _fail(f"{exc}; check --bootstrap (start a local broker with "
                     f"`forewarn broker start`)")
    if missing:
        return _fail(f"topics missing on {config['bootstrap.servers']}: {', '.join(missing)}; "
                     f"create them with `forewarn topics create --bootstrap "
                     f"{config['bootstrap.servers']}`")
    feeds = feed_topics(args)
    if feeds:
        absent = [t for t in feeds if t not in check_reachable(config).topics]
        if absent:
            return _fail(f"alarm feed topic(s) {', '.join(absent)} not found on "
                         f"{config['bootstrap.servers']}; point --ves-topic / --tmf642-topic "
                         "at the topic your VES collector or TMF642 hub publishes to "
                         "(docs/adapters.md)")
        if book.adapters is None:
            return _fail(f"--ves-topic / --tmf642-topic: the rulebook {book.source} has no "
                         "adapters section to map their events; add one (docs/adapters.md)")
    counts = partition_counts(config, topics.inputs)
    problem = copartition_problem(counts)
    if problem:
        return _fail(f"{problem} (on {config['bootstrap.servers']})")
    shards = max(counts.values(), default=1)  # (all equal: checked above)
    recovery = None
    per_subscriber = False
    total = args.workers * (len(addresses) if addresses else 1)
    if args.recovery:
        parts = args.recovery_partitions or max(8, total)
        try:
            per_subscriber = Path(args.recovery).is_dir() and care_keyed_per_subscriber(
                Path(args.recovery))
            if per_subscriber and addresses:
                # each process sees its share only: one with no such key would take
                # buckets, and its subscribers' state would be under keys none reads
                return _fail(
                    f"recovery directory {args.recovery} keeps care state under a key per "
                    f"subscriber (a store of an earlier Forewarn), which this version "
                    f"resumes only with one process holding every partition (without "
                    f"-i/-a). Resume it so, or move it aside (mv {args.recovery} "
                    f"{args.recovery}.old) on every process and start anew: the flow "
                    f"then reads its input topics from the beginning and the sinks skip "
                    f"what was already delivered (action-id dedupe).")
            if per_subscriber:
                log.info("recovery store keeps care per subscriber: resumed so", extra={
                    "dir": str(args.recovery)})
            cfg = flow_config(book, durable=True, lateness_s=args.lateness,
                              propensity=propensity,
                              action_format=getattr(args, "action_format", "contract"),
                              shards=shards, care_per_subscriber=per_subscriber)
            prepare_recovery(Path(args.recovery), parts, complete=addresses is None,
                             resume=partial(check_resume, cfg), inputs=input_parts(shards))
        except RecoveryStoreError as exc:
            return _fail(exc)
        except OSError as exc:
            return _fail(f"cannot prepare recovery directory {args.recovery}: {exc}")
        recovery = RecoveryConfig(Path(args.recovery), timedelta(0))
        keep_large_buffers_mapped()  # (each epoch's snapshot buffers go back when freed)
    flow = build_kafka_flow(config, book, topics=topics, durable=recovery is not None,
                            lateness_s=args.lateness, exit_at_end=args.exit_at_end,
                            dedupe_tail=args.dedupe_tail, from_end=args.from_end,
                            propensity=propensity,
                            action_format=getattr(args, "action_format", "contract"),
                            feeds=feeds, shards=shards, workers=total,
                            care_per_subscriber=recovery is not None and per_subscriber)
    log.info("kafka flow starting", extra={
        "bootstrap": config["bootstrap.servers"], "workers": args.workers,
        "process_id": args.process_id, "recovery": args.recovery,
        "snapshot_interval_s": args.snapshot_interval, "lateness_s": args.lateness,
        "shards": shards})
    # An epoch is also how long a site's verdicts wait before release (forewarn.dataflows.flow
    # SiteLogic): short without recovery; with it, the snapshot interval (a trade-off).
    epoch_s = args.snapshot_interval if recovery is not None else min(
        args.snapshot_interval, FAST_EPOCH_S)
    _run_flow(flow, args, addresses, epoch_s, recovery)
    return 0
