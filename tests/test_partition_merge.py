"""The Kafka source's event-time merge without a broker
(:class:`forewarn.connectors.partition_merge.PartitionMerge`): the merge is told each
partition's messages, its end and its high watermark, and hands on merged batches. The
transport around it (:mod:`forewarn.connectors.kafka_source`) is tested on a real
broker by ``tests/test_kafka_*.py``.
"""

from __future__ import annotations

import ast
import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.codec import Origin
from forewarn.connectors import partition_merge
from forewarn.connectors.files import LEAP_CONFIRM, LEAP_S, merge_by_time
from forewarn.connectors.partition_merge import IDLE_S, MAX_AHEAD_S, PartitionMerge
from forewarn.dataflows.messages import Decoded
from forewarn.dataflows.shards import ShardSource
from forewarn.model import Complaint, DeadLetter, Kpi, Location
from forewarn.simulator import ScenarioConfig, simulate

T0 = 1795428000.0  # 2026-11-23T10:00:00Z


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def loc(at: float, sub: str = "U1") -> bytes:
    return orjson.dumps({"type": "location", "subscriber_id": sub, "cell_id": "C1",
                         "event_time": iso(at)})


def kpi(start: float, period_s: int = 900) -> bytes:
    return orjson.dumps({"type": "kpi", "cell_id": "C1", "period_start": iso(start),
                         "period_s": period_s, "call_attempts": 3, "dropped_calls": 0})


CELL = b'{"type":"cell","cell_id":"C1","site_id":"S1"}'
BAD = b"{oops"


def where(item) -> tuple[str, int, int]:
    """An item's ``(topic, partition, offset)``: a record's source, a dead letter's
    origin."""
    if type(item) is DeadLetter:
        assert isinstance(item.source, Origin)
        return (str(item.source), item.source.part, item.source.offset)
    return item[0]


def drain(merge: PartitionMerge) -> list:
    """Every item the merge can hand on now, batch after batch."""
    out: list = []
    while batch := merge.next_batch():
        [decoded] = batch
        out += decoded.items
    return out


def new_merge(topics: dict[str, list[list[bytes]]], **kw) -> PartitionMerge:
    merge = PartitionMerge(**kw)
    for rank, (topic, partitions) in enumerate(topics.items()):
        for p in range(len(partitions)):
            merge.add(topic, p, rank)
    return merge


def feed_at_random(merge: PartitionMerge, topics: dict[str, list[list[bytes]]],
                   rng: random.Random, start: dict[str, int] | None = None) -> list:
    """Every message to the merge in runs of 1-7 of a partition drawn at random, each
    partition told its end (by its end event or by its high watermark) at a random
    moment after its last message; returns what the merge handed on meanwhile and at the
    end."""
    start = start or {}
    nxt = {(t, p): start.get(f"{t}/{p}", 0) for t, ps in topics.items() for p in range(len(ps))}
    left = dict(nxt)
    out: list = []
    ended: set = set()
    while len(ended) < len(nxt):
        live = [tp for tp in nxt if nxt[tp] < len(topics[tp[0]][tp[1]])]
        done = [tp for tp in nxt if tp not in live and tp not in ended]
        if done and (not live or rng.random() < 0.2):
            tp = rng.choice(done)
            # its high watermark shows it at its end once all it gave went out
            if rng.random() < 0.5 or not merge.high_water(*tp, len(topics[tp[0]][tp[1]])):
                merge.ended(*tp)
            ended.add(tp)
        elif live:
            tp = rng.choice(live)
            values = topics[tp[0]][tp[1]]
            n = rng.randint(1, 7)
            merge.take(*tp, [(o, values[o]) for o in range(nxt[tp], min(nxt[tp] + n,
                                                                          len(values)))])
            nxt[tp] = min(nxt[tp] + n, len(values))
        out += drain(merge)
    out += drain(merge)
    assert all(nxt[tp] >= left[tp] for tp in nxt)
    return out


