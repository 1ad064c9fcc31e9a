"""A site's merge of several input shards' messages into one event-time order.

With several input shards (:mod:`forewarn.dataflows.shards`), a site hears from every shard's
sequencer: positions of each shard's subscribers, and from shard 0 the records every
shard reads (topology, alarms, maintenance, KPIs) and the ticks. Each shard's messages
come in that shard's release order, in :class:`~forewarn.dataflows.messages.ShardBatch` lists
with the shard's watermark. The site must apply them in one order that depends only on
the records, never on which shard's batch arrived first:

* each message gets a *key*: the running maximum of the times of its shard's messages
  to this site, so it depends on nothing but that shard's own sequence of messages (a
  :class:`Near` counts when it was sent, a record with no time of its own comes
  :class:`~forewarn.dataflows.messages.Stamped` with the watermark it was released at, and a
  late record keeps its place in its shard's order);
* messages are applied in ``(key, shard)`` order, each shard's own order kept;
* a message is applied only once no shard can still send one that goes before it:
  every other shard has a message queued after it, or has promised (its watermark, or
  a :class:`~forewarn.dataflows.messages.Frontier` for all of them) that its next comes later.

>>> from forewarn.dataflows.messages import ShardBatch, Tick
>>> m = ShardMerge(2)
>>> m.take(ShardBatch(0, 30.0, [("U1", "C1", 10.0, None), ("U1", "C1", 30.0, None)]))
[]
>>> m.take(ShardBatch(1, 20.0, [("U2", "C1", 20.0, None)]))  # shard 1 is at 20: up to it
[('U1', 'C1', 10.0, None), ('U2', 'C1', 20.0, None)]
>>> m.frontier(40.0)  # every shard is past 40
[('U1', 'C1', 30.0, None)]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from forewarn.dataflows.messages import Near, ShardBatch, Stamped
from forewarn.dataflows.state import restore_fields

_NONE = float("-inf")


def _time(msg: Any) -> float | None:
    """A message's place in event time, if it has one: a position's time, when a
    :class:`Near` was sent, any other message's ``at``."""
    kind = type(msg)
    if kind is tuple:
        return msg[2]
    if kind is Near:
        return msg.sent
    return getattr(msg, "at", None)


@dataclass(slots=True)
class ShardMerge:
    """Per shard: messages not yet applied ``(key, message)``, the key of its latest,
    and the floor under its next one."""

    shards: int
    queues: list[deque] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.queues:
            self.queues = [deque() for _ in range(self.shards)]
            self.last = [_NONE] * self.shards
            self.floor = [_NONE] * self.shards

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)

    def take(self, batch: ShardBatch) -> list:
        """A shard's batch in; what can now be applied out, in order."""
        s = batch.shard
        queue = self.queues[s]
        key = self.last[s]  # (never the floor: what a frontier raised it to varies)
        for msg in batch.msgs:
            at = _time(msg)
            if at is not None and at > key:
                key = at
            if type(msg) is Stamped:
                msg = msg.record
            queue.append((key, msg))
        self.last[s] = key
        if batch.watermark > self.floor[s]:
            self.floor[s] = batch.watermark
        return self._drain()

    def frontier(self, at: float) -> list:
        """Every shard has released everything before ``at``: what can now be applied."""
        floor = self.floor
        for s in range(self.shards):
            if at > floor[s]:
                floor[s] = at
        return self._drain()

    @property
    def pending(self) -> int:
        """Messages waiting for another shard."""
        return sum(len(q) for q in self.queues)

    def _drain(self) -> list:
        out: list = []
        queues, floor, n = self.queues, self.floor, self.shards
        while True:
            best, best_key = -1, 0.0
            for s in range(n):
                q = queues[s]
                if q and (best < 0 or q[0][0] < best_key):
                    best, best_key = s, q[0][0]
            if best < 0:
                return out
            # the first (key, shard) any other shard can still give: its queued head, or
            # the floor under its next message
            limit = min((queues[s][0][0] if queues[s] else floor[s], s)
                        for s in range(n) if s != best)
            q = queues[best]
            if not (best_key, best) < limit:
                return out
            while q and (q[0][0], best) < limit:
                out.append(q.popleft()[1])
