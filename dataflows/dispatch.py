"""Stage 4 — dispatch (one key): complaint propensity, and budgets.

Care decides *whether* a subscriber gets an action; dispatch scores it and
decides whether the operator can afford it now.

* **propensity** — one online model (:mod:`forewarn.dataflows.propensity`) for the whole
  flow, in this step's state (so it survives recovery): every action care
  marks as an exposure is scored, the score and model version go into its
  evidence (``propensity:0.123``, ``model:p812``), and complaints label the
  exposures (positive within 2 h, negative after). A rule with
  ``audience.min_propensity`` drops actions scored below it (``low_propensity``).
  Scores depend on the order examples arrive in, which with several workers
  varies between runs: ids and event times do not.

* ``compensation_per_day``: compensations beyond it that (UTC) day are
  suppressed (reason ``compensation_budget``);
* ``per_minute``: sends per channel and minute of send time; consumers may use
  ``1 - reserve_share`` of a minute, the priority segments all of it; an action
  over budget is deferred (``send_after``) to the next minute with room, at most
  ``max_delay_s`` after it became due: when no minute up to then has room, it goes in
  the bound's minute over the rate, with the evidence ``budget:overflow``. With
  ``pace: regional_events`` only the actions about an incident of a regional event
  (``Action.regional_event``, marked by care from the region step's word) may be
  deferred; every other send goes as it is and takes its room in its minute.

Actions are taken in (event time, priority, action id) order: :meth:`Dispatcher.take`
holds what arrives until a :class:`~forewarn.dataflows.messages.Frontier` says every action
before a time has arrived (:mod:`forewarn.dataflows.frontier`), so which action gets a budget,
and the order the model learns in, do not depend on batching or worker count.

>>> from forewarn.rules.rulebook import Budgets
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
from typing import Any

from forewarn.dataflows.care import ComplaintSeen, Suppressed
from forewarn.dataflows.messages import Frontier
from forewarn.dataflows.propensity import ExposureBook, PropensityModel
from forewarn.dataflows.state import restore_fields
from forewarn.model import OVERFLOW_EVIDENCE, PACED_EVIDENCE, Action
from forewarn.rules.rulebook import Budgets, Rulebook


def _time(item) -> float:
    return item.event_time if isinstance(item, Action) else item.at


def _order(item) -> tuple:
    if isinstance(item, Action):
        return (item.event_time, 1, item.action_id)
    return (item.at, 0, getattr(item, "subscriber_id", "") or getattr(item, "rule_id", ""))


def _min_propensity(book: Rulebook, rule_id: str) -> float | None:
    try:
        return book.rule(rule_id).audience.min_propensity
    except KeyError:
        return None


MAX_DEFER_MINUTES = 24 * 60  # a rate-limited send is deferred at most this far
#: The evidence of a send placed over the rate: no minute up to ``budgets.max_delay_s``
#: after it became due had room.
OVERFLOW, PACED = OVERFLOW_EVIDENCE, PACED_EVIDENCE  # (forewarn.model: their one definition)
SWEEP_S = 600.0  # expire unlabelled exposures this often (event time)
DAY_S = 86400.0


@dataclass(slots=True)
class Dispatcher:
    compensations: dict[int, int] = field(default_factory=dict)  # UTC day -> count
    sends: dict[tuple[str, int], int] = field(default_factory=dict)  # (channel, minute) -> n
    model: PropensityModel = field(default_factory=PropensityModel)
    exposures: dict[str, ExposureBook] = field(default_factory=dict)  # by subscriber
    clock: float = 0.0
    swept: float = 0.0
    contacts: dict[str, tuple[float, ...]] = field(default_factory=dict)  # last day's actions
    held: list = field(default_factory=list)  # arrived, not yet before the frontier
    frontier: float = float("-inf")

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    def take(self, items: list, book: Rulebook, score: bool = True) -> list:
        """Hold actions (and complaints seen) until a :class:`Frontier` passes them, then
        :meth:`handle` those before it, all together; an item arriving behind the
        frontier (made by a late record) is handled at once."""
        ready: list = []
        held = self.held
        moved = False
        for item in items:
            if type(item) is Frontier:
                if item.at > self.frontier:
                    self.frontier, moved = item.at, True
            elif _time(item) < self.frontier:
                ready.append(item)
            else:
                held.append(item)
        if moved and held:
            frontier = self.frontier
            ready += [h for h in held if _time(h) < frontier]
            self.held = [h for h in held if _time(h) >= frontier]
        return self.handle(ready, book, score) if ready else []

    def handle(self, items: list, book: Rulebook, score: bool = True) -> list:
        """Score, learn, then apply budgets; complaints are consumed here."""
        items = sorted(items, key=_order)
        out: list = []
        for item in items:
            at = _time(item)
            if at > self.clock:
                self.clock = at
                # swept at points of the one event-time order, never at a batch's end:
                # what the model has learnt when it scores must not depend on batching
                if at - self.swept >= SWEEP_S:
                    self._sweep()
            if isinstance(item, ComplaintSeen):
                exp = self.exposures.get(item.subscriber_id)
                if exp is not None:
                    self._learn(exp.complaint(item.at))
                continue
            if isinstance(item, Action):
                item = self._contact(item)
                if item.features is not None:
                    item = self._score(item, book) if score else replace(item, features=None)
            out.append(item)
        return self.admit(out, book.budgets)

    def _contact(self, a: Action) -> Action:
        """Note a contact; the model's ``contacts_24h`` is counted here, where every
        action arrives in event-time order (care hears of several sites' verdicts in no
        fixed order)."""
        sid, at = a.subscriber_id, a.event_time
        past = self.contacts.get(sid, ())
        self.contacts[sid] = past + (at,)
        if a.features is None:
            return a
        n = sum(1 for t in past if at - DAY_S < t < at)
        return replace(a, features=replace(a.features, contacts_24h=n))

    def _score(self, a: Action, book: Rulebook) -> Action | Suppressed:
        exp = self.exposures.setdefault(a.subscriber_id, ExposureBook())
        self._learn(exp.expire(a.event_time))
        score = self.model.score(a.features)
        version = self.model.version
        exp.expose(a.event_time, a.features, score, version)
        floor = _min_propensity(book, a.rule_id)
        if floor is not None and score < floor:
            return Suppressed(a.rule_id, a.action_kind, "low_propensity", a.event_time)
        return replace(a, evidence=a.evidence + (f"propensity:{score:.3f}", f"model:{version}"),
                       features=None)

    def _learn(self, labels: list) -> None:
        for x in labels:
            self.model.learn(x.features, x.label, x.score)

    def _sweep(self) -> None:
        self.swept = self.clock
        day_ago = self.clock - DAY_S
        for sid, times in list(self.contacts.items()):
            if times[-1] <= day_ago:
                del self.contacts[sid]
            elif times[0] <= day_ago:
                self.contacts[sid] = tuple(t for t in times if t > day_ago)
        for sub in list(self.exposures):
            exp = self.exposures[sub]
            self._learn(exp.expire(self.clock))
            if not exp.pending:
                del self.exposures[sub]

    def finish(self, book: Rulebook, score: bool = True) -> list:
        """End of input: what is still held, then settle what the horizon allows (the
        flow then reads ``model``)."""
        held, self.held = self.held, []
        out = self.handle(held, book, score) if held else []
        self._sweep()
        return out

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
        if a.regional_event is None and budgets.pace == "regional_events":
            # not paced: it goes as it is, and takes its room in its minute
            key = (a.channel, int((a.send_after if a.send_after is not None
                                   else a.event_time) // 60))
            self.sends[key] = self.sends.get(key, 0) + 1
            return a
        if a.segment not in budgets.priority_segments:
            limit = max(1, int(limit * (1.0 - budgets.reserve_share)))
        when = a.send_after if a.send_after is not None else a.event_time
        minute = int(when // 60)
        bound = budgets.max_delay_s
        span = MAX_DEFER_MINUTES if bound is None else int((when + bound) // 60) - minute + 1
        for m in range(minute, minute + span):
            used = self.sends.get((a.channel, m), 0)
            if used < limit:
                self.sends[(a.channel, m)] = used + 1
                return a if m == minute else replace(a, send_after=m * 60.0,
                                                     evidence=a.evidence + (PACED,))
        if bound is None:
            return replace(a, send_after=(minute + MAX_DEFER_MINUTES) * 60.0,
                           evidence=a.evidence + (PACED,))
        # every minute up to the bound is full: it goes at the bound, over the rate, and
        # says so (counted: forewarn_budget_overflow_total)
        last = minute + span - 1
        self.sends[(a.channel, last)] = self.sends.get((a.channel, last), 0) + 1
        return replace(a, send_after=None if last == minute else max(when, last * 60.0),
                       evidence=a.evidence + (OVERFLOW,))

    def _prune(self, items: list) -> None:
        if not items:
            return
        now = max(a.event_time if isinstance(a, Action) else a.at for a in items)
        old_min = int(now // 60) - 10
        for key in [k for k in self.sends if k[1] < old_min]:
            del self.sends[key]
        for day in [d for d in self.compensations if d < int(now // 86400) - 2]:
            del self.compensations[day]
