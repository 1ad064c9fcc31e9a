"""Each stage's snapshot: a small versioned record of its state, never its configuration.

A record is ``(stage, version, data)``: the flow step that keeps the state
(``sequence``, ``site``, ``frontier``, ``region``, ``gate``, ``care``,
``dispatch``), the version of that stage's record format, and ``data``, a dict of the
state's own fields. What a stage is *given* is not in it: the run's configuration
(``FlowConfig``: the rulebook, ``--lateness``, the tick, the input shard count, whether
models run and anchors are learnt, recovery on or off) and what is derived from it. A
resumed stage is rebuilt from its record plus the configuration of the run that resumes
it, so the command line always wins. Snapshot bytes are
:func:`forewarn.safe_pickle.dump_record`'s: the header names the stage and its version,
and the data is a pickle that names only Forewarn's state classes (nested objects such
as a site's open incidents, a sequencer's rows, a care state, stay objects of those
classes, each restoring older versions of itself with
:func:`~forewarn.dataflows.state.restore_fields`).

Per stage, one function builds the record from the live object (``freeze_<stage>``),
one rebuilds the live object from a record and the current configuration
(``thaw_<stage>``), and :data:`FORMATS` holds the stage's current version with its chain
of upgrades, one step per version (``steps[n - 1]`` takes version ``n`` to ``n + 1``).
Version 1 of every stage is the format the stages wrote before records: the live object
pickled whole (snapshot format 1, or a bare pickle), which its first step turns into a
record. ``docs/layout.md`` (section "Snapshots") says how to change a record;
``tests/test_snapshot_fixtures.py`` reads a checked-in snapshot of every format.

>>> from forewarn.dataflows.region import RegionShard
>>> blob = freeze_region(RegionShard(frontier=60.0))
>>> blob[:24]
b'forewarn-state:\\x02region:\\x03'
>>> thaw_region(blob).frontier
60.0
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from forewarn.dataflows.anchors import Anchors
from forewarn.dataflows.care import CareShard, Known, Profile, SubscriberCare
from forewarn.dataflows.dispatch import Dispatcher
from forewarn.dataflows.frontier import FrontierTracker
from forewarn.dataflows.held import Held
from forewarn.dataflows.members import Members
from forewarn.dataflows.merge import ShardMerge
from forewarn.dataflows.messages import DropNote, Escalation, Impact, Profiled, Restored
from forewarn.dataflows.region import RegionShard
from forewarn.dataflows.sequencer import Sequencer
from forewarn.dataflows.site import SiteCorrelator
from forewarn.dataflows.state import SAMPLE, check_kinds
from forewarn.model import Complaint, Subscriber
from forewarn.rules.rulebook import Rulebook
from forewarn.safe_pickle import UnsafePickle, dump_record, read_record

_S = TypeVar("_S")

__all__ = [
    "FORMATS",
    "StageFormat",
    "freeze_care",
    "freeze_dispatch",
    "freeze_frontier",
    "freeze_gate",
    "freeze_region",
    "freeze_sequence",
    "freeze_site",
    "load",
    "thaw_care",
    "thaw_care_known",
    "thaw_dispatch",
    "thaw_frontier",
    "thaw_gate",
    "thaw_region",
    "thaw_sequence",
    "thaw_site",
]


@dataclass(frozen=True)
class StageFormat:
    """A stage's record: the fields its data may hold (``inner``: those of a field that
    is a dict of fields itself), and the upgrades from every older version
    (``steps[n - 1]``: version ``n`` to ``n + 1``); its current version is one more
    than the number of steps."""

    stage: str
    fields: frozenset[str]
    steps: tuple[Callable[[Any], dict], ...]
    inner: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def version(self) -> int:
        return len(self.steps) + 1

    @property
    def shape(self) -> frozenset[str]:
        """Every field name, an inner one as ``field.name``: what a version stands for."""
        return self.fields | {f"{outer}.{name}" for outer, names in self.inner
                              for name in names}

    def upgrade(self, version: int, data: Any) -> dict:
        """``data`` of ``version`` as the current version's (the chain of steps)."""
        if not 1 <= version <= self.version:
            raise UnsafePickle(f"it is version {version} of the {self.stage} stage's record; "
                               f"this Forewarn reads versions 1 to {self.version}")
        for step in self.steps[version - 1:]:
            data = step(data)
        if type(data) is not dict:
            raise UnsafePickle(f"the {self.stage} stage's record holds a "
                               f"{type(data).__name__}, not a dict of fields")
        unknown = sorted(str(k) for k in data if k not in self.fields)
        if unknown:
            raise UnsafePickle(f"the {self.stage} stage's record (version {self.version}) "
                               f"holds fields it does not have: {', '.join(unknown)}")
        return data


