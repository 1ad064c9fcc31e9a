"""Input shards (dataflows/shards.py, connectors/files.py) and a site's merge of them
(dataflows/merge.py): the same outputs whatever the shard count's layout, and for a
fixed shard count whatever the interleaving, batching and worker count."""

from __future__ import annotations

import random
import threading
import time
from collections import deque

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.connectors.files import shard_lines
from forewarn.dataflows import flow
from forewarn.dataflows.flow import FlowConfig, SiteLogic, _decode_batch
from forewarn.dataflows.merge import ShardMerge
from forewarn.dataflows.messages import Frontier, Near, ShardBatch, Stamped, Tick, Watch
from forewarn.dataflows.sequencer import Routes, Sequencer
from forewarn.dataflows.shards import ShardSource, is_context, owner, shard_of
from forewarn.model import Cell
from forewarn.rules.rulebook import load_rulebook
from forewarn.runner import run_collect
from forewarn.simulator import ScenarioConfig, simulate
from tests.builders import Scenario

INF = float("inf")


# -- which shard reads what --------------------------------------------------------------


def test_a_subscribers_records_go_to_one_shard_and_the_rest_to_every_shard():
    lines = [b'{"type":"cell","cell_id":"C1","site_id":"S1"}',
             b'{"type":"location","subscriber_id":"U4","cell_id":"C1",'
             b'"event_time":"2026-01-01T00:00:00Z"}',
             b'{"type": "complaint", "subscriber_id" : "U1", "complaint_id": "K1"}',
             b'not json']
    parts = [list(shard_lines((("f", x) for x in lines), s, 2)) for s in range(2)]
    own = {s: [line for src, line in part if not src.context] for s, part in enumerate(parts)}
    context = {s: [line for src, line in part if src.context] for s, part in enumerate(parts)}
    assert shard_of("U4", 2) == 1 and shard_of("U1", 2) == 0
    assert own[0] == [lines[0], lines[2], lines[3]]  # shard 0 owns what every shard reads
    assert own[1] == [lines[1]]
    assert context == {0: [], 1: [lines[0], lines[3]]}
    assert all(type(src) is ShardSource and src == "f" and src.shard == s
               for s, part in enumerate(parts) for src, _ in part)


def test_the_kafka_partitioner_gives_the_partition_a_producer_puts_each_record_on():
    """File mode with ``partitioner="kafka"`` reads as shard ``i`` what a Kafka run reads
    from partition ``i``: a keyed record's partition under the contract's producer
    partitioner (murmur2 of its key: ``subscriber_id``, a KPI's ``cell_id``), and every
    shard reads what is not keyed by one of those (topology, alarms, maintenance)."""
    from forewarn.connectors.topics import TOPIC_FOR_TYPE, key_for
    from forewarn.dataflows.shards import SHARD_KEYED, partition_for

    lines = simulate(ScenarioConfig(seed=5, sites=4, hours=1.0, subscribers_per_cell=4,
                                    bad_line_rate=0.0)).lines
    kinds = set()
    for line in lines:
        rec = orjson.loads(line)
        kinds.add(rec["type"])
        assert rec["type"] in TOPIC_FOR_TYPE
        for parts in (3, 7):
            want = (partition_for(key_for(rec), parts) if rec["type"] in SHARD_KEYED
                    else None)
            assert owner(line, parts, "kafka") == want, (line, parts)
    assert kinds | {"complaint"} >= SHARD_KEYED  # every keyed type was seen (complaints rare)


def test_a_subscriber_id_in_bytes_has_the_shard_of_its_text():
    assert [shard_of(b"U%d" % i, 1 << 32) for i in range(3)] == [
        shard_of(f"U{i}", 1 << 32) for i in range(3)]


def test_an_id_with_an_escape_is_read_as_json_would_read_it():
    line = b'{"type":"location","subscriber_id":"\\u00e9t\\u00e9"}'
    assert owner(line, 7) == shard_of("\u00e9t\u00e9", 7)
    assert owner(b'{"type":"location","subscriber_id": null}', 7) is None


