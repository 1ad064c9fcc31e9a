"""Each stage's snapshot is a versioned record of its state only (forewarn.dataflows.records):
a resumed stage takes its configuration from the run that resumes it, never from the
snapshot, and a record that is not one this Forewarn reads is refused with a message
that says what."""

from __future__ import annotations

import pickle
from array import array
from dataclasses import replace

import pytest

from forewarn.dataflows import records
from forewarn.dataflows.care import CareShard
from forewarn.dataflows.dispatch import Dispatcher
from forewarn.dataflows.flow import (
    CareGateLogic,
    CareKeys,
    DispatchLogic,
    FlowConfig,
    FrontierLogic,
    RegionLogic,
    SequenceLogic,
    SiteLogic,
    _decode_batch,
    check_resume,
)
from forewarn.dataflows.messages import Progress, ShardBatch
from forewarn.dataflows.sequencer import Sequencer
from forewarn.dataflows.site import SiteCorrelator
from forewarn.rules.rulebook import NEARBY_TRIGGERS, load_rulebook
from forewarn.safe_pickle import UnsafePickle, check_pickle, dump_record, read_record
from tests.snapshot_fixtures import ROOT, lines

BOOK = load_rulebook()
NO_NEARBY = replace(BOOK, rules=tuple(r for r in BOOK.rules if r.at not in NEARBY_TRIGGERS))


def _sequencer(cfg: FlowConfig, n: int = 3000) -> SequenceLogic:
    """A sequencer that took the start of the fixtures' scenario, as the flow runs it."""
    logic = SequenceLogic(cfg, None)
    stream = lines()[:n]
    for i in range(0, len(stream), 500):
        decoded = _decode_batch([("f", line) for line in stream[i:i + 500]])
        logic.on_batch([decoded[0][1]])
    return logic


def _resumed(cfg: FlowConfig, **changes) -> SequenceLogic:
    blob = _sequencer(cfg).snapshot()
    assert blob is not None
    return SequenceLogic(replace(cfg, **changes), blob)


# ---- the command line wins on resume ---------------------------------------------------


def test_a_resumed_sequencer_takes_lateness_and_tick_from_the_command_line():
    cfg = FlowConfig(book=BOOK, durable=True, lateness_s=30.0, tick_s=10.0)
    before = _sequencer(cfg)
    resumed = SequenceLogic(replace(cfg, lateness_s=5.0, tick_s=60.0), before.snapshot())
    assert (resumed.seq.lateness_s, resumed.seq.tick_s) == (5.0, 60.0)
    assert resumed.seq.watermark == before.seq.watermark  # the state is the snapshot's
    assert resumed.seq.cell_site == before.seq.cell_site
    assert len(resumed.seq.heard) == len(before.seq.heard) > 50


def test_a_resumed_sequencer_takes_the_rulebook_of_the_run():
    cfg = FlowConfig(book=BOOK, durable=True)
    assert BOOK.watches_nearby and not NO_NEARBY.watches_nearby
    assert _resumed(cfg, book=NO_NEARBY).seq.near_cfg is None
    fewer = replace(BOOK, correlation=replace(BOOK.correlation, nearby_sites=3))
    assert _resumed(replace(cfg, book=NO_NEARBY), book=fewer).seq.near_cfg[0] == 3


@pytest.mark.parametrize("learnt", [True, False])
def test_a_resumed_sequencer_learns_anchors_as_the_command_line_says(learnt: bool):
    cfg = FlowConfig(book=BOOK, durable=True, anchors=learnt)
    seq = _resumed(cfg, anchors=not learnt).seq
    assert (seq.anchors is not None) is (not learnt)
    assert (seq.heard.anchor is not None) is (not learnt)
    assert seq.nearby.anchors is seq.anchors
    if seq.anchors is not None:
        assert seq.anchors.heard is seq.heard  # one table of rows


def test_a_resumed_input_shard_keeps_its_index_and_takes_the_shard_count():
    cfg = FlowConfig(book=BOOK, durable=True, shards=2)
    logic = SequenceLogic(cfg, None)
    stream = lines()[:500]
    logic.on_batch([(1, _decode_batch([("f", line) for line in stream])[0][1])])
    assert (logic.seq.shard, logic.seq.shards) == (1, 2)
    resumed = SequenceLogic(cfg, logic.snapshot())
    assert (resumed.seq.shard, resumed.seq.shards, resumed.seq.nearby.announce) == (1, 2, False)
    assert read_record(logic.snapshot())[2]["shard"] == 1