def load(stage: str, blob: bytes) -> dict:
    """The current version's data of ``stage``'s snapshot bytes (of any version)."""
    found, version, data = read_record(blob)
    if found is None:  # snapshot format 1 or older: the live object, this stage's version 1
        found, version = stage, 1
    if found != stage:
        raise UnsafePickle(f"it is a snapshot of the {found} stage, not of the {stage} stage")
    return FORMATS[stage].upgrade(version, data)


def _dump(stage: str, data: dict) -> bytes:
    return dump_record(stage, FORMATS[stage].version, data)


def _state_fields(cls: type, given: tuple[str, ...]) -> tuple[str, ...]:
    """A dataclass's fields but those it is given (configuration, derived values)."""
    return tuple(f.name for f in fields(cls) if f.name not in given)


def _fields_of(obj: Any, names: tuple[str, ...]) -> dict:
    """``obj``'s values of ``names`` (a slot an older object lacks is left out: the
    rebuilt object keeps its default)."""
    out = {}
    for name in names:
        try:
            out[name] = getattr(obj, name)
        except AttributeError:
            continue
    return out


def _fill(obj: Any, data: dict, names: tuple[str, ...], what: str) -> None:
    """Set ``obj``'s fields from ``data`` (only ``names``; others keep their defaults)."""
    for name, value in data.items():
        if name not in names:
            raise UnsafePickle(f"the {what} in the snapshot holds a field {name!r} it does "
                               f"not have")
        setattr(obj, name, value)


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise UnsafePickle(f"the {what} in the snapshot is a {type(value).__name__}")
    return value


class _WholeObject(Generic[_S]):
    """A stage whose every field is its own state (it is given no configuration): its
    record is its fields; its version 1 was the object pickled whole."""

    def __init__(self, stage: str, cls: type[_S]) -> None:
        self.stage, self.cls, self.own = stage, cls, _state_fields(cls, ())

    def freeze(self, obj: _S) -> bytes:
        return _dump(self.stage, _fields_of(obj, self.own))

    def thaw(self, blob: bytes) -> _S:
        obj = self.cls()
        _fill(obj, load(self.stage, blob), self.own, self.stage)
        return obj

    def from_object(self, old: Any) -> dict:
        """Version 1 (the object pickled whole) as a record."""
        return _fields_of(_expect(old, self.cls, self.stage), self.own)


# ---- sequence: the sequencer ------------------------------------------------------------
# Given: lateness_s, tick_s (command line), warmup and ahead_s (code constants), near_cfg
# (from the rulebook), shards (command line), whether anchors are learnt (command line).
# Kept: the rest; ``anchors``: the learnt anchors' own count (their bits are in
# ``heard``'s rows) or None when not learnt; ``shard``: which input shard this is, None
# until a batch says (one shard).

_SEQUENCE_GIVEN = ("lateness_s", "tick_s", "warmup", "ahead_s", "near_cfg", "shards")
_SEQUENCE_OWN = _state_fields(Sequencer, _SEQUENCE_GIVEN + ("shard", "anchors"))


