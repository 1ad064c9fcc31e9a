"""Helpers for the Kafka flow tests: flow subprocesses, scenarios, reading outputs."""

from __future__ import annotations

import heapq
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import orjson
from confluent_kafka import KafkaError, Producer

from forewarn.connectors.kafka_publish import Topics
from forewarn.connectors.kafka_source import stream_time
from forewarn.connectors.topics import create_topics
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import run_collect
from forewarn.simulator import ScenarioConfig, simulate
from tests.builders import Scenario, comparable
from tests.kafka_helpers import consume_all, unique_topic

#: Small but complete: site and cell outages, a blip, a flap, maintenance, bad lines.
SCENARIO = ScenarioConfig(seed=3, sites=10, hours=3.0, subscribers_per_cell=8)


@dataclass(frozen=True)
class Expected:
    lines: list[bytes]
    actions: list[dict]
    incidents: list[bytes]
    dead_letters: list[bytes]
    care_context: list[bytes] = field(default_factory=list)
    care_status: list[bytes] = field(default_factory=list)

    @property
    def action_ids(self) -> set[str]:
        return {a["action_id"] for a in self.actions}

    @property
    def comparable_actions(self) -> list[bytes]:
        """Whole actions, sorted, model evidence aside (:func:`tests.builders.comparable`)."""
        return sorted(comparable(a) for a in self.actions)


def whole_record_diff(got: list[bytes], want: list[bytes], n: int = 3) -> str:
    """What differs between two sorted lists of records, for an assertion message."""
    extra = sorted(set(got) - set(want))
    missing = sorted(set(want) - set(got))
    return (f"{len(got)} records, {len(want)} expected; {len(missing)} missing, e.g. "
            f"{missing[:n]}; {len(extra)} unexpected, e.g. {extra[:n]}")


@lru_cache(maxsize=4)
def expected(cfg: ScenarioConfig = SCENARIO, partitions: int = 1) -> Expected:
    """The scenario's lines and what the in-memory flow makes of them, read as the input
    shards a Kafka run on ``partitions`` partitions reads."""
    lines = simulate(cfg).lines
    got = run_collect(lines, load_rulebook(), partitions=partitions, partitioner="kafka")
    return Expected(lines, [orjson.loads(a) for a in got.actions], got.incidents,
                    got.dead_letters, got.care_context, got.care_status)


#: Six hours from 09:30 with every default rule in it: the simulator's outages, flapping,
#: maintenance and silent failures, plus :func:`every_rule_block` (10:00-14:30).
EVERY_RULE = ScenarioConfig(seed=3, sites=10, hours=6.0, subscribers_per_cell=8,
                            start="2026-11-23T09:30:00Z")


def every_rule_block() -> list[bytes]:
    """Hand-made records on two sites of their own that the default rulebook answers with
    every kind of action: a 4 h outage (compensation, one deferred by quiet hours, and a
    care callback), dropped-call apologies (one deferred, one held back by the cooldown),
    an outage in a maintenance window (nothing) and a flapping cell (one notice)."""
    s = Scenario().site("R1", region="west").site("R2", region="east")
    s.subscriber("RC").subscriber("RV", segment="vip")
    s.subscriber("RT", tz="Asia/Tokyo")  # 14:10 UTC is 23:10 there
    s.subscriber("RA", tz="America/New_York")  # 10:20 UTC is 05:20 there
    s.subscriber("RM").subscriber("RF")
    for sid in ("RC", "RV", "RT"):
        s.seen(sid, "R1-C1", 1)
    s.maintenance("RW1", 5, 120, cells=["R2-C2"]).seen("RM", "R2-C2", 6)
    s.alarm("RA1", 10, cell="R1-C1")  # 10:10 - 14:30: past 4 h
    s.call("RK1", "RA", "R2-C1", 20, dropped=True).call("RK2", "RA", "R2-C1", 25, dropped=True)
    s.alarm("RA2", 30, cell="R2-C2").clear("RA2", 50, cell="R2-C2")  # planned work
    s.call("RK3", "RA", "R2-C1", 60, dropped=True).call("RK4", "RA", "R2-C1", 65, dropped=True)
    s.seen("RF", "R2-C3", 125)
    for n in range(4):  # four 3-minute outages in 20 minutes: flapping
        s.alarm(f"RF{n}", 130 + 5 * n, cell="R2-C3").clear(f"RF{n}", 133 + 5 * n, cell="R2-C3")
    s.clear("RA1", 270, cell="R1-C1")
    return s.lines


