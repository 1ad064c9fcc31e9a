"""Row numbers of ids, found by the id's hash: the index of a table kept as columns.

State that holds a row per subscriber (a shard's rows, a site's members) keeps its
fields as columns of typed arrays and one list of id strings, not a dict of Python
objects per subscriber: a dict slot and a tuple cost 60-120 bytes a row, the columns
a few. :class:`RowIndex` finds a row: an open-addressing table (linear probing) of
``row + 1`` in a typed array, 0 for an empty slot, kept 1/3 to 2/3 full, so that a row
costs 6-12 bytes of index and a lookup probes about 2 slots (5 for an id not there).

The index reads the table's id column (``ids[row]``; ``None`` for a free row) and is
never saved: a str's hash differs between processes, so it is rebuilt from the ids
when a table is loaded.

>>> ids = ["U1", "U2"]
>>> index = RowIndex(ids)
>>> index.find("U2"), index.find("U3")
(1, None)
>>> ids.append("U3"); index.add("U3", 2)
>>> ids[0] = None; index.remove("U1", 0)
>>> [index.find(s) for s in ("U1", "U2", "U3")], len(index)
([None, 1, 2], 2)
"""

from __future__ import annotations

from array import array

#: The fewest slots, and the most rows per slot before the table doubles.
_MIN_SLOTS = 8
_MAX_LOAD = 2 / 3


class RowIndex:
    """``find(sid)``: the row of ``sid`` in ``ids`` (the table's id column, a list this
    index reads, never writes), or ``None``. The table tells the index of each change:
    :meth:`add` a row, :meth:`remove` one, :meth:`rebuild` after replacing rows."""

    __slots__ = ("ids", "slots", "count")

    def __init__(self, ids: list) -> None:
        self.ids = ids
        self.rebuild()

    def __len__(self) -> int:
        return self.count

    def rebuild(self, ids: list | None = None) -> None:
        """Index every row of ``ids`` (the same list, or a new one), at most half full
        (a growing table's index is then 1/3 to 2/3 full)."""
        if ids is not None:
            self.ids = ids
        live = [(r, sid) for r, sid in enumerate(self.ids, 1) if sid is not None]
        n = _MIN_SLOTS
        while n < 2 * len(live):
            n *= 2
        slots = array("I", bytes(4 * n))
        mask = n - 1
        for r, sid in live:
            i = hash(sid) & mask
            while slots[i]:
                i = (i + 1) & mask
            slots[i] = r
        self.slots, self.count = slots, len(live)

    def find(self, sid: str) -> int | None:
        """``sid``'s row, or ``None``."""
        slots, ids = self.slots, self.ids
        mask = len(slots) - 1
        i = hash(sid) & mask
        r = slots[i]
        while r:
            if ids[r - 1] == sid:
                return r - 1
            i = (i + 1) & mask
            r = slots[i]
        return None

    def add(self, sid: str, row: int) -> None:
        """``ids[row]`` is now ``sid``, which the index did not hold."""
        self.count += 1
        if self.count > len(self.slots) * _MAX_LOAD:
            self.rebuild()  # (with this row)
            return
        slots = self.slots
        mask = len(slots) - 1
        i = hash(sid) & mask
        while slots[i]:
            i = (i + 1) & mask
        slots[i] = row + 1

    def remove(self, sid: str, row: int) -> None:
        """``sid``, at ``row``, leaves the table (``ids[row]`` may already be cleared).

        The slots after it that probed past it move back (backward-shift deletion),
        so no lookup ever needs a tombstone."""
        slots, ids = self.slots, self.ids
        mask = len(slots) - 1
        i = hash(sid) & mask
        while slots[i] != row + 1:
            if not slots[i]:
                return  # not indexed
            i = (i + 1) & mask
        self.count -= 1
        j = i
        while True:
            j = (j + 1) & mask
            r = slots[j]
            if not r:
                break
            home = hash(ids[r - 1]) & mask
            # r stays unless the hole at i lies on its probe path (home .. j)
            if (i < home <= j) if i <= j else (i < home or home <= j):
                continue
            slots[i] = r
            i = j
        slots[i] = 0
