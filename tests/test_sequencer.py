"""The sequencer (dataflows/sequencer.py) alone, record by record: records held ahead of
the stream and when they are applied, the reasons of its dead letters, what a shard
does with records it reads for context, and the routing of records with no time."""

from __future__ import annotations

import copy
import random

import pytest

from forewarn.codec import fmt_time
from forewarn.dataflows.messages import Drop, Left, Near, Stamped, Tick
from forewarn.dataflows.nearby import NearbyWatch
from forewarn.dataflows.sequencer import (
    AHEAD_QUORUM,
    AHEAD_RECORDS,
    AHEAD_S,
    AHEAD_TICKS,
    Routes,
    Sequencer,
    _span,
    slim,
)
from forewarn.dataflows.shards import ShardSource
from forewarn.model import (
    Alarm,
    Call,
    Cell,
    Complaint,
    Kpi,
    Location,
    Maintenance,
    Subscriber,
    stream_at,
)
from tests.builders import feed

INF = float("inf")


def _pos(t: float, sid: str = "U", cell: str = "C1") -> tuple:
    """An item as the decode step hands it over: ``(source, raw, record, at)``."""
    return ("f", b"%g" % t, (sid, cell, t, None), t)


def _started(**kw) -> tuple[Sequencer, Routes]:
    """A sequencer past its warm-up (one record) with cell C1 on site S1, at 0."""
    seq = Sequencer(warmup=1, **kw)
    out = Routes()
    seq.take_batch([[("f", b"", Cell("C1", "S1"), None), _pos(0.0)]], out)
    return seq, out


def _times(out: Routes, site: str = "S1") -> list[float]:
    return [m[2] for m in out.sites.get(site, []) if type(m) is tuple]


def test_a_record_ahead_is_held_until_the_stream_reaches_it():
    """Not until the stream comes within reach of it: applied then, 500 would move event
    time 100 s past the stream (400) for everybody's timers. X's held records are applied
    right before the first of V's at or past their time."""
    for one_by_one in (True, False):
        seq, out = _started(ahead_s=100.0)
        items = [_pos(t) for t in (500.0, 590.0, 50.0, 120.0, 200.0, 300.0, 390.0, 400.0)]
        items += [_pos(500.0, "V"), _pos(600.0, "V")]
        steps = [[[x]] for x in items] if one_by_one else [[items]]
        held = []
        for step in steps:
            seq.take_batch(step, out)
            held.append([x[3] for x in seq.ahead])
        if one_by_one:  # 400 is within reach of 500, and 500 of 590: still held
            assert held == [[500.0]] + [[500.0, 590.0]] * 7 + [[590.0], []]
        sids = [m[0] for m in out.sites["S1"] if type(m) is tuple]
        assert _times(out) == [0.0, 50.0, 120.0, 200.0, 300.0, 390.0, 400.0, 500.0, 500.0,
                               590.0, 600.0]
        assert sids[7:] == ["U", "V", "U", "V"]
        assert seq.watermark == 600.0 and seq.ahead == [] and not out.dead and seq.late == 0


def test_a_held_record_is_applied_where_one_by_one_would_apply_it_whatever_the_batch():
    # X's clock is 1000 s fast; V's positions come every 10 s. Taken one by one, X's
    # record is applied once the stream reaches it (V's at 1000, right before it); a batch
    # must apply it at the same place in V's positions, not where a run in order ends
    items = [_pos(1000.0, "X")] + [_pos(float(t), "V") for t in range(10, 1201, 10)]
    one, one_out = _started(ahead_s=100.0)
    for item in items:
        one.take_batch([[item]], one_out)
    sids = [m[0] for m in one_out.sites["S1"] if type(m) is tuple]
    assert sids.index("X") == 100  # U at 0, V at 10 ... 990, then X, then V at 1000
    assert sids[101] == "V" and one.late == 0
    for n in (7, 50, len(items)):
        many, many_out = _started(ahead_s=100.0)
        for i in range(0, len(items), n):
            many.take_batch([items[i:i + n]], many_out)
        assert many_out.sites == one_out.sites, n
        assert _state(many) == _state(one), n


def _busy(per_s: float, **kw) -> tuple[Sequencer, Routes]:
    """A sequencer past an hour of positions at ``per_s`` a second (0 ... 3600)."""
    seq, out = _started(**kw)
    n = int(3600 * per_s)
    seq.take_batch([[_pos(3600.0 * i / n, f"V{i % 50}") for i in range(1, n + 1)]], out)
    assert seq.watermark == 3600.0 and seq.ahead == []
    return seq, out


def test_the_reach_follows_the_streams_rate():
    """The time in which the stream's rate puts AHEAD_RECORDS records: 7,201 records in the
    first hour, 50 s; 72,001 would make it 5 s, but never less than AHEAD_TICKS ticks
    (15 s); a sparse stream (its first hour: 1 record) keeps ``ahead_s``."""
    assert (AHEAD_RECORDS, AHEAD_TICKS) == (100.0, 1.0)
    assert _busy(2.0)[0]._reach() == pytest.approx(50.0, abs=0.01)
    assert _busy(20.0)[0]._reach() == 15.0
    assert _started()[0]._reach() == AHEAD_S
    assert _busy(2.0, ahead_s=40.0)[0]._reach() == 40.0  # at most ahead_s