def expected_order(topics: dict[str, list[list[bytes]]]) -> list[tuple[str, int, int]]:
    """In-order timed input: ``(stream time, topic rank, partition, offset)`` order."""
    keyed = []
    for rank, (topic, partitions) in enumerate(topics.items()):
        for p, values in enumerate(partitions):
            for o, v in enumerate(values):
                at = orjson.loads(v)["event_time"]
                keyed.append(((at, rank, p, o), (topic, p, o)))
    return [w for _, w in sorted(keyed)]


# ---- order -------------------------------------------------------------------------------

IN_ORDER = {
    "oss.alarms": [[loc(T0 + 5, "A"), loc(T0 + 20, "A")]],
    "oss.locations": [[loc(T0), loc(T0 + 5), loc(T0 + 10), loc(T0 + 30)],
                      [loc(T0 + 5), loc(T0 + 5), loc(T0 + 25)]],
    "oss.calls": [[loc(T0 + 10, "K"), loc(T0 + 31, "K")], []],
}


@pytest.mark.parametrize("seed", range(6))
def test_partitions_and_topics_merge_by_time_then_rank_partition_offset(seed) -> None:
    """Ties go by topic rank, then partition, then offset, however the runs interleave."""
    merge = new_merge(IN_ORDER, batch=3)
    got = [where(i) for i in feed_at_random(merge, IN_ORDER, random.Random(seed))]
    assert got == expected_order(IN_ORDER)
    assert got[:4] == [("oss.locations", 0, 0), ("oss.alarms", 0, 0),
                       ("oss.locations", 0, 1), ("oss.locations", 1, 0)]


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.lists(st.lists(st.integers(0, 50), max_size=6).map(sorted),
                         min_size=1, max_size=3), min_size=1, max_size=3),
       st.integers(0, 10**6), st.integers(1, 9))
def test_any_interleaving_gives_one_order(times, seed, batch) -> None:
    topics = {f"t{i}": [[loc(T0 + s) for s in part] for part in parts]
              for i, parts in enumerate(times)}
    merge = new_merge(topics, batch=batch)
    got = [where(i) for i in feed_at_random(merge, topics, random.Random(seed))]
    assert got == expected_order(topics)


def test_a_partition_not_at_its_end_holds_the_merge() -> None:
    """Nothing goes out before every partition not at its end has shown a message that
    sorts after it; an empty one holds everything until its end event or a high
    watermark shows it drained (not an unknown one, nor one above what it gave)."""
    merge = new_merge({"a": [[]], "b": [[]]}, batch=10)
    merge.take("a", 0, [(0, loc(T0)), (1, loc(T0 + 60))])
    assert merge.next_batch() == [] and merge.pending and merge.buffered == 2
    assert [p.tp_id for p in merge.waiting()] == ["b/0"]
    assert merge.high_water("b", 0, -1) is False  # unknown
    assert merge.high_water("b", 0, 1) is False  # one message not yet read
    merge.take("b", 0, [(0, loc(T0 + 30))])
    assert [where(i) for i in drain(merge)] == [("a", 0, 0), ("b", 0, 0)]
    assert [p.tp_id for p in merge.waiting()] == ["b/0"]  # empty again, holds at 10:00:30
    assert merge.high_water("b", 0, 1) is True  # read up to its watermark: at its end
    assert merge.waiting() == []
    # a's own next messages come after its last one: nothing holds it now
    assert [where(i) for i in drain(merge)] == [("a", 0, 1)]
    assert not merge.pending and merge.buffered == 0


def test_a_partition_at_its_end_is_woken_by_a_message() -> None:
    merge = new_merge({"a": [[]], "b": [[]]}, batch=10)
    merge.ended("a", 0)
    merge.ended("b", 0)
    merge.take("b", 0, [(0, loc(T0 + 30))])  # live: as it comes
    assert [where(i) for i in drain(merge)] == [("b", 0, 0)]
    merge.take("a", 0, [(0, loc(T0 + 40))])
    merge.take("b", 0, [(1, loc(T0 + 35))])  # b may give more before 10:00:40
    assert [where(i) for i in drain(merge)] == [("b", 0, 1)]
    merge.ended("b", 0)
    assert [where(i) for i in drain(merge)] == [("a", 0, 0)]


