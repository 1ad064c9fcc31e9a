"""Customers' reactions and the ground truth about who was hurt.

- **No service**: a subscriber without service because of a down period longer
  than 2 min notices 5-15 min after losing it (only if still without service
  then) and complains 30-60 min after noticing with probability
  ``base x (1 - exp(-lost_s / 45 min))`` where ``lost_s`` is how long *they* were
  without service; base consumer 0.25, business 0.4, vip 0.5 (planned work:
  0.03, 0.048, 0.06). At most one such complaint per subscriber and outage.
- **Dropped calls**: a burst is a chain of a subscriber's dropped calls each
  within 30 min of the previous one, with 2 or more drops; the subscriber
  complains 30-60 min after the last drop with probability 0.15 / 0.25 / 0.3.
- **Background**: a small rate of complaints unrelated to the network.
- Roamers (no BSS profile) and deleted subscribers never complain; complaints
  that would fall after the scenario end are not made.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from forewarn.simulator.config import ScenarioConfig, fmt_time
from forewarn.simulator.network import DownPeriod
from forewarn.simulator.traffic import DroppedCall, LossSpell, Trace

NOTICE_AFTER_S = (300, 900)
COMPLAIN_AFTER_S = (1800, 3600)
MIN_OUTAGE_S = 120
OUTAGE_BASE = {"consumer": 0.25, "business": 0.4, "vip": 0.5}
PLANNED_FACTOR = 0.12  # 0.25 -> 0.03
BURST_GAP_S = 1800
BURST_P = {"consumer": 0.15, "business": 0.25, "vip": 0.3}
CHANNELS = ("call_centre", "app", "web_chat", "social", "store")
_CHANNEL_WEIGHTS = (50, 20, 15, 10, 5)
BACKGROUND_CATEGORIES = ("other", "slow_data", "no_service", "dropped_calls")
_BACKGROUND_WEIGHTS = (40, 35, 15, 10)


@dataclass(slots=True)
class Complaint:
    """A would-be complaint; ``truth`` is the impact/burst record it belongs to."""

    t: int
    subscriber_id: str
    category: str
    channel: str
    cause: str
    ref: str | None
    truth: dict | None
    complaint_id: str = ""

    def record(self) -> dict:
        """The ``complaint`` input record."""
        return {"type": "complaint", "complaint_id": self.complaint_id,
                "subscriber_id": self.subscriber_id, "event_time": fmt_time(self.t),
                "category": self.category, "channel": self.channel}

    def truth_record(self) -> dict:
        """The ``truth_complaint`` record."""
        return {"type": "truth_complaint", "complaint_id": self.complaint_id,
                "subscriber_id": self.subscriber_id, "complaint_time": fmt_time(self.t),
                "category": self.category, "cause": self.cause, "ref": self.ref}


def _observed_at(trace: Trace, t: int) -> tuple[str | None, int | None]:
    """The latest observed cell at or before ``t`` and its age in seconds."""
    i = bisect.bisect_right(trace.obs_times, t) - 1
    if i < 0:
        return None, None
    return trace.obs_cells[i], t - trace.obs_times[i]


def _impact_truth(trace: Trace, spell: LossSpell) -> dict:
    """The ``truth_impact`` record of one loss spell."""
    sub, period = trace.sub, spell.period
    observed, age = _observed_at(trace, period.start)
    return {
        "type": "truth_impact",
        "subscriber_id": sub.subscriber_id,
        "outage_id": period.outage_id,
        "cycle": period.cycle,
        "kind": period.kind,
        "site_id": period.site_id,
        "cell_id": spell.cell_id,
        "start_time": fmt_time(period.start),
        "end_time": fmt_time(period.end),
        "at_start": spell.at_start,
        "lost_from": fmt_time(spell.lost_from),
        "lost_to": fmt_time(spell.lost_to),
        "lost_s": spell.lost_to - spell.lost_from,
        "recovered_by": spell.recovered_by,
        "planned": period.planned,
        "flapping": period.flapping,
        "segment": None if sub.roamer else sub.segment,
        "known": sub.known_at(period.start),
        "contactable": sub.contactable_at(period.start),
        "observed_cell_at_start": observed,
        "observed_age_s": age,
        "complaint_time": None,
        "complaint_id": None,
    }


def _channel(trace: Trace) -> str:
    return trace.rng.choices(CHANNELS, weights=_CHANNEL_WEIGHTS)[0]


def _outage_complaint(trace: Trace, spell: LossSpell, t1: int) -> int | None:
    """When this loss spell makes the subscriber complain, if it does."""
    rng, period = trace.rng, spell.period
    notice = spell.lost_from + rng.randint(*NOTICE_AFTER_S)
    when = notice + rng.randint(*COMPLAIN_AFTER_S)
    roll = rng.random()
    if period.end - period.start <= MIN_OUTAGE_S or spell.lost_to <= notice:
        return None
    base = OUTAGE_BASE[trace.sub.segment] * (PLANNED_FACTOR if period.planned else 1.0)
    p = base * (1 - math.exp(-(spell.lost_to - spell.lost_from) / 2700))
    return when if roll < p and when < t1 else None


def outage_truth(trace: Trace, t1: int) -> tuple[list[dict], list[Complaint]]:
    """Impact records and no-service complaints of one subscriber."""
    impacts, complaints = [], []
    complained: set[str] = set()
    for spell in trace.spells:
        truth = _impact_truth(trace, spell)
        impacts.append(truth)
        when = _outage_complaint(trace, spell, t1)
        if when is None or not trace.sub.may_complain:
            continue
        if spell.period.outage_id in complained:
            continue
        complained.add(spell.period.outage_id)
        truth["complaint_time"] = fmt_time(when)
        complaints.append(Complaint(when, trace.sub.subscriber_id, "no_service", _channel(trace),
                                    "outage", spell.period.outage_id, truth))
    return impacts, complaints


def _bursts(drops: list[DroppedCall]) -> list[list[DroppedCall]]:
    """Chains of drops each within 30 min of the previous; 2 or more drops."""
    chains: list[list[DroppedCall]] = []
    for drop in drops:
        if chains and drop.end - chains[-1][-1].end <= BURST_GAP_S:
            chains[-1].append(drop)
        else:
            chains.append([drop])
    return [chain for chain in chains if len(chain) >= 2]


def _first_outage(chain: list[DroppedCall]) -> DownPeriod | None:
    return next((d.period for d in chain if d.period is not None), None)


def burst_truth(trace: Trace, t1: int) -> tuple[list[dict], list[Complaint]]:
    """Drop-burst records and dropped-call complaints of one subscriber."""
    sub, rng = trace.sub, trace.rng
    bursts, complaints = [], []
    for chain in _bursts(trace.drops):
        last = chain[-1].end
        outage = _first_outage(chain)
        truth = {
            "type": "truth_drop_burst",
            "subscriber_id": sub.subscriber_id,
            "cell_id": chain[0].cell_id,
            "cell_ids": sorted({d.cell_id for d in chain}),
            "first_drop": fmt_time(chain[0].end),
            "last_drop": fmt_time(last),
            "drops": len(chain),
            "call_ids": [d.call_id for d in chain],
            "during_outage": outage.outage_id if outage else None,
            "planned": bool(outage and outage.planned),
            "degraded": any(d.degraded for d in chain),
            "segment": None if sub.roamer else sub.segment,
            "known": sub.known_at(last),
            "contactable": sub.contactable_at(last),
            "complaint_time": None,
            "complaint_id": None,
        }
        bursts.append(truth)
        when = last + rng.randint(*COMPLAIN_AFTER_S)
        if rng.random() < BURST_P[sub.segment] and when < t1 and sub.may_complain:
            truth["complaint_time"] = fmt_time(when)
            complaints.append(Complaint(when, sub.subscriber_id, "dropped_calls", _channel(trace),
                                        "drop_burst", chain[0].call_id, truth))
    return bursts, complaints


def background_complaints(trace: Trace, cfg: ScenarioConfig) -> list[Complaint]:
    """Complaints unrelated to the simulated network (handsets, billing, coverage...)."""
    rng, sub = trace.rng, trace.sub
    if rng.random() >= cfg.background_complaint_rate * cfg.hours or not sub.may_complain:
        return []
    t = rng.randrange(cfg.t0, cfg.t1)
    category = rng.choices(BACKGROUND_CATEGORIES, weights=_BACKGROUND_WEIGHTS)[0]
    return [Complaint(t, sub.subscriber_id, category, _channel(trace), "background", None, None)]


def number_complaints(complaints: list[Complaint]) -> list[Complaint]:
    """Sort complaints by time (then subscriber, category) and give them ids."""
    complaints.sort(key=lambda c: (c.t, c.subscriber_id, c.category, c.cause))
    for n, complaint in enumerate(complaints, start=1):
        complaint.complaint_id = f"CMP{n:06d}"
        if complaint.truth is not None:
            complaint.truth["complaint_id"] = complaint.complaint_id
    return complaints
