"""Stage 4 — dispatch budgets (one key): compensation per day, sends per channel-minute.

Care decides *whether* a subscriber gets an action; dispatch decides whether the
operator can afford it now. With no ``budgets`` in the rulebook it passes
everything through untouched.

* ``compensation_per_day``: compensations beyond it that (UTC) day are
  suppressed (reason ``compensation_budget``);
* ``per_minute``: sends per channel and minute of send time; consumers may use
  ``1 - reserve_share`` of a minute, the priority segments all of it; an action
  over budget is deferred (``send_after``) to the next minute with room.

Within a batch, actions are taken in (event time, priority, action id) order.

>>> from rules.rulebook import Budgets
>>> from forewarn.model import Action
>>> d = Dispatcher()
>>> b = Budgets(per_minute={"sms": 2}, reserve_share=0.5)
>>> mk = lambda i, seg: Action(f"a{i}", "S", "apology", "sms", "en", "m", "r", 1, None, (),
...                            120.0, segment=seg)
>>> [(a.action_id, a.send_after) for a in d.admit(
...     [mk(1, "consumer"), mk(2, "consumer"), mk(3, "vip")], b)]
[('a3', None), ('a1', 180.0), ('a2', 240.0)]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dataflows.care import Suppressed
from forewarn.model import Action
from rules.rulebook import Budgets

MAX_DEFER_MINUTES = 24 * 60


@dataclass(slots=True)
class Dispatcher:
    compensations: dict[int, int] = field(default_factory=dict)  # UTC day -> count
    sends: dict[tuple[str, int], int] = field(default_factory=dict)  # (channel, minute) -> n

    def admit(self, items: list, budgets: Budgets | None) -> list:
        if budgets is None:
            return items
        prio = budgets.priority_segments
        items = sorted(items, key=lambda a: (
            a.event_time if isinstance(a, Action) else a.at,
            0 if isinstance(a, Action) and a.segment in prio else 1,
            a.action_id if isinstance(a, Action) else a.rule_id))
        out = []
        for a in items:
            if not isinstance(a, Action):
                out.append(a)
                continue
            if a.action_kind == "compensation" and budgets.compensation_per_day is not None:
                day = int(a.event_time // 86400)
                if self.compensations.get(day, 0) >= budgets.compensation_per_day:
                    out.append(Suppressed(a.rule_id, a.action_kind, "compensation_budget",
                                          a.event_time))
                    continue
                self.compensations[day] = self.compensations.get(day, 0) + 1
            out.append(self._rate(a, budgets))
        self._prune(items)
        return out

    def _rate(self, a: Action, budgets: Budgets) -> Action:
        limit = budgets.per_minute.get(a.channel)
        if limit is None:
            return a
        if a.segment not in budgets.priority_segments:
            limit = max(1, int(limit * (1.0 - budgets.reserve_share)))
        when = a.send_after if a.send_after is not None else a.event_time
        minute = int(when // 60)
        for m in range(minute, minute + MAX_DEFER_MINUTES):
            used = self.sends.get((a.channel, m), 0)
            if used < limit:
                self.sends[(a.channel, m)] = used + 1
                return a if m == minute else replace(a, send_after=m * 60.0)
        return replace(a, send_after=(minute + MAX_DEFER_MINUTES) * 60.0)

    def _prune(self, items: list) -> None:
        if not items:
            return
        now = max(a.event_time if isinstance(a, Action) else a.at for a in items)
        old_min = int(now // 60) - 10
        for key in [k for k in self.sends if k[1] < old_min]:
            del self.sends[key]
        for day in [d for d in self.compensations if d < int(now // 86400) - 2]:
            del self.compensations[day]
