"""Small builders for contract records, so tests read like scenarios."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson

from forewarn.rules.rulebook import Rulebook, load_rulebook
from forewarn.runner import run_collect

BASE = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 10:00 London (UTC+0 in November)


#: Evidence that depends on the order the one online propensity model learnt in, which
#: batching, worker count and restarts vary; every other field of an action does not.
MODEL_EVIDENCE = ("propensity:", "model:")


def comparable(action: dict | bytes) -> bytes:
    """An action as canonical JSON without its model evidence, for comparing whole
    records between runs (ids, kinds, channels, times, send_after, offers, messages).

    >>> comparable(b'{"action_id":"a","evidence":["alarm:A1","propensity:0.5","model:p3"]}')
    b'{"action_id":"a","evidence":["alarm:A1"]}'
    """
    a = orjson.loads(action) if isinstance(action, bytes) else dict(action)
    a["evidence"] = [e for e in a["evidence"] if not e.startswith(MODEL_EVIDENCE)]
    return orjson.dumps(a, option=orjson.OPT_SORT_KEYS)


def ts(minutes: float = 0, seconds: float = 0) -> str:
    return (BASE + timedelta(minutes=minutes, seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Scenario:
    """An ordered list of wire records (JSON lines) built step by step."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def add(self, **rec) -> Scenario:
        self.lines.append(orjson.dumps(rec))
        return self

    def raw(self, line: bytes) -> Scenario:
        self.lines.append(line)
        return self

    def site(self, site_id: str, cells: int = 3, region: str = "north",
             place: tuple[float, float] | None = None) -> Scenario:
        """A site's cells; ``place``: its (lat, lon), which makes it a neighbour of the
        sites placed near it."""
        where = {"lat": place[0], "lon": place[1]} if place else {}
        for i in range(1, cells + 1):
            self.add(type="cell", cell_id=f"{site_id}-C{i}", site_id=site_id, region=region,
                     **where)
        return self

    def subscriber(self, sid: str, *, segment: str = "consumer", tz: str = "Europe/London",
                   language: str = "en", channels: dict | None = None,
                   preferred: list[str] | None = None, at: float = 0) -> Scenario:
        rec = dict(type="subscriber", subscriber_id=sid, op="upsert", updated_at=ts(at),
                   language=language, timezone=tz, segment=segment, name=f"Name {sid}",
                   channels=channels if channels is not None
                   else {"sms": {"address": "+447700900001", "consent": True}})
        if preferred:
            rec["preferred_channels"] = preferred
        return self.add(**rec)

    def delete(self, sid: str, at: float) -> Scenario:
        return self.add(type="subscriber", subscriber_id=sid, op="delete", updated_at=ts(at))

    def seen(self, sid: str, cell: str, at: float) -> Scenario:
        return self.add(type="location", subscriber_id=sid, cell_id=cell, event_time=ts(at))

    def alarm(self, alarm_id: str, at: float, *, cell: str | None = None,
              site: str | None = None, severity: str = "critical",
              cause: str = "transmitterFailure") -> Scenario:
        rec = dict(type="alarm", alarm_id=alarm_id, event_time=ts(at),
                   perceived_severity=severity, probable_cause=cause)
        if cell:
            rec["cell_id"] = cell
        if site:
            rec["site_id"] = site
        return self.add(**rec)

    def clear(self, alarm_id: str, at: float, *, cell: str | None = None,
              site: str | None = None, cause: str = "transmitterFailure") -> Scenario:
        return self.alarm(alarm_id, at, cell=cell, site=site, severity="cleared", cause=cause)

    def call(self, call_id: str, sid: str, cell: str, end: float, *, dropped: bool = False,
             length_s: float = 60) -> Scenario:
        return self.add(type="call", call_id=call_id, subscriber_id=sid, cell_id=cell,
                        start_time=ts(end, -length_s), end_time=ts(end), dropped=dropped,
                        cause_code=41 if dropped else 16)

    def maintenance(self, window_id: str, start: float, end: float, *,
                    sites: list[str] | None = None, cells: list[str] | None = None) -> Scenario:
        rec = dict(type="maintenance", window_id=window_id, op="upsert", start_time=ts(start),
                   end_time=ts(end))
        if sites:
            rec["site_ids"] = sites
        if cells:
            rec["cell_ids"] = cells
        return self.add(**rec)

    def cancel(self, window_id: str, start: float, end: float, *,
               sites: list[str] | None = None, cells: list[str] | None = None) -> Scenario:
        """A maintenance window's ``cancel`` (the contract wants its times and scope too)."""
        self.maintenance(window_id, start, end, sites=sites, cells=cells)
        rec = orjson.loads(self.lines[-1])
        rec["op"] = "cancel"
        self.lines[-1] = orjson.dumps(rec)
        return self

    def kpi(self, cell: str, start: float, *, attempts: int, users: int, rrc: float,
            drops: int = 0, period_min: float = 15) -> Scenario:
        """A cell's KPI period of ``period_min`` minutes from minute ``start``."""
        return self.add(type="kpi", cell_id=cell, period_start=ts(start),
                        period_s=period_min * 60, call_attempts=attempts, dropped_calls=drops,
                        rrc_success_rate=rrc, dl_throughput_mbps=5.0 if users else 0.0,
                        active_users=users)

    def tick(self, at: float) -> Scenario:
        """Time passes: an unrelated observation far away moves the stream on."""
        return self.seen("ZZ-clock", "FAR-C1", at)

    def run(self, book: Rulebook | None = None, workers: int = 1) -> Result:
        lines = [orjson.dumps(dict(type="cell", cell_id="FAR-C1", site_id="FAR"))] + self.lines
        got = run_collect(lines, book or load_rulebook(), workers=workers)
        return Result([orjson.loads(x) for x in got.actions],
                      [orjson.loads(x) for x in got.incidents],
                      [orjson.loads(x) for x in got.dead_letters])