def test_batches_are_at_most_batch_messages_with_their_tally() -> None:
    values = [loc(T0 + i) for i in range(5)] + [BAD] + [
        orjson.dumps({"type": "complaint", "subscriber_id": "U1", "complaint_id": "Q1",
                      "event_time": iso(T0 + 9), "category": "no_service"})]
    merge = new_merge({"a": [values]}, batch=4)
    merge.take("a", 0, list(enumerate(values)))
    merge.ended("a", 0)
    first, second = merge.next_batch(), merge.next_batch()
    assert merge.next_batch() == []
    [one], [two] = first, second
    assert [where(i) for i in one.items] == [("a", 0, o) for o in range(4)]
    assert [where(i) for i in two.items] == [("a", 0, o) for o in range(4, 7)]
    # the tally of what was decoded goes with the first batch out after it
    assert one.accepted == {Location: 5, Complaint: 1} and one.latest == T0 + 9
    assert [d.raw for d in one.dead] == [BAD] and len(one.complaints) == 1
    assert two.accepted == {} and two.dead == [] and two.latest is None
    assert merge.progress == T0 + 9


# ---- places kept -------------------------------------------------------------------------


def merged(a: list, b: list, first: str = "a") -> list:
    """Partition 0 of topics ``a`` and ``b``, each given whole (``first`` first), then
    both ended: everything the merge hands on."""
    merge = new_merge({"a": [a], "b": [b]}, batch=100)
    for topic in (first, "b" if first == "a" else "a"):
        merge.take(topic, 0, list(enumerate(a if topic == "a" else b)))
    merge.ended("a", 0)
    merge.ended("b", 0)
    return drain(merge)

def test_late_records_dead_letters_and_timeless_records_keep_their_place() -> None:
    """A partition's merge time is its running maximum: a record behind it, a dead letter
    and a cell all go right after the message before them in their partition. A record's
    own stream time goes with it."""
    a = [loc(T0 + 10), loc(T0 + 1), BAD, CELL, loc(T0 + 40)]
    b = [loc(T0 + 5), loc(T0 + 20), loc(T0 + 30)]
    items = merged(a, b)
    assert [where(i) for i in items] == [("b", 0, 0), ("a", 0, 0), ("a", 0, 1), ("a", 0, 2),
                                         ("a", 0, 3), ("b", 0, 1), ("b", 0, 2), ("a", 0, 4)]
    late, dead, cell = items[2], items[3], items[4]
    assert late[3] == T0 + 1 and late[1] == a[1]
    assert type(dead) is DeadLetter and dead.code == "not_json" and dead.raw == BAD
    assert cell[3] is None and cell[2].kind == "cell"


def test_timeless_and_dead_letters_before_any_time_go_first() -> None:
    a = [CELL, BAD, loc(T0 + 10)]
    b = [loc(T0)]
    assert [where(i) for i in merged(a, b, first="b")] == [("a", 0, 0), ("a", 0, 1), ("b", 0, 0),
                                                ("a", 0, 2)]


def test_a_kpi_period_merges_at_its_end() -> None:
    a = [kpi(T0), loc(T0 + 1000)]  # 10:00-10:15
    b = [loc(T0 + 600), loc(T0 + 900), loc(T0 + 901)]
    items = merged(a, b)
    assert [where(i) for i in items] == [("b", 0, 0), ("a", 0, 0), ("b", 0, 1), ("b", 0, 2),
                                         ("a", 0, 1)]
    assert type(items[1][2]) is Kpi and items[1][3] == T0 + 900