def _merged(*streams: list[bytes]) -> list[bytes]:
    """Streams merged by stream time (carried forward over timeless or unreadable lines)."""
    def keyed(i: int, lines: list[bytes]):
        last = float("-inf")
        for n, line in enumerate(lines):
            at = stream_time(line)
            if at is not None and at > last:
                last = at
            yield last, i, n, line

    return [line for *_, line in heapq.merge(*(keyed(i, x) for i, x in enumerate(streams)))]


@lru_cache(maxsize=2)
def expected_every_rule(partitions: int = 1) -> Expected:
    """:data:`EVERY_RULE` with :func:`every_rule_block` merged in, run in memory (as the
    input shards of a Kafka run on ``partitions`` partitions)."""
    lines = _merged(simulate(EVERY_RULE).lines, every_rule_block())
    got = run_collect(lines, load_rulebook(), partitions=partitions, partitioner="kafka")
    return Expected(lines, [orjson.loads(a) for a in got.actions], got.incidents,
                    got.dead_letters, got.care_context, got.care_status)


def fresh_topics(config: Mapping[str, str], partitions: int = 1,
                 topic_config: Mapping[str, str] | None = None) -> Topics:
    """A new set of contract topics behind a unique prefix (``topic_config``: extra
    topic-level configs, e.g. ``max.message.bytes``)."""
    topics = Topics(unique_topic("t") + ".")
    create_topics(config, partitions, prefix=topics.prefix, topic_config=topic_config)
    return topics


def forewarn_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "forewarn.cli", *args]


def flow_cmd(bootstrap: str, topics: Topics, *extra: str) -> list[str]:
    return forewarn_cmd("run", "--bootstrap", bootstrap, "--topic-prefix", topics.prefix,
                        "--metrics-port", "-1", "--log-level", "WARNING", *extra)


def start_flow(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def run_flow(cmd: list[str], log: Path, timeout: float = 90.0) -> None:
    """Run a flow with ``--exit-at-end`` to completion; fail with its log otherwise."""
    proc = start_flow(cmd, log)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"flow did not finish in {timeout:g} s:\n{tail(log)}") from None
    assert code == 0, f"flow exited {code}:\n{tail(log)}"


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def records(config: Mapping[str, str], topic: str, quiet: float = 0.5) -> list:
    return consume_all(config, topic, quiet=quiet, deadline=60)


def values(config: Mapping[str, str], topic: str) -> list[dict]:
    return [orjson.loads(r.value) for r in records(config, topic)]


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               interval: float = 0.2, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> object:
    """Poll ``condition`` until truthy; fail naming ``what`` after ``timeout`` s, or
    at once when the flow process ``proc`` has exited (with its ``log``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"flow exited {proc.returncode} while waiting for {what}:\n"
                                 + (tail(log) if log else ""))
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def produce(config: Mapping[str, str], items: Iterable[tuple[str, bytes | None, bytes | None]],
            settings: Mapping[str, str] | None = None) -> list[tuple[str, int, int]]:
    """Produce ``(topic, key, value)`` items in order; their (topic, partition, offset)."""
    producer = Producer({**config, "acks": "all", **(settings or {})})
    where: list[tuple[str, int, int]] = []
    errors: list[KafkaError] = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            where.append((msg.topic(), msg.partition(), msg.offset()))

    for topic, key, value in items:
        producer.produce(topic, value=value, key=key, on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors, errors
    return where
