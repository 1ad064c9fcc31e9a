"""Restoring pickled state written by an older version of a class.

Flow state is pickled into recovery snapshots. A dataclass that gains a field must
still load a snapshot written before it had it: :func:`restore_fields` sets every
field the snapshot has and gives the others their defaults.

>>> from dataclasses import dataclass, field
>>> @dataclass(slots=True)
... class S:
...     a: int = 0
...     b: dict = field(default_factory=dict)
>>> s = S.__new__(S)
>>> restore_fields(s, (None, {"a": 3}))  # written before ``b`` existed
>>> s
S(a=3, b={})
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any


def restore_fields(obj: Any, state: Any) -> None:
    """``__setstate__`` of a slots dataclass: the snapshot's fields, defaults for the rest.

    ``state`` is what pickle saved for it: ``(None, {slot: value})`` (or a dict).
    """
    saved = state[1] if isinstance(state, tuple) else state
    for f in fields(obj):
        if f.name in saved:
            value = saved[f.name]
        elif f.default is not MISSING:
            value = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:
            raise ValueError(f"{type(obj).__name__} snapshot lacks field {f.name!r}, which "
                             "has no default: restore from a snapshot of this version")
        object.__setattr__(obj, f.name, value)