def test_a_resumed_site_takes_the_rulebook_and_the_models_switch_of_the_run():
    cfg = FlowConfig(book=BOOK, durable=True, models=True)
    seq = _sequencer(FlowConfig(book=BOOK))
    site_id = next(iter(seq.seq.site_cells))
    logic = SiteLogic(cfg, None)
    logic.on_batch([(site_id, [])])
    assert logic.site is not None and logic.site.detect
    resumed = SiteLogic(replace(cfg, models=False, book=NO_NEARBY), logic.snapshot())
    assert resumed.site is not None and resumed.site.site_id == site_id
    assert resumed.site.detect is False and resumed.site.book is NO_NEARBY


def test_a_resumed_site_merges_the_shards_of_the_run_and_refuses_another_count():
    cfg = FlowConfig(book=BOOK, durable=True, shards=2)
    logic = SiteLogic(cfg, None)
    logic.on_batch([("S1", ShardBatch(0, 100.0, []))])
    blob = logic.snapshot()
    resumed = SiteLogic(cfg, blob)
    assert resumed.merge is not None and resumed.merge.shards == 2
    assert resumed.merge.last == logic.merge.last
    with pytest.raises(UnsafePickle, match="of 2 input shards; this run has 3"):
        SiteLogic(replace(cfg, shards=3), blob)


def test_a_resumed_frontier_takes_the_shard_count_and_its_stages_from_the_run():
    cfg = FlowConfig(book=BOOK, durable=True, shards=2)
    logic = FrontierLogic(cfg, None)
    logic.on_batch([Progress(0, 100.0, ("S1",)), Progress(1, 90.0)])
    blob = logic.snapshot()
    resumed = FrontierLogic(replace(cfg, shards=3), blob)
    assert resumed.tracker.shards == 3 and resumed.tracker.marks == {0: 100.0, 1: 90.0}
    assert resumed.tracker.frontier() == float("-inf")  # the third shard has not reported
    assert set(read_record(blob)[2]) == {"marks", "ended", "idle", "sites", "epoch", "owed"}


def test_records_hold_no_configuration():
    """Nothing the run is given is in a record (the rulebook, the command line's values)."""
    cfg = FlowConfig(book=BOOK, durable=True, lateness_s=30.0)
    seq = read_record(_sequencer(cfg).snapshot())[2]
    assert not {"lateness_s", "tick_s", "warmup", "ahead_s", "near_cfg", "shards"} & set(seq)
    site = SiteLogic(cfg, None)
    site.on_batch([("S1", [])])
    own = read_record(site.snapshot())[2]["site"]
    assert "book" not in own and "detect" not in own
    for blob in (site.snapshot(), _sequencer(cfg).snapshot(),
                 CareKeys(cfg)(None).snapshot(), DispatchLogic(cfg, None).snapshot(),
                 RegionLogic(cfg, None).snapshot(), FrontierLogic(cfg, None).snapshot()):
        assert b"Rulebook" not in blob and b"FlowConfig" not in blob
        check_pickle(pickle.dumps(blob))  # as Bytewax stores it


def test_every_stage_writes_its_current_record_version():
    cfg = FlowConfig(book=BOOK, durable=True)
    site = SiteLogic(cfg, None)
    site.on_batch([("S1", [])])
    blobs = {"sequence": _sequencer(cfg, 500).snapshot(), "site": site.snapshot(),
             "care": CareKeys(cfg)(None).snapshot(),
             "gate": CareGateLogic(cfg, None).snapshot(),
             "dispatch": DispatchLogic(cfg, None).snapshot(),
             "region": RegionLogic(cfg, None).snapshot(),
             "frontier": FrontierLogic(cfg, None).snapshot()}
    assert set(blobs) == set(records.FORMATS)
    for stage, blob in blobs.items():
        assert read_record(blob)[:2] == (stage, records.FORMATS[stage].version)


