"""Prometheus metrics (prometheus-client's default registry), served by :func:`serve`.

Every name starts with ``forewarn_``, carries its unit (``_seconds``,
``_gigabytes``) and counters end in ``_total``. Labels are bounded sets only —
record types and topics, reason codes, action kinds, channels, rule ids,
segments, incident kinds and scopes, and (for open incidents only) site and
region ids, which are network topology, not personal data. Never subscriber
ids, MSISDNs, names or incident ids (those go to the logs).

Two latencies, because event time and wall time differ whenever data is
replayed (docs/observability.md explains the choice):

* ``forewarn_action_delay_seconds`` — *event time* from the start of the
  incident behind an action to the action's ``event_time`` (hold-down,
  outage length, escalation age). Same at any replay speed.
* ``forewarn_processing_latency_seconds`` — *wall-clock* time from the
  arrival (decode) of the input that made an output due to the output being
  emitted. Measured with :class:`IngestClock`.

>>> clock = IngestClock()
>>> clock.note(100.0, wall=1.0); clock.note(100.5, wall=1.1); clock.note(160.0, wall=2.0)
>>> clock.due_since(130.0, now=5.0), clock.due_since(100.0, now=5.0), clock.due_since(999.0)
(3.0, 4.0, None)
"""

from __future__ import annotations

import bisect
import logging
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

from forewarn import __version__
from forewarn.model import (
    ACTION_KINDS,
    CHANNEL_NAMES,
    FOREWARNING_KINDS,
    INCIDENT_KINDS,
    OVERFLOW_EVIDENCE,
    PACED_EVIDENCE,
    REGIONAL_OUTAGE,
    SEGMENTS,
    DeadCode,
)

log = logging.getLogger("forewarn.metrics")
disable_created_metrics()  # no *_created series: half the series, nothing we chart

TOPIC_FOR_TYPE = {
    "cell": "oss.topology",
    "alarm": "oss.alarms",
    "location": "oss.locations",
    "call": "oss.calls",
    "kpi": "oss.kpis",
    "subscriber": "bss.subscribers",
    "maintenance": "bss.maintenance",
    "complaint": "care.complaints",
}
OUTPUT_TOPICS = ("care.actions", "noc.incidents", "forewarn.deadletter", "care.context",
                 "care.status")
SCOPES = ("cell", "site")
SUPPRESS_REASONS = ("moved_away", "no_consent", "unknown_subscriber", "deleted_subscriber",
                    "cooldown", "repeat_outage", "cell_cooldown", "same_event")
#: The flow's dead-letter codes (the publisher's ``refused`` is not the flow's).
DEAD_LETTER_CODES = tuple(c.value for c in DeadCode if c is not DeadCode.REFUSED)
STEPS = ("sequence", "care")

# ---- inputs ------------------------------------------------------------------------

EVENTS = Counter("forewarn_events", "Input records by source topic and decode outcome "
                 "(accepted, dead_letter); each input counts once", ["source", "outcome"])
DEAD_LETTERS = Counter("forewarn_dead_letters", "Inputs sent to the dead-letter output, "
                       "by source topic and bounded reason code (including records decoded "
                       "but refused later: unknown cell, time out of range)",
                       ["source", "reason"])
COPARTITION_VIOLATIONS = Counter(
    "forewarn_copartition_violations", "Sampled subscriber-keyed input messages (1 in 64 "
    "consumed) keyed by something other than their subscriber id, or on another partition "
    "than the contract's partitioner (Java's murmur2) puts their key on", ["source"])
HELD_AHEAD = Gauge("forewarn_records_held_ahead", "Input records held because their event "
                   "time is far ahead of the stream's progress: applied when the stream reaches "
                   "them, dead letters (reason future) if it never does; they move no timer")
OUTAGES_UNWATCHED = Gauge("forewarn_outages_unwatched", "Outage starts since the flow "
                          "began whose surroundings were not watched for walk-ins because "
                          "as many sites were watched already (a storm of outage alarms)")
LATE_RECORDS = Counter("forewarn_late_records", "Input records that arrived after the "
                       "reorder window (--lateness) had already passed their event time, "
                       "by source topic: applied as of the flow's current event time, so "
                       "outputs may differ from an in-order replay", ["source"])