@pytest.mark.parametrize("kind", [b"[]", b'["location"]', b'{"a":1}', b"17", b"null"])
def test_a_type_that_is_not_a_string_goes_to_every_shard(kind):
    line = b'{"type":%s,"subscriber_id":"U1","cell_id":"C1"}' % kind
    assert owner(line, 2) is None


def test_a_record_whose_type_is_a_list_is_a_dead_letter_with_two_shards():
    s = Scenario().site("S1")
    s.lines.append(b'{"type":["location"],"subscriber_id":"U1","cell_id":"S1-C1",'
                   b'"event_time":"2026-11-23T08:00:00Z"}')
    for i in range(3):
        s.seen(f"U{i}", "S1-C1", 1 + i)
    got = run_collect(s.lines, load_rulebook(), partitions=2)
    assert [orjson.loads(d)["code"] for d in got.dead_letters] == ["unknown_type"]


# -- a site's merge ------------------------------------------------------------------------


def _stream(rnd: random.Random, shard: int, n: int) -> list:
    """One shard's messages as a sequencer releases them: times that do not go back,
    with now and then a message with no time of its own or an older one."""
    t, out = 0.0, []
    for i in range(n):
        t += rnd.choice((0.0, 0.0, 1.0, 2.5))
        kind = rnd.random()
        if kind < 0.1:
            out.append(Watch(t))
        elif kind < 0.2:
            out.append(Near(f"U{shard}-{i}", "S2", t - 50.0, True, sent=t))  # heard long ago
        elif kind < 0.25:
            out.append(Tick(t))
        else:
            out.append((f"U{shard}-{i}", "C1", t, None))
    return out


def _cut(rnd: random.Random, msgs: list) -> list[list]:
    out, i = [], 0
    while i < len(msgs):
        n = rnd.randint(1, 6)
        out.append(msgs[i:i + n])
        i += n
    return out


def _batches(rnd: random.Random, shard: int, msgs: list) -> list[ShardBatch]:
    """Cut into batches, each with the shard's watermark after it."""
    out = []
    for part in _cut(rnd, msgs):
        last = part[-1]
        mark = last[2] if type(last) is tuple else (last.sent if type(last) is Near else last.at)
        out.append(ShardBatch(shard, mark, part))
    return out


def _interleave(rnd: random.Random, streams: list[list]) -> list:
    """The streams' items in a random interleaving, each stream's order kept."""
    streams = [list(s) for s in streams]
    out = []
    while any(streams):
        out.append(rnd.choice([s for s in streams if s]).pop(0))
    return out


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 4))
def test_the_merge_gives_one_order_whatever_the_interleaving_and_batches(seed, shards):
    rnd = random.Random(seed)
    streams = [_stream(rnd, s, rnd.randint(0, 25)) for s in range(shards)]
    runs = []
    for _ in range(3):
        merge = ShardMerge(shards)
        got: list = []
        arrivals = _interleave(rnd, [_batches(rnd, s, m) for s, m in enumerate(streams)])
        for batch in arrivals:
            got += merge.take(batch)
            if rnd.random() < 0.2:  # a frontier no shard has passed yet adds nothing wrong
                got += merge.frontier(min(merge.floor))
        got += merge.frontier(INF)
        assert merge.pending == 0
        runs.append(got)
    assert runs[0] == runs[1] == runs[2]
    assert sorted(map(repr, runs[0])) == sorted(repr(m) for s in streams for m in s)
    for msgs in streams:  # each shard's own order kept (its own objects: equal ones differ)
        mine = {id(m) for m in msgs}
        assert [m for m in runs[0] if id(m) in mine] == msgs