def test_a_time_far_ahead_of_the_merge_keeps_its_place() -> None:
    """More than MAX_AHEAD_S past the first time taken (before any progress) or the
    merge's progress: it cannot hold its partition back."""
    far = loc(T0 + MAX_AHEAD_S + 1)
    edge = loc(T0 + MAX_AHEAD_S)
    a = [loc(T0), far, loc(T0 + 20)]
    b = [loc(T0 + 10), loc(T0 + 30)]
    merge = new_merge({"a": [a], "b": [b]}, batch=100)
    merge.take("a", 0, list(enumerate(a)))
    merge.take("b", 0, list(enumerate(b)))
    merge.ended("a", 0)
    merge.ended("b", 0)
    assert [where(i) for i in drain(merge)] == [("a", 0, 0), ("a", 0, 1), ("b", 0, 0),
                                                ("a", 0, 2), ("b", 0, 1)]
    assert merge.progress == T0 + 30
    # from the progress on: exactly MAX_AHEAD_S ahead of it is not too far
    merge.take("b", 0, [(2, loc(T0 + 30 + MAX_AHEAD_S + 1)), (3, loc(T0 + 40))])
    merge.take("a", 0, [(3, loc(T0 + 35)), (4, edge)])
    merge.ended("a", 0)
    merge.ended("b", 0)
    assert [where(i) for i in drain(merge)] == [("b", 0, 2), ("a", 0, 3), ("b", 0, 3),
                                                ("a", 0, 4)]


def leap_input(after: list[float]) -> tuple[list[bytes], list[bytes]]:
    """Partition a: 10:00, then a record LEAP_S + 60 s ahead, then ``after``; b: every
    10 s from 10:00:05."""
    a = [loc(T0), loc(T0 + LEAP_S + 60), *(loc(T0 + s) for s in after)]
    b = [loc(T0 + 5 + 10 * i) for i in range(12)]
    return a, b


def run_both(a: list[bytes], b: list[bytes]) -> list:
    merge = new_merge({"a": [a], "b": [b]}, batch=100)
    merge.take("a", 0, list(enumerate(a)))
    merge.take("b", 0, list(enumerate(b)))
    merge.ended("a", 0)
    merge.ended("b", 0)
    return [where(i) for i in drain(merge)]


def test_a_leap_undone_by_a_record_falling_back_keeps_its_place() -> None:
    """A bad clock: the leap and the records in line with it after it go back to the
    time before it, and the partition goes on from there."""
    a, b = leap_input([LEAP_S + 70, 50])
    got = run_both(a, b)
    assert got[:3] == [("a", 0, 0), ("a", 0, 1), ("a", 0, 2)]  # at 10:00, before b's 10:05
    assert got.index(("a", 0, 3)) == got.index(("b", 0, 4)) + 1  # 10:00:50, after b's 10:00:45
    assert got == [x for _, x in sorted(
        [((T0, 0, 0), ("a", 0, 0)), ((T0, 0, 1), ("a", 0, 1)), ((T0, 0, 2), ("a", 0, 2)),
         ((T0 + 50, 0, 3), ("a", 0, 3)),
         *(((T0 + 5 + 10 * i, 1, i), ("b", 0, i)) for i in range(12))])]


def test_a_leap_confirmed_by_later_records_keeps_its_time() -> None:
    a, b = leap_input([LEAP_S + 60 + i for i in range(1, LEAP_CONFIRM + 1)])
    got = run_both(a, b)
    assert got == [("a", 0, 0), *(("b", 0, i) for i in range(12)),
                   *(("a", 0, i) for i in range(1, LEAP_CONFIRM + 2))]


def test_an_unconfirmed_leap_holds_the_merge_at_the_time_before_it() -> None:
    a, b = leap_input([LEAP_S + 61])
    merge = new_merge({"a": [a], "b": [b]}, batch=100)
    merge.take("a", 0, list(enumerate(a)))
    merge.take("b", 0, list(enumerate(b)))
    merge.ended("b", 0)  # a is not at its end: its leap may yet be undone
    assert [where(i) for i in drain(merge)] == [("a", 0, 0)]
    merge.take("a", 0, [(3, loc(T0 + 7))])  # falls back: the leap was bad clocks
    assert [where(i) for i in drain(merge)] == [("a", 0, 1), ("a", 0, 2), ("b", 0, 0),
                                                ("a", 0, 3)]


def test_the_file_merge_and_this_merge_agree_on_leaps() -> None:
    for after in ([LEAP_S + 70, 50], [LEAP_S + 60 + i for i in range(1, LEAP_CONFIRM + 1)],
                  [LEAP_S + 61, 40, 41]):
        a, b = leap_input(after)
        files = [line for _, line in merge_by_time([("a", a), ("b", b)])]
        got = [(a if t == "a" else b)[o] for t, _, o in run_both(a, b)]
        assert got == files


