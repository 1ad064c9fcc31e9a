"""The subscribers care knows only the profile of: one row each, kept as columns.

Most subscribers, most of the time, are nothing to care but a profile: a profile number
(:func:`forewarn.dataflows.care.profile_number`: the few shapes a process sees), the
time of the profile in force (``since``), the time care first knew them
(``known_since``, nearly always ``since``) and a name. Kept as a Python object, or as one
packed ``bytes`` in a dict slot, that is about 90 bytes a subscriber; as columns it is
the id reference (8), the profile number (2; 4 once a process has seen 65,536 profiles),
``since`` (8), the name's place in one shared buffer of UTF-8 (4 + 2) and the name's
bytes, and 6-12 bytes of index (:class:`~forewarn.dataflows.rowindex.RowIndex`): about
45 bytes for a usual name.

A row's ``known_since`` is kept apart (``later``, by id) in the rare case it is not
``since``: the table takes and gives it as a :data:`~forewarn.dataflows.care.Known`
tuple's tail, ``(known_since,)``, or ``()`` when it is ``since``. A row that leaves (the
subscriber gained other care state, or none is left) is freed and reused by the next row
added; a name rewritten longer than it was goes to the end of the buffer. The columns
are compacted, in row order, when more than half of the buffer's bytes or of the rows
are unused.

>>> rows = ProfileRows()
>>> rows.add("U1", 3, "Zoë".encode(), 60.0, ())
>>> rows.add("U2", 4, b"", 70.0, (30.0,))
>>> r = rows.row("U1")
>>> rows.get(r), rows.get(rows.row("U2"))
((3, b'Zo\\xc3\\xab', 60.0, ()), (4, b'', 70.0, (30.0,)))
>>> rows.write(r, 5, b"Ada Lovelace", 90.0, (60.0,))
>>> rows.drop(rows.row("U2"))
>>> list(rows.items()), len(rows), rows.row("U2")
([('U1', 5, b'Ada Lovelace', 90.0, (60.0,))], 1, None)
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from forewarn.dataflows.rowindex import RowIndex

_NAN = float("nan")
#: ``known_since`` when it is not ``since`` (a Known tuple's tail): ``(known_since,)``, or
#: ``()``.
Later = tuple[()] | tuple[float | None]
#: The fewest rows (or buffer bytes) a table has before it is ever compacted: below this
#: the unused space costs less than a compaction.
_COMPACT_AT = 64


class ProfileRows:
    """The rows: :meth:`row` finds a subscriber's row; :meth:`get` reads it, :meth:`add`,
    :meth:`write` and :meth:`drop` change the table. A row number is good until the
    next :meth:`add` or :meth:`drop` (either may compact the table)."""

    __slots__ = ("sids", "number", "since", "start", "length", "names", "later", "free",
                 "garbage", "index")

    def __init__(self) -> None:
        # row -> the id string (None: a free row): the one string the messages carry
        self.sids: list[str | None] = []
        self.number = array("H")  # the profile's number ("H"; made "I" by one past 65,535)
        self.since = array("d")  # the time of the profile in force (NaN: None)
        self.start = array("I")  # where the name's UTF-8 begins in ``names``
        # its length in bytes ("H"; made "I" by the first name of 64 KiB or more)
        self.length = array("H")
        self.names = bytearray()
        # id -> ``known_since`` of the rows whose Known tuple has one (it is not ``since``)
        self.later: dict[str, float | None] = {}
        self.free = array("I")  # free rows, the last freed reused first
        self.garbage = 0  # bytes of ``names`` no row uses
        self.index = RowIndex(self.sids)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> tuple[None, dict]:
        # a str's hash differs between processes: the index is rebuilt, never saved
        return None, {name: getattr(self, name) for name in self.__slots__
                      if name != "index"}

    def __setstate__(self, state: tuple[None, dict]) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self.index = RowIndex(self.sids)

    def row(self, sid: str) -> int | None:
        """``sid``'s row, or ``None``."""
        return self.index.find(sid)

    def get(self, row: int) -> tuple[int, bytes, float | None, Later]:
        """``(profile number, name as UTF-8, since, later)`` of ``row``."""
        start = self.start[row]
        since: float | None = self.since[row]
        if since != since:
            since = None
        later = self.later
        sid = self.sids[row]
        return (self.number[row], bytes(self.names[start:start + self.length[row]]), since,
                (later[sid],) if later and sid in later else ())

    def add(self, sid: str, number: int, name: bytes, since: float | None,
            later: Later) -> None:
        """A row for ``sid``, which has none (a free row if there is one)."""
        if number > 0xFFFF and self.number.typecode == "H":
            self.number = array("I", self.number)
        if self.free:
            row = self.free.pop()
            self.sids[row] = sid
            self.number[row] = number
            self.since[row] = _NAN if since is None else since
            self.start[row], self.length[row] = len(self.names), 0
        else:  # a new row, its name at the buffer's end
            row = len(self.sids)
            self.sids.append(sid)
            self.number.append(number)
            self.since.append(_NAN if since is None else since)
            self.start.append(len(self.names))
            n = len(name)
            if n > 0xFFFF and self.length.typecode == "H":
                self.length = array("I", self.length)
            self.length.append(n)
            self.names += name
            self.index.add(sid, row)
            if later:
                self.later[sid] = None if later[0] != later[0] else later[0]  # (NaN: None)
            if 2 * self.garbage > len(self.names) >= _COMPACT_AT:  # (crossed the floor)
                self._compact()
            return
        self.index.add(sid, row)
        if later:
            self.later[sid] = None if later[0] != later[0] else later[0]
        self._name(row, name)  # (last: it may compact the rows)

    def write(self, row: int, number: int, name: bytes, since: float | None,
              later: Later) -> None:
        """``row`` (of a subscriber still known by their profile only) now holds these."""
        sid = self.sids[row]
        assert sid is not None
        if number > 0xFFFF and self.number.typecode == "H":
            self.number = array("I", self.number)
        self.number[row] = number
        self.since[row] = _NAN if since is None else since
        if later:
            self.later[sid] = None if later[0] != later[0] else later[0]  # (NaN: None)
        elif self.later:
            self.later.pop(sid, None)
        self._name(row, name)  # (last: it may compact the rows)

    def drop(self, row: int) -> None:
        """Free ``row``: its subscriber leaves the table."""
        sid = self.sids[row]
        assert sid is not None
        self.sids[row] = None
        self.index.remove(sid, row)
        if self.later:
            self.later.pop(sid, None)
        self.garbage += self.length[row]
        self.length[row] = 0
        self.free.append(row)
        if 2 * len(self.free) > len(self.sids) >= _COMPACT_AT \
                or 2 * self.garbage > len(self.names) >= _COMPACT_AT:
            self._compact()

    def items(self) -> Iterator[tuple[str, int, bytes, float | None, Later]]:
        """``(sid, profile number, name, since, later)`` of every row, in row order."""
        for row, sid in enumerate(self.sids):
            if sid is not None:
                yield (sid, *self.get(row))

    def check(self) -> None:
        """Raise ``ValueError`` unless the columns agree (a table read from a snapshot)."""
        n = len(self.sids)
        if not (len(self.number) == len(self.since) == len(self.start) == len(self.length)
                == n):
            raise ValueError(f"the profile rows' columns differ in length ({n} ids)")
        for row, sid in enumerate(self.sids):
            if sid is None:
                continue
            if type(sid) is not str:
                raise ValueError("a profile row's id is not a string")
            if self.start[row] + self.length[row] > len(self.names):
                raise ValueError("a profile row's name lies outside the names")

    def _name(self, row: int, name: bytes) -> None:
        """``row``'s name is ``name``: in place when it fits, else at the buffer's end."""
        names, n, old = self.names, len(name), self.length[row]
        start = self.start[row]
        if n <= old:
            names[start:start + n] = name
            self.garbage += old - n
        else:
            self.garbage += old
            self.start[row] = len(names)
            names += name
        if n > 0xFFFF and self.length.typecode == "H":
            self.length = array("I", self.length)
        self.length[row] = n
        if 2 * self.garbage > len(names) >= _COMPACT_AT:
            self._compact()

    def _compact(self) -> None:
        """Keep the live rows only, in their order, their names packed in that order."""
        live = [row for row, sid in enumerate(self.sids) if sid is not None]
        start, length, names = self.start, self.length, self.names
        packed = bytearray()
        starts = array("I")
        for row in live:
            starts.append(len(packed))
            packed += names[start[row]:start[row] + length[row]]
        self.sids = [self.sids[row] for row in live]
        self.number = array(self.number.typecode, [self.number[row] for row in live])
        self.since = array("d", [self.since[row] for row in live])
        self.start = starts
        self.length = array(length.typecode, [length[row] for row in live])
        self.names = packed
        self.free = array("I")
        self.garbage = 0
        self.index.rebuild(self.sids)