def test_without_recovery_nothing_is_snapshotted():
    cfg = FlowConfig(book=BOOK)
    for logic in (SequenceLogic(cfg, None), SiteLogic(cfg, None), CareKeys(cfg)(None),
                  DispatchLogic(cfg, None), RegionLogic(cfg, None), FrontierLogic(cfg, None)):
        assert logic.snapshot() is None


# ---- versions and upgrades -------------------------------------------------------------


def test_a_format_1_snapshot_is_the_first_version_of_its_stage():
    """The v1 fixtures: the stages' objects pickled whole, upgraded to records."""
    blob = (ROOT / "v1" / "sequencer.bin").read_bytes()
    assert blob.startswith(b"forewarn-state:\x01")
    assert read_record(blob)[:2] == (None, 1)
    data = records.load("sequence", blob)
    assert not {"lateness_s", "tick_s", "near_cfg"} & set(data) and data["watermark"]
    seq = records.thaw_sequence(blob, lateness_s=7.0, tick_s=30.0, book=BOOK)
    assert (seq.lateness_s, seq.tick_s) == (7.0, 30.0)


def test_an_upgrade_chain_runs_every_step_from_the_snapshot_version():
    seen = []

    def step(n):
        def up(data):
            seen.append(n)
            return {**data, f"v{n + 1}": True} if isinstance(data, dict) else {"v2": True}
        return up

    fmt = records.StageFormat("x", frozenset({"v2", "v3", "v4"}), (step(1), step(2), step(3)))
    assert fmt.version == 4
    assert fmt.upgrade(2, {"v2": True}) == {"v2": True, "v3": True, "v4": True}
    assert seen == [2, 3]
    assert fmt.upgrade(4, {"v4": True}) == {"v4": True} and seen == [2, 3]
    with pytest.raises(UnsafePickle, match="version 5 of the x stage's record; this Forewarn "
                                           "reads versions 1 to 4"):
        fmt.upgrade(5, {})


@pytest.mark.parametrize(("blob", "message"), [
    (dump_record("care", 3, {"subscribers": {}, "lateness_s": 3.0}),
     "the care stage's record (version 3) holds fields it does not have: lateness_s"),
    (dump_record("care", 2, ["not", "a", "dict"]),
     "the care stage's record holds a list, not a dict of fields"),
    (dump_record("region", 2, {}), "it is a snapshot of the region stage, not of the care stage"),
    (dump_record("care", 9, {}), "version 9 of the care stage's record; this Forewarn reads "
                                 "versions up to 3"),
    (dump_record("nosuch", 2, {}), "a record of a stage named 'nosuch', which this Forewarn "
                                   "has none of"),
    (b"forewarn-state:\x02care", "its state record header names no stage"),
    (dump_record("care", 2, {"subscribers": []}), "care's subscribers in the snapshot is a list"),
])
def test_a_record_this_forewarn_does_not_read_is_refused_saying_what(blob: bytes, message: str):
    with pytest.raises(UnsafePickle) as refused:
        records.thaw_care(blob)
    assert message in str(refused.value)


def test_the_pickle_check_refuses_unknown_stages_and_versions_before_the_run():
    for blob in (dump_record("care", 9, {}), dump_record("nosuch", 2, {})):
        with pytest.raises(UnsafePickle):
            check_pickle(pickle.dumps(blob))
    check_pickle(pickle.dumps(dump_record("care", 2, {"subscribers": {}})))


def test_a_site_record_from_a_newer_site_class_is_refused_by_field():
    blob = dump_record("site", 2, {"site": {"site_id": "S1", "not_a_field": 1}, "outbox": []})
    with pytest.raises(UnsafePickle, match="the site in the snapshot holds a field "
                                           "'not_a_field'"):
        records.thaw_site(blob, book=BOOK)


def test_a_field_missing_from_a_record_gets_its_default():
    """Adding a field with a default that suits older snapshots needs no new version."""
    blob = records.freeze_sequence(Sequencer(watermark=5.0))
    stage, version, data = read_record(blob)
    del data["late_by_kind"]
    seq = records.thaw_sequence(dump_record(stage, version, data), lateness_s=0.0,
                                tick_s=15.0, book=BOOK)
    assert seq.watermark == 5.0 and seq.late_by_kind == {}