# ---- snapshots ---------------------------------------------------------------------------

def test_a_resume_state_is_topic_slash_partition_to_offset() -> None:
    """The resume state's shape, as recovery stores keep it: each named partition resumes
    there, any other from the starting offset."""
    merge = new_merge({"oss.topology": [[]], "oss.locations": [[], []]},
                      resume={"oss.topology/0": 3, "oss.locations/1": 17, "gone/0": 4},
                      starting_offset=-2)
    assert {p.tp_id: p.next_offset for p in merge.parts.values()} == {
        "oss.topology/0": 3, "oss.locations/0": -2, "oss.locations/1": 17}
    assert merge.snapshot() == {"oss.topology/0": 3, "oss.locations/0": -2,
                                "oss.locations/1": 17}


def test_the_snapshot_counts_merged_messages_not_yet_handed_on() -> None:
    a = [loc(T0 + i) for i in range(6)]
    merge = new_merge({"a": [a, []]}, batch=2, resume={"a/0": 0, "a/1": 0})
    merge.take("a", 0, list(enumerate(a)))
    merge.ended("a", 0)
    merge.ended("a", 1)
    merge.next_batch()
    assert merge.snapshot() == {"a/0": 2, "a/1": 0}  # offsets 2-5 merged, waiting
    merge.next_batch()
    merge.next_batch()
    assert merge.snapshot() == {"a/0": 6, "a/1": 0}


RESUME_INPUT = {
    "oss.topology": [[CELL, CELL]],
    "oss.alarms": [[loc(T0 + 7, "A"), BAD, loc(T0 + 33, "A")]],
    "oss.kpis": [[kpi(T0 - 900), kpi(T0)]],
    "oss.locations": [[loc(T0 + s) for s in (0, 3, 3, 10, 21, 40, 41)],
                      [loc(T0 + s, "U2") for s in (2, 3, 9, 30, 31)]],
}


def uninterrupted(topics, batch: int) -> list:
    merge = new_merge(topics, batch=batch)
    for (topic, p) in merge.parts:
        merge.take(topic, p, list(enumerate(topics[topic][p])))
        merge.ended(topic, p)
    return [where(i) for i in drain(merge)]


@pytest.mark.parametrize("cut", range(1, 7))
def test_a_resume_from_a_snapshot_mid_stream_continues_the_order(cut) -> None:
    """Stopped after ``cut`` batches of 3, resumed from its snapshot: the merge hands on
    what was not handed on yet, in the order of a run that was not stopped (KPIs at their
    period's end, the dead letter in its place)."""
    whole = uninterrupted(RESUME_INPUT, 3)
    assert len(whole) == 19 and whole[0] == ("oss.topology", 0, 0)
    first = new_merge(RESUME_INPUT, batch=3)
    for (topic, p) in first.parts:
        first.take(topic, p, list(enumerate(RESUME_INPUT[topic][p])))
        first.ended(topic, p)
    before = []
    for _ in range(cut):
        [batch] = first.next_batch()
        before += [where(i) for i in batch.items]
    state = first.snapshot()
    assert all(isinstance(k, str) and "/" in k and isinstance(v, int) for k, v in state.items())
    second = new_merge(RESUME_INPUT, batch=3, resume=state)
    after = feed_at_random(second, RESUME_INPUT, random.Random(cut), start=state)
    assert before + [where(i) for i in after] == whole


@settings(max_examples=30, deadline=None, database=None)
@given(st.integers(0, 10**6), st.integers(1, 5), st.integers(0, 8))
def test_a_resume_loses_and_repeats_nothing(seed, batch, stop) -> None:
    """Whatever the interleaving and wherever it stops, the two runs hand on every
    message once, each partition in offset order."""
    rng = random.Random(seed)
    first = new_merge(RESUME_INPUT, batch=batch)
    before: list = []
    for (topic, p) in first.parts:
        first.take(topic, p, list(enumerate(RESUME_INPUT[topic][p])))
    for _ in range(stop):
        before += [where(i) for b in first.next_batch() for i in b.items]
        tp = rng.choice(list(first.parts))
        first.ended(*tp)
    state = first.snapshot()
    second = new_merge(RESUME_INPUT, batch=batch, resume=state)
    after = [where(i) for i in feed_at_random(second, RESUME_INPUT, rng, start=state)]
    everything = before + after
    assert sorted(everything) == sorted(
        (t, p, o) for t, ps in RESUME_INPUT.items() for p, vs in enumerate(ps)
        for o in range(len(vs)))
    for tp in first.parts:
        mine = [w[2] for w in everything if w[:2] == tp]
        assert mine == sorted(mine)


