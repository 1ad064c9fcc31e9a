"""Care's table of profile-only subscribers (forewarn.dataflows.profile_rows) against a
dict: whatever adds, rewrites and drops come, it answers as the dict does, and its
unused rows and name bytes stay bounded."""

from __future__ import annotations

import math
import pickle
import random
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.dataflows.profile_rows import ProfileRows

SIDS = [f"U{k}" for k in range(100)]  # (more than 64 rows: compacted too)

_since = st.one_of(st.none(), st.floats(0.0, 2e9), st.just(math.nan))
_later = st.one_of(st.just(()), st.tuples(st.one_of(st.none(), st.floats(0.0, 2e9))))
_op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(SIDS), st.integers(0, 2**32 - 1),
              st.text(max_size=30).map(str.encode), _since, _later),
    st.tuples(st.just("drop"), st.sampled_from(SIDS)),
    st.tuples(st.just("thin"), st.integers(2, 5)))  # drop all but every k-th: compacts


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def _stored(since: float | None) -> float | None:
    """``since`` as the table gives it back (NaN: None, as a packed profile does)."""
    return None if since is None or math.isnan(since) else since


def _check(ops: list) -> int:
    """Apply ``ops`` to a table and to a dict, checking after each that they agree;
    the number of compactions."""
    rows = ProfileRows()
    model: dict[str, tuple] = {}
    compactions = 0
    for op in ops:
        sid = op[1]
        before = rows.sids
        if op[0] == "thin":
            for k, s in enumerate(sorted(model)):
                if k % sid:
                    rows.drop(rows.row(s))  # type: ignore[arg-type]
                    del model[s]
        elif op[0] == "put":
            _, _, number, name, since, later = op
            row = rows.row(sid)
            if row is None:
                rows.add(sid, number, name, since, later)
            else:
                rows.write(row, number, name, since, later)
            model[sid] = (number, name, _stored(since),
                          (_stored(later[0]),) if later else ())
        elif sid in model:
            rows.drop(rows.row(sid))  # type: ignore[arg-type]
            del model[sid]
        compactions += rows.sids is not before
        assert len(rows) == len(model)
        for s in SIDS:
            row = rows.row(s)
            assert (row is None) == (s not in model)
            if row is not None:
                got, want = rows.get(row), model[s]
                assert got[:2] == want[:2] and _same(got[2], want[2]) and got[3] == want[3]
        assert {sid for sid, *_ in rows.items()} == set(model)
        rows.check()
        live = sum(len(v[1]) for v in model.values())
        assert len(rows.names) - rows.garbage == live  # every unused byte is counted
        # compacted when more than half is unused (below 64 rows or bytes: never)
        assert len(rows.names) < 64 or 2 * rows.garbage <= len(rows.names)
        assert len(rows.sids) < 64 or 2 * len(rows.free) <= len(rows.sids)
        assert len(rows.free) == len(rows.sids) - len(model)
    return compactions


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=400))
def test_the_rows_answer_as_a_dict_does(ops: list) -> None:
    _check(ops)


def test_the_rows_answer_as_a_dict_does_through_many_rows_and_compactions():
    compactions = 0
    for seed in range(40):
        rnd = random.Random(seed)
        ops: list = []
        for _ in range(rnd.randint(100, 600)):
            r = rnd.random()
            sid = rnd.choice(SIDS)
            if r < 0.6:
                name = "".join(rnd.choice("aéz李 ") for _ in range(rnd.randint(0, 20)))
                later = rnd.choice(((), (rnd.random() * 1e9,), (None,)))
                ops.append(("put", sid, rnd.randint(0, 70000), name.encode(),
                            rnd.choice((None, rnd.random() * 2e9)), later))
            elif r < 0.97:
                ops.append(("drop", sid))
            else:
                ops.append(("thin", rnd.randint(2, 5)))
        compactions += _check(ops)
    assert compactions > 20  # (the test means something only if rows were compacted)


def test_free_rows_are_reused_and_a_long_name_or_a_high_number_widens_its_column():
    rows = ProfileRows()
    for k in range(10):
        rows.add(f"U{k}", k, b"x" * k, float(k), ())
    rows.drop(rows.row("U3"))  # type: ignore[arg-type]
    rows.add("V", 1, b"", 1.0, ())
    assert rows.row("V") == 3 and len(rows.sids) == 10  # the freed row, again
    long = "é".encode() * 40_000  # 80,000 bytes
    rows.write(rows.row("U1"), 1, long, 1.0, ())  # type: ignore[arg-type]
    assert rows.length.typecode == "I" and rows.get(rows.row("U1"))[1] == long  # type: ignore[arg-type]
    assert rows.get(rows.row("U9"))[1] == b"x" * 9  # type: ignore[arg-type]
    assert rows.number.typecode == "H"
    rows.add("W", 70_000, b"", 1.0, ())
    assert rows.number.typecode == "I" and rows.get(rows.row("W"))[0] == 70_000  # type: ignore[arg-type]
    assert rows.get(rows.row("U9"))[0] == 9  # type: ignore[arg-type]


def test_a_table_shrinks_when_most_of_it_is_unused():
    rows = ProfileRows()
    for k in range(1000):
        rows.add(f"U{k}", 0, b"name %d" % k, 1.0, ())
    for k in range(990):
        rows.drop(rows.row(f"U{k}"))  # type: ignore[arg-type]
    assert len(rows) == 10 and len(rows.sids) < 64 and len(rows.names) < 200
    assert [sid for sid, *_ in rows.items()] == [f"U{k}" for k in range(990, 1000)]
    assert rows.get(rows.row("U995"))[1] == b"name 995"  # type: ignore[arg-type]


def test_the_index_is_not_pickled_and_is_rebuilt():
    rows = ProfileRows()
    rows.add("U1", 2, b"Ada", 5.0, (4.0,))
    blob = pickle.dumps(rows)
    assert b"RowIndex" not in blob
    back = pickle.loads(blob)
    assert back.get(back.row("U1")) == (2, b"Ada", 5.0, (4.0,)) and len(back) == 1


def test_the_check_refuses_columns_that_disagree():
    rows = ProfileRows()
    rows.add("U1", 2, b"Ada", 5.0, ())
    rows.since = array("d")
    try:
        rows.check()
    except ValueError as exc:
        assert "differ in length" in str(exc)
    else:
        raise AssertionError("not refused")
