"""The event-time frontier (dataflows/frontier.py) and the two steps that wait for it: a
site's outbox and deadlines (dataflows/flow.py SiteLogic), dispatch's budgets and model
(dataflows/dispatch.py). Driven without Bytewax: epochs are ended by hand, as Bytewax's
end-of-epoch ``snapshot()`` ends them."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.dataflows import records
from forewarn.dataflows.dispatch import Dispatcher
from forewarn.dataflows.flow import _SHARD_KEYS, FlowConfig, FrontierLogic, SiteLogic
from forewarn.dataflows.frontier import FrontierTracker
from forewarn.dataflows.messages import Frontier, Impact, Progress
from forewarn.dataflows.propensity import CareFeatures
from forewarn.dataflows.region import REGION_KEYS
from forewarn.model import Alarm, Cell
from forewarn.rules.rulebook import Budgets, load_rulebook
from tests.test_dispatch import BOOK, act

INF = float("inf")


# -- the tracker --------------------------------------------------------------------------


def test_sites_hear_of_a_frontier_an_epoch_later_then_the_region_keys_then_dispatch():
    f = FrontierTracker(region_keys=("r0",))
    f.take(Progress(0, 100.0, ("S1",)))
    assert f.due() == [] and f.pending
    f.end_epoch()
    assert f.due() == [("site", [("S1", Frontier(100.0))])]
    assert f.due() == []  # owed once
    f.end_epoch()
    assert f.due() == [("region", [("r0", Frontier(100.0))])]
    f.end_epoch()
    assert f.due() == [("dispatch", Frontier(100.0))]
    assert not f.pending


def test_a_tracker_from_before_the_region_stage_gets_it_owing_nothing():
    """A snapshot whose region keys heard of a frontier with the stage after the sites
    (frontier record version 2): the region keys get their own stage, right after the
    sites, owed what that stage was owed (they heard of it with it); the stage after them
    hears of it an epoch later."""
    from forewarn.dataflows import records
    from forewarn.safe_pickle import dump_record
    old = FrontierTracker(stages=("site", "dispatch"), region_keys=("r0",))
    old.take(Progress(0, 100.0, ("S1",)))
    old.end_epoch()
    old.due()  # the sites heard: dispatch is owed 100
    blob = dump_record("frontier", 2, {k: getattr(old, k) for k in (
        "marks", "ended", "idle", "sites", "epoch", "owed")})
    back = records.thaw_frontier(blob, FrontierTracker(region_keys=("r0",)))
    assert back.stages == ("site", "region", "dispatch")
    assert back.owed == [None, (100.0, 1), None]
    back.end_epoch()
    assert back.due() == [("region", [("r0", Frontier(100.0))])]
    back.end_epoch()
    assert back.due() == [("dispatch", Frontier(100.0))]


def test_the_frontier_is_the_slowest_shards_watermark_once_every_shard_has_reported():
    f = FrontierTracker(shards=3)
    f.take(Progress(0, 500.0, ("S1",)))
    f.take(Progress(2, 400.0, ("S2",)))
    assert f.staged == -INF  # shard 1 not heard from: no deadline may fire yet
    f.take(Progress(1, 450.0, ()))
    assert f.staged == 400.0
    f.take(Progress(2, 300.0, ()))  # a watermark never goes back
    assert f.staged == 400.0 and f.marks == {0: 500.0, 1: 450.0, 2: 400.0}
    f.end_epoch()
    assert f.due() == [("site", [("S1", Frontier(400.0)), ("S2", Frontier(400.0))])]


def test_progress_in_the_same_epoch_moves_the_staged_frontier_on():
    f = FrontierTracker()
    f.take(Progress(0, 100.0, ("S1",)))
    f.take(Progress(0, 130.0, ("S2",)))
    f.end_epoch()
    assert f.due() == [("site", [("S1", Frontier(130.0)), ("S2", Frontier(130.0))])]


def test_the_end_tells_nobody_anything():
    """The last epoch has no later one: sites, care and dispatch take what they hold at
    their own end of input, after the sequencer's last records."""
    f = FrontierTracker(shards=2)
    f.take(Progress(0, 100.0, ("S1",)))
    f.take(Progress(1, 250.0, ("S2",)))
    assert f.finish() == [] and not f.pending