def test_a_message_waits_for_a_shard_that_may_still_send_an_earlier_one():
    merge = ShardMerge(2)
    assert merge.take(ShardBatch(1, 10.0, [("U1", "C1", 10.0, None)])) == []
    # shard 0 at 10 may still send more at 10: those go first (shard order at a tie)
    assert merge.take(ShardBatch(0, 10.0, [("U0", "C1", 10.0, None)])) == [
        ("U0", "C1", 10.0, None)]
    assert merge.frontier(10.5) == [("U1", "C1", 10.0, None)]


# -- a whole site, fed by real sequencers ---------------------------------------------------


def _site_inputs(lines: list[bytes], shards: int, rnd: random.Random) -> dict[str, list]:
    """Per site, each shard's batches as its sequencer sends them (pure stages)."""
    per_site: dict[str, list[list]] = {}
    book = load_rulebook()
    for s in range(shards):
        seq = Sequencer(shard=s, shards=shards)
        seq.nearby.announce = s == 0
        seq.configure(book)
        items = list(shard_lines((("f", x) for x in lines), s, shards))
        i = 0
        while i <= len(items):
            part = items[i:i + rnd.randint(20, 400)]
            i += max(len(part), 1)
            routes = Routes()
            decoded = _decode_batch(part)
            if decoded:
                seq.take_batch([decoded[0][1][1]], routes)
            if i > len(items):
                seq.finish(routes)
            for site, msgs in routes.sites.items():
                mark = seq.watermark if seq.watermark is not None else -INF
                per_site.setdefault(site, [[] for _ in range(shards)])[s].append(
                    ShardBatch(s, mark, msgs))
    return per_site


def _run_site(site: str, shard_batches: list[list], shards: int, rnd: random.Random) -> list:
    logic = SiteLogic(FlowConfig(book=load_rulebook(), shards=shards), None)
    out: list = []
    for batch in _interleave(rnd, shard_batches):
        out += logic.on_batch([(site, batch)])[0]
        if rnd.random() < 0.3:
            logic.snapshot()  # an epoch ends
            out += logic.on_batch([(site, Frontier(min(logic.merge.floor)))])[0]
    out += logic.on_batch([(site, Frontier(INF))])[0]
    out += logic.on_eof()[0]
    # verdicts one by one: those of a region leave in one list per release (for the region
    # step), which the batching cuts
    flat = [("care", v) for tag, x in out if tag == "region" for v in x[1]]
    return sorted(repr(x) for x in flat + [x for x in out if x[0] != "region"])


@pytest.mark.parametrize("shards", [2, 3])
def test_a_site_gives_the_same_outputs_for_any_interleaving_of_its_shards(shards):
    """Incidents and verdicts of every site, from the shards' real messages fed in three
    random interleavings and batchings."""
    sc = simulate(ScenarioConfig(seed=5, sites=12, hours=3.0, subscribers_per_cell=10))
    seen_verdicts = 0
    for seed in (1, 2, 3):
        rnd = random.Random(seed)
        inputs = _site_inputs(sc.lines, shards, rnd)
        results = {site: _run_site(site, b, shards, rnd) for site, b in sorted(inputs.items())}
        if seed == 1:
            first = results
            seen_verdicts = sum(r.startswith("('care'") for v in results.values() for r in v)
        else:
            assert results == first
    assert seen_verdicts > 20, "the scenario must make verdicts for this test to mean anything"


# -- the whole flow ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario():
    return simulate(ScenarioConfig(seed=11, sites=24, hours=6.0, subscribers_per_cell=12))


def _canonical(c) -> dict[str, list[bytes]]:
    return {k: sorted(getattr(c, k)) for k in ("actions", "incidents", "dead_letters")}


