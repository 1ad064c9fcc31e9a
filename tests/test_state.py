"""Restoring snapshots written by an older version of a state class (dataflows/state.py)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest

from forewarn.dataflows.state import restore_fields


@dataclass(slots=True)
class Old:
    a: int
    b: int = 1


@dataclass(slots=True)
class New:
    a: int
    b: int = 1
    c: list = field(default_factory=lambda: [7])
    d: str = "d"

    def __setstate__(self, state) -> None:
        restore_fields(self, state)


def test_a_snapshot_from_before_a_field_existed_gets_its_default():
    blob = pickle.dumps(Old(5, 6)).replace(b"Old", b"New")
    restored = pickle.loads(blob)
    assert restored == New(5, 6, [7], "d")
    other = pickle.loads(blob)
    assert other.c is not restored.c  # a default factory's value is made per object


@pytest.mark.parametrize("state", [(None, {"a": 3, "c": [1]}), {"a": 3, "c": [1]}])
def test_saved_fields_win_over_defaults_in_either_pickle_form(state):
    obj = New.__new__(New)
    restore_fields(obj, state)
    assert obj == New(3, 1, [1], "d")


def test_a_field_without_default_missing_from_the_snapshot_is_an_error():
    obj = New.__new__(New)
    with pytest.raises(ValueError) as exc:
        restore_fields(obj, (None, {"b": 2}))
    assert str(exc.value) == ("New snapshot lacks field 'a', which has no default: restore "
                              "from a snapshot of this version")