def test_the_store_check_refuses_a_record_under_another_step_saying_where(tmp_path):
    import sqlite3

    from forewarn.recovery_store import RecoveryStoreError, _scan_snapshots

    part = tmp_path / "part-0.sqlite3"
    conn = sqlite3.connect(part)
    conn.execute("CREATE TABLE snaps (step_id, state_key, snap_epoch, ser_change)")
    care = pickle.dumps(records.freeze_care(CareShard(), []))
    conn.executemany("INSERT INTO snaps VALUES (?, ?, 3, ?)",
                     [("forewarn.care", "SUB1", care), ("forewarn.region", "noc-0", care)])
    conn.commit()
    conn.close()
    with pytest.raises(RecoveryStoreError) as refused:
        _scan_snapshots(part)
    assert ("the snapshot of step 'forewarn.region', key 'noc-0', epoch 3 is refused: it "
            "holds the state record of the care stage") in str(refused.value)


#: Each stage's record at each version: its fields (an inner record's as ``field.name``).
#: A record whose fields change is a new version of it: a Forewarn that does not know
#: the version then refuses it before a run, by name, where a record with fields it does
#: not know would fail in a worker.
RECORD_SHAPES = {
    "sequence": (3, """
        _ahead_run _anchor _next_tick _pending _timed active_until ahead anchors cell_names
        cell_site heard late late_by_kind nearby open_alarms outage_open shard site_cells
        watermark windows"""),
    "site": (3, """
        merge outbox site site._pruned_at site._seq site._walk_at site.alarm_causes
        site.alarm_cells site.around site.away site.cell_incident site.cells site.clock
        site.deadlines site.down site.first_after site.flap_starts site.health site.history
        site.incidents site.members site.recent site.region site.silent site.site_id
        site.windows"""),
    "frontier": (3, """
        ended epoch idle marks owed sites"""),
    "region": (3, """
        frontier groups held verdicts"""),
    "care": (3, """
        held subscribers"""),
    "gate": (2, """
        at ends named names others shapes sids"""),
    "dispatch": (2, """
        clock compensations contacts exposures frontier held model sends swept"""),
}


@pytest.mark.parametrize("stage", sorted(records.FORMATS))
def test_a_record_whose_fields_change_gets_a_new_version(stage: str):
    fmt = records.FORMATS[stage]
    version, shape = RECORD_SHAPES[stage]
    assert (fmt.version, fmt.shape) == (version, frozenset(shape.split())), (
        f"the fields of the {stage} stage's record changed: give it a new version (an "
        f"upgrade step in forewarn.dataflows.records.FORMATS, its shape here, a fixture "
        f"set: docs/layout.md, Snapshots), or list the field among those the run gives")


# ---- a record of the right stage and version, of the wrong shape ---------------------------

RESUME_CFG = FlowConfig(book=BOOK, durable=True, shards=2)


def _record(freeze_blob: bytes, change) -> bytes:
    """``freeze_blob``'s record with ``change(data)`` applied: what a crafted snapshot is."""
    stage, version, data = read_record(freeze_blob)
    change(data)
    return dump_record(stage, version, data)


def _site_data() -> bytes:
    site = SiteCorrelator(site_id="S1", book=BOOK)
    site.members.put("U1", "C1", 60.0, None)
    return records.freeze_site(site, [])


def _site_v2(members: dict) -> bytes:
    """A site record of version 2 (members a dict of id -> (cell, at, ref))."""
    own = {"site_id": "S1", "members": members, "away": {}, "first_after": {}}
    return dump_record("site", 2, {"site": own, "outbox": []})