def _sequence_data(seq: Sequencer) -> dict:
    data = _fields_of(seq, _SEQUENCE_OWN)
    nearby = data.get("nearby")
    if nearby is not None and nearby.anchors is not None:  # (the anchors: given back)
        nearby = data["nearby"] = copy.copy(nearby)
        nearby.anchors = None
    data["anchors"] = None if seq.anchors is None else seq.anchors.unplaced
    data["shard"] = seq.shard if seq.shards > 1 else None
    return data


def freeze_sequence(seq: Sequencer) -> bytes:
    return _dump("sequence", _sequence_data(seq))


def thaw_sequence(blob: bytes, *, lateness_s: float, tick_s: float, book: Rulebook,
                  anchors: bool = True, shards: int = 1) -> Sequencer:
    data = dict(load("sequence", blob))
    unplaced, shard = data.pop("anchors", None), data.pop("shard", None)
    seq = Sequencer(lateness_s=lateness_s, tick_s=tick_s)
    _fill(seq, data, _SEQUENCE_OWN, "sequencer")
    seq.anchors = (None if unplaced is None
                   else Anchors(seq.heard, _expect(unplaced, int, "anchors' count")))
    seq._share()
    seq.learn_anchors(anchors)
    if shard is not None and shards > 1:
        seq.shard, seq.shards = _expect(shard, int, "input shard"), shards
        seq.nearby.announce = shard == 0
    seq.configure(book)
    return seq


def _sequence_v1(seq: Any) -> dict:
    """Version 1: the Sequencer pickled whole (older layouts of its reorder buffer too)."""
    seq = _expect(seq, Sequencer, "sequencer")
    if not isinstance(seq._pending, deque):  # a heap
        seq._pending = deque(sorted(seq._pending))
    if seq._pending and len(seq._pending[0]) == 5:  # (at, seq, rec, raw, source)
        seq._pending = deque((src, raw, rec, at) for at, _, rec, raw, src in seq._pending)
    return _sequence_data(seq)


def _sequence_v2(data: dict) -> dict:
    """Version 2: the rows (``heard``) found a subscriber's row by a dict of id -> row
    number; since version 3 by an index of row numbers by the id's hash, which is not
    saved (a str's hash differs between processes) but rebuilt from the id column as
    the rows load. The rows of version 2 load themselves: the record is as it was."""
    return data


# ---- site: a site's correlator, its unreleased verdicts, its shards' unmerged messages ---
# Given: the rulebook, whether the detectors run (FlowConfig.models), the input shard count.
# Kept: ``site`` (the correlator's own fields, None before its first message),
# ``outbox`` (verdicts decided, not released), ``merge`` (per input shard: messages not
# applied, the latest's key, the floor; None with one shard).

_SITE_OWN = _state_fields(SiteCorrelator, ("book", "detect"))
_MERGE_OWN = ("queues", "last", "floor")


def freeze_site(site: SiteCorrelator | None, outbox: list,
                merge: ShardMerge | None = None) -> bytes:
    return _dump("site", _site_data(site, outbox, merge))


def _site_data(site: SiteCorrelator | None, outbox: list, merge: ShardMerge | None) -> dict:
    data: dict = {"site": None if site is None else _fields_of(site, _SITE_OWN),
                  "outbox": outbox}
    if merge is not None:
        data["merge"] = [merge.queues, merge.last, merge.floor]
    return data


def thaw_site(blob: bytes, *, book: Rulebook, detect: bool = True, shards: int = 1
              ) -> tuple[SiteCorrelator | None, list, ShardMerge | None]:
    """The correlator (None: none yet), its outbox and its shards' merge."""
    data = load("site", blob)
    own = data.get("site")
    site = None
    if own is not None:
        own = _expect(own, dict, "site")
        site = SiteCorrelator(site_id=_expect(own.get("site_id"), str, "site id"), book=book,
                              detect=detect)
        _fill(site, own, _SITE_OWN, "site")
    merge = ShardMerge(shards) if shards > 1 else None
    saved = data.get("merge")
    if saved is not None:
        queues, last, floor = _expect(saved, (list, tuple), "shards' merge")
        if merge is None or len(queues) != shards:
            raise UnsafePickle(f"the site's merge in the snapshot is of {len(queues)} input "
                               f"shards; this run has {shards}")
        merge.queues, merge.last, merge.floor = list(queues), list(last), list(floor)
    return site, list(_expect(data.get("outbox", []), list, "site's outbox")), merge