def test_two_and_three_shards_give_the_same_outputs_in_any_layout(scenario):
    """For a fixed shard count: one worker or two, batches of 1,000 or 37 with 10 ms
    epochs; whole records. And on this scenario, the same as one shard."""
    book = load_rulebook()
    one = _canonical(run_collect(scenario.lines, book))
    assert one["actions"]
    two = _canonical(run_collect(scenario.lines, book, partitions=2))
    assert two == _canonical(run_collect(scenario.lines, book, partitions=2, workers=2))
    assert two == _canonical(run_collect(scenario.lines, book, partitions=2, batch=37,
                                         epoch_s=0.01))
    three = _canonical(run_collect(scenario.lines, book, partitions=3, workers=2))
    assert two["actions"] == one["actions"] == three["actions"]
    assert two["incidents"] == one["incidents"] == three["incidents"]


def test_shipping_between_workers_gives_the_same_outputs_whatever_the_placement(
        scenario, monkeypatch):
    """With several workers a sequencer ships the lists bound for another worker's sites
    and care shards as one item per worker (``SequenceLogic._ship``). Where a key is, is a
    guess that saves work, never what decides an output: with the route keys swapped
    (every shipped item unpacked on the wrong worker, then a second hop) or keys placed
    by a wrong rule, the outputs are those of one worker."""
    from forewarn.dataflows import flow as fl

    book = load_rulebook()
    one = _canonical(run_collect(scenario.lines, book, partitions=2))
    shipped: list[int] = []
    unship = fl._unship

    def counted(state, data):
        shipped.append(len(data))
        return unship(state, data)

    monkeypatch.setattr(fl, "_unship", counted)
    assert _canonical(run_collect(scenario.lines, book, partitions=2, workers=2)) == one
    assert shipped, "two workers must ship something for this test to mean anything"
    routes = fl.route_keys
    monkeypatch.setattr(fl, "route_keys", lambda workers: tuple(reversed(routes(workers))))
    assert _canonical(run_collect(scenario.lines, book, partitions=2, workers=2)) == one
    monkeypatch.setattr(fl, "route_keys", routes)
    monkeypatch.setattr(fl, "Placement", lambda workers: lambda key: len(key) % workers)
    assert _canonical(run_collect(scenario.lines, book, partitions=2, workers=3)) == one


def test_a_bad_record_every_shard_reads_is_one_dead_letter():
    s = Scenario().site("S1")
    s.add(type="alarm", alarm_id="A9", cell_id="NOPE", severity="critical",
          probable_cause="lossOfSignal", event_time="2026-11-23T08:01:00Z")
    s.lines.append(b'{"type":"cell",')
    for i in range(12):
        s.seen(f"U{i}", "S1-C1", 1 + i)
    got = run_collect(s.lines, load_rulebook(), partitions=3)
    reasons = sorted(orjson.loads(d)["reason"][:30] for d in got.dead_letters)
    assert len(reasons) == 2, reasons


# -- what must not move a message's place ----------------------------------------------------


def _topology_after_a_frontier(frontier_first: bool) -> list:
    """Shard 1's position at 300, then, in one epoch, a frontier at 500 and shard 0's
    first message to the site, a topology record: Bytewax delivers the two in either
    order."""
    m = ShardMerge(2)
    out = m.take(ShardBatch(1, 300.0, [("U2", "C1", 300.0, None)]))
    cell = Stamped(550.0, Cell("C9", "S1"))  # released when shard 0 stood at 550 (>= 500)
    if frontier_first:
        out += m.frontier(500.0)
        out += m.take(ShardBatch(0, 600.0, [cell]))
    else:
        out += m.take(ShardBatch(0, 600.0, [cell]))
        out += m.frontier(500.0)
    return out + m.frontier(INF)


def test_a_frontier_arriving_first_or_last_leaves_the_order_as_it_is():
    first, last = _topology_after_a_frontier(True), _topology_after_a_frontier(False)
    assert first == last == [("U2", "C1", 300.0, None), Cell("C9", "S1")]