def test_a_record_minutes_ahead_of_a_busy_stream_moves_no_event_time():
    """Two positions a second: a record 5 min ahead (well within AHEAD_S) is held, and
    applied right before the first record at or past its time: the watermark never runs
    ahead of the stream, no record is late, and every batch size gives the same."""
    def taken(n: int) -> tuple:
        seq, out = _busy(2.0)
        marks = []
        items = [_pos(3900.0, "X")] + [_pos(3600.0 + t / 2, "V") for t in range(1, 1201)]
        for i in range(0, len(items), n):
            seq.take_batch([items[i:i + n]], out)
            marks.append(seq.watermark)
        return seq, out, marks

    seq, out, marks = taken(1)
    assert marks[0] == 3600.0 and all(m <= 3600.0 + i / 2 for i, m in enumerate(marks))
    sids = [m[0] for m in out.sites["S1"] if type(m) is tuple]
    assert sids[-602:-600] == ["X", "V"] and _times(out)[-602:-600] == [3900.0, 3900.0]
    assert seq.late == 0 and seq.ahead == [] and seq.watermark == 4200.0
    for n in (7, 100, 1201):
        many, many_out, _ = taken(n)
        assert many_out.sites == out.sites and _state(many) == _state(seq), n


def test_a_record_just_past_the_floor_is_held_and_one_within_it_is_not():
    seq, out = _busy(20.0)  # the reach is the floor: 15 s
    seq.take_batch([[_pos(3615.0, "X"), _pos(3630.5, "Y")]], out)
    assert [x[3] for x in seq.ahead] == [3630.5] and seq.watermark == 3615.0


def test_a_busy_stream_that_jumps_is_followed_without_late_records():
    """A feed back after 10 min (two a second before and after): the first AHEAD_QUORUM
    records are held, then the stream follows them; each held one is applied in time
    order, none behind the watermark, none a dead letter."""
    seq, out = _busy(2.0)
    after = [_pos(4200.0 + t / 2, "V") for t in range(200)]
    seq.take_batch([after], out)
    seq.finish(out)
    assert _times(out)[-200:] == [x[3] for x in after]
    assert seq.late == 0 and seq.ahead == [] and out.dead == []


def test_a_record_exactly_at_the_reach_is_not_held():
    seq, out = _started(ahead_s=100.0, lateness_s=30.0)
    seq.take(*_pos(130.0)[2::-1], 130.0, out)  # 0 + 30 + 100: not past the reach
    assert seq.ahead == [] and seq._pending[-1][3] == 130.0
    seq.take(*_pos(260.5)[2::-1], 260.5, out)  # 130 + 100 < 260.5: held
    assert [x[3] for x in seq.ahead] == [260.5]