def _site_v1(old: Any) -> dict:
    """Version 1: ``(site, pending)`` or ``(site, pending, merge)``, the site pickled
    whole without its rulebook."""
    site, pending, *rest = _expect(old, tuple, "site")
    merge = rest[0] if rest else None
    return _site_data(None if site is None else _expect(site, SiteCorrelator, "site"),
                      list(pending), None if merge is None else _expect(merge, ShardMerge,
                                                                        "shards' merge"))


def _site_v2(data: dict) -> dict:
    """Version 2: the correlator's ``members`` were a dict of id -> ``(cell, at, ref)``,
    and ``away`` and ``first_after`` named a member's tuple itself (still the member's
    when the tuple was theirs); since version 3 the members are a table
    (:class:`~forewarn.dataflows.members.Members`) and the two hold an entry's value,
    which holds while the member's row shows it."""
    own = data.get("site")
    if not isinstance(own, dict) or not isinstance(own.get("members"), dict):
        return data  # (no correlator yet; a wrong shape is refused as the site loads)
    own = data["site"] = dict(own)
    old = own["members"]
    members = Members()
    for sid, entry in old.items():
        cell, at, ref = _expect(entry, tuple, "site member")
        try:
            members.put(_expect(sid, str, "site member's id"),
                        _expect(cell, str, "site member's cell"),
                        float(_expect(at, (float, int), "site member's time")),
                        _expect(ref, (str, type(None)), "site member's evidence"))
        except OverflowError:
            raise UnsafePickle("the site member's time in the snapshot is out of range") \
                from None
    own["members"] = members
    # (a newer position here replaced a member's tuple: what named the old one is stale)
    away = _expect(own.get("away", {}), dict, "site's away")
    own["away"] = {sid: a for sid, a in away.items() if old.get(sid) is a[0]}
    first = _expect(own.get("first_after", {}), dict, "site's first observations")
    own["first_after"] = {sid: e for sid, e in first.items() if old.get(sid) is e}
    return data


# ---- frontier: the frontier step ----------------------------------------------------------
# Given: the shard count (command line) and who hears of a frontier (from recovery on or
# off: stages, care keys; the region keys). Kept: the shards' progress and what is owed.

_FRONTIER_GIVEN = ("shards", "stages", "care_keys", "region_keys")
_FRONTIER_OWN = _state_fields(FrontierTracker, _FRONTIER_GIVEN)


def freeze_frontier(tracker: FrontierTracker) -> bytes:
    return _dump("frontier", _fields_of(tracker, _FRONTIER_OWN))


def thaw_frontier(blob: bytes, fresh: FrontierTracker) -> FrontierTracker:
    """``fresh``: the tracker this run would start with (its configuration)."""
    data = load("frontier", blob)
    _fill(fresh, data, _FRONTIER_OWN, "frontier")
    if len(fresh.owed) == len(fresh.stages) - 1 and "care" in fresh.stages:
        # a run with recovery told care of no frontier before care had gates: the gates
        # are owed nothing, and hear of the next one (as they start empty)
        fresh.owed.insert(fresh.stages.index("care"), None)
    if len(fresh.owed) != len(fresh.stages):
        raise UnsafePickle(f"the frontier in the snapshot owes {len(fresh.owed)} stages; "
                           f"this run has {len(fresh.stages)} ({', '.join(fresh.stages)})")
    return fresh


def _frontier_v1(tracker: Any) -> dict:
    """Version 1: the FrontierTracker pickled whole."""
    return _fields_of(_expect(tracker, FrontierTracker, "frontier"), _FRONTIER_OWN)


