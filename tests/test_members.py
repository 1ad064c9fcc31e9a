"""A site's members kept as columns (forewarn.dataflows.members) against a dict of entries."""

from __future__ import annotations

import pickle
import random

from forewarn.dataflows.members import Members


def test_members_agree_with_a_dict_through_puts_drops_and_a_reload():
    """Random positions and prunes (a few rows, or most, which compacts the columns in
    place): every member's entry is a dict's, the columns a caller holds stay the live
    ones, and a pickled table loads with its index rebuilt."""
    for seed in range(100):
        rnd = random.Random(seed)
        m = Members()
        columns = (m.sids, m.cell, m.at, m.ref, m.index)  # (a site's hot path holds them)
        model: dict[str, tuple[str, float, str | None]] = {}
        clock = 0.0
        for _ in range(rnd.randint(1, 400)):
            clock += rnd.random() * 10
            if rnd.random() < 0.05:
                horizon = clock - rnd.random() * 300
                kept_cell = f"C{rnd.randint(0, 3)}"
                m.drop_before(horizon, keep=lambda cell, at, k=kept_cell: cell == k)
                model = {s: e for s, e in model.items()
                         if e[1] >= horizon or e[0] == kept_cell}
            else:
                sid = f"U{rnd.randint(0, 80)}"
                entry = (f"C{rnd.randint(0, 3)}", clock,
                         rnd.choice([None, f"call:K{rnd.randint(0, 9)}"]))
                m.put(sid, *entry)
                model[sid] = entry
            assert len(m) == len(model)
            assert all(a is b for a, b in zip(columns, (m.sids, m.cell, m.at, m.ref, m.index),
                                              strict=True))
            assert sorted((s, (c, t, r)) for s, c, t, r in m.items()) == sorted(model.items())
            assert all(m.get(f"U{k}") == model.get(f"U{k}") for k in range(81))
        again = pickle.loads(pickle.dumps(m))
        again.check_columns()
        assert all(again.get(f"U{k}") == model.get(f"U{k}") for k in range(81))
        assert "index" not in again.__getstate__()[1]


def test_an_entry_holds_while_the_row_shows_it_the_same_record_again_included():
    m = Members()
    m.put("U1", "C1", 60.0, "call:K1")
    first = m.get("U1")
    assert first is not None
    m.put("U1", "C1", 60.0, "call:K1")  # the same record delivered again
    assert m.shows("U1", first)
    m.put("U1", "C1", 60.0, None)  # another record of that second: a new observation
    assert not m.shows("U1", first) and not m.shows("U2", first)
