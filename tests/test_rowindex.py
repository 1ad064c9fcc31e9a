"""The open-addressing index that finds a table's rows by id (forewarn.dataflows.rowindex)."""

from __future__ import annotations

import random

from forewarn.dataflows.rowindex import RowIndex


def test_the_index_agrees_with_a_dict_through_adds_removes_reused_rows_and_rebuilds():
    """Random adds and removes (rows freed and reused, rebuilds between): every lookup,
    of ids present and absent, answers as a dict would; removal moves later slots back,
    so nothing is lost behind a freed slot."""
    for seed in range(200):
        rnd = random.Random(seed)
        ids: list = []
        index = RowIndex(ids)
        rows: dict[str, int] = {}
        free: list[int] = []
        for _ in range(rnd.randint(1, 300)):
            sid = f"U{rnd.randint(0, 60)}"
            if sid in rows and rnd.random() < 0.5:
                row = rows.pop(sid)
                ids[row] = None
                index.remove(sid, row)
                free.append(row)
            elif sid not in rows:
                if free and rnd.random() < 0.7:
                    row = free.pop()
                    ids[row] = sid
                else:
                    row = len(ids)
                    ids.append(sid)
                index.add(sid, row)
                rows[sid] = row
            if rnd.random() < 0.05:
                index.rebuild()
            assert [index.find(f"U{k}") for k in range(61)] == [
                rows.get(f"U{k}") for k in range(61)], seed
            assert len(index) == len(rows)
            assert len(index.slots) * 2 / 3 >= len(rows)  # at most 2/3 full


def test_removing_an_id_not_indexed_changes_nothing():
    ids = ["U1", "U2"]
    index = RowIndex(ids)
    index.remove("U3", 5)
    assert (index.find("U1"), index.find("U2"), len(index)) == (0, 1, 2)