def _batch_end(big: bool) -> list:
    """Shard 0 releases a position for the site at 100, records for other sites up to
    900, then a topology record for the site; its batch to the site ends at 150 or 900."""
    m = ShardMerge(2)
    out = m.take(ShardBatch(1, 500.0, [("U1", "C1", 500.0, None)]))
    out += m.take(ShardBatch(0, 900.0 if big else 150.0, [("U0", "C1", 100.0, None)]))
    out += m.take(ShardBatch(0, 950.0, [Stamped(900.0, Cell("C9", "S1"))]))
    return out + m.frontier(INF)


def test_where_a_sequencers_batch_ends_leaves_the_order_as_it_is():
    assert _batch_end(True) == _batch_end(False) == [
        ("U0", "C1", 100.0, None), ("U1", "C1", 500.0, None), Cell("C9", "S1")]


def test_a_topology_record_with_an_extra_subscriber_id_reaches_every_shard():
    """Extra fields decode fine: a cell that carries a subscriber_id is still topology,
    which every shard needs (else its positions there are dead letters)."""
    s = Scenario().site("S1")
    s.raw(b'{"type":"cell","cell_id":"X1","site_id":"S1","subscriber_id":"SUB-A"}')
    for i in range(40):
        s.seen(f"U{i}", "X1", 60 + i)
    book = load_rulebook()
    reasons = [sorted(orjson.loads(d)["reason"][:40] for d in c.dead_letters)
               for c in (run_collect(s.lines, book), run_collect(s.lines, book, partitions=2))]
    assert reasons[0] == reasons[1]


def test_a_line_with_the_key_twice_goes_where_its_decoded_value_says():
    line = b'{"type":"call","subscriber_id":"A","call_id":"K","subscriber_id":"B"}'
    assert orjson.loads(line)["subscriber_id"] == "B"
    assert owner(line, 7) == shard_of("B", 7)


def test_the_merge_applies_messages_in_key_then_shard_order_as_soon_as_no_shard_can_precede():
    """Three shards: positions, a Near (its place: when it was sent), a record with no
    time (its shard's key so far), a Stamped record (its stamp), a tick."""
    m = ShardMerge(3)
    near = Near("U9", "S2", 5.0, True, sent=40.0)
    assert m.take(ShardBatch(2, 50.0, [("U2", "C1", 20.0, None), near])) == []
    assert m.take(ShardBatch(0, 30.0, [("U0", "C1", 20.0, None), Cell("C9", "S1"),
                                       Tick(30.0)])) == []  # shard 1 not heard from
    assert m.pending == 5
    got = m.take(ShardBatch(1, 45.0, [("U1", "C1", 10.0, None),
                                      Stamped(45.0, Cell("C8", "S1"))]))
    # 10 first; at key 20 shard 0 before shard 2 (the cell keeps its shard's key, 20);
    # the tick at 30 once shard 2's next is at 40; shard 2's Near (40) waits for shard
    # 0, which stands at 30 and may still send something before it
    assert got == [("U1", "C1", 10.0, None), ("U0", "C1", 20.0, None), Cell("C9", "S1"),
                   ("U2", "C1", 20.0, None), Tick(30.0)]
    assert m.last == [30.0, 45.0, 40.0] and m.floor == [30.0, 45.0, 50.0]
    assert m.take(ShardBatch(0, 20.0, [])) == [] and m.floor[0] == 30.0  # never back
    assert m.frontier(45.0) == [near]  # the stamped cell at 45: shard 0 at 45 goes first
    assert m.floor == [45.0, 45.0, 50.0]
    assert m.frontier(10.0) == [] and m.floor == [45.0, 45.0, 50.0]
    assert m.take(ShardBatch(0, 46.0, [("U0", "C1", 45.0, None)])) == [
        ("U0", "C1", 45.0, None), Cell("C8", "S1")]
    assert m.pending == 0