# ---- flow control, idleness, shards ------------------------------------------------------

def test_a_full_buffer_asks_to_pause_its_partition_and_resume_below_half() -> None:
    merge = new_merge({"a": [[], []]}, batch=2, buffer_limit=4)
    merge.take("a", 0, [(o, loc(T0 + o)) for o in range(3)])
    assert merge.flow() == []
    merge.take("a", 0, [(3, loc(T0 + 3))])
    merge.take("a", 0, [(4, loc(T0 + 4))])
    assert merge.flow() == [("a", 0, True)] and merge.flow() == []
    assert merge.next_batch() == []  # a/1 holds it
    merge.take("a", 1, [(0, loc(T0 + 3))])
    assert len(merge.next_batch()[0].items) == 2  # a/0's 0-3 and a/1's 0 merged: one left
    assert merge.flow() == [("a", 0, False)]
    assert merge.parts[("a", 0)].paused is False


def test_caught_up_the_input_ends_or_a_shard_says_it_is_idle() -> None:
    ends = new_merge({"a": [[loc(T0)]]}, exit_at_end=True)
    ends.take("a", 0, [(0, loc(T0))])
    out = ends.next_batch()
    assert ends.hand_on(out, 0.0) == out  # not at its end yet
    ends.ended("a", 0)
    assert ends.hand_on(ends.next_batch(), 1.0) is None

    shard = new_merge({"a": [[loc(T0)]]}, shard=2)
    assert shard.hand_on([], 0.0) == []  # not known to be at its end
    shard.ended("a", 0)
    assert shard.hand_on([], 10.0) == []  # caught up at 10 s (wall clock)
    assert shard.hand_on([], 10.0 + IDLE_S - 0.01) == []
    assert shard.hand_on([], 10.0 + IDLE_S) == [Decoded(shard=2, idle=True)]
    assert shard.hand_on([], 20.0) == []  # said once
    shard.take("a", 0, [(0, loc(T0))])
    shard.ended("a", 0)
    out = shard.next_batch()
    assert out[0].shard == 2 and shard.hand_on(out, 21.0) == out  # news
    assert shard.hand_on([], 22.0) == []  # caught up again at 22 s
    assert shard.hand_on([], 22.0 + IDLE_S) == [Decoded(shard=2, idle=True)]

    single = new_merge({"a": [[]]})  # one reader: never idle, never ends
    single.ended("a", 0)
    assert single.hand_on([], 0.0) == [] and single.hand_on([], 100.0) == []


def test_a_context_partition_hands_its_records_on_as_context() -> None:
    """Shards other than 0 read the unkeyed topics for context only: their records are
    handed on with the shard source, dead letters and counts are shard 0's."""
    context = ShardSource("oss.alarms", 1, True)
    merge = PartitionMerge(batch=10, shard=1)
    merge.add("oss.alarms", 0, 0, context=context)
    merge.take("oss.alarms", 0, [(0, loc(T0)), (1, BAD), (2, loc(T0 + 1))])
    merge.ended("oss.alarms", 0)
    [out] = merge.next_batch()
    assert [i[0] for i in out.items] == [context, context]  # the dead letter: nothing
    assert out.accepted == {} and out.dead == [] and out.latest is None
    assert merge.snapshot() == {"oss.alarms/0": 3}


def test_a_topic_carrying_one_record_type_refuses_others() -> None:
    merge = PartitionMerge(batch=10)
    merge.add("oss.kpis", 0, 0, expects=Kpi)
    merge.take("oss.kpis", 0, [(0, kpi(T0)), (1, loc(T0 + 950)), (2, kpi(T0 + 900))])
    merge.ended("oss.kpis", 0)
    items = drain(merge)
    assert [type(i) is DeadLetter for i in items] == [False, True, False]
    assert items[1].code == "wrong_topic"