def test_a_run_of_ahead_records_moves_the_stream_to_its_middle():
    """AHEAD_QUORUM records in a row, all ahead: the stream jumped. The held records up to
    the run's middle are applied, and those the stream then reaches."""
    seq, out = _started(ahead_s=100.0)
    run = [1000.0 + 200.0 * i for i in range(AHEAD_QUORUM)]
    seq.take_batch([[_pos(t) for t in run[:-1]]], out)
    assert seq.watermark == 0.0 and len(seq.ahead) == AHEAD_QUORUM - 1
    seq.take_batch([[_pos(run[-1])]], out)
    middle = run[AHEAD_QUORUM // 2]  # 4200: applied up to it
    assert _times(out) == [0.0] + [t for t in run if t <= middle]
    assert [x[3] for x in seq.ahead] == [t for t in run if t > middle]
    assert seq.watermark == middle and seq._ahead_run == []


def test_a_record_within_the_stream_breaks_a_run_of_ahead_records():
    seq, out = _started(ahead_s=100.0)
    far = [5000.0 + i for i in range(AHEAD_QUORUM - 1)]
    seq.take_batch([[_pos(t) for t in far] + [_pos(10.0)]], out)
    seq.take_batch([[_pos(6000.0)]], out)  # a run of one: still held
    assert seq.watermark == 10.0 and len(seq.ahead) == AHEAD_QUORUM


def test_at_the_end_a_held_record_is_applied_when_the_streams_rate_explains_the_gap():
    """Ten records in the first hour (the span is at least an hour): 10 / 3600 a second.
    Gaps are measured from where the stream ended (9): one of 4991 s expects 13.9
    records: applied; one of 399,991 s expects 1,111: a dead letter ``future`` naming how
    far ahead it was of the progress then (5000, the other one applied)."""
    seq, out = _started(ahead_s=100.0)
    seq.take_batch([[_pos(float(t)) for t in range(1, 10)]], out)
    seq.take_batch([[_pos(400_000.0), _pos(5000.0, "V")]], out)
    assert [x[3] for x in seq.ahead] == [5000.0, 400_000.0]
    seq.finish(out)
    assert _times(out) == [float(t) for t in range(10)] + [5000.0]
    assert seq.watermark == 5000.0 and seq.ahead == []
    [dead] = out.dead
    assert out.refused == [dead] and (dead.raw, dead.source, dead.code) == (
        b"400000", "f", "future")
    assert dead.reason == (
        f"location: event time {fmt_time(400_000.0)} is 4 days 13 h ahead of the stream's "
        f"progress ({fmt_time(5000.0)}); held, and the stream never reached it")


def test_a_busy_streams_rate_counts_over_its_own_span():
    """3,601 records over two hours from 10,000 (0.5 a second): a gap of 2,100 s expects
    1,050: a dead letter; over a longer span it would be applied."""
    seq = Sequencer(warmup=1, ahead_s=100.0)
    out = Routes()
    seq.take_batch([[("f", b"", Cell("C1", "S1"), None)]
                    + [_pos(10_000.0 + 2.0 * t) for t in range(3601)]], out)
    assert seq.watermark == 17_200.0 and seq._anchor == 10_000.0
    seq.take_batch([[_pos(19_300.0)]], out)
    seq.finish(out)
    assert [d.raw for d in out.dead] == [b"19300"]


def test_records_applied_from_ahead_count_in_the_streams_rate():
    """Eight records applied before the end (one of them held, then reached: V's at 500)
    over the one-hour floor: 8 / 3600 a second. 430,000 s after the end expects 955.6
    records: applied; 450,100 s expects 1,000.2: a dead letter."""
    seq, out = _started(ahead_s=100.0)
    seq.take_batch([[_pos(500.0)] + [_pos(t) for t in (50.0, 120.0, 200.0, 300.0, 400.0)]
                    + [_pos(500.0, "V")]], out)
    assert seq.ahead == [] and seq.watermark == 500.0
    seq.take_batch([[_pos(450_600.0), _pos(430_500.0)]], out)
    seq.finish(out)
    assert _times(out)[-1] == 430_500.0 and [d.raw for d in out.dead] == [b"450600"]


def test_a_snapshot_without_the_first_watermark_still_settles_what_it_holds():
    """A state saved before the sequencer kept its first watermark has none: the span is
    then the one-hour floor (10 / 3600 a second: 4,991 s expects 13.9 records)."""
    seq, out = _started(ahead_s=100.0)
    seq.take_batch([[_pos(float(t)) for t in range(1, 10)] + [_pos(5000.0)]], out)
    seq._anchor = None
    seq.finish(out)
    assert _times(out)[-1] == 5000.0 and seq.ahead == [] and out.dead == []


def test_too_many_held_records_send_the_farthest_to_dead_letters(monkeypatch):
    monkeypatch.setattr("forewarn.dataflows.sequencer.AHEAD_HELD_MAX", 3)
    seq, out = _started(ahead_s=100.0)
    seq.take_batch([[_pos(t) for t in (900.0, 700.0, 800.0, 600.0, 650.0)]], out)
    assert [x[3] for x in seq.ahead] == [600.0, 650.0, 700.0]
    assert [d.raw for d in out.dead] == [b"900", b"800"]
    assert out.dead[0].reason.endswith("held, and more records were held ahead than the limit")


def test_a_record_more_than_7_days_from_the_stream_is_refused_with_its_distance():
    seq, out = _started()
    week = 7 * 24 * 3600.0
    seq.take_batch([[_pos(-week), _pos(week + 1.0), _pos(week), _pos(-week - 1.0)]], out)
    assert [d.raw for d in out.dead] == [b"604801", b"-604801"]
    assert _times(out) == [0.0, -week]  # late, but within 7 days
    assert [x[3] for x in seq.ahead] == [week]  # within 7 days, but ahead
    assert out.dead[1].reason == (
        f"location: event time {fmt_time(-week - 1.0)} is more than 7 days from the "
        f"stream's progress ({fmt_time(0.0)})")


def test_the_warm_up_sorts_its_records_and_refuses_or_holds_the_outliers():
    seq = Sequencer(warmup=5, ahead_s=100.0, lateness_s=10.0)
    out = Routes()
    items = [("f", b"", Cell("C1", "S1"), None), _pos(325.0), _pos(100.0),
             _pos(10**7), _pos(215.0), _pos(209.0)]
    seq.take_batch([items[:-1]], out)
    assert seq.watermark is None and _times(out) == []
    seq.take_batch([items[-1:]], out)
    # the median of 100, 209, 215, 325, 1e7 is 215; the reach 215 + 10 + 100 = 325
    assert seq.watermark == 325.0 and seq._anchor == 215.0
    assert _times(out) == [100.0, 209.0, 215.0, 325.0]
    assert [(d.raw, d.source) for d in out.dead] == [(b"1e+07", "f")] and seq.ahead == []
    seq2 = Sequencer(warmup=2, ahead_s=100.0)
    seq2.take_batch([[("f", b"", Cell("C1", "S1"), None), _pos(400.0), _pos(100.0)]], out)
    assert seq2.watermark == 400.0 and seq2.ahead == [] and seq2._anchor == 400.0
    seq3 = Sequencer(warmup=3, ahead_s=100.0)
    week = 7 * 24 * 3600.0  # exactly 7 days from the median: held, not refused
    seq3.take_batch([[("f", b"", Cell("C1", "S1"), None), _pos(200.0 + week), _pos(100.0),
                      _pos(200.0)]], out)
    assert seq3._anchor == 200.0 and [x[3] for x in seq3.ahead] == [200.0 + week]
    seq4 = Sequencer(warmup=5, ahead_s=100.0)  # records held at the warm-up, in time order
    seq4.take_batch([[("f", b"a", ("U", "C1", 9000.0, None), 9000.0),
                      ("f", b"z", ("U", "C1", 5000.0, None), 5000.0),
                      _pos(100.0), _pos(150.0), _pos(200.0)]], out)
    assert [x[3] for x in seq4.ahead] == [5000.0, 9000.0]


def test_spans_in_reasons():
    assert [_span(s) for s in (59.9, 60.0, 3599.0, 3600.0, 3 * 86400 + 7260.0, 86400.0)] == [
        "0 min", "1 min", "59 min", "1 h 0 min", "3 days 2 h", "1 days 0 h"]


def test_a_shard_reading_records_for_context_sends_and_reports_nothing_of_them():
    """Shard 1 of 2: topology and alarms it reads for context update its state only; a
    late context record is not counted (shard 0 counts it)."""
    ctx, own = ShardSource("f", 1, True), ShardSource("f", 1, False)
    seq = Sequencer(warmup=1, shard=1, shards=2)
    out = Routes()
    seq.take_batch([[(ctx, b"c", Cell("C1", "S1"), None), (own, b"p", ("U", "C1", 50.0, None),
                                                             50.0)]], out)
    assert out.sites == {"S1": [("U", "C1", 50.0, None)]} and seq.cell_site == {"C1": "S1"}
    seq.take_batch([[(ctx, b"k", Kpi("C9", 60.0, 900.0, 10, 0), 60.0),
                     (ctx, b"a", Alarm("A1", 40.0, "critical", "x", cell_id="C1"), 40.0),
                     (own, b"q", ("U", "C9", 70.0, None), 70.0),
                     (ctx, b"w", Alarm("A0", -8 * 86400.0, "minor", "x", site_id="S1"),
                      -8 * 86400.0)]], out)
    assert [d.raw for d in out.dead] == [b"q"]  # its own record's dead letter only
    assert seq.late == 0 and seq.open_alarms == {"S1": {"A1"}}
    assert seq.active_until == {"S1": 40.0 + 5 * 3600}
    assert out.sites == {"S1": [("U", "C1", 50.0, None)]}
    seq.finish(out)  # only shard 0 ticks
    assert out.sites == {"S1": [("U", "C1", 50.0, None)]}


def test_records_with_no_time_come_stamped_with_the_watermark_when_there_are_shards():
    seq = Sequencer(warmup=1, shards=2)
    out = Routes()
    seq.take_batch([[("f", b"", Cell("C1", "S1"), None)]], out)
    seq.take_batch([[_pos(30.0), ("f", b"", Cell("C2", "S1"), None)]], out)
    assert out.sites["S1"] == [Stamped(-INF, Cell("C1", "S1")), ("U", "C1", 30.0, None),
                               Stamped(30.0, Cell("C2", "S1"))]


def test_maintenance_goes_to_its_sites_and_those_of_its_cells_once_each():
    seq, out = _started()
    seq.take_batch([[("f", b"", Cell("C2", "S2"), None), ("f", b"", Cell("C3", "S0"), None)]],
                   out)
    w = Maintenance("W1", "open", 10.0, 20.0, site_ids=("S2", "S9"),
                    cell_ids=("C2", "C3", "C7"))
    out = Routes()
    seq.take_batch([[("f", b"", w, None)]], out)
    assert out.sites == {"S0": [w], "S2": [w], "S9": [w]}
    assert seq.windows == {"W1": (10.0, 20.0, frozenset({"S2", "S9"}),
                                  frozenset({"C2", "C3", "C7"}))}
    seq.take_batch([[("f", b"", Maintenance("W1", "cancel", 10.0, 20.0), None)]], out)
    assert seq.windows == {}


def test_a_cell_moved_to_another_site_leaves_the_old_sites_cells():
    seq, out = _started()
    seq.take_batch([[("f", b"", Cell("C2", "S1"), None), ("f", b"", Cell("C1", "S2"), None)]],
                   out)
    assert seq.site_cells == {"S1": {"C2"}, "S2": {"C1"}}
    assert seq.cell_site == {"C1": "S2", "C2": "S1"}
    seq.take_batch([[_pos(5.0)]], out)
    assert out.sites["S2"] == [Cell("C1", "S2"), ("U", "C1", 5.0, None)]
    assert out.sites["S1"][-1] == Left("U", 5.0)


def test_one_id_string_per_subscriber_in_the_rows_the_sites_and_care():
    """A profile gives a subscriber not yet heard a row (no site yet, so no position is
    invented), and the row's id string is what their positions and care messages carry:
    care keys them by the same object as the rows and the sites."""
    seq, _ = _started()
    first, again = "".join(["U", "7"]), "".join(["U", "7"])  # equal, not the same object
    assert first == again and first is not again
    out = Routes()
    sub = Subscriber(first, "upsert", 3.0)
    seq.take_batch([[("f", b"", sub, 3.0)]], out)
    assert out.cares == {first: [slim(sub, first)]}
    assert out.cares[first][0].subscriber_id is first
    assert seq.heard.latest(first) is None and len(seq.heard) == 2
    out = Routes()
    comp = Complaint("K1", again, 4.0, "slow_data")
    seq.take_batch([[("f", b"", comp, 4.0), _pos(5.0, sid=again)]], out)
    (sent,) = out.cares[first]
    assert sent == comp and sent.subscriber_id is first
    assert out.sites["S1"] == [(first, "C1", 5.0, None)] and out.sites["S1"][0][0] is first
    assert seq.heard.latest(first) == ("S1", 5.0) and "S1" not in [
        type(m).__name__ for box in out.sites.values() for m in box if type(m) is Left]
    out = Routes()  # a delete of someone never heard gives no row
    seq.take_batch([[("f", b"", Subscriber("U8", "delete", 6.0), 6.0)]], out)
    assert seq.heard.row("U8") is None and list(out.cares) == ["U8"]


def test_a_profile_reaches_care_slim_with_the_same_profile():
    """An upsert goes to care as a Profiled: its id, time and name, and a shape shared by
    every profile of that shape (channels without addresses)."""
    from forewarn.dataflows.care import profile_of
    from forewarn.dataflows.messages import Profiled
    from forewarn.model import Channel
    from forewarn.rules.rulebook import load_rulebook

    seq, out = _started()
    channels = (Channel("sms", "+447700000001", True), Channel("email", "a@b.c", False))
    sub = Subscriber("U1", "upsert", 3.0, channels=channels, name="Ada", tags=("esim",))
    other = Subscriber("U2", "upsert", 4.0, channels=(Channel("sms", "+447700000002", True),
                                                      Channel("email", "x@y.z", False)),
                       name="Bo", tags=("".join(["es", "im"]),))
    seq.take_batch([[("f", b"", sub, 3.0), ("f", b"", other, 4.0)]], out)
    (sent,), (sent2,) = out.cares["U1"], out.cares["U2"]
    assert type(sent) is Profiled and (sent.subscriber_id, sent.at, sent.name) == (
        "U1", 3.0, "Ada")
    assert [(c.name, c.address, c.consent) for c in sent.channels] == [
        ("sms", "", True), ("email", "", False)]
    assert sent.shape is sent2.shape  # one shape object for both
    order = load_rulebook().channel_order
    assert profile_of(sent, order) == profile_of(sub, order)
    for f in ("op", "language", "timezone", "segment", "plan", "tenure_months", "tags",
              "preferred_channels"):
        assert getattr(sent, f) == getattr(sub, f), f


def test_subscriber_records_go_to_their_care_key():
    out = Routes(care_key=lambda sid: "k" + sid[-1])
    seq, _ = _started()
    sub = Subscriber("U1", "upsert", 3.0)
    comp = Complaint("K1", "U2", 5.0, "slow_data")
    seq.take_batch([[("f", b"", r, stream_at(r)) for r in (sub, comp)]], out)
    assert out.cares == {"k1": [slim(sub, "U1")], "k2": [comp]} and out.sites == {}
    assert out.dead == []


def test_sites_with_alarm_activity_get_ticks_until_five_hours_after_it():
    """Every ``tick_s`` of event time, shard 0 ticks each site with alarm activity in the
    last 5 h (or an alarm still open); the last one still goes to a site whose time is
    up; at the end, a last tick at the watermark to every site still active."""
    seq, out = _started(ahead_s=INF)
    alarm = Alarm("A1", 0.0, "critical", "lossOfSignal", cell_id="C1")
    clear = Alarm("A1", 5.0, "cleared", "lossOfSignal", cell_id="C1")
    seq.take_batch([[("f", b"", Cell("C2", "S2"), None),
                     ("f", b"", Alarm("A2", 1.0, "major", "x", cell_id="C2"), 1.0),
                     ("f", b"", alarm, 0.0), ("f", b"", clear, 5.0)]], out)
    assert seq.active_until == {"S1": 5.0 + 5 * 3600, "S2": 1.0 + 5 * 3600}
    out = Routes()
    seq.take_batch([[_pos(t) for t in (14.0, 15.0, 20.0, 18_006.0, 18_030.0)]], out)
    ticks = {s: [m.at for m in msgs if type(m) is Tick] for s, msgs in out.sites.items()}
    # 15 is due (0 + 15); 20 is not (15 + 15); 18,006: S1 (5 h after the clear at 5)
    # gets its last; S2's alarm is still open, so it stays, and is ticked at 18,030
    assert ticks == {"S1": [15.0, 18_006.0], "S2": [15.0, 18_006.0, 18_030.0]}
    assert seq.active_until == {"S2": 1.0 + 5 * 3600}
    out = Routes()
    seq.finish(out)
    assert out.sites == {"S2": [Tick(18_030.0)]}


def _stream(rnd: random.Random, n: int) -> list:
    """Positions mostly in order, some late (within a window of 30 s or far behind),
    some ahead, some on an unknown cell, now and then a record with no time."""
    t, out = 0.0, [("f", b"c1", Cell("C1", "S1"), None), ("f", b"c2", Cell("C2", "S2"), None)]
    for i in range(n):
        t += rnd.choice((0.0, 1.0, 7.0))
        r = rnd.random()
        at = (t - rnd.uniform(0, 30) if r < 0.15 else t - 500.0 if r < 0.2
              else t + rnd.choice((400.0, 2000.0)) if r < 0.25 else t)
        cell = "C9" if r > 0.97 else rnd.choice(("C1", "C2"))
        if 0.95 < r <= 0.97:
            out.append(("f", b"m%d" % i, Cell(f"N{i}", "S3"), None))
        else:
            out.append(("f", b"p%d" % i, (f"U{rnd.randint(0, 5)}", cell, at, None), at))
    return out


def _busy_stream(rnd: random.Random, n: int) -> list:
    """Positions two a second, mostly in order, some late, some ahead by 35 s to 2,000 s:
    the reach follows the rate, from 15 min down to about a minute."""
    t, out = 0.0, [("f", b"c1", Cell("C1", "S1"), None)]
    for i in range(n):
        t += rnd.choice((0.0, 0.5, 1.0))
        r = rnd.random()
        at = (t - rnd.uniform(0, 30) if r < 0.1
              else t + rnd.choice((35.0, 45.0, 80.0, 300.0, 2000.0)) if r < 0.13 else t)
        out.append(("f", b"p%d" % i, (f"U{rnd.randint(0, 50)}", "C1", at, None), at))
    return out


def _state(seq: Sequencer) -> tuple:
    return (seq.watermark, seq.late, seq.late_by_kind, seq._timed, list(seq._pending),
            seq.ahead, sorted(seq.heard.items()))


def _one_by_one_and_in_batches(rnd: random.Random, items: list, lateness: float,
                               most: int) -> tuple[int, float, Routes, int]:
    """``items`` taken one by one and, by another sequencer, in random batches of up to
    ``most`` (two lists each); checks both hold and release the same, before and after
    the end. Of the one-by-one sequencer before the end: its late records, its reach,
    its routes, and the most records it held ahead at once."""
    one = Sequencer(warmup=3, lateness_s=lateness)
    one_out = Routes()
    held = 0
    for item in items:
        one.take(item[2], item[1], item[0], item[3], one_out)
        held = max(held, len(one.ahead))
    many = Sequencer(warmup=3, lateness_s=lateness)
    many_out = Routes()
    i = 0
    while i < len(items):
        n = rnd.randint(1, most)
        many.take_batch([items[i:i + n], items[i + n:i + 2 * n]], many_out)
        i += 2 * n
    assert _state(many) == _state(one)
    assert many_out == one_out
    before_end = (one.late, one._reach(), copy.deepcopy(one_out), held)
    one.finish(one_out)
    many.finish(many_out)
    assert many_out == one_out
    return before_end


@pytest.mark.parametrize("seed", range(3))
def test_a_batch_releases_what_one_by_one_releases_while_the_reach_follows_the_rate(seed):
    rnd = random.Random(seed)
    items = _busy_stream(rnd, 6000)
    for lateness in (0.0, 30.0):
        _, reach, _, held = _one_by_one_and_in_batches(rnd, items, lateness, 400)
        assert held > 0 and reach < 120.0


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_releases_what_its_records_taken_one_by_one_release(seed):
    rnd = random.Random(seed)
    items = _stream(rnd, 300)
    for lateness in (0.0, 30.0):
        late, _, out, _ = _one_by_one_and_in_batches(rnd, items, lateness, 40)
        assert late > 0 and out.dead and {"S1", "S2"} <= set(out.sites)


def test_alarms_the_topology_does_not_place_are_refused_with_their_reason():
    seq, out = _started()
    seq.take_batch([[("f", b"c", Cell("C2", "S2"), None)]], out)
    out = Routes()
    alarms = [Alarm("A1", 1.0, "critical", "x", cell_id="C9"),
              Alarm("A2", 2.0, "critical", "x", cell_id="C1", site_id="S2"),
              Alarm("A3", 3.0, "critical", "x", site_id="S9"),
              Alarm("A4", 4.0, "cleared", "x", site_id="S1", adapter="ves"),
              Alarm("A5", 5.0, "cleared", "x", site_id="S1"),
              Alarm("A6", 6.0, "major", "x", cell_id="C1", site_id="S1"),
              Alarm("A7", 7.0, "minor", "x", site_id="S2", adapter="ves"),
              Alarm("A7", 8.0, "cleared", "x", site_id="S2", adapter="ves")]
    seq.take_batch([[("g", a.alarm_id.encode(), a, a.event_time) for a in alarms]], out)
    assert {d.source for d in out.dead} == {"g"}
    assert [(d.raw, d.reason) for d in out.dead] == [
        (b"A1", "alarm.cell_id: unknown cell 'C9' (no `cell` topology record)"),
        (b"A2", "alarm.site_id: 'S2' disagrees with topology (cell 'C1' is on site 'S1')"),
        (b"A3", "alarm.site_id: unknown site 'S9' (no `cell` topology record on it)"),
        (b"A4", "alarm 'A4': a clear of an alarm that is not open on site 'S1' "
                "(clear without raise)")]
    assert out.sites == {"S1": [alarms[4], alarms[5]], "S2": [alarms[6], alarms[7]]}
    assert seq.open_alarms == {"S1": {"A6"}, "S2": set()}
    assert seq.active_until == {"S1": 6.0 + 5 * 3600, "S2": 8.0 + 5 * 3600}
    late = Alarm("A8", 3.0, "minor", "x", site_id="S2")  # an earlier time keeps the later
    seq.take_batch([[("g", b"A8", late, 3.0)]], out)
    assert seq.active_until == {"S1": 6.0 + 5 * 3600, "S2": 8.0 + 5 * 3600}


def test_feeding_one_record_lists_what_it_releases_by_stage():
    seq = Sequencer(warmup=1)
    assert feed(seq, Cell("C1", "S1"), b"c", "f") == [("site", "S1", Cell("C1", "S1"))]
    sub = Subscriber("U1", "upsert", 3.0)
    assert feed(seq, sub, b"s", "f") == [("care", "U1", slim(sub, "U1"))]
    [(stage, key, dead)] = feed(seq, Kpi("C9", 0.0, 60.0, 10, 0), b"k", "g")
    assert (stage, key, dead.raw, dead.source) == ("dead", None, b"k", "g")


def test_the_streams_progress_is_its_latest_record_inside_the_reorder_window():
    """With a window of 30 s, a record at 125 waits in it; the stream stands at 125, so a
    record at 220 is within 100 of it, not ahead (it is 190 past the watermark + window)."""
    seq, out = _started(ahead_s=100.0, lateness_s=30.0)
    seq.take_batch([[_pos(125.0)], [_pos(220.0)]], out)
    assert seq.ahead == [] and _times(out) == [0.0, 125.0]
    assert [x[3] for x in seq._pending] == [220.0]


def test_an_outage_inside_a_maintenance_window_is_planned_work_nobody_is_followed_around():
    from forewarn.rules.rulebook import load_rulebook

    seq, out = _started()
    seq.configure(load_rulebook())
    assert seq.near_cfg is not None
    window = Maintenance("W1", "open", 100.0, 200.0, cell_ids=("C1", "C2"))
    seq.take_batch([[("f", b"", Cell("C2", "S1"), None), ("f", b"", window, None)]], out)

    def outage(alarm_id: str, at: float, **where) -> tuple:
        return ("f", b"", Alarm(alarm_id, at, "critical", "lossOfSignal", **where), at)

    # every cell of the site in the window; a cell's alarm at the window's very start
    seq.take_batch([[outage("A1", 150.0, site_id="S1"), outage("A2", 100.0, cell_id="C1")]],
                   out)
    assert seq.outage_open == {} and seq.open_alarms == {"S1": {"A1", "A2"}}
    seq.take_batch([[outage("A3", 300.0, cell_id="C1")]], out)  # after the window
    assert seq.outage_open == {"S1": {"A3"}}
    seq.take_batch([[outage("A4", 310.0, cell_id="C2"),
                     ("f", b"", Alarm("A5", 320.0, "minor", "lossOfSignal", cell_id="C1"), 320.0),
                     ("f", b"", Alarm("A6", 330.0, "critical", "x", cell_id="C1"), 330.0)]],
                   out)
    assert seq.outage_open == {"S1": {"A3", "A4"}}  # not a minor alarm, nor another cause


def test_records_behind_the_watermark_are_applied_late_and_counted_by_type():
    seq, out = _started()
    seq.learn_anchors(False)  # (nothing learnt: positions still go their way)
    call = ("f", b"k", ("U", "C1", 4.0, "call:K1"), 4.0)
    seq.take_batch([[_pos(10.0), _pos(5.0), call, _pos(3.0), _pos(10.0)]], out)
    assert _times(out) == [0.0, 10.0, 5.0, 4.0, 3.0, 10.0]
    assert (seq.late, seq.late_by_kind) == (3, {"location": 2, "call": 1})


def test_positions_on_a_cell_the_topology_does_not_know_are_refused_and_the_rest_go_on():
    seq, out = _started()
    loc = Location("U2", "C9", 5.0)
    seq.take_batch([[("g", b"p", ("U", "C8", 3.0, None), 3.0), ("g", b"l", loc, 5.0),
                     _pos(6.0)]], out)
    assert [(d.raw, d.source, d.reason) for d in out.dead] == [
        (b"p", "g", "location.cell_id: unknown cell 'C8' (no `cell` topology record)"),
        (b"l", "g", "location.cell_id: unknown cell 'C9' (no `cell` topology record)")]
    assert _times(out) == [0.0, 6.0]


def test_at_the_end_a_held_record_exactly_ahead_s_past_the_stream_is_applied_whatever_the_rate():
    """The input ends inside the warm-up (ten records of twenty): their median (5) anchors
    the stream, which ends at 8; a record at 600,008 is held (past 5 + 600,000). Its gap,
    600,000 s, is exactly ``ahead_s``: applied, though nine records an hour expect 1,500."""
    seq = Sequencer(warmup=20, ahead_s=600_000.0)
    out = Routes()
    seq.take_batch([[("f", b"", Cell("C1", "S1"), None)] + [_pos(float(t)) for t in range(9)]
                    + [_pos(600_008.0)]], out)
    seq.finish(out)
    assert _times(out) == [float(t) for t in range(9)] + [600_008.0]
    assert out.dead == [] and seq.ahead == [] and seq.watermark == 600_008.0


def test_at_the_end_a_held_record_expecting_exactly_ahead_expected_records_is_applied():
    """Eight records over 4,096 s (1 / 512 a second): a gap of 512,000 s expects exactly
    1,000 records: applied; one more second, a dead letter."""
    for extra, applied in ((0.0, True), (1.0, False)):
        seq, out = _started(ahead_s=2000.0)
        times = [600.0 * i for i in range(1, 7)] + [4096.0]
        at = 4096.0 + 512_000.0 + extra
        seq.take_batch([[_pos(t) for t in times] + [_pos(at)]], out)
        assert seq._timed == 8 and seq._anchor == 0.0 and [x[3] for x in seq.ahead] == [at]
        seq.finish(out)
        assert (_times(out)[-1] == at) is applied and (out.dead == []) is applied


def test_the_rate_at_the_end_counts_every_record_of_the_warm_up():
    """Eight records in the warm-up (8 / 3600 a second): a gap of 460,000 s expects 1,022
    records: a dead letter (one record an hour would expect 128)."""
    seq = Sequencer(warmup=8, ahead_s=100.0)
    out = Routes()
    seq.take_batch([[("f", b"", Cell("C1", "S1"), None)]
                    + [_pos(10.0 * t) for t in range(8)] + [_pos(460_070.0)]], out)
    assert seq._timed == 8 and [x[3] for x in seq.ahead] == [460_070.0]
    seq.finish(out)
    assert [d.raw for d in out.dead] == [b"460070"]


def test_a_site_ticked_at_exactly_its_last_active_second_stays_active():
    seq, out = _started(ahead_s=INF)
    alarm = Alarm("A1", 0.0, "critical", "x", cell_id="C1")
    clear = Alarm("A1", 0.0, "cleared", "x", cell_id="C1")
    seq.take_batch([[("f", b"", alarm, 0.0), ("f", b"", clear, 0.0)]], out)
    assert seq.active_until == {"S1": 18_000.0} and seq.open_alarms == {"S1": set()}
    out = Routes()
    seq.take_batch([[_pos(18_000.0)]], out)
    assert [m for m in out.sites["S1"] if type(m) is Tick] == [Tick(18_000.0)]
    assert seq.active_until == {"S1": 18_000.0}  # its time is not up yet: 5 h to the second
    seq.take_batch([[_pos(18_015.0)]], out)
    assert seq.active_until == {}


def test_a_late_position_at_exactly_the_subscribers_latest_time_is_their_latest():
    """U on S1 at 5, then the stream at 10, then U on S2 at 5 again (late): as recent as
    their latest, so it is it: S1 is told they left, and their site is S2."""
    seq, out = _started()
    seq.take_batch([[("f", b"", Cell("C2", "S2"), None)]], out)
    seq.take_batch([[_pos(5.0), _pos(10.0, "V"), _pos(5.0, cell="C2")]], out)
    assert seq.late == 1 and seq.heard.latest("U") == ("S2", 5.0)
    assert out.sites["S1"][-1] == Left("U", 5.0)
    assert out.sites["S2"] == [Cell("C2", "S2"), ("U", "C2", 5.0, None)]


def _outage(alarm_id: str, at: float, severity: str = "critical", **where) -> tuple:
    return ("f", b"", Alarm(alarm_id, at, severity, "lossOfSignal", **where), at)


def test_an_outage_at_a_windows_very_end_is_planned_and_a_partial_window_covers_its_cells():
    """A window on C1 alone of site S1 (C1, C2): an outage on C1 inside it (up to its last
    second) is planned; one on C2, or on the whole site, is not (not all its cells)."""
    from forewarn.rules.rulebook import load_rulebook

    seq, out = _started()
    seq.configure(load_rulebook())
    window = Maintenance("W1", "open", 100.0, 200.0, cell_ids=("C1",))
    seq.take_batch([[("f", b"", Cell("C2", "S1"), None), ("f", b"", window, None)]], out)
    seq.take_batch([[_outage("A1", 200.0, cell_id="C1")]], out)
    assert seq.outage_open == {} and seq.open_alarms == {"S1": {"A1"}}
    seq.take_batch([[_outage("A2", 200.0, site_id="S1")]], out)
    assert seq.outage_open == {"S1": {"A2"}}
    seq.take_batch([[_outage("A3", 200.0, cell_id="C2")]], out)
    assert seq.outage_open == {"S1": {"A2", "A3"}}
    seq2, out2 = _started()
    seq2.configure(load_rulebook())
    seq2.take_batch([[("f", b"", Cell("C2", "S1"), None), ("f", b"", window, None),
                      _outage("A4", 150.0, cell_id="C2")]], out2)
    assert seq2.outage_open == {"S1": {"A4"}}


class _Watch(NearbyWatch):
    """A nearby watch that records the silence each expiry is handed."""

    def expire(self, now, heard, sites, silence_s=INF):
        self.silences.append((now, silence_s))
        NearbyWatch.expire(self, now, heard, sites, silence_s)


def test_a_rulebook_reloaded_without_the_nearby_watch_ends_the_running_one_at_once():
    """While the watch is configured, ticks hand it the rulebook's silence; reloaded
    without it, a clear ends the watch with no linger, and ticks hand it no silence."""
    from forewarn.rules.rulebook import load_rulebook

    seq, out = _started()
    seq.nearby = _Watch()
    seq.nearby.silences = []
    book = load_rulebook()
    seq.configure(book)
    seq.take_batch([[_outage("A1", 10.0, cell_id="C1")]], out)
    assert seq.outage_open == {"S1": {"A1"}} and list(seq.nearby.watches) == ["S1"]
    seq.take_batch([[_pos(30.0)]], out)
    assert seq.nearby.silences == [(30.0, book.correlation.silence_s)]
    seq.take_batch([[_outage("A1", 35.0, "cleared", cell_id="C1")]], out)
    assert seq.nearby.watches["S1"][2] == 35.0 + book.correlation.reappear_s
    seq.take_batch([[_outage("A2", 38.0, cell_id="C1")]], out)  # open again: no end
    assert seq.outage_open == {"S1": {"A2"}} and seq.nearby.watches["S1"][2] is None
    seq.near_cfg = None  # the rulebook reloaded, without rules that watch around outages
    seq.take_batch([[_outage("A2", 40.0, "cleared", cell_id="C1")]], out)
    assert seq.outage_open == {} and seq.nearby.watches["S1"][2] == 40.0
    seq.take_batch([[_pos(45.0)]], out)
    assert seq.nearby.silences[-1] == (45.0, 0.0) and seq.nearby.watches == {}


class _Learnt:
    """Anchors that record what they are told (rows named by the sequencer's table)."""

    def __init__(self, heard) -> None:
        self.heard = heard
        self.told: list = []

    def learn_row(self, row, n, since, at, moved=False) -> None:
        sid = self.heard.sids[row]
        self.told.append((sid, self.heard.names[n], since, at, moved))


def test_anchor_learning_is_told_whether_the_subscriber_moved():
    seq, out = _started()
    seq.take_batch([[("f", b"", Cell("C2", "S2"), None)]], out)
    seq.anchors = _Learnt(seq.heard)  # type: ignore[assignment]
    seq.take_batch([[_pos(100.0, "V"), _pos(200.0, "V"), _pos(300.0, "V", "C2")]], out)
    assert seq.anchors.told == [("V", "S1", 100.0, 200.0, False),
                                ("V", "S1", 200.0, 300.0, True)]


def test_a_call_record_is_a_position_with_its_call_reference_a_location_without():
    seq, out = _started()
    call = Call("K7", "U", "C1", 2.0, 6.0, False)
    loc = Location("U", "C1", 7.0)
    seq.take_batch([[("f", b"", r, stream_at(r)) for r in (call, loc)]], out)
    assert out.sites["S1"][-2:] == [("U", "C1", 6.0, "call:K7"), ("U", "C1", 7.0, None)]


def test_a_kpi_on_an_unknown_cell_is_refused_and_a_cancel_of_an_unknown_window_ignored():
    seq, out = _started()
    seq.take_batch([[("g", b"k", Kpi("C9", 5.0, 60.0, 10, 0), 65.0),
                     ("f", b"", Maintenance("W9", "cancel", 10.0, 20.0), None)]], out)
    assert [(d.raw, d.reason) for d in out.dead] == [
        (b"k", "kpi.cell_id: unknown cell 'C9' (no `cell` topology record)")]
    assert seq.windows == {}


def test_a_dropped_call_keeps_its_site_ticked_until_the_drop_notes_hold_down():
    """A drop note is held for the hold-down: its site needs ticks 10 min after the drop
    (a last one once that time is up), though it has no alarm."""
    seq, out = _started(ahead_s=INF)
    call = Call("K1", "U", "C1", 40.0, 100.0, True)
    seq.take_batch([[("f", b"", call, stream_at(call))]], out)
    assert seq.active_until == {"S1": 700.0}
    assert out.sites["S1"][-2:] == [("U", "C1", 100.0, "call:K1"),
                                    Drop("U", "C1", "K1", 100.0)]
    out = Routes()
    seq.take_batch([[_pos(t, "V") for t in (115.0, 690.0, 715.0, 730.0)]], out)
    assert [m.at for m in out.sites["S1"] if type(m) is Tick] == [115.0, 690.0, 715.0]
    assert seq.active_until == {}


def test_a_watch_that_started_with_nobody_around_follows_the_first_one_heard_near():
    """S1 goes down with nobody last heard around it: the first position on a site near
    it is followed (a Near to S1) though the watch follows nobody yet."""
    from forewarn.rules.rulebook import load_rulebook

    seq = Sequencer(warmup=1)
    seq.configure(load_rulebook())
    out = Routes()
    seq.take_batch([[("f", b"", Cell(f"C{i}", f"S{i}", lat=51.5, lon=0.01 * i), None)
                     for i in (1, 2)] + [_pos(0.0, "V", "C1")]], out)
    seq.take_batch([[_outage("A1", 10.0, site_id="S1")]], out)
    assert seq.nearby.followed == {} and list(seq.nearby.near_of) == ["S2"]
    out = Routes()
    seq.take_batch([[_pos(20.0, "U", "C2")]], out)
    assert [m for m in out.sites["S1"] if type(m) is Near] == [Near("U", "S2", 20.0, sent=20.0)]
    assert seq.nearby.followed == {"U": "S1"}
