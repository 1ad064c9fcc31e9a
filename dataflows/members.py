"""Who was seen on a site: each subscriber's latest position there, one row each.

A site keeps the latest position of everyone seen on it within the position age, to
tell who an outage impacts; at a million subscribers that is a row per subscriber
across the sites, so it is columns indexed by a row number, not a dict of
``(cell, at, ref)`` tuples: a row costs 8 bytes of id reference (the id string is the
one the sequencer's rows keep), 4 of cell number, 8 of time, 8 of evidence reference
(``"call:<id>"`` or ``None``) and its slot in a dict of row numbers (~20-40 bytes),
about 60 bytes where a dict slot and a tuple cost 120. The rows are found by a dict,
not by the sequencer's probe of an array (:mod:`~forewarn.dataflows.rowindex`, 10
bytes less a row): a site looks a member up on every position, and a dict's lookup
runs in C (the probe in Python cost ~8 % of the flow's time); the row numbers are
shared int objects (:func:`row_number`), so a slot holds no int of its own.

A row is one *observation*: its entry ``(cell, at, ref)``. Who was seen elsewhere
since, or counts as seen first after an outage's start, is noted against an entry and
holds while the row still shows it (:meth:`Members.shows`): until a newer position
here replaces it (the same record delivered again is the same observation).

>>> m = Members()
>>> m.put("U1", "C1", 60.0, None); m.put("U2", "C2", 70.0, "call:K1")
>>> m.get("U1"), m.get("U3"), len(m)
(('C1', 60.0, None), None, 2)
>>> m.put("U1", "C2", 90.0, None)
>>> m.shows("U1", ("C1", 60.0, None)), m.shows("U1", ("C2", 90.0, None))
(False, True)
>>> m.drop_before(80.0, keep=lambda cell, at: False)
>>> list(m.items())
[('U1', 'C2', 90.0, None)]
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from forewarn.dataflows.state import restore_fields

#: Row numbers as int objects, one each for the process (an int past 256 is an object of
#: 28 bytes: a dict value of its own per member would cost that); grown under the lock,
#: never changed, so a read needs none.
_ROWS: list[int] = list(range(256))
_GROWING = threading.Lock()


def row_number(n: int) -> int:
    """The process's int object for ``n``.

    >>> row_number(1000) is row_number(1000)
    True
    """
    if n >= len(_ROWS):
        with _GROWING:
            if n >= len(_ROWS):
                _ROWS.extend(range(len(_ROWS), max(n + 1, 2 * len(_ROWS))))
    return _ROWS[n]


#: A free row's time: after every horizon, so a prune passes it by.
_FREE = float("inf")

#: A member's entry as the site reads it: ``(cell, at, ref)``.
Entry = tuple[str, float, str | None]


@dataclass(slots=True)
class Members:
    """The rows: ``sids[row]`` (``None``: a free row, reused by the next new member),
    ``cell[row]`` (a number: ``names[n]``), ``at[row]``, ``ref[row]``. Row order is not
    meaningful (free rows are reused)."""

    sids: list[str | None] = field(default_factory=list)
    cell: array = field(default_factory=lambda: array("I"))
    at: array = field(default_factory=lambda: array("d"))
    ref: list[str | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # cell number -> cell id
    # derived, not saved: the id index (a str's hash is per process), the cells'
    # numbers and the free rows, rebuilt from the columns as a table loads
    index: dict[str, int] = field(init=False, repr=False, compare=False)
    numbers: dict[str, int] = field(init=False, repr=False, compare=False)
    free: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._derive()

    def __getstate__(self) -> tuple[None, dict]:
        return None, {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: Any) -> None:
        restore_fields(self, state)
        self._derive()

    def _derive(self) -> None:
        self.index = dict(self._rows())
        self.numbers = {name: n for n, name in enumerate(self.names)}
        self.free = [r for r, sid in enumerate(self.sids) if sid is None]
        self.free.reverse()  # (the lowest first)

    def _rows(self) -> Iterator[tuple[str, int]]:
        """``(sid, row)`` of every member: what the index holds."""
        for r, sid in enumerate(self.sids):
            if sid is not None:
                yield sid, row_number(r)

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, sid: str) -> bool:
        return sid in self.index

    def check_columns(self) -> None:
        """Raise ``ValueError`` unless the columns agree (a table read from a snapshot)."""
        n = len(self.sids)
        if len(self.cell) != n or len(self.at) != n or len(self.ref) != n:
            raise ValueError(f"the members' columns differ in length ({n} ids, "
                             f"{len(self.cell)} cells, {len(self.at)} times, "
                             f"{len(self.ref)} references)")
        if self.cell.typecode != "I" or self.at.typecode != "d":
            raise ValueError(f"the members' cell and time columns are arrays of "
                             f"{self.cell.typecode!r} and {self.at.typecode!r}, not 'I' and 'd'")
        live = [sid for sid in self.sids if sid is not None]
        if any(type(sid) is not str for sid in live):
            raise ValueError("a member's id is not a string")
        if len(set(live)) != len(live):
            raise ValueError("a member has two rows")
        if any(c >= len(self.names) for c in self.cell):
            raise ValueError(f"a member's cell is not one of the {len(self.names)} cells")

    def number(self, cell: str) -> int:
        """``cell``'s number, given it the first time it is asked for."""
        n = self.numbers.get(cell)
        if n is None:
            n = self.numbers[cell] = len(self.names)
            self.names.append(cell)
        return n

    def get(self, sid: str) -> Entry | None:
        """``(cell, at, ref)`` of ``sid``'s position here, or ``None``."""
        row = self.index.get(sid)
        return None if row is None else self.entry(row)

    def entry(self, row: int) -> Entry:
        """``(cell, at, ref)`` of ``row``."""
        return self.names[self.cell[row]], self.at[row], self.ref[row]

    def shows(self, sid: str, entry: Entry) -> bool:
        """Whether ``sid``'s row still shows ``entry``."""
        return self.get(sid) == entry

    def put(self, sid: str, cell: str, at: float, ref: str | None) -> None:
        """``sid``'s position here is now ``(cell, at, ref)``."""
        row = self.index.get(sid)
        if row is None:
            self.add(sid, self.number(cell), at, ref)
        else:
            self.cell[row], self.at[row], self.ref[row] = self.number(cell), at, ref

    def add(self, sid: str, n: int, at: float, ref: str | None) -> None:
        """A row for ``sid`` (not a member) on cell number ``n``."""
        if self.free:
            row = self.free.pop()
            self.sids[row] = sid
            self.cell[row], self.at[row], self.ref[row] = n, at, ref
        else:
            row = len(self.sids)
            self.sids.append(sid)
            self.cell.append(n)
            self.at.append(at)
            self.ref.append(ref)
        self.index[sid] = row_number(row)

    def items(self) -> Iterator[tuple[str, str, float, str | None]]:
        """``(sid, cell, at, ref)`` of every member."""
        names, cell, at, ref = self.names, self.cell, self.at, self.ref
        for row, sid in enumerate(self.sids):
            if sid is not None:
                yield sid, names[cell[row]], at[row], ref[row]

    def drop_before(self, horizon: float, keep: Callable[[str, float], bool]) -> None:
        """Forget every member seen before ``horizon`` unless ``keep(cell, at)``."""
        sids, names, cell, at, ref = self.sids, self.names, self.cell, self.at, self.ref
        if not at or min(at) >= horizon:
            return  # (most prunes: a C pass; a free row's time is +inf)
        gone = [row for row, t in enumerate(at)
                if t < horizon and sids[row] is not None and not keep(names[cell[row]], t)]
        if not gone:
            return
        if 2 * len(gone) >= len(self):  # most rows: compact the columns, in place (a
            # caller may hold them and the index), and rebuild the index
            drop = set(gone)
            live = [r for r, sid in enumerate(sids) if sid is not None and r not in drop]
            sids[:] = [sids[r] for r in live]
            cell[:] = array(cell.typecode, [cell[r] for r in live])
            at[:] = array("d", [at[r] for r in live])
            ref[:] = [ref[r] for r in live]
            self.free.clear()
            self.index.clear()
            self.index.update(self._rows())
            return
        for row in gone:
            sid = sids[row]
            assert sid is not None
            sids[row] = ref[row] = None
            at[row] = _FREE
            del self.index[sid]
            self.free.append(row)