def test_a_ves_batch_is_one_entry_at_its_latest_event() -> None:
    from tests.test_adapters import book, ves_event

    events = [ves_event("S1-C1", "lossOfSignal", "MAJOR", T0 + 50),
              ves_event("S1-C2", "lossOfSignal", "MAJOR", T0 + 20)]
    bad = ves_event("S1-C3", "lossOfSignal", "MAJOR", T0)
    del bad["commonEventHeader"]["lastEpochMicrosec"]
    batch = orjson.dumps({"eventList": [events[0], bad, events[1]]})
    merge = PartitionMerge(batch=10, adapters=book().adapters)
    merge.add("ves", 0, 0)
    merge.add("b", 0, 1)
    merge.take("ves", 0, [(0, batch), (1, orjson.dumps({"event": ves_event(
        "S1-C1", "lossOfSignal", "NORMAL", T0 + 60)}))])
    merge.take("b", 0, [(0, loc(T0 + 40)), (1, loc(T0 + 55))])
    merge.ended("ves", 0)
    merge.ended("b", 0)
    [out] = merge.next_batch()
    assert [where(i) for i in out.items] == [("b", 0, 0), ("ves", 0, 0), ("ves", 0, 0),
                                             ("ves", 0, 0), ("b", 0, 1), ("ves", 0, 1)]
    assert type(out.items[2]) is DeadLetter and out.items[2].code == "missing_field"
    assert [i[3] for i in out.items if type(i) is not DeadLetter] == [
        T0 + 40, T0 + 50, T0 + 20, T0 + 55, T0 + 60]
    assert len(out.dead) == 1 and out.latest == T0 + 60


# ---- one order for files and Kafka --------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_file_mode_and_the_kafka_merge_order_a_mixed_input_identically(seed) -> None:
    """The simulator's input (topology, profiles, alarms, KPIs, calls, locations,
    complaints, its bad lines) with KPI periods out of place and refused lines showing a
    time, one file per topic and one partition per topic: the file merge and this merge
    give the same order, line for line, however the runs interleave."""
    from tests.test_decode_paths import by_topic

    lines = simulate(ScenarioConfig(seed=11, sites=8, hours=2.0, subscribers_per_cell=4)).lines
    kpis = [line for line in lines if line.startswith(b'{"type":"kpi"')]
    first = orjson.loads(kpis[0])
    loc_at = orjson.loads(next(line for line in lines[300:]
                               if line.startswith(b'{"type":"location"')))["event_time"]
    lines = [*lines[:300], orjson.dumps({**first, "period_start": "2026-11-23T23:00:00Z"}),
             orjson.dumps({**first, "period_s": -1}),
             orjson.dumps({"type": "location", "event_time": loc_at}),
             b'{"type":"location","event_time":"2026-11-25T00:00:00Z"}', BAD,
             *lines[300:]]
    topics = by_topic(lines)
    assert len(topics["oss.kpis"]) > 10
    files = [line for _, line in merge_by_time(list(topics.items()))]
    merge = new_merge({t: [v] for t, v in topics.items()}, batch=64)
    items = feed_at_random(merge, {t: [v] for t, v in topics.items()}, random.Random(seed))
    kafka = [topics[t][o] for t, _, o in map(where, items)]
    assert len(kafka) == len(files) == len(lines)
    assert kafka == files
    # KPIs are placed at their period's end in both, not where they stand in their topic
    got_kpis = [i for i in items if type(i) is not DeadLetter and type(i[2]) is Kpi]
    assert len(got_kpis) >= len(kpis)
    assert any(i[3] < max(j[3] for j in got_kpis[:n]) for n, i in enumerate(got_kpis) if n)


def test_the_merge_talks_to_no_broker() -> None:
    """Pure: it imports no Kafka client (the transport does)."""
    tree = ast.parse(Path(partition_merge.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(n.startswith("confluent_kafka") for n in names)