def _frontier_v2(data: dict) -> dict:
    """Version 2: the region keys heard of a frontier with the stage after the sites;
    since version 3 they are a stage of their own, right after the sites (``owed`` has
    one more entry). What the stage after the sites was owed is now the region keys'
    (they heard of it with that stage), and the stage after them is owed nothing: it
    hears of that frontier an epoch after the region keys, as in a run that never
    stopped."""
    owed = data.get("owed")
    if type(owed) is not list or len(owed) < 2:
        raise UnsafePickle("the frontier in the snapshot owes fewer than two stages")
    return {**data, "owed": [*owed[:2], None, *owed[2:]]}


# ---- region: a region key's grouping ----------------------------------------------------------
# Given: the storm terms (the rulebook's, at each call). Kept: every field.

_REGION = _WholeObject("region", RegionShard)


def freeze_region(shard: RegionShard) -> bytes:
    return _REGION.freeze(shard)


def thaw_region(blob: bytes) -> RegionShard:
    return _REGION.thaw(blob)


def _region_v2(data: dict) -> dict:
    """Version 2: no verdicts held (since version 3 the region keys hold the verdicts on
    their way to care, ``verdicts``: none in an older record)."""
    return data


# ---- care: a care key's subscribers --------------------------------------------------------
# Given: the rulebook (at each call). Kept: ``subscribers`` (id -> care state or profile
# tuple, CareShard.known: since version 3 its name is bytes, ``known_since`` only when it
# is not ``since``; in memory it is packed, care.Packed), ``held`` (messages waiting for
# a frontier; left out when none).


def freeze_care(care: CareShard | dict[str, SubscriberCare | Known], held: list) -> bytes:
    """A care key's record: its subscribers (a shard's, or as :meth:`CareShard.known`
    gives them: a subscriber's own key holds no shard) and its held messages."""
    data: dict = {"subscribers": care.known() if isinstance(care, CareShard) else care}
    if held:
        data["held"] = held
    return _dump("care", data)


def thaw_care_known(blob: bytes) -> tuple[dict[str, SubscriberCare | Known], list]:
    """A care record's subscribers (as :func:`freeze_care` took them) and held messages."""
    data = load("care", blob)
    saved = _expect(data.get("subscribers", {}), dict, "care's subscribers")
    for i, (sid, care) in enumerate(saved.items()):  # (the flow's check before a resume)
        if i < SAMPLE and type(care) is tuple:
            check_kinds(care, "care's profile", Known)  # (into the profile itself)
        if type(sid) is not str or not (type(care) is SubscriberCare or _is_known(care)):
            raise UnsafePickle(f"care's subscriber {i} in the snapshot is a "
                               f"{type(care).__name__} under a {type(sid).__name__} key, "
                               f"not a care state or a profile")
    return saved, list(_expect(data.get("held", []), list, "care's held messages"))


def _is_known(care: Any) -> bool:
    """Whether ``care`` is a :data:`Known` tuple in its outline (every one is checked
    so; the first few into their profile too)."""
    return type(care) is tuple and len(care) in (3, 4) and type(care[0]) is Profile \
        and type(care[1]) is bytes and all(t is None or type(t) in (float, int)
                                           for t in care[2:])


def thaw_care(blob: bytes) -> tuple[CareShard, list]:
    saved, held = thaw_care_known(blob)
    shard = CareShard()
    shard.restore(saved)
    return shard, held


def _care_v2(data: dict) -> dict:
    """Version 2: a profile-only subscriber was ``(profile, name, since, known_since)``
    with the name a str; since version 3 the name is UTF-8 bytes, and ``known_since``
    is left out when it equals ``since`` (:meth:`SubscriberCare.compact`)."""
    if type(data) is not dict:
        return data  # (refused, saying what it is, by the upgrade)
    subs = _expect(data.get("subscribers", {}), dict, "care's subscribers")
    for sid, kept in subs.items():
        if type(kept) is tuple:
            profile, name, since, known_since = _expect_len(kept, 4, "profile tuple")
            subs[sid] = SubscriberCare.of(
                (profile, _expect(name, str, "subscriber's name").encode(), since,
                 known_since)).known()
    return data


