"""Domain records of the wire contract, as frozen slotted dataclasses.

Times are POSIX seconds (float, UTC) inside the flow; the codec turns them
into RFC 3339 strings at the edges. Every input record knows its *stream time*
(`Record.at`): the event time the flow orders it by, or ``None`` for
timeless reference data (topology, maintenance plans) that applies at once.

>>> loc = Location(subscriber_id="S1", cell_id="C1", event_time=60.0)
>>> loc.at, loc.kind
(60.0, 'location')
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar

SEVERITIES = ("critical", "major", "minor", "warning", "indeterminate", "cleared")
ALARM_TYPES = (
    "communicationsAlarm",
    "qualityOfServiceAlarm",
    "processingErrorAlarm",
    "equipmentAlarm",
    "environmentalAlarm",
)
SEGMENTS = ("consumer", "business", "vip")
CHANNEL_NAMES = ("push", "sms", "email")
DEFAULT_CHANNEL_ORDER = ("push", "sms", "email")
COMPLAINT_CATEGORIES = ("no_service", "dropped_calls", "slow_data", "other")
ACTION_KINDS = ("outage_notice", "restored_notice", "apology", "compensation", "care_callback",
                "area_notice")
#: Action kinds that tell a subscriber of a problem before they report it: a complaint
#: within a day of one was *forewarned* (the care context, the complaints metric).
FOREWARNING_KINDS = frozenset({"outage_notice", "area_notice", "apology"})
INCIDENT_KINDS = ("outage", "flapping", "degradation")
#: The evidence a send carries when its channel's per-minute budget moved it to a later
#: minute, and when it went over the rate at ``budgets.max_delay_s`` (dispatch adds them;
#: the gateway, the metrics and the summary tell them from quiet-hours deferrals).
PACED_EVIDENCE, OVERFLOW_EVIDENCE = "budget:paced", "budget:overflow"
#: The NOC's parent incident of a regional event (scope ``region``): site incidents of one
#: region at once (:mod:`forewarn.dataflows.region`); no rule triggers on it.
REGIONAL_OUTAGE = "regional_outage"

#: A record's *stream time*, the one definition: the sum of these fields of its type (the
#: same names on the wire). An event's time, a call's end (a call is known when it ends),
#: a KPI period's end (its counts are known then), a profile's update; none for reference
#: data (topology, maintenance windows), applied at once. ``Record.at`` and
#: :func:`stream_at` read a record's; :func:`forewarn.codec.stream_time` a raw line's, for
#: the file and Kafka merges and the publisher.
TIME_FIELDS: dict[str, tuple[str, ...]] = {
    "cell": (), "alarm": ("event_time",), "location": ("event_time",), "call": ("end_time",),
    "kpi": ("period_start", "period_s"), "subscriber": ("updated_at",), "maintenance": (),
    "complaint": ("event_time",),
}


#: The order of record types at the same stream time (reference data first, complaints
#: last): the simulator writes its lines in it, the Kafka merge breaks ties by it.
TYPE_RANK: dict[str, int] = {"cell": 0, "subscriber": 1, "maintenance": 2, "alarm": 3,
                             "kpi": 4, "call": 5, "location": 6, "complaint": 7}


def _stream_time(kind: str) -> Any:
    """The ``at`` property of a record type: its :data:`TIME_FIELDS` summed, or None."""
    names = TIME_FIELDS[kind]
    if not names:
        return property(lambda self: None, doc="None: reference data, applied at once")
    if len(names) == 1:
        return property(attrgetter(names[0]), doc=f"The stream time: {names[0]}")
    first, second = names
    return property(lambda self: getattr(self, first) + getattr(self, second),
                    doc=f"The stream time: {first} + {second}")


@dataclass(frozen=True, slots=True)
class Cell:
    """A radio cell and the site (tower) it belongs to."""

    kind: ClassVar[str] = "cell"
    cell_id: str
    site_id: str
    region: str | None = None
    lat: float | None = None
    lon: float | None = None
    technology: str | None = None

    at = _stream_time("cell")


@dataclass(frozen=True, slots=True)
class Alarm:
    """An X.733 alarm raised (or cleared) on a cell or a whole site."""

    kind: ClassVar[str] = "alarm"
    alarm_id: str
    event_time: float
    severity: str
    probable_cause: str
    cell_id: str | None = None
    site_id: str | None = None
    alarm_type: str | None = None
    specific_problem: str | None = None
    managed_object: str | None = None
    additional_text: str | None = None
    #: the feed it was mapped from (``ves``, ``tmf642``: forewarn.adapters), None: a record
    adapter: str | None = None

    at = _stream_time("alarm")

    @property
    def cleared(self) -> bool:
        return self.severity == "cleared"


@dataclass(frozen=True, slots=True)
class Location:
    """A subscriber observed on a cell (attach, handover, periodic update)."""

    kind: ClassVar[str] = "location"
    subscriber_id: str
    cell_id: str
    event_time: float

    at = _stream_time("location")


@dataclass(frozen=True, slots=True)
class Call:
    """A finished voice call; known to the flow when it ends."""

    kind: ClassVar[str] = "call"
    call_id: str
    subscriber_id: str
    cell_id: str
    start_time: float
    end_time: float
    dropped: bool
    cause_code: int | None = None

    at = _stream_time("call")


@dataclass(frozen=True, slots=True)
class Kpi:
    """A cell's counters for one reporting period."""

    kind: ClassVar[str] = "kpi"
    cell_id: str
    period_start: float
    period_s: float
    call_attempts: int
    dropped_calls: int
    rrc_success_rate: float | None = None
    dl_throughput_mbps: float | None = None
    active_users: int | None = None

    at = _stream_time("kpi")