def test_a_shard_whose_input_ended_holds_no_one_back():
    f = FrontierTracker(shards=3)
    f.take(Progress(0, 100.0, ("S1",), ended=True))
    f.take(Progress(1, 300.0, ()))
    assert f.staged == -INF  # shard 2 not heard from yet: ended or not, it may send more
    f.take(Progress(2, 250.0, ()))
    assert f.staged == 250.0 and f.ended == {0: None}  # not 100: shard 0 sends no more
    f.take(Progress(2, 400.0, (), ended=True))
    assert f.staged == 300.0  # shard 1 is the one left
    f.take(Progress(1, 350.0, (), ended=True))
    # every shard at its end: the latest watermark, not the least (nothing more comes)
    assert f.staged == 400.0
    f.end_epoch()
    assert f.due() == [("site", [("S1", Frontier(400.0))])]


def test_every_stage_hears_once_in_its_order_and_a_newer_frontier_follows_the_older():
    """Sites, care keys, dispatch, each an epoch after the stage before; a frontier taken
    while an older one is on its way goes the same way an epoch behind it."""
    f = FrontierTracker(stages=("site", "care", "dispatch"), care_keys=("k0", "k1"))
    f.take(Progress(0, 100.0, ("S1",)))
    f.end_epoch()
    assert f.due() == [("site", [("S1", Frontier(100.0))])]
    f.take(Progress(0, 200.0, ("S2", "S1")))  # same epoch as the sites heard of 100
    assert f.due() == [] and f.owed == [(200.0, 1), (100.0, 1), None]
    f.end_epoch()
    assert f.due() == [("care", [("k0", Frontier(100.0)), ("k1", Frontier(100.0))]),
                       ("site", [("S1", Frontier(200.0)), ("S2", Frontier(200.0))])]
    f.end_epoch()
    assert f.due() == [("dispatch", Frontier(100.0)),
                       ("care", [("k0", Frontier(200.0)), ("k1", Frontier(200.0))])]
    assert f.pending
    f.end_epoch()
    assert f.due() == [("dispatch", Frontier(200.0))]
    assert not f.pending and f.owed == [None, None, None]


def test_several_epochs_without_a_call_still_move_a_frontier_one_stage_per_call():
    f = FrontierTracker(stages=("site", "care", "dispatch"), care_keys=("k",))
    f.take(Progress(0, 100.0, ("S1",)))
    for _ in range(3):
        f.end_epoch()
    assert f.due() == [("site", [("S1", Frontier(100.0))])]
    assert f.due() == []  # care's turn comes an epoch after the sites heard
    f.end_epoch()
    assert f.due() == [("care", [("k", Frontier(100.0))])]


def test_the_end_forgets_what_was_owed():
    f = FrontierTracker(stages=("site", "care", "dispatch"))
    f.take(Progress(0, 100.0, ("S1",)))
    f.end_epoch()
    f.due()
    assert f.finish() == [] and f.owed == [None, None, None]
    f.end_epoch()
    assert f.due() == []


def test_the_tracker_survives_a_snapshot():
    f = FrontierTracker(shards=2)
    f.take(Progress(0, 100.0, ("S1",)))
    f.end_epoch()
    back = records.thaw_frontier(records.freeze_frontier(f), FrontierTracker(shards=2))
    assert back == f


def test_the_frontier_step_asks_to_be_called_while_something_is_owed():
    """Sites, then the region keys (which pass verdicts on to care), then every care
    shard (with recovery: care gate), then dispatch."""
    for durable in (False, True):
        _asks_while_owed(FrontierLogic(FlowConfig(book=load_rulebook(), durable=durable),
                                       None))


