"""The event-time frontier: when every input before a time has reached a stage.

Bytewax carries no event-time progress between workers. Its one shared progress is the
wall-clock epoch: a stateful step applies its input epoch by epoch, in order. The
frontier step (one key; it receives one :class:`~dataflows.messages.Progress` per
sequencer shard per batch, never one per record) turns the shards' watermarks into two
guarantees, each resting on an epoch boundary:

1. Progress taken in epoch *e* gives ``F``, the least watermark over the shards (a shard
   at its end counts as ``inf``): every record before ``F`` was sent to its site in epoch
   *e* or earlier. In a later epoch *e'* every site heard of gets ``Frontier(F)``: it
   fires its deadlines before ``F`` and releases the verdicts it decided before *e'*. By
   the end of *e'*, every verdict about a time before ``F`` has left its site, and care,
   which acts in the epoch a verdict reaches it, has made every action it causes.
2. In an epoch after *e'*, dispatch gets ``Frontier(F)``: every action about a time before
   ``F`` has reached it, so budgets are granted in event-time order, whatever the batch
   sizes, epochs and worker count (:meth:`dataflows.dispatch.Dispatcher.take`).

A record applied *late* (behind its shard's watermark, on Kafka beyond the reorder
window) can still make an action about a time before a frontier already passed; dispatch
takes such an action when it arrives.

>>> from dataflows.messages import Progress
>>> f = FrontierTracker()
>>> f.take(Progress(0, 100.0, ("S1",)))
>>> f.due()  # the same epoch: nothing yet
[]
>>> f.end_epoch()
>>> f.due()
[('site', [('S1', Frontier(at=100.0))])]
>>> f.take(Progress(0, 160.0, ("S2",)))
>>> f.end_epoch()
>>> for to, what in f.due():  # dispatch hears of 100 once sites had an epoch to release
...     print(to, what)
dispatch Frontier(at=100.0)
site [('S1', Frontier(at=160.0)), ('S2', Frontier(at=160.0))]

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

from dataflows.messages import Frontier, Progress
from dataflows.state import restore_fields

_NONE = float("-inf")  # no shard has reported: deadlines wait, outboxes are still released


@dataclass(slots=True)
class FrontierTracker:
    """The frontier step's state: the shards' watermarks and what is owed to whom.

    ``staged``: the frontier taken in epoch ``staged_epoch``, for the sites in a later
    one; ``sent``: the frontier the sites got in epoch ``sent_epoch``, for dispatch in a
    later one. ``sites``: every site heard of, in first-heard order.
    """

    shards: int = 1
    marks: dict[int, float] = field(default_factory=dict)  # shard -> its watermark
    sites: dict[str, None] = field(default_factory=dict)
    epoch: int = 0
    staged: float | None = None
    staged_epoch: int = -1
    sent: float | None = None
    sent_epoch: int = -1

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    @property
    def pending(self) -> bool:
        """Something is owed: the flow asks to be called again in a later epoch."""
        return self.staged is not None or self.sent is not None

    def frontier(self) -> float:
        """The least watermark over the shards (``-inf`` until every shard has reported)."""
        if len(self.marks) < self.shards:
            return _NONE
        return min(self.marks.values())

    def take(self, p: Progress) -> None:
        """A shard's progress in the current epoch."""
        if p.watermark > self.marks.get(p.shard, _NONE):
            self.marks[p.shard] = p.watermark
        sites = self.sites
        for s in p.sites:
            if s not in sites:
                sites[s] = None
        self.staged, self.staged_epoch = self.frontier(), self.epoch

    def end_epoch(self) -> None:
        """Bytewax closed an epoch this step took part in."""
        self.epoch += 1

    def due(self) -> list[tuple[str, Any]]:
        """What is owed now: ``("dispatch", Frontier)`` and ``("site", [(site_id,
        Frontier), ...])``, each at most once and only when an epoch has passed since
        what it rests on."""
        out: list[tuple[str, Any]] = []
        if self.sent is not None and self.sent_epoch < self.epoch:
            out.append(("dispatch", Frontier(self.sent)))
            self.sent = None
        if self.staged is not None and self.staged_epoch < self.epoch:
            mark = Frontier(self.staged)
            out.append(("site", [(s, mark) for s in self.sites]))
            self.sent, self.sent_epoch = self.staged, self.epoch
            self.staged = None
        return out

    def finish(self) -> list[tuple[str, Any]]:
        """End of input: every record has been delivered to every site. Sites fire what
        is due before the stream's last time (the latest shard's), not every deadline they
        hold (an outage still open at the end escalates no further). Dispatch is told
        nothing: the last epoch has no later one, so it takes what it holds, in order,
        at its own end of input, once every action has reached it."""
        self.staged = self.sent = None
        end = Frontier(max(self.marks.values(), default=_NONE))
        return [("site", [(s, end) for s in self.sites])]