def _crafted() -> list[tuple[str, bytes, str]]:
    seq = Sequencer(watermark=5.0)
    seq.heard.note("U1", seq.heard.number("S1"), 60.0)
    return [
        ("site", _record(_site_data(), lambda d: d["site"].update(members=[["U1", "C1"]])),
         "site.members is a list, not a Members"),
        ("site", _record(_site_data(), lambda d: d["site"]["members"].at.pop()),
         "the members' columns differ in length (1 ids, 1 cells, 0 times, 1 references)"),
        ("site", _record(_site_data(), lambda d: d["site"]["members"].names.__setitem__(0, 7)),
         "site.members.names[0] is a int, not a str"),
        ("site", _record(_site_data(), lambda d: setattr(d["site"]["members"], "cell",
                                                           array("d", [0.0]))),
         "the members' cell and time columns are arrays of 'd' and 'd', not 'I' and 'd'"),
        ("site", _record(_site_data(), lambda d: d["site"]["members"].put("U2", "C1", 61.0,
                                                                          None)
                         or d["site"]["members"].sids.__setitem__(1, "U1")),
         "a member has two rows"),
        ("site", _site_v2({"U1": ("C1", 10**400, None)}),
         "the site member's time in the snapshot is out of range"),
        ("site", _site_v2({None: ("C1", 60.0, None)}),
         "the site member's id in the snapshot is a NoneType"),
        ("site", _record(_site_data(), lambda d: d["site"].update(clock="late")),
         "site.clock is a str, not a float"),
        ("sequence", _record(records.freeze_sequence(seq),
                             lambda d: d.update(watermark="never")),
         "sequencer.watermark is a str, not float or None"),
        ("sequence", _record(records.freeze_sequence(seq),
                             lambda d: d["heard"].at.pop()),
         "the rows' columns differ in length (1 ids, 1 sites, 0 times)"),
        ("sequence", _record(records.freeze_sequence(seq),
                             lambda d: d["heard"].site.__setitem__(0, 9)),
         "a site number is not one of the 2 sites"),
        ("frontier", dump_record("frontier", records.FORMATS["frontier"].version,
                                 {"marks": [1.0], "owed": [None] * 3}),
         "frontier.marks is a list, not a dict"),
        ("care", dump_record("care", records.FORMATS["care"].version,
                             {"subscribers": {"U1": ("en", b"x", 1.0, None)}}),
         "care's profile[0] is a str, not a Profile"),
        ("dispatch", _record(records.freeze_dispatch(Dispatcher()),
                             lambda d: d.update(compensations={"2026-12-06": "many"})),
         "dispatch.compensations (key 0) is a str, not a int"),
    ]


@pytest.mark.parametrize(("stage", "blob", "message"), _crafted(),
                         ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(_crafted())])
def test_a_record_of_the_wrong_shape_is_refused_before_the_run_saying_where(
        stage: str, blob: bytes, message: str) -> None:
    with pytest.raises(UnsafePickle) as refused:
        check_resume(RESUME_CFG, stage, blob)
    assert message in str(refused.value)


def test_every_stage_of_a_real_run_resumes_from_its_own_records() -> None:
    """What the flow writes passes the check (the checked-in fixtures: every format)."""
    seq = Sequencer(watermark=5.0)
    seq.heard.note("U1", seq.heard.number("S1"), 60.0)
    for stage, blob in (("sequence", records.freeze_sequence(seq)), ("site", _site_data()),
                        ("dispatch", records.freeze_dispatch(Dispatcher()))):
        check_resume(RESUME_CFG, stage, blob)
    check_resume(RESUME_CFG, "input", b"anything")  # not a stage's: its source checks it


def test_a_care_record_of_version_2_loads_its_profile_tuples_in_the_current_form():
    """Version 2 kept ``(profile, name, since, known_since)`` with a str name; version 3
    keeps the name as bytes and leaves ``known_since`` out when it is ``since``."""
    from forewarn.dataflows.care import Profile

    p = Profile("en", "UTC", "consumer", ("sms",), "")
    blob = dump_record("care", 2, {"subscribers": {"U1": (p, "Zoë", 60.0, 60.0),
                                                   "U2": (p, "", 90.0, 30.0)}})
    shard, held = records.thaw_care(blob)
    assert held == [] and shard.known() == {"U1": (p, "Zoë".encode(), 60.0),
                                            "U2": (p, b"", 90.0, 30.0)}
    assert (shard.care("U2").name, shard.care("U2").known_since) == ("", 30.0)
    with pytest.raises(UnsafePickle, match="profile tuple in the snapshot has 2 items"):
        records.thaw_care(dump_record("care", 2, {"subscribers": {"U1": (p, "x")}}))