def _asks_while_owed(logic: FrontierLogic) -> None:
    assert logic.notify_at() is None
    assert logic.on_batch([Progress(0, 100.0, ("S1",))]) == ([], False)
    assert logic.notify_at() is not None
    assert logic.on_notify() == ([], False)  # still the same epoch
    logic.snapshot()  # Bytewax ends the epoch
    assert logic.on_notify() == ([("site", [("S1", Frontier(100.0))])], False)
    logic.snapshot()
    assert logic.on_notify() == ([("region", [(k, Frontier(100.0)) for k in REGION_KEYS])],
                                 False)
    logic.snapshot()
    [(stage, keys)] = logic.on_notify()[0]
    assert stage == "care" and keys == [(k, Frontier(100.0)) for k in _SHARD_KEYS]
    logic.snapshot()
    assert logic.on_notify() == ([("dispatch", Frontier(100.0))], False)
    assert logic.notify_at() is None


def test_a_frontier_with_recovery_from_before_care_gates_owes_them_nothing():
    """A run with recovery told care of no frontier before care had gates: its record
    owes three stages; resumed, the gates are owed nothing and dispatch what it was."""
    old = FrontierTracker(region_keys=REGION_KEYS)  # (site, region, dispatch)
    old.take(Progress(0, 100.0, ("S1",)))
    old.end_epoch()
    old.due()  # the sites hear of 100
    old.end_epoch()
    old.due()  # the region keys
    logic = FrontierLogic(FlowConfig(book=load_rulebook(), durable=True),
                          records.freeze_frontier(old))
    assert logic.tracker.stages == ("site", "region", "care", "dispatch")
    assert [o is None for o in logic.tracker.owed] == [True, True, True, False]
    logic.snapshot()
    assert logic.on_notify()[0] == [("dispatch", Frontier(100.0))]


# -- a site's outbox ----------------------------------------------------------------------

T0 = 1_795_420_800.0  # 2026-11-23T00:00:00Z


def _site() -> SiteLogic:
    logic = SiteLogic(FlowConfig(book=load_rulebook()), None)
    logic.on_batch([("S1", [Cell("S1-C1", "S1", region="north"),
                            ("U1", "S1-C1", T0 + 10, None)])])
    return logic


def _outage(logic: SiteLogic) -> list:
    alarm = Alarm("A1", T0 + 60, "critical", "lossOfSignal", cell_id="S1-C1")
    return logic.on_batch([("S1", [alarm])])[0]


def _flat(out: list) -> list:
    """A site's output with its verdicts one by one: those of a region leave as one list
    per region for the region step (``("region", (region, [verdict, ...]))``)."""
    flat: list = []
    for tag, item in out:
        if tag == "region":
            assert item[0] == "north"
            flat += [("care", v) for v in item[1]]
        else:
            flat.append((tag, item))
    return flat


def test_a_sites_verdicts_of_a_region_go_as_one_list_the_others_one_by_one():
    logic = _site()
    hold = logic.cfg.book.correlation.hold_down_s
    logic.on_batch([("S1", [("U2", "S1-C1", T0 + 20, None)])])
    _outage(logic)
    logic.snapshot()
    out = logic.on_batch([("S1", Frontier(T0 + 60 + hold + 1))])[0]
    [(tag, (region, verdicts))] = [x for x in out if x[0] != "incident"]
    assert (tag, region) == ("region", "north")
    assert sorted((type(v), v.subscriber_id) for v in verdicts) == [(Impact, "U1"),
                                                                    (Impact, "U2")]
    nowhere = SiteLogic(FlowConfig(book=load_rulebook()), None)
    nowhere.on_batch([("S2", [Cell("S2-C1", "S2"), ("U1", "S2-C1", T0 + 10, None)])])
    nowhere.on_batch([("S2", [Alarm("A2", T0 + 60, "critical", "lossOfSignal",
                                    cell_id="S2-C1")])])
    out = nowhere.on_batch([("S2", Frontier(T0 + 60 + hold + 1))])[0]
    assert [type(v) for tag, v in out if tag == "care"] == [Impact]