@dataclass(frozen=True, slots=True)
class Channel:
    """One way to reach a subscriber; no consent means it is never used."""

    name: str
    address: str
    consent: bool


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A BSS profile change: an upsert carries the whole profile, a delete only the id."""

    kind: ClassVar[str] = "subscriber"
    subscriber_id: str
    op: str
    updated_at: float
    language: str = "en"
    timezone: str = "UTC"
    segment: str = "consumer"
    channels: tuple[Channel, ...] = ()
    name: str | None = None
    plan: str | None = None
    tenure_months: int | None = None
    tags: tuple[str, ...] = ()
    preferred_channels: tuple[str, ...] = ()

    at = _stream_time("subscriber")


@dataclass(frozen=True, slots=True)
class Maintenance:
    """A planned-work window; cells inside it get no outage notice or apology."""

    kind: ClassVar[str] = "maintenance"
    window_id: str
    op: str
    start_time: float
    end_time: float
    site_ids: tuple[str, ...] = ()
    cell_ids: tuple[str, ...] = ()
    description: str | None = None

    at = _stream_time("maintenance")


@dataclass(frozen=True, slots=True)
class Complaint:
    """A customer contacting care about a problem."""

    kind: ClassVar[str] = "complaint"
    complaint_id: str
    subscriber_id: str
    event_time: float
    category: str
    channel: str | None = None

    at = _stream_time("complaint")


Record = Cell | Alarm | Location | Call | Kpi | Subscriber | Maintenance | Complaint


def stream_at(rec: Record | tuple) -> float | None:
    """``rec.at``, read straight from its field for the records that are most of the
    traffic (a property call costs more than the rest of a location's routing); a
    position the flow's decoder made, ``(subscriber_id, cell_id, at, ref)``, has it third.

    >>> stream_at(Location("U1", "C1", 60.0)), stream_at(Cell("C1", "S1"))
    (60.0, None)
    >>> stream_at(("U1", "C1", 60.0, None))
    60.0
    """
    if type(rec) is tuple:
        return rec[2]
    if type(rec) is Location:
        return rec.event_time
    if type(rec) is Call:
        return rec.end_time
    return rec.at  # type: ignore[union-attr]  # every other record has the property


def kind_of(rec: Record | tuple) -> type[Record]:
    """The record type of a decoded input: a position the flow's decoder made counts as
    the ``location`` or ``call`` it came from (a call's has a ``ref``).

    >>> kind_of(("U1", "C1", 60.0, "call:K1")).kind, kind_of(Cell("C1", "S1")).kind
    ('call', 'cell')
    """
    if type(rec) is tuple:
        return Location if rec[3] is None else Call
    return type(rec)  # type: ignore[return-value]  # a Record's type: tuples returned above


# ---- outputs -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """A customer-care action for the notification gateway, with its reasons."""

    kind: ClassVar[str] = "action"
    action_id: str
    subscriber_id: str
    action_kind: str
    channel: str
    language: str
    message: str
    rule_id: str
    rule_version: int
    incident_id: str | None
    evidence: tuple[str, ...]
    event_time: float
    send_after: float | None = None
    offer: dict | None = None
    segment: str | None = None
    # Not on the wire: what care knew when it decided (the propensity model's input).
    features: Any = field(default=None, compare=False, repr=False)
    # Not on the wire: the regional event its incident belonged to when care acted
    # (forewarn.dataflows.region), for budgets that pace only those (``budgets.pace``)
    regional_event: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Incident:
    """A NOC incident update: opened, updated (cells, kind) or resolved."""

    kind: ClassVar[str] = "incident"
    incident_id: str
    status: str
    incident_kind: str
    scope: str
    site_id: str
    cell_ids: tuple[str, ...]
    start_time: float
    end_time: float | None
    impacted_subscribers: int
    event_time: float
    region: str | None = None
    maintenance_window: str | None = None
    evidence: tuple[str, ...] = ()
    silent_kind: str | None = None  # degradation incidents: sleeping | degradation
    detector: str | None = None  # what found it (silence, kpi_collapse, drop_rate, ...)
    # a site incident grouped under a regional event: the ``regional_outage`` incident's id
    parent_id: str | None = None
    # a ``regional_outage`` incident (scope ``region``): its site incidents and their sites
    child_ids: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()


class DeadCode(StrEnum):
    """A dead letter's bounded reason class: its ``code`` on the wire and its metric label
    (``forewarn_dead_letters_total{reason=...}``). Whoever refuses an input names it,
    with the reason text beside it; nothing reads a code back out of a reason.

    >>> DeadCode.BAD_TIME == "bad_time", str(DeadCode.FUTURE)
    (True, 'future')
    """

    # the codec (forewarn.codec)
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_ENUM = "bad_enum"
    BAD_TIME = "bad_time"
    BAD_VALUE = "bad_value"
    # the Kafka source: a record type its topic does not carry
    WRONG_TOPIC = "wrong_topic"
    # the sequencer: against the stream's progress and the topology
    TIME_OUT_OF_RANGE = "time_out_of_range"
    FUTURE = "future"
    UNKNOWN_CELL = "unknown_cell"
    UNKNOWN_SITE = "unknown_site"
    # operators' alarm feeds (forewarn.adapters)
    NO_ADAPTER = "no_adapter"
    UNSUPPORTED_EVENT = "unsupported_event"
    UNKNOWN_SOURCE = "unknown_source"
    UNKNOWN_CONDITION = "unknown_condition"
    CLEAR_WITHOUT_RAISE = "clear_without_raise"
    # the publisher (forewarn replay): the broker refused the record
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input the flow could not use, with why; never silently dropped."""

    kind: ClassVar[str] = "dead_letter"
    source: str
    reason: str
    raw: bytes
    code: str  # a DeadCode: bounded, safe as a metric label


class ByFields:
    """Rebuilds a record pickled by :func:`pickle_by_fields`, by field name.

    Records cross Bytewax workers and sit in recovery snapshots, so they are pickled
    often: the dataclasses' own ``__getstate__`` (a dict built through ``fields()`` per
    object) made pickling most of a crossing's cost. Names travel once per pickle
    (memoised), so a snapshot written before a field was added, anywhere in the class,
    still loads: the field takes its default.

    >>> import pickle
    >>> loc = Location("S1", "C1", 60.0)
    >>> pickle.loads(pickle.dumps(loc)) == loc
    True
    >>> ByFields(Location, ("event_time", "subscriber_id", "cell_id", "gone"),
    ...          (60.0, "S1", "C1", 1)) == loc  # another order, a field since removed
    True
    """

    __slots__ = ()

    def __new__(cls, target: Any, names: tuple[str, ...], values: tuple) -> Any:
        if names == target.__slots__:
            return target(*values)
        known = {f.name for f in fields(target) if f.init}
        return target(**{n: v for n, v in zip(names, values, strict=True) if n in known})


def pickle_by_fields(module: str) -> None:
    """Pickle each frozen slotted dataclass of ``module`` as its field values
    (:class:`ByFields`): three times faster both ways than the dataclass default."""
    for value in list(vars(sys.modules[module]).values()):
        if (isinstance(value, type) and value.__module__ == module and is_dataclass(value)
                and value.__dataclass_params__.frozen  # type: ignore[attr-defined]
                and vars(value).get("__slots__")
                and all(f.init for f in fields(value))
                and "__reduce__" not in vars(value)):
            _install(value)


def _install(cls: type) -> None:
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    get = attrgetter(*names)
    if len(names) == 1:
        def reduce(self: Any) -> tuple:
            return ByFields, (cls, names, (get(self),))
    else:
        def reduce(self: Any) -> tuple:
            return ByFields, (cls, names, get(self))
    cls.__reduce__ = reduce  # type: ignore[method-assign,assignment]
    every = fields(cls)

    def setstate(self: Any, state: list | tuple) -> None:
        # The dataclasses' own format, which snapshots written before ByFields hold: the
        # values in field order. Fields added since (at the end) take their defaults.
        for f, value in zip(every, state, strict=False):
            object.__setattr__(self, f.name, value)
        for f in every[len(state):]:
            factory: Any = f.default_factory
            object.__setattr__(self, f.name, factory() if f.default is MISSING else f.default)
    cls.__setstate__ = setstate  # type: ignore[attr-defined]


pickle_by_fields(__name__)
