"""The event-time frontier: when every input before a time has reached a stage.

Bytewax carries no event-time progress between workers. Its one shared progress is the
wall-clock epoch: a stateful step applies its input epoch by epoch, in order. The
frontier step (one key; it receives one :class:`~forewarn.dataflows.messages.Progress` per
sequencer shard per batch, never one per record) turns the shards' watermarks into three
guarantees, each resting on an epoch boundary:

1. Progress taken in epoch *e* gives ``F``, the least watermark over the shards (a shard
   at its end counts as ``inf``): every record before ``F`` was sent to its site in epoch
   *e* or earlier. In a later epoch *e'* every site heard of gets ``Frontier(F)``: it
   fires its deadlines before ``F`` and releases the verdicts it decided before *e'*. By
   the end of *e'*, every incident record and every verdict about a time before ``F``
   has left its site.
2. In an epoch after *e'*, the region keys get ``Frontier(F)``: they take the incidents
   and the verdicts before ``F`` in event-time order (:mod:`forewarn.dataflows.region`)
   and pass the verdicts on to care. Care shards (with recovery: care gates, which pass
   what they take on to the buckets that keep care's state, in the same epoch) hear of
   ``F`` an epoch later again and take what they hold before it in event-time order. By
   the end of that epoch, every action about a time before ``F`` is made.
3. In an epoch after that, dispatch gets ``Frontier(F)``: every action about a time before
   ``F`` has reached it, so budgets are granted in event-time order, whatever the batch
   sizes, epochs and worker count (:meth:`forewarn.dataflows.dispatch.Dispatcher.take`).

A record applied *late* (behind its shard's watermark, on Kafka beyond the reorder
window) can still make an action about a time before a frontier already passed; dispatch
takes such an action when it arrives.

>>> from forewarn.dataflows.messages import Progress
>>> f = FrontierTracker()
>>> f.take(Progress(0, 100.0, ("S1",)))
>>> f.due()  # the same epoch: nothing yet
[]
>>> f.end_epoch()
>>> f.due()
[('site', [('S1', Frontier(at=100.0))])]
>>> f.take(Progress(0, 160.0, ("S2",)))
>>> f.end_epoch()
>>> for to, what in f.due():  # the region keys hear of 100 once sites had an epoch
...     print(to, what)
region []
site [('S1', Frontier(at=160.0)), ('S2', Frontier(at=160.0))]
>>> f.end_epoch()
>>> [(to, what) for to, what in f.due() if to == "dispatch"]  # and dispatch an epoch later
[('dispatch', Frontier(at=100.0))]

With two shards, the frontier is the slower one's watermark:

>>> g = FrontierTracker(shards=2)
>>> g.take(Progress(0, 500.0, ("S1",)))
>>> g.take(Progress(1, 300.0, ()))
>>> g.staged
300.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forewarn.dataflows.messages import Frontier, Progress
from forewarn.dataflows.state import restore_fields

_NONE = float("-inf")  # no shard has reported: deadlines wait, outboxes are still released


@dataclass(slots=True)
class FrontierTracker:
    """The frontier step's state: the shards' watermarks, and what is owed to whom.

    ``stages``: who hears of a frontier, in order, each an epoch after the one before:
    ``site`` (every site heard of), ``region`` (the keys in ``region_keys``: the
    regional step, which passes verdicts on to care), ``care`` (the keys in
    ``care_keys``: care shards, or with recovery care gates, take what they hold
    before the frontier in event-time order), ``dispatch``.
    ``owed[i]``: ``(frontier, epoch it became owed)`` for stage ``i``, or None.
    """

    shards: int = 1
    stages: tuple[str, ...] = ("site", "region", "dispatch")
    care_keys: tuple[str, ...] = ()
    # keys of the regional step (forewarn.dataflows.region)
    region_keys: tuple[str, ...] = ()
    marks: dict[int, float] = field(default_factory=dict)  # shard -> its watermark
    ended: dict[int, None] = field(default_factory=dict)  # shards whose input is over
    idle: dict[int, None] = field(default_factory=dict)  # shards idle since their last news
    sites: dict[str, None] = field(default_factory=dict)
    epoch: int = 0
    owed: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.owed:
            self.owed = [None] * len(self.stages)

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    @property
    def pending(self) -> bool:
        """Something is owed: the flow asks to be called again in a later epoch."""
        return any(o is not None for o in self.owed)

    @property
    def staged(self) -> float | None:
        """The frontier taken for the sites, not yet sent."""
        return self.owed[0][0] if self.owed[0] is not None else None

    def frontier(self) -> float:
        """The least watermark over the shards (``-inf`` until every shard has reported);
        a shard whose input ended, or is idle (live: nothing new a while), holds no one
        back, unless every shard still going is idle (then the least of theirs).

        >>> f = FrontierTracker(shards=3)
        >>> f.take(Progress(0, 500.0)); f.take(Progress(1, 300.0)); f.frontier()
        -inf
        >>> f.take(Progress(2, -float("inf"), idle=True)); f.frontier()  # never had input
        300.0
        >>> f.take(Progress(1, 300.0, idle=True)); f.frontier()
        500.0
        >>> f.take(Progress(0, 550.0, idle=True)); f.frontier()  # all idle: no one ahead
        300.0
        >>> f.take(Progress(1, 320.0)); f.frontier()  # news from 1: it counts again
        320.0
        """
        if len(self.marks.keys() | self.idle.keys() | self.ended.keys()) < self.shards:
            return _NONE
        going = [m for s, m in self.marks.items() if s not in self.ended]
        live = [m for s, m in self.marks.items() if s not in self.ended and s not in self.idle]
        if live:
            return min(live)
        return min(going) if going else max(self.marks.values(), default=_NONE)

    def take(self, p: Progress) -> None:
        """A shard's progress in the current epoch (call :meth:`due` first)."""
        if p.watermark > self.marks.get(p.shard, _NONE):
            self.marks[p.shard] = p.watermark
        if p.ended:
            self.ended[p.shard] = None
        if p.idle:
            self.idle[p.shard] = None
        else:
            self.idle.pop(p.shard, None)
        sites = self.sites
        for s in p.sites:
            if s not in sites:
                sites[s] = None
        self.owed[0] = (self.frontier(), self.epoch)

    def end_epoch(self) -> None:
        """Bytewax closed an epoch this step took part in."""
        self.epoch += 1

    def due(self) -> list[tuple[str, Any]]:
        """What is owed now, each stage at most once and only when an epoch has passed
        since the stage before it heard: ``("dispatch", Frontier)``, ``("care", [(key,
        Frontier), ...])``, ``("region", [(key, Frontier), ...])``, ``("site",
        [(site_id, Frontier), ...])``."""
        out: list[tuple[str, Any]] = []
        owed, epoch = self.owed, self.epoch
        for i in range(len(owed) - 1, -1, -1):  # the later stages first: each moves on once
            o = owed[i]
            if o is None or o[1] >= epoch:
                continue
            owed[i] = None
            if i + 1 < len(owed):
                owed[i + 1] = (o[0], epoch)
            mark = Frontier(o[0])
            stage = self.stages[i]
            if stage == "dispatch":
                out.append((stage, mark))
            else:
                keys = self.sites if stage == "site" else (
                    self.region_keys if stage == "region" else self.care_keys)
                out.append((stage, [(k, mark) for k in keys]))
        return out

    def finish(self) -> list[tuple[str, Any]]:
        """End of input: nobody is told anything. The last epoch has no later one, so a
        frontier sent now could reach a site before the sequencer's last records (those
        it held for its warm-up or ahead of the stream): sites fire what the sequencer's
        last tick makes due, and sites, care and dispatch take what they hold, in order,
        at their own end of input, once everything has reached them."""
        self.owed = [None] * len(self.stages)
        return []