WATERMARK = Gauge("forewarn_watermark_timestamp_seconds",
                  "Event-time progress of the flow (every input before it is in)")

# ---- outputs -----------------------------------------------------------------------

ACTIONS = Counter("forewarn_actions", "Customer actions emitted",
                  ["kind", "channel", "rule", "segment"])
DEFERRED = Counter("forewarn_deferred_actions", "Actions emitted with a send_after "
                   "(held back, e.g. to the end of quiet hours)", ["kind", "reason"])
BUDGET_OVERFLOW = Counter("forewarn_budget_overflow", "Actions sent over a channel's "
                          "per-minute budget: no minute up to budgets.max_delay_s after "
                          "they became due had room", ["kind", "channel"])
SUPPRESSED = Counter("forewarn_suppressed_actions", "Actions a rule wanted but policy "
                     "stopped, by reason", ["kind", "reason"])
COMPENSATION_OFFERS = Counter("forewarn_compensation_offers", "Actions carrying an offer",
                              ["offer_kind", "rule"])
COMPENSATION_BYTES = Counter("forewarn_compensation_data_credit_bytes",
                             "Data credit offered in actions (offer amount_gb), in bytes",
                             ["rule"])
COMPLAINTS = Counter("forewarn_complaints", "Complaints received, and whether the "
                     "subscriber had been sent an outage or area notice or an apology in the day "
                     "before (event time; counted about a minute after arrival)",
                     ["category", "forewarned"])
INCIDENTS = Counter("forewarn_incident_updates", "NOC incident updates", ["kind", "status"])
IMPACTED = Counter("forewarn_impacted_subscribers", "Subscribers found impacted by "
                   "incidents (each incident counts its subscribers once)",
                   ["kind", "region"])