class Result:
    def __init__(self, actions: list[dict], incidents: list[dict], dead: list[dict]):
        self.actions = sorted(actions, key=lambda a: (a["event_time"], a["action_id"]))
        self.incidents = sorted(incidents, key=lambda i: (i["event_time"], i["incident_id"]))
        self.dead = dead

    def kinds(self, sid: str | None = None) -> list[str]:
        return [a["kind"] for a in self.actions if sid is None or a["subscriber_id"] == sid]

    def of(self, kind: str) -> list[dict]:
        return [a for a in self.actions if a["kind"] == kind]

    def subscribers(self, kind: str) -> set[str]:
        return {a["subscriber_id"] for a in self.of(kind)}


def feed(seq, rec, raw: bytes = b"", source: str = "f") -> list:
    """One decoded record into a :class:`~forewarn.dataflows.sequencer.Sequencer`; what it
    releases, ``(stage, key, message)``: for sites, then subscribers, then dead letters
    (order kept per key, not across keys)."""
    from forewarn.dataflows.sequencer import Routes
    from forewarn.model import stream_at

    out = Routes()
    seq.take(rec, raw, source, stream_at(rec), out)
    return ([("site", k, m) for k, box in out.sites.items() for m in box]
            + [("care", k, m) for k, box in out.cares.items() for m in box]
            + [("dead", None, d) for d in out.dead])


def without_budgets(text: str) -> str:
    """A rulebook's text without its top-level ``budgets:`` block (if it has one),
    for tests that put their own in.

    >>> without_budgets("a: 1\\nbudgets:\\n  per_minute: {sms: 1}\\n  reserve_share: 0\\nrules:\\n")
    'a: 1\\nrules:\\n'
    """
    return re.sub(r"\nbudgets:[^\n]*\n(?:[ ]+[^\n]*\n|[ ]*#[^\n]*\n)*", "\n", text, count=1)
