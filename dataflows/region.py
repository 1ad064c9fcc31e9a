"""Stage 2b — regional events for the NOC (keyed by a shard of regions).

A storm takes many sites of one region down within minutes; each site's correlator
(:mod:`forewarn.dataflows.site`) opens its own incident. The NOC wants one event: as
Alertmanager groups alerts by label (``group_by: [region]``), incidents on
``correlation.storm.sites`` sites of one region that started within
``correlation.storm.window_s`` of each other are grouped under one parent incident,
kind ``regional_outage``, scope ``region``:

* it **opens** when the grouping holds (at the event time of the incident record that
  completes it), with the incidents that make it as its children;
* a later outage of the region **joins** it while it is open (the storm goes on);
* it is **updated** when a child joins or resolves, or the count of impacted
  subscribers changes, at most once per event time;
* it **resolves** when its last child does.

Every site incident record passes through this step (one message per incident change,
never per event). Site incidents carry ``parent_id`` (null when not grouped); when a
parent opens, its children that were open before get an ``updated`` record naming it.
Only outages and flapping incidents of a known region count; an incident inside a
maintenance window (planned work) and silent-failure verdicts (``degradation``) pass
through alone.

**Order.** Incident records of one time from sites on different workers can arrive in
any order, and a parent's id, membership and updates depend on their order. So a
region shard holds what it gets until the event-time frontier (:mod:`forewarn.dataflows.frontier`)
says every incident before a time has arrived (it hears of a frontier in the same
epoch as care, an epoch after the sites fired their deadlines before it), then takes
those before it in ``(event time, incident id)`` order, each incident's own records in
the order its site made them. What it decides is then the same with any worker count,
batch size and epoch length. An incident that arrives behind a frontier already taken
(made by a late record) is taken when it arrives; at the end of input everything held
is taken, in order.

>>> from forewarn.model import Incident
>>> from forewarn.dataflows.messages import Frontier, Impact
>>> shard = RegionShard()
>>> def inc(site, start, status="open", t=None):
...     return Incident(f"INC-{site}-{int(start)}", status, "outage", "site", site,
...                     (f"{site}-C1",), start, None if status != "resolved" else t,
...                     10, t if t is not None else start + 60, region="north")
>>> held = shard.take([inc(f"S{i}", 60.0 * i) for i in range(1, 4)], sites=3, window_s=900)
>>> held  # nothing before a frontier
[]
>>> out = shard.take([Frontier(1000.0)], sites=3, window_s=900)
>>> [(i.incident_id, i.status, i.parent_id) for i in out]  # doctest: +NORMALIZE_WHITESPACE
[('INC-S1-60', 'open', None), ('INC-S2-120', 'open', None),
 ('REG-north-19700101T000100', 'open', None),
 ('INC-S3-180', 'open', 'REG-north-19700101T000100'),
 ('INC-S1-60', 'updated', 'REG-north-19700101T000100'),
 ('INC-S2-120', 'updated', 'REG-north-19700101T000100')]
>>> out[2].child_ids, out[2].sites, out[2].impacted_subscribers
(('INC-S1-60', 'INC-S2-120', 'INC-S3-180'), ('S1', 'S2', 'S3'), 30)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import groupby
from typing import Any
from zlib import crc32

from forewarn.dataflows.messages import Frontier, Impact
from forewarn.dataflows.state import restore_fields
from forewarn.model import REGIONAL_OUTAGE, Incident

#: Region keys: regions hashed into this many shards (crc32 of the name: the same on
#: every process and run). Regions are few; the frontier step tells each shard.
REGION_SHARDS = 4
REGION_KEYS = tuple(f"noc-{i}" for i in range(REGION_SHARDS))
#: Incident kinds a regional event groups (a silent-failure verdict is not a power cut).
GROUPED_KINDS = frozenset({"outage", "flapping"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
INF = float("inf")


def region_key(region: str | None) -> str:
    """The step key of a region's incidents.

    >>> region_key("north") in REGION_KEYS
    True
    """
    return REGION_KEYS[crc32((region or "").encode()) % REGION_SHARDS]


def parent_id(region: str, start: float) -> str:
    """A regional event's id, from its region and its first child's start.

    >>> parent_id("north", 1795428900.0)
    'REG-north-20261123T101500'
    >>> parent_id("north east", 0.0) != parent_id("north_east", 0.0)  # made safe, kept apart
    True
    """
    safe = _UNSAFE.sub("_", region)[:40]
    if safe != region:  # characters replaced or cut: a digest of the name keeps ids apart
        safe += "~" + hashlib.blake2b(region.encode(), digest_size=4).hexdigest()
    return f"REG-{safe}-{datetime.fromtimestamp(start, UTC):%Y%m%dT%H%M%S}"


@dataclass(slots=True)
class RegionalEvent:
    """An open parent incident: its children's latest records, by id, and what the NOC
    was last told of it (to update it only on a change)."""

    id: str
    start: float
    children: dict[str, Incident] = field(default_factory=dict)
    told: tuple = ()

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    @property
    def open(self) -> bool:
        return any(c.status != "resolved" for c in self.children.values())

    def record(self, region: str, status: str, at: float) -> Incident:
        kids = sorted(self.children.values(), key=lambda c: (c.start_time, c.incident_id))
        sites = tuple(dict.fromkeys(c.site_id for c in kids))
        return Incident(
            incident_id=self.id, status=status, incident_kind=REGIONAL_OUTAGE, scope="region",
            site_id=sites[0], cell_ids=tuple(sorted({x for c in kids for x in c.cell_ids})),
            start_time=self.start, end_time=at if status == "resolved" else None,
            impacted_subscribers=sum(c.impacted_subscribers for c in kids), event_time=at,
            region=region, evidence=tuple(f"incident:{c.incident_id}" for c in kids),
            child_ids=tuple(c.incident_id for c in kids), sites=sites)

    def summary(self) -> tuple:
        """What a NOC update shows: children, which are open, impacted."""
        return tuple(sorted((c.incident_id, c.status == "resolved", c.impacted_subscribers)
                            for c in self.children.values()))


@dataclass(slots=True)
class RegionGroup:
    """One region: its site incidents open now and not grouped, and its open event."""

    region: str
    loose: dict[str, Incident] = field(default_factory=dict)
    event: RegionalEvent | None = None

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    def apply(self, incs: list[Incident], sites: int, window_s: float) -> list[Incident]:
        """Records of one event time, in order; what goes to the NOC."""
        out: list[Incident] = []
        ev = self.event
        for inc in incs:
            if inc.incident_kind not in GROUPED_KINDS or inc.maintenance_window is not None:
                out.append(inc)
                continue
            iid = inc.incident_id
            if ev is not None and (iid in ev.children or (
                    inc.status != "resolved" and iid not in self.loose)):
                ev.children[iid] = inc  # a child, or one joining the open event
                self.loose.pop(iid, None)
                out.append(replace(inc, parent_id=ev.id))
                continue
            if inc.status == "resolved":
                self.loose.pop(iid, None)
            else:
                self.loose[iid] = inc
            out.append(inc)
        at = incs[-1].event_time
        if ev is None:
            members = self._grouped(sites, window_s)
            if members:
                ev = self.event = RegionalEvent(parent_id(self.region, members[0].start_time),
                                                members[0].start_time)
                for m in members:
                    ev.children[m.incident_id] = m
                    del self.loose[m.incident_id]
                now = {i.incident_id for i in out}
                ev.told = ev.summary()
                # the parent first, then its children of this time, then the others
                out = ([i for i in out if i.incident_id not in ev.children]
                       + [ev.record(self.region, "open", at)]
                       + [replace(i, parent_id=ev.id) for i in out
                          if i.incident_id in ev.children]
                       + [replace(m, status="updated", event_time=at, parent_id=ev.id)
                          for m in members if m.incident_id not in now])
            return out
        if not ev.open:
            out.append(ev.record(self.region, "resolved", at))
            self.event = None
        elif ev.summary() != ev.told:
            ev.told = ev.summary()
            out.append(ev.record(self.region, "updated", at))
        return out

    def _grouped(self, sites: int, window_s: float) -> list[Incident]:
        """The open incidents that make a regional event: the earliest window of
        ``window_s`` (by start) holding incidents on ``sites`` sites; none if none does."""
        loose = sorted(self.loose.values(), key=lambda i: (i.start_time, i.incident_id))
        if len({i.site_id for i in loose}) < sites:
            return []
        for n, first in enumerate(loose):
            within = [i for i in loose[n:] if i.start_time - first.start_time <= window_s]
            if len({i.site_id for i in within}) >= sites:
                return within
        return []


@dataclass(slots=True)
class RegionShard:
    """The regions of one key: incident records, and the verdicts on their way to care,
    held until a frontier passes them."""

    groups: dict[str, RegionGroup] = field(default_factory=dict)
    held: list[Incident] = field(default_factory=list)
    frontier: float = float("-inf")
    verdicts: list = field(default_factory=list)  # verdicts held (see take)

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    def take(self, values: list, sites: int | None, window_s: float) -> list:
        """``values``: incident records (each site's in the order it made them),
        :class:`Frontier` marks, and lists of verdicts a site sent its subscribers.
        ``sites`` None: no grouping (records and verdicts pass as they come).

        Out: incident records, then (when there are any) one list of the verdicts taken,
        each :class:`~forewarn.dataflows.messages.Impact`, :class:`Restored` and
        :class:`Escalation` of an incident of a regional event tagged with it
        (``event``: its id and its children at the verdict's time: :meth:`_tag`)."""
        out: list = []
        told: list = []
        for v in values:
            kind = type(v)
            if kind is Frontier:
                if v.at > self.frontier:
                    self.frontier = at = v.at
                    ready = [i for i in self.held if i.event_time < at]
                    if ready:
                        self.held = [i for i in self.held if i.event_time >= at]
                    waiting = [m for m in self.verdicts if m.at < at]
                    if waiting:
                        self.verdicts = [m for m in self.verdicts if m.at >= at]
                    if ready or waiting:
                        out += self._apply(ready, sites, window_s, waiting, told)
            elif kind is list:
                if sites is None:
                    told += v
                    continue
                for m in v:
                    if m.at < self.frontier:  # behind a frontier taken: late
                        told.append(self._tag(m))
                    else:
                        self.verdicts.append(m)
            elif sites is None:
                out.append(v)
            elif v.event_time < self.frontier:  # behind a frontier taken: late
                out += self._apply([v], sites, window_s)
            else:
                self.held.append(v)
        if told:
            out.append(told)
        return out

    def finish(self, sites: int | None, window_s: float) -> list:
        """End of input: everything held, in order."""
        held, self.held = self.held, []
        waiting, self.verdicts = self.verdicts, []
        told: list = []
        out: list = self._apply(held, sites, window_s, waiting, told)
        if told:
            out.append(told)
        return out

    def _apply(self, incs: list[Incident], sites: int | None, window_s: float,
               verdicts: list | None = None, told: list | None = None) -> list[Incident]:
        """Records in ``(event time, region, incident id)`` order (a stable sort: one
        incident's records of one time stay in the order its site made them), each
        region's records of one time applied together; ``verdicts`` (onto ``told``)
        tagged in the same event-time order: a restoration or an escalation of a time
        before that time's records (the event its incident was part of until then), an
        outage's hold-down after them (one completing a regional event at that time
        counts)."""
        incs = sorted(incs, key=_order)
        if sites is None:  # grouping turned off by a reload: what was held goes as it is
            if verdicts and told is not None:
                told += verdicts
            return incs
        if not verdicts or told is None:
            return self._group(incs, sites, window_s)
        verdicts.sort(key=_at)
        tags: dict = {}
        out: list[Incident] = []
        i = j = 0
        while i < len(incs) or j < len(verdicts):
            at = min(incs[i].event_time if i < len(incs) else INF,
                     verdicts[j].at if j < len(verdicts) else INF)
            k = j
            while k < len(verdicts) and verdicts[k].at == at:
                k += 1
            n = i
            while n < len(incs) and incs[n].event_time == at:
                n += 1
            now = verdicts[j:k]
            told += [self._tag(m, tags) for m in now if type(m) is not Impact]
            if n > i:
                out += self._group(incs[i:n], sites, window_s)
            told += [self._tag(m, tags) for m in now if type(m) is Impact]
            i, j = n, k
        return out

    def _group(self, incs: list[Incident], sites: int, window_s: float) -> list[Incident]:
        """Records already in order, each region's records of one time applied together."""
        out: list[Incident] = []
        for (_, region), same in groupby(incs, key=lambda i: (i.event_time, i.region)):
            batch = list(same)
            if region is None:
                out += batch
                continue
            group = self.groups.get(region)
            if group is None:
                group = self.groups[region] = RegionGroup(region)
            out += group.apply(batch, sites, window_s)
            if not group.loose and group.event is None:
                del self.groups[region]
        return out

    def _tag(self, msg: Any, tags: dict | None = None) -> Any:
        """A verdict with the regional event its incident belongs to now, if any
        (``tags``: the tags made since the event last changed, shared)."""
        facts = getattr(msg, "facts", None)
        if facts is None or facts.region is None:
            return msg
        group = self.groups.get(facts.region)
        ev = group.event if group is not None else None
        if ev is None or facts.incident_id not in ev.children:
            return msg
        key = (ev.id, len(ev.children))  # (children only join while it is open)
        tag = tags.get(key) if tags is not None else None
        if tag is None:
            tag = (ev.id, tuple(sorted(ev.children)))
            if tags is not None:
                tags[key] = tag
        return replace(msg, event=tag)


def _at(msg: Any) -> float:
    return msg.at


def _order(i: Incident) -> tuple[float, str, str]:
    return (i.event_time, i.region or "", i.incident_id)