def test_a_frontier_fires_the_hold_down_and_its_verdicts_go_out_at_once():
    logic = _site()
    hold = logic.cfg.book.correlation.hold_down_s
    assert _outage(logic) == []
    logic.snapshot()
    out = logic.on_batch([("S1", Frontier(T0 + 60 + hold))])[0]  # the group wait, not more
    assert [(tag, v.status) for tag, v in out] == [("incident", "open")]
    out = _flat(logic.on_batch([("S1", Frontier(T0 + 60 + hold + 1))])[0])
    impacts = [v for tag, v in out if tag == "care"]
    assert [(i.subscriber_id, i.at) for i in impacts] == [("U1", T0 + 60 + hold)]
    assert not logic.outbox


def test_a_verdict_decided_from_a_record_waits_for_a_later_epoch_or_a_frontier_past_it():
    logic = _site()
    hold = logic.cfg.book.correlation.hold_down_s
    _outage(logic)
    late = T0 + 60 + hold + 30
    out = logic.on_batch([("S1", [("U2", "S1-C1", late, None)])])[0]  # fires the hold-down
    assert out and {tag for tag, _ in out} == {"incident"}  # incidents at once, verdicts held
    assert [type(v) for _, (_, v) in logic.outbox] == [Impact]
    # the same epoch: a frontier before the verdict's time leaves it held ...
    assert logic.on_batch([("S1", Frontier(T0 + 60 + hold))])[0] == []
    # ... one past it releases it (every record before it reached care in an earlier epoch)
    out = _flat(logic.on_batch([("S1", Frontier(T0 + 60 + hold + 1))])[0])
    assert [type(v) for _, v in out] == [Impact] and not logic.outbox


def test_any_frontier_in_a_later_epoch_releases_what_was_decided_before_it():
    logic = _site()
    hold = logic.cfg.book.correlation.hold_down_s
    _outage(logic)
    logic.on_batch([("S1", [("U2", "S1-C1", T0 + 60 + hold + 30, None)])])
    logic.snapshot()
    out = _flat(logic.on_batch([("S1", Frontier(T0))])[0])
    assert [type(v) for _, v in out] == [Impact] and not logic.outbox


def test_records_after_a_frontier_in_one_batch_still_reach_the_outbox():
    """A frontier replaces the outbox list: what the same call adds after it is kept."""
    logic = _site()
    hold = logic.cfg.book.correlation.hold_down_s
    _outage(logic)
    logic.snapshot()
    logic.on_batch([("S1", Frontier(T0 + 61)),
                    ("S1", [("U2", "S1-C1", T0 + 60 + hold + 30, None)])])
    assert [type(v) for _, (_, v) in logic.outbox] == [Impact]
    assert _flat(logic.on_eof()[0])[0][1].subscriber_id == "U1"


def test_a_frontier_for_a_site_that_has_no_state_is_ignored():
    logic = SiteLogic(FlowConfig(book=load_rulebook()), None)
    assert logic.on_batch([("S9", Frontier(T0))]) == ([], False) and logic.site is None


# -- dispatch in event-time order ------------------------------------------------------------

FEATURES = CareFeatures("consumer", "Basic", 12, "outage", 0.0, 300.0, True, 1, 0, 10)


def test_dispatch_holds_actions_until_a_frontier_passes_them():
    d = Dispatcher()
    assert d.take([act(1, 100.0), act(2, 50.0)], BOOK) == []
    out = d.take([Frontier(100.0)], BOOK)
    assert [a.action_id for a in out] == ["a2"]  # 100 is not before the frontier
    assert [a.action_id for a in d.finish(BOOK)] == ["a1"]


def test_an_action_behind_the_frontier_is_taken_when_it_arrives():
    d = Dispatcher()
    d.take([Frontier(500.0)], BOOK)
    assert [a.action_id for a in d.take([act(1, 100.0)], BOOK)] == ["a1"]