def _expect_len(value: tuple, n: int, what: str) -> tuple:
    if len(value) != n:
        raise UnsafePickle(f"the {what} in the snapshot has {len(value)} items, not {n}")
    return value


def _care_v1(old: Any) -> dict:
    """Version 1: the CareShard pickled whole, or ``(shard, held)``."""
    shard, held = old if type(old) is tuple else (old, [])
    shard = _expect(shard, CareShard, "care shard")
    data: dict = {"subscribers": shard.subscribers}
    if held:
        data["held"] = list(held)
    return data


# ---- care gate: the messages it holds until the frontier passes them (with recovery) -----
# Given: nothing. Kept: the held messages, profiles as the columns they are held in
# (forewarn.dataflows.held).

#: What care is sent: profiles (an upsert slim, a delete whole) and complaints from the
#: sequencer, verdicts from the sites.
_CARE_MESSAGES = (Profiled, Subscriber, Complaint, Impact, Restored, Escalation, DropNote)


def freeze_gate(held: Held) -> bytes:
    """A care gate's record: what it holds (:meth:`Held.columns`)."""
    return _dump("gate", held.columns())


def thaw_gate(blob: bytes) -> Held:
    """What a care gate held, each message checked to be a care message with an id and
    a time, and the rows' columns to agree (a wrong one would fail inside the flow, at
    the frontier that passes it)."""
    data = load("gate", blob)
    for i, msg in enumerate(_expect(data.get("others", []), list, "care gate's messages")):
        if type(msg) not in _CARE_MESSAGES or type(getattr(msg, "subscriber_id", None)) \
                is not str or type(getattr(msg, "at", None)) is not float:
            raise UnsafePickle(f"care gate's held message {i} in the snapshot is a "
                               f"{type(msg).__name__} that is not a care message with a "
                               f"subscriber and a time")
        if i < SAMPLE:
            check_kinds(msg, f"care gate's held message {i}")
    try:
        return Held.of_columns(data)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise UnsafePickle(f"care gate's held profiles in the snapshot do not fit: "
                           f"{exc}") from None


def _gate_v1(old: Any) -> dict:
    """Version 1, every stage's object pickled whole, is older than care gates: none
    was ever written."""
    raise UnsafePickle(f"it is a care gate's state as a bare {type(old).__name__}, which "
                       f"no Forewarn writes")


# ---- dispatch: budgets and the propensity model ---------------------------------------------
# Given: the rulebook and whether models run (at each call). Kept: every field, the
# propensity model as its own compact snapshot (PropensityModel.to_bytes). A warm start
# (--propensity-model) is where a new run's model begins; a resumed run goes on with
# the model it had learnt.

_DISPATCH = _WholeObject("dispatch", Dispatcher)


def freeze_dispatch(dispatch: Dispatcher) -> bytes:
    return _DISPATCH.freeze(dispatch)


def thaw_dispatch(blob: bytes) -> Dispatcher:
    return _DISPATCH.thaw(blob)


#: Every stage's record format: its fields and its upgrades.
FORMATS: dict[str, StageFormat] = {f.stage: f for f in (
    StageFormat("sequence", frozenset(_SEQUENCE_OWN) | {"anchors", "shard"},
                (_sequence_v1, _sequence_v2)),
    StageFormat("site", frozenset({"site", "outbox", "merge"}), (_site_v1, _site_v2),
                inner=(("site", frozenset(_SITE_OWN)),)),
    StageFormat("frontier", frozenset(_FRONTIER_OWN), (_frontier_v1, _frontier_v2)),
    StageFormat("region", frozenset(_REGION.own), (_REGION.from_object, _region_v2)),
    StageFormat("care", frozenset({"subscribers", "held"}), (_care_v1, _care_v2)),
    StageFormat("gate", frozenset({"others", "sids", "at", "shapes", "ends", "names",
                                   "named"}), (_gate_v1,)),
    StageFormat("dispatch", frozenset(_DISPATCH.own), (_DISPATCH.from_object,)),
)}