_DELAY_BUCKETS = (30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
ACTION_DELAY = Histogram("forewarn_action_delay_seconds", "Event time from the start of "
                         "the incident behind an action to the action's event_time",
                         ["kind"], buckets=_DELAY_BUCKETS)
FIRST_NOTICE_DELAY = Histogram("forewarn_first_notice_delay_seconds", "Event time from an "
                               "incident's start to its first outage notice",
                               ["kind"], buckets=_DELAY_BUCKETS)
PROCESSING_LATENCY = Histogram(
    "forewarn_processing_latency_seconds", "Wall-clock time from the arrival of the input "
    "that made an output due to the output's emission", ["output"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
STEP_BATCH = Histogram("forewarn_step_batch_duration_seconds", "Wall-clock time of one "
                       "on_batch call of a stateful step", ["step"],
                       buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                0.05, 0.1, 0.25, 0.5, 1, 2.5))

# ---- Kafka, recovery, run ----------------------------------------------------------

CONSUMER_LAG = Gauge("forewarn_kafka_consumer_lag_messages", "Messages on the broker not yet "
                     "consumed, per input topic and partition (Kafka mode)",
                     ["topic", "partition"])
DELIVERY_FAILURES = Counter("forewarn_kafka_delivery_failures",
                            "Kafka deliveries that failed (after the producer's retries)",
                            ["topic"])
SNAPSHOT_TIMESTAMP = Gauge("forewarn_recovery_snapshot_timestamp_seconds",
                           "Wall time of the last recovery snapshot taken (0: none yet)")
RECOVERY_ENABLED = Gauge("forewarn_recovery_enabled", "1 when state is snapshotted for "
                         "recovery (run --recovery), else 0")
RULEBOOK = Gauge("forewarn_rulebook_version", "Version of the active rulebook", ["rulebook"])
RULEBOOK_RELOADS = Counter("forewarn_rulebook_reloads", "Changes of the watched rulebook file "
                           "(run --rules DIR): applied (reason none), or refused by bounded "
                           "reason code while the running rulebook stays", ["outcome", "reason"])
RULEBOOK_REFUSED = Gauge("forewarn_rulebook_file_refused", "1 while the watched rulebook file "
                         "holds a change that was refused (the flow runs an older rulebook)")
BUILD = Gauge("forewarn_build_info", "Build information", ["version", "python", "bytewax"])
RUN_START = Gauge("forewarn_run_start_timestamp_seconds", "Wall time the flow started")
RUN_FINISHED = Gauge("forewarn_run_finished_timestamp_seconds", "Wall time the flow reached "
                     "the end of its input (0 while running; always 0 on Kafka)")


def _bytewax_version() -> str:
    try:
        from importlib.metadata import version
        return version("bytewax")
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


BUILD.labels(version=__version__, python=sys.version.split()[0],
             bytewax=_bytewax_version()).set(1)

# Bounded label sets start at 0, so dashboards and alerts see series (and rate()
# works) before the first event of a kind arrives.
for _topic in OUTPUT_TOPICS:
    DELIVERY_FAILURES.labels(topic=_topic)
for _topic in TOPIC_FOR_TYPE.values():
    EVENTS.labels(source=_topic, outcome="accepted")
    EVENTS.labels(source=_topic, outcome="dead_letter")
    LATE_RECORDS.labels(source=_topic)
for _code in DEAD_LETTER_CODES:
    DEAD_LETTERS.labels(source="unknown", reason=_code)
for _type in ("location", "call", "subscriber", "complaint"):  # keyed by subscriber
    COPARTITION_VIOLATIONS.labels(source=TOPIC_FOR_TYPE[_type])
for _kind in ACTION_KINDS:
    for _why in SUPPRESS_REASONS:
        SUPPRESSED.labels(kind=_kind, reason=_why)
for _kind in (*INCIDENT_KINDS, REGIONAL_OUTAGE):
    for _status in ("open", "updated", "resolved"):
        INCIDENTS.labels(kind=_kind, status=_status)
for _kind in INCIDENT_KINDS:
    FIRST_NOTICE_DELAY.labels(kind=_kind)
for _kind in ACTION_KINDS:
    ACTION_DELAY.labels(kind=_kind)
for _out in ("action", "incident"):
    PROCESSING_LATENCY.labels(output=_out)
for _step in STEPS:
    STEP_BATCH.labels(step=_step)
for _cat in ("no_service", "dropped_calls", "slow_data", "other"):
    for _yes in ("true", "false"):
        COMPLAINTS.labels(category=_cat, forewarned=_yes)


def declare_rulebook(book: Any) -> None:
    """Rulebook version, and a zero series for every action a rule can emit."""
    RULEBOOK.labels(rulebook=book.name).set(book.version)
    for rule in book.rules:
        for segment in rule.segments or SEGMENTS:
            for channel in CHANNEL_NAMES:
                ACTIONS.labels(kind=rule.action, channel=channel, rule=rule.id,
                               segment=segment)
        if rule.offer:
            COMPENSATION_OFFERS.labels(offer_kind=str(rule.offer.get("kind", "other")),
                                       rule=rule.id)
            if "amount_gb" in rule.offer:
                COMPENSATION_BYTES.labels(rule=rule.id)
        if rule.action in getattr(book, "defer_kinds", ()) \
                or rule.action in getattr(book, "defer_unconfirmed_kinds", ()):
            DEFERRED.labels(kind=rule.action, reason="quiet_hours")


# ---- wall-clock latency ------------------------------------------------------------


class IngestClock:
    """When (wall clock) the flow first saw each second of stream time.

    ``note(at)`` is called as inputs are decoded; ``due_since(t)`` answers how
    long ago the first input at or after stream time ``t`` arrived — the input
    that made an output with event time ``t`` due. Keeps a bounded window.
    """

    GRAIN_S = 1.0
    KEEP = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every stream time seen (see :func:`reset`)."""
        with self._lock:
            self._at: list[float] = []
            self._wall: list[float] = []
            self._last = float("-inf")

    def note(self, at: float, wall: float | None = None) -> None:
        if at < self._last + self.GRAIN_S:
            return
        with self._lock:
            if at < self._last + self.GRAIN_S:
                return
            self._last = at
            self._at.append(at)
            self._wall.append(time.monotonic() if wall is None else wall)
            if len(self._at) > 2 * self.KEEP:
                del self._at[:self.KEEP], self._wall[:self.KEEP]

    def due_since(self, t: float, now: float | None = None) -> float | None:
        with self._lock:
            i = bisect.bisect_left(self._at, t)
            if i >= len(self._at):
                return None
            wall = self._wall[i]
        return (time.monotonic() if now is None else now) - wall


INGEST = IngestClock()


# ---- incidents and care outcomes ---------------------------------------------------


@dataclass(slots=True)
class _Open:
    kind: str
    scope: str
    site_id: str
    region: str
    start: float
    impacted: int


def _per_key(rows: Iterable[tuple[tuple, float, tuple[int, ...]]]) -> dict[tuple, list]:
    """Open items grouped by their label values: ``key -> [count, earliest start,
    *sums]`` of rows ``(key, start, values)``."""
    out: dict[tuple, list] = {}
    for key, start, values in rows:
        slot = out.get(key)
        if slot is None:
            out[key] = [1, start, *values]
            continue
        slot[0] += 1
        slot[1] = min(slot[1], start)
        for i, value in enumerate(values, 2):
            slot[i] += value
    return out


def _gauges(labels: list[str], per: dict[tuple, list],
            named: tuple[tuple[str, str], ...]) -> list[GaugeMetricFamily]:
    """One gauge family per column of ``per`` (:func:`_per_key`: count, earliest start,
    sums), each ``(name, help)`` of ``named`` in that order."""
    families = [GaugeMetricFamily(name, text, labels=labels) for name, text in named]
    for key, values in sorted(per.items()):
        for family, value in zip(families, values, strict=True):
            family.add_metric(list(key), value)
    return families


class FlowObserver:
    """Derives incident and care metrics from the flow's output items.

    Keeps the open incidents of this process (exported by :meth:`collect` as
    gauges), counts impacted subscribers once per incident, times first
    notices, and logs incident open/resolve (incident ids, counts; never
    subscriber ids).
    """

    FIRST_NOTICE_KEEP = 50_000
    TOLD_KEEP = 200_000  # subscribers whose recent notice times are remembered (memory only)
    FOREWARNED_WITHIN_S = 24 * 3600.0
    SETTLE_AFTER_S = 60.0  # wall time a complaint waits for notices still in flight

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every incident, notice and complaint seen (see :func:`reset`)."""
        with self._lock:
            self.open: dict[str, _Open] = {}
            # open regional events: id -> (region, site incidents, sites, impacted, start)
            self.regional: dict[str, tuple[str, int, int, int, float]] = {}
            self.regions: set[str] = set()  # regions of every incident seen (0 when calm)
            self._noticed: OrderedDict[str, None] = OrderedDict()
            self._told_at: OrderedDict[str, tuple[float, ...]] = OrderedDict()
            self._complaints: deque[tuple[float, float, str, str]] = deque()

    # -- inputs from the flow ----------------------------------------------------------

    def incident(self, inc: Any) -> None:
        INCIDENTS.labels(kind=inc.incident_kind, status=inc.status).inc()
        if inc.region and len(self.regions) < 1000:
            self.regions.add(inc.region)
        if inc.incident_kind == REGIONAL_OUTAGE:
            self._regional(inc)
            return
        region = inc.region or "unknown"
        with self._lock:
            prev = self.open.get(inc.incident_id)
            grown = inc.impacted_subscribers - (prev.impacted if prev else 0)
            if inc.status == "resolved":
                self.open.pop(inc.incident_id, None)
            else:
                self.open[inc.incident_id] = _Open(inc.incident_kind, inc.scope, inc.site_id,
                                                   region, inc.start_time,
                                                   max(inc.impacted_subscribers,
                                                       prev.impacted if prev else 0))
        if grown > 0:
            IMPACTED.labels(kind=inc.incident_kind, region=region).inc(grown)
        if inc.status in ("open", "resolved") or (prev is None and inc.status == "updated"):
            log.info("incident %s", "opened" if inc.status != "resolved" else "resolved",
                     extra={"incident_id": inc.incident_id, "status": inc.status,
                            "incident_kind": inc.incident_kind, "scope": inc.scope,
                            "site_id": inc.site_id, "region": inc.region,
                            "cells": len(inc.cell_ids),
                            "impacted_subscribers": inc.impacted_subscribers,
                            "start_time": _iso(inc.start_time),
                            "event_time": _iso(inc.event_time),
                            "duration_s": (round(inc.end_time - inc.start_time, 1)
                                           if inc.end_time is not None else None)})

    def action(self, a: Any) -> None:
        ACTIONS.labels(kind=a.action_kind, channel=a.channel, rule=a.rule_id,
                       segment=a.segment or "unknown").inc()
        if a.send_after is not None:
            paced = a.evidence and a.evidence[-1] in (PACED_EVIDENCE, OVERFLOW_EVIDENCE)
            DEFERRED.labels(kind=a.action_kind,
                            reason="budget" if paced else "quiet_hours").inc()
        if a.evidence and a.evidence[-1] == OVERFLOW_EVIDENCE:
            BUDGET_OVERFLOW.labels(kind=a.action_kind, channel=a.channel).inc()
        if a.offer:
            COMPENSATION_OFFERS.labels(offer_kind=str(a.offer.get("kind", "other")),
                                       rule=a.rule_id).inc()
            gb = a.offer.get("amount_gb")
            if isinstance(gb, int | float):
                COMPENSATION_BYTES.labels(rule=a.rule_id).inc(gb * 1e9)
        if a.action_kind in FOREWARNING_KINDS:
            self._told(a.subscriber_id, a.event_time)
        if a.incident_id is None:
            return
        with self._lock:
            inc = self.open.get(a.incident_id)
            start = inc.start if inc else incident_start(a.incident_id)
            kind = inc.kind if inc else "outage"
            first = (a.action_kind == "outage_notice" and a.incident_id not in self._noticed)
            if first:
                self._noticed[a.incident_id] = None
                if len(self._noticed) > self.FIRST_NOTICE_KEEP:
                    self._noticed.popitem(last=False)
        if start is None:
            return
        ACTION_DELAY.labels(kind=a.action_kind).observe(max(a.event_time - start, 0.0))
        if first:
            FIRST_NOTICE_DELAY.labels(kind=kind).observe(max(a.event_time - start, 0.0))

    def suppressed(self, s: Any) -> None:
        SUPPRESSED.labels(kind=s.action_kind, reason=s.reason).inc()

    def _told(self, sid: str, at: float) -> None:
        with self._lock:
            times = self._told_at.pop(sid, ())
            self._told_at[sid] = (times + (at,))[-4:]
            if len(self._told_at) > self.TOLD_KEEP:
                self._told_at.popitem(last=False)

    def complaint(self, sid: str, category: str, at: float) -> None:
        """Note a complaint; :meth:`settle` counts it once notices in flight are out.

        A notice due before the complaint may be emitted after it (stages run
        in parallel and release verdicts an epoch late), so the verdict waits
        ``SETTLE_AFTER_S`` of wall time, or the end of the run.
        """
        with self._lock:
            self._complaints.append((time.monotonic(), at, sid, category))

    def settle(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            while self._complaints and (force or now - self._complaints[0][0]
                                        >= self.SETTLE_AFTER_S):
                _, at, sid, category = self._complaints.popleft()
                told = any(0.0 <= at - t <= self.FOREWARNED_WITHIN_S
                           for t in self._told_at.get(sid, ()))
                COMPLAINTS.labels(category=category,
                                  forewarned="true" if told else "false").inc()

    # -- exported gauges ---------------------------------------------------------------

    def _regional(self, inc: Any) -> None:
        """A regional event (its children are counted as incidents of their own: its
        impacted subscribers are theirs, not counted again)."""
        region = inc.region or "unknown"
        with self._lock:
            if inc.status == "resolved":
                self.regional.pop(inc.incident_id, None)
            else:
                self.regional[inc.incident_id] = (
                    region, len(inc.child_ids), len(inc.sites), inc.impacted_subscribers,
                    inc.start_time)
        if inc.status != "updated":
            log.info("regional event %s", "opened" if inc.status == "open" else "resolved",
                     extra={"incident_id": inc.incident_id, "region": inc.region,
                            "sites": len(inc.sites), "children": len(inc.child_ids),
                            "impacted_subscribers": inc.impacted_subscribers,
                            "start_time": _iso(inc.start_time),
                            "event_time": _iso(inc.event_time)})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.settle()
        with self._lock:
            items = list(self.open.values())
            regional = list(self.regional.values())
            regions = sorted(self.regions)
        per_region = _per_key(((region,), began, (n_sites, impacted_n))
                              for region, _, n_sites, impacted_n, began in regional)
        events, start, sites, hit = _gauges(["region"], per_region, (
            ("forewarn_regional_events_open",
             "Regional events (regional_outage incidents) open now"),
            ("forewarn_regional_event_start_timestamp_seconds",
             "Event-time start of the oldest open regional event of a region"),
            ("forewarn_regional_event_sites",
             "Sites grouped in the open regional events of a region"),
            ("forewarn_regional_event_impacted_subscribers",
             "Subscribers impacted by the open regional events of a region")))
        for region in regions:
            if (region,) not in per_region:
                events.add_metric([region], 0)
        yield events
        yield sites
        yield hit
        yield start
        by_kind = {(k, s): 0 for k in INCIDENT_KINDS for s in SCOPES}
        impacted: dict[tuple[str, str], int] = {}
        for o in items:
            by_kind[(o.kind, o.scope)] = by_kind.get((o.kind, o.scope), 0) + 1
            impacted[(o.kind, o.region)] = impacted.get((o.kind, o.region), 0) + o.impacted
        g = GaugeMetricFamily("forewarn_open_incidents", "Incidents open now",
                              labels=["kind", "scope"])
        for (k, s), n in sorted(by_kind.items()):
            g.add_metric([k, s], n)
        yield g
        per_site = _per_key(((o.site_id, o.region, o.kind, o.scope), o.start, (o.impacted,))
                            for o in items)
        yield from _gauges(["site_id", "region", "kind", "scope"], per_site, (
            ("forewarn_site_open_incidents",
             "Incidents open now, per site (only sites with one)"),
            ("forewarn_site_open_incident_start_timestamp_seconds",
             "Event-time start of the oldest open incident of a site"),
            ("forewarn_site_open_incident_impacted_subscribers",
             "Subscribers impacted by the open incidents of a site")))
        g = GaugeMetricFamily("forewarn_open_incident_impacted_subscribers",
                              "Subscribers impacted by the incidents open now",
                              labels=["kind", "region"])
        for (k, r), n in sorted(impacted.items()):
            g.add_metric([k, r], n)
        yield g

    def describe(self):
        return []


OBSERVER = FlowObserver()
REGISTRY.register(OBSERVER)



def reset() -> None:
    """Zero every Forewarn series of this process, as if no flow had run in it.

    For a run that must not show in /metrics (the demo's warm-up day): run it, then
    call this, while no flow runs. Series stay exported (at 0), children bound at
    import (e.g. in :mod:`forewarn.dataflows.flow`) stay the ones exported; the build
    information stays; the open incidents, notices and complaints the observer
    holds and the ingest clock are forgotten.
    """
    for metric in _FLOW_METRICS:
        children = list(metric._metrics.values()) if metric._labelnames else [metric]
        for child in children:
            # prometheus_client has no public reset for a histogram (a counter's
            # reset() does the same); re-initialising a child's values keeps the object.
            child._metric_init()
    OBSERVER.reset()
    INGEST.reset()


_FLOW_METRICS = tuple(m for m in list(globals().values())
                      if isinstance(m, Counter | Gauge | Histogram) and m is not BUILD)

_INC_TIME = re.compile(r"-(\d{8}T\d{6})$")


def incident_start(incident_id: str) -> float | None:
    """Start time encoded in an incident id (``INC-<site>-<UTC yyyymmddThhmmss>``).

    >>> incident_start("INC-SITE0001-20261123T101500")
    1795428900.0
    """
    m = _INC_TIME.search(incident_id)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- serving -----------------------------------------------------------------------

_served: dict[int, object] = {}


def serve(port: int, addr: str = "127.0.0.1") -> int:
    """Serve /metrics on ``addr:port`` once per process; port 0 picks a free one."""
    if port in _served:
        return port
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}; "
                      f"pick another port with --metrics-port") from None
    bound = server.server_address[1]
    _served[bound] = server
    return bound

