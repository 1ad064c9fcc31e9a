"""Messages that travel between the flow's stages (not on the wire).

The sequencer sends records, :data:`Position`, :class:`Left`, :class:`Near` and
:class:`Tick` to sites, and profiles (:class:`Profiled`) and complaints to subscribers,
grouped into one list per destination key per batch, and a :class:`Progress` per batch
to the frontier step, which sends :class:`Frontier` to sites and dispatch; a site sends
:class:`Impact`, :class:`Restored`, :class:`Escalation` and :class:`DropNote` to
subscribers. Every message knows its event time: ``at``, a position's third element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forewarn.model import Channel, Subscriber, pickle_by_fields


@dataclass(frozen=True, slots=True)
class Tick:
    """Event time progress: every input before ``at`` has been delivered."""

    at: float


@dataclass(frozen=True, slots=True)
class Progress:
    """A sequencer shard says, once per batch: every record of mine before ``watermark``
    has been released, and ``sites`` got messages from me in this batch (their verdicts
    wait in an outbox for a later :class:`Frontier`)."""

    shard: int
    watermark: float
    sites: tuple[str, ...] = ()
    ended: bool = False  # the shard's input is over: it holds no one back any more
    idle: bool = False  # nothing new on its input a while: left out until its next news


@dataclass(frozen=True, slots=True)
class Stamped:
    """With several input shards, a record with no time of its own (topology, a
    maintenance window) as a site takes it: with the watermark of the shard that
    released it, its place among the other shards' messages (forewarn.dataflows.merge)."""

    at: float
    record: Any


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """With several input shards, what one shard's sequencer sends a site in a batch:
    its messages in release order, and its watermark after them (every later message
    of the shard comes at or after it). The site merges the shards
    (:class:`forewarn.dataflows.merge.ShardMerge`)."""

    shard: int
    watermark: float
    msgs: list


@dataclass(frozen=True, slots=True)
class Frontier:
    """The frontier step says, an epoch after the :class:`Progress` it rests on: every
    input before ``at`` has been delivered to every site (a site fires its deadlines
    before it and releases the verdicts it decided in earlier epochs); to care shards,
    an epoch later again, every message before ``at`` has reached them; to dispatch,
    an epoch after that, every action before ``at`` has (:mod:`forewarn.dataflows.frontier`)."""

    at: float


#: A subscriber seen on a cell (from a `location` or a `call`):
#: ``(subscriber_id, cell_id, at, ref)``, ``ref`` being the evidence ``"call:<id>"``
#: or ``None`` for a location (see :func:`evidence_ref`). The one message that is
#: a plain tuple: positions are most of the traffic, and a tuple costs a
#: fraction of a frozen dataclass to build and to read.
Position = tuple[str, str, float, str | None]


def position(subscriber_id: str, cell_id: str, at: float, ref: str | None = None) -> Position:
    """A :data:`Position`.

    >>> position("U1", "C1", 60.0)
    ('U1', 'C1', 60.0, None)
    """
    return (subscriber_id, cell_id, at, ref)


@dataclass(frozen=True, slots=True)
class Left:
    """Sequencer says: a subscriber last seen on this site was seen on another at ``at``.

    Sent once per move, to the site they left; the site then knows that its latest
    view of them is no longer their latest anywhere (:attr:`Impact.moved`)."""

    subscriber_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Watch:
    """Sequencer says: from ``at`` it follows who is around this site (an outage alarm
    opened); the :class:`Near` messages that follow replace what the site heard before.
    ``ended``: it stopped following them at ``at``: what the site heard is out of date."""

    at: float
    ended: bool = False


