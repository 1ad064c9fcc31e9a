"""Collecting input records with a total stream order.

Each record is stored with ``(stream time, type rank, sequence)``: ties in stream time
are broken by record type (:data:`forewarn.model.TYPE_RANK`: reference data first,
complaints last) and then by the order the simulator produced them, which is
deterministic.

>>> c = Collector()
>>> c.add(10, {"type": "location"}); c.add(10, {"type": "alarm"}); c.add(5, {"type": "call"})
>>> [r["type"] for _, r in c.ordered()]
['call', 'alarm', 'location']
"""

from __future__ import annotations

from forewarn.model import TYPE_RANK

#: Stream time given to timeless ``cell`` records so that they come first.
REFERENCE_TIME = -1


class Collector:
    """Records with their stream time, to be emitted in one total order."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[tuple[int, int, int, dict]] = []

    def add(self, t: int, record: dict) -> None:
        """Add ``record`` at stream time ``t`` (seconds)."""
        self._items.append((t, TYPE_RANK[record["type"]], len(self._items), record))

    def __len__(self) -> int:
        return len(self._items)

    def ordered(self) -> list[tuple[int, dict]]:
        """``(stream time, record)`` pairs in stream order."""
        self._items.sort(key=lambda item: item[:3])
        return [(t, record) for t, _, _, record in self._items]