def test_contacts_of_the_last_day_are_counted_in_event_time_order():
    seen: list = []

    class Spy(Dispatcher):
        def _score(self, a, book):
            seen.append(a.features.contacts_24h)
            return a

    d = Spy()
    first = act("x", 1000.0, features=FEATURES, sub="U", rule="everyone")
    second = act("y", 2000.0, features=FEATURES, sub="U", rule="everyone")
    d.take([second, first, Frontier(3000.0)], BOOK)
    assert seen == [0, 1]
    d.take([act("z", 1000.0 + 86400.0 + 1, features=FEATURES, sub="U"),
            Frontier(1000.0 + 86400.0 + 2)], BOOK)
    assert seen == [0, 1, 1]  # the first is more than a day old


TIMES = st.lists(st.integers(0, 40), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(TIMES, st.lists(st.integers(0, 50), max_size=6), st.randoms(use_true_random=False))
def test_budgets_and_scores_do_not_depend_on_batches_or_frontiers(minutes, cuts, rnd):
    """The same actions, cut into batches in any arrival order with frontiers anywhere
    (each frontier after every action before it has arrived), get the same budgets and
    scores as all of them taken at once."""
    budgets = Budgets(per_minute={"sms": 2}, compensation_per_day=3, reserve_share=0.5,
                      priority_segments=("vip",))
    book = replace(BOOK, budgets=budgets)
    actions = [act(i, 60.0 * m + (i % 7), kind="compensation" if i % 3 == 0 else "apology",
                   segment="vip" if i % 4 == 0 else "consumer", features=FEATURES,
                   sub=f"U{i % 5}")
               for i, m in enumerate(minutes)]
    whole = Dispatcher().take([*actions, Frontier(INF)], book)

    d = Dispatcher()
    got: list = []
    arrived: list = []
    pending = sorted(actions, key=lambda a: a.event_time)
    for cut in sorted(set(cuts)):  # a frontier at each cut, once what is before it arrived
        now = [a for a in pending if a.event_time < 60.0 * cut]
        pending = [a for a in pending if a.event_time >= 60.0 * cut]
        rnd.shuffle(now)
        arrived += now
        got += d.take(now + [Frontier(60.0 * cut)], book)
    rnd.shuffle(pending)
    got += d.take(pending, book) + d.finish(book)
    assert sorted(got, key=_key) == sorted(whole, key=_key)


def _key(a) -> tuple:
    return (getattr(a, "action_id", ""), repr(a))


# -- idle shards (Kafka, live) ----------------------------------------------------------


def test_an_idle_shard_is_left_out_until_its_next_news():
    f = FrontierTracker(shards=3)
    f.take(Progress(0, 500.0))
    f.take(Progress(1, 300.0))
    assert f.frontier() == -INF  # shard 2 has said nothing yet
    f.take(Progress(2, -INF, idle=True))  # never had input, idle: it holds no one back
    assert f.frontier() == 300.0
    f.take(Progress(1, 300.0, idle=True))
    assert f.frontier() == 500.0 and f.idle == {2: None, 1: None}
    f.take(Progress(1, 320.0))  # news from shard 1: it counts again
    assert f.frontier() == 320.0 and f.idle == {2: None}
    f.take(Progress(2, 310.0))  # and from shard 2, behind the others
    assert f.frontier() == 310.0 and f.idle == {}


def test_when_every_shard_going_is_idle_the_frontier_is_the_least_of_theirs():
    f = FrontierTracker(shards=3)
    f.take(Progress(0, 900.0, ended=True))
    f.take(Progress(1, 550.0, idle=True))
    f.take(Progress(2, 400.0, idle=True))
    assert f.frontier() == 400.0  # not the ended shard's 900: the idle may yet have news
    g = FrontierTracker(shards=2)
    g.take(Progress(0, 700.0, ended=True))
    g.take(Progress(1, 200.0, ended=True))
    assert g.frontier() == 700.0  # every input is over
    h = FrontierTracker(shards=1)
    h.take(Progress(0, -INF, ended=True))  # over before any watermark
    assert h.frontier() == -INF