@dataclass(frozen=True, slots=True)
class Near:
    """Sequencer says: a subscriber around this site's outage was heard on ``site_id`` at
    ``at`` (:mod:`forewarn.dataflows.nearby`).

    ``near``: ``site_id`` is one of this site's nearest sites; if not, they have gone
    farther away and the site stops counting them as around it. ``anchored``: the buckets
    of the day (:mod:`forewarn.dataflows.anchors`, bit ``1 << bucket``) in which this site is their
    learnt anchor place (0: none)."""

    subscriber_id: str
    site_id: str
    at: float
    near: bool = True
    anchored: int = 0
    # when the sequencer sent it (the record that made it due; ``at`` may be older): its
    # place among other shards' messages (forewarn.dataflows.merge)
    sent: float | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """A dropped call, sent to the cell's site to learn whether an outage explains it."""

    subscriber_id: str
    cell_id: str
    call_id: str
    at: float


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What a subscriber stage needs to know about an incident (shared by all its messages)."""

    incident_id: str
    incident_kind: str
    site_id: str
    area: str
    start_time: float
    down_cells: tuple[tuple[str, float], ...]  # (cell_id, down since)
    evidence: tuple[str, ...]  # alarm:<id>, ...
    region: str | None = None
    scope: str = "cell"
    causes: tuple[str, ...] = ()
    # False for a silent failure known from its silence alone (no KPI confirms it yet)
    confirmed: bool = True


#: A regional event as the region step tells care of it with a verdict
#: (:mod:`forewarn.dataflows.region`): ``(its id, the ids of its children so far)``.
RegionalTag = tuple[str, tuple[str, ...]]


#: What made a site send an :class:`Impact` (the rulebook's trigger point for it).
HOLD_DOWN, WALK_IN, REAPPEARED, EXPECTED = "hold_down", "walk_in", "reappeared", "expected"


@dataclass(frozen=True, slots=True)
class Impact:
    """Site says: subscriber was (most likely) without service in the incident at ``at``.

    ``trigger`` says how the site knows: ``hold_down`` (on a down cell at the hold-down,
    the contract's *impacted*), ``walk_in`` (last heard around the outage at ``seen``,
    silent since: inside the hole), ``expected`` (the same, silent for less long, but
    the down site is their anchor place at this hour) or ``reappeared`` (unheard during
    the outage, back on one of its cells at ``seen``, soon after its restoration at
    ``at``)."""

    subscriber_id: str
    facts: IncidentFacts
    at: float
    seen: tuple[float, str, str | None]  # the observation it rests on: (at, cell, ref)
    moved: bool = False  # seen on another site since then (and at or before ``at``)
    trigger: str = HOLD_DOWN
    # the regional event its incident belonged to at ``at``, as the region step saw it
    # (None: none, or not through the region step)
    event: RegionalTag | None = None


@dataclass(frozen=True, slots=True)
class Restored:
    """Site says: the incident is resolved at ``at``."""

    subscriber_id: str
    facts: IncidentFacts
    at: float
    event: RegionalTag | None = None  # (see Impact.event)


@dataclass(frozen=True, slots=True)
class Escalation:
    """Site says: the incident has lasted ``duration_s`` at ``at``."""

    subscriber_id: str
    facts: IncidentFacts
    duration_s: float
    at: float
    event: RegionalTag | None = None  # (see Impact.event)


@dataclass(frozen=True, slots=True)
class DropNote:
    """A dropped call after the hold-down, with the outage (if any) that explains it."""

    subscriber_id: str
    call_id: str
    cell_id: str
    drop_time: float
    incident_id: str | None
    in_maintenance: bool
    area: str
    at: float
    region: str | None = None


def evidence_ref(at: float, cell_id: str, ref: str | None) -> str:
    """The evidence string of an observation: ``call:<id>`` or ``location:<cell>@<epoch s>``.

    >>> evidence_ref(1795428900.0, "C1", None)
    'location:C1@1795428900'
    """
    return ref if ref is not None else f"location:{cell_id}@{int(at)}"


@dataclass(frozen=True, slots=True)
class Profiled:
    """A profile upsert on its way to care (:func:`~forewarn.dataflows.sequencer.slim`):
    what is the subscriber's own (their id, the update's time, their name), and the rest
    of the profile in ``shape``, a :class:`~forewarn.model.Subscriber` shared by every
    profile of that shape (no id, no name, channels without addresses). Care reads it as
    the upsert. One 64-byte object, where a decoded upsert is a 128-byte object and six
    strings of its own: care holds a bulk load's profiles until the frontier passes them.

    >>> shape = Subscriber("", "upsert", 0.0, language="pl", plan="gold")
    >>> p = Profiled("U1", 60.0, "Ada", shape)
    >>> p.at, p.op, p.language, p.plan, p.channels, p.tenure_months
    (60.0, 'upsert', 'pl', 'gold', (), None)
    """

    subscriber_id: str
    updated_at: float
    name: str | None
    shape: Subscriber

    @property
    def at(self) -> float:
        return self.updated_at

    @property
    def op(self) -> str:
        return self.shape.op

    @property
    def language(self) -> str:
        return self.shape.language

    @property
    def timezone(self) -> str:
        return self.shape.timezone

    @property
    def segment(self) -> str:
        return self.shape.segment

    @property
    def channels(self) -> tuple[Channel, ...]:
        return self.shape.channels

    @property
    def plan(self) -> str | None:
        return self.shape.plan

    @property
    def tenure_months(self) -> int | None:
        return self.shape.tenure_months

    @property
    def tags(self) -> tuple[str, ...]:
        return self.shape.tags

    @property
    def preferred_channels(self) -> tuple[str, ...]:
        return self.shape.preferred_channels


def profiled(subscriber_id: str, updated_at: float, name: str | None, shape: Subscriber
             ) -> Profiled:
    """``Profiled(subscriber_id, updated_at, name, shape)``, built through its slots: a
    frozen dataclass's ``__init__`` sets each field with ``object.__setattr__`` (about a
    microsecond for four), and profiles are built once per upsert of a bulk load, and
    again when care takes a held one (:mod:`forewarn.dataflows.held`).

    >>> profiled("U1", 60.0, None, Subscriber("", "upsert", 0.0)) == Profiled(
    ...     "U1", 60.0, None, Subscriber("", "upsert", 0.0))
    True
    """
    p = _new(Profiled)
    _prof_id(p, subscriber_id)
    _prof_updated_at(p, updated_at)
    _prof_name(p, name)
    _prof_shape(p, shape)
    return p


_new = object.__new__
# (a field added to Profiled and not set here leaves its slot empty: reading it raises)
_prof_id, _prof_updated_at, _prof_name, _prof_shape = (
    getattr(Profiled, name).__set__ for name in ("subscriber_id", "updated_at", "name", "shape"))


@dataclass(slots=True)
class Decoded:
    """A batch its source decoded already (the Kafka source must, to merge by time).

    ``items``: ``(source, raw, record, at)`` and dead letters, in order; the tally
    of what the source decoded since its last batch, which the decode step counts:
    accepted records per type, ``dead`` letters and ``complaints`` among them, and
    the ``latest`` stream time seen.
    """

    items: list = field(default_factory=list)
    accepted: dict[Any, int] = field(default_factory=dict)  # record type -> count
    dead: list = field(default_factory=list)
    complaints: list = field(default_factory=list)
    latest: float | None = None
    shard: int | None = None  # the input shard whose batch this is (None: no shards)
    # the shard's every partition has been at its end a while (live): nothing to decode;
    # its sequencer tells the frontier step, which leaves it out until it has news
    idle: bool = False


pickle_by_fields(__name__)  # records cross workers often: pickled by their field values