def test_a_late_message_keeps_its_place_in_its_shards_order():
    """A message behind its shard's latest (late, or a Near heard long ago) takes the
    key so far: it is applied right after the message before it in its shard."""
    m = ShardMerge(2)
    m.take(ShardBatch(1, 100.0, [("U1", "C1", 50.0, None)]))
    got = m.take(ShardBatch(0, 100.0, [("U0", "C1", 60.0, None), ("U0", "C1", 30.0, None),
                                       ("U0", "C1", 70.0, None)]))
    assert got == [("U1", "C1", 50.0, None), ("U0", "C1", 60.0, None),
                   ("U0", "C1", 30.0, None), ("U0", "C1", 70.0, None)]
    assert m.last == [70.0, 50.0]


# Far more shards than ids: the shard names the very bytes hashed (crc32 % 2**32)
_EXACT = 1 << 32


@pytest.mark.parametrize(("line", "key"), [
    (b'{"type":"kpi","cell_id":"C1","period_s":900}', "C1"),
    (b'{"type":"kpi","period_s":900,"cell_id":"C12"}', "C12"),
    (b'{"type":"kpi","cell_id":"C\\u0031"}', "C1"),  # an escape: read as JSON reads it
    (b'{"type":"kpi","cell_id":"A","x":{"cell_id":"B"}}', "A"),  # the key twice: parsed
    (b'{"type":"kpi","cell_id":"A","cell_id":"B"}', "B"),
    (b'{"type":"call","subscriber_id":"A","x":{"subscriber_id":"B"}}', "A"),
    (b'{"cell_id": "C7", "type": "kpi"}', "C7"),
    (b'{"type": "kpi", "cell_id": "C8"}', "C8"),
    (b'{"type":"kpi","cell_id":5}', None),
    (b'{"type":"kpi","period_s":900}', None),
    (b'{"type":"alarm","cell_id":"C1","subscriber_id":"U1"}', None),
    (b'{"type":"location","cell_id":"C1"}', None),
    (b'{"type":"call","call_id":"K","subscriber_id":"U5"}', "U5"),
    (b'{"type":"subscriber","subscriber_id":"U6"}', "U6"),
    (b'{"type":"complaint","subscriber_id":"U7","x":"\\\\"}', "U7"),
    (b'{"type":"location","subscriber_id":"U\\"8"}', 'U"8'),
    (b'{"subscriber_id":"U9","type":"location"}', "U9"),
    (b'{"subscriber_id":"U9","type":"cell"}', None),
    (b'{"cell_id": "C1", "site_id": "S1", "type": "cell"}', None),  # topology: everyone's
    (b'{"subscriber_id":"U9"}', None),
    (b'["location","U1"]', None),
    (b'"U1"', None),
    (b'{"type":"location",', None),  # not JSON: every shard's (shard 0 reports it)
])
def test_the_owner_of_a_line_is_the_shard_of_its_subscriber_or_kpi_cell(line, key):
    assert owner(line, _EXACT) == (None if key is None else shard_of(key, _EXACT))


def test_lines_written_as_the_contract_writes_them_are_not_parsed(monkeypatch):
    """Decoding is the shard's own work: the step that picks the shard reads the id from
    the bytes of a compact line (a truncated one goes where its id says; that shard
    reports it)."""
    class NoParse:
        JSONDecodeError = ValueError

        @staticmethod
        def loads(line):
            raise AssertionError(f"parsed {line!r}")

    monkeypatch.setattr("forewarn.dataflows.shards.orjson", NoParse)
    assert owner(b'{"type":"location","subscriber_id":"U1","cell_id":"C1"}', _EXACT) == \
        shard_of("U1", _EXACT)
    assert owner(b'{"type":"call","subscriber_id":"U2",', _EXACT) == shard_of("U2", _EXACT)
    assert owner(b'{"type":"kpi","cell_id":"C3","period_s":900}', _EXACT) == \
        shard_of("C3", _EXACT)
    assert owner(b'{"type":"cell","cell_id":"C1","site_id":"S1"}', _EXACT) is None
    assert owner(b'{"type":"alarm","subscriber_id":"U1"}', _EXACT) is None
    # escapes elsewhere in the line do not matter: only one inside the id is read by JSON
    assert owner(b'{"type":"call","call_id":"K\\u0031","subscriber_id":"U4","x":"\\n"}',
                 _EXACT) == shard_of("U4", _EXACT)
    assert owner(b'{"type":"kpi","x":"\\t","cell_id":"C5","y":"\\n"}', _EXACT) == \
        shard_of("C5", _EXACT)


def test_a_shard_source_is_its_name_and_survives_pickling():
    import pickle

    s = ShardSource("events.jsonl", 2, True)
    back = pickle.loads(pickle.dumps(s))
    assert type(back) is ShardSource and back == "events.jsonl"
    assert (back.shard, back.context) == (2, True)
    assert is_context(back) and not is_context(ShardSource("f", 0, False))
    assert not is_context("events.jsonl")


def test_a_merge_survives_a_snapshot_and_goes_on_where_it_was():
    from forewarn.dataflows import records

    m = ShardMerge(2)
    m.take(ShardBatch(0, 30.0, [("U0", "C1", 20.0, None), ("U0", "C1", 30.0, None)]))
    _, _, back = records.thaw_site(records.freeze_site(None, [], m), book=load_rulebook(),
                                   shards=2)
    assert back is not None
    assert (back.shards, list(back.queues), back.last, back.floor) == (
        2, [deque([(20.0, ("U0", "C1", 20.0, None)), (30.0, ("U0", "C1", 30.0, None))]),
            deque()], [30.0, -INF], [30.0, -INF])
    assert back.take(ShardBatch(1, 25.0, [("U1", "C1", 25.0, None)])) == [
        ("U0", "C1", 20.0, None), ("U1", "C1", 25.0, None)]


class _YieldingCount(int):
    """A count whose comparison hands the GIL to another thread, as a thread switch may
    at any point: a thread taking the gauges' maximum is paused in the middle of it."""

    def __gt__(self, other: object) -> bool:
        time.sleep(0.0002)
        return int(self) > int(other)  # type: ignore[call-overload]

    def __lt__(self, other: object) -> bool:
        time.sleep(0.0002)
        return int(self) < int(other)  # type: ignore[call-overload]


class _Gauge:
    def set(self, value: float) -> None:
        pass


def test_the_shards_of_a_process_report_their_gauges_from_several_worker_threads(
        monkeypatch) -> None:
    """Each shard's sequencer reports its gauges from the worker thread that holds it; a
    shard reporting for the first time while another thread reads the process's table
    is no error (an error there fails the sequence step)."""
    monkeypatch.setattr(flow, "_SHARDS_HERE", {})
    for name in ("WATERMARK", "HELD_AHEAD", "OUTAGES_UNWATCHED"):
        monkeypatch.setattr(flow.metrics, name, _Gauge())
    flow._shard_gauges(1, 50.0, 0, 0)
    failed: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(shards: list[int], unwatched: int) -> None:
        start.wait()
        try:
            for shard in shards:
                flow._shard_gauges(shard, 100.0, 0, unwatched)
        except BaseException as exc:  # noqa: BLE001 - a worker's error fails the test
            failed.append(exc)

    threads = [threading.Thread(target=worker, args=([0] * 40, _YieldingCount(1))),
               threading.Thread(target=worker, args=(list(range(2, 42)), _YieldingCount(0)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    assert sorted(flow._SHARDS_HERE) == list(range(42))


def test_file_mode_shard_options_are_refused_on_kafka(capsys) -> None:
    """On Kafka the shards are the topics' partitions: --partitions/--partitioner would be
    ignored there, so they are refused (before any broker is reached)."""
    from forewarn.cli import main

    for extra in (["--partitions", "3"], ["--partitioner", "kafka"]):
        assert main(["run", "--bootstrap", "127.0.0.1:1", "--metrics-port", "-1",
                     *extra]) == 2
        err = capsys.readouterr().err
        assert "--partitions and --partitioner are for file mode" in err
        assert "forewarn topics create --partitions N" in err
