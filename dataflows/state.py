"""Restoring pickled state written by an older version of a class, and checking it.

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

from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from itertools import islice
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints


def restore_fields(obj: Any, state: Any) -> None:
    """``__setstate__`` of a slots dataclass: the snapshot's fields, defaults for the rest.

    ``state`` is what pickle saved for it: ``(None, {slot: value})`` (or a dict).
    Fields not given to ``__init__`` are derived (an index): the class rebuilds them.
    """
    saved = state[1] if isinstance(state, tuple) else state
    for f in fields(obj):
        if not f.init:
            continue  # derived from the others: the class rebuilds it
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


#: Items of each container :func:`check_kinds` looks at: enough to catch a field of the
#: wrong shape, not a walk of a million subscribers.
SAMPLE = 3
_MAX_DEPTH = 6


def check_kinds(obj: Any, what: str, hint: Any = None) -> None:
    """Raise ``TypeError`` naming the field unless every field of dataclass ``obj`` holds
    a value of its declared kind (and so on into the dataclasses it holds, and the first
    :data:`SAMPLE` items of its containers). A resumed stage runs this on the state it
    rebuilt from a snapshot, so that a record of the wrong shape is refused before the
    flow starts rather than failing inside it. ``hint``: check ``obj`` against that
    type instead (a tuple alias, say). A dataclass kept as columns (a table) says
    whether they agree: its ``check_columns()`` raises ``ValueError`` if not.

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class T:
    ...     at: float = 0.0
    ...     seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    >>> check_kinds(T(1, {"U1": ("C1", 2.0)}), "site")
    >>> check_kinds(T(1, {"U1": ["C1", 2.0]}), "site")
    Traceback (most recent call last):
    ...
    TypeError: site.seen[item 0] is a list, not a tuple
    >>> check_kinds(("C1", "x"), "entry", tuple[str, float])
    Traceback (most recent call last):
    ...
    TypeError: entry[1] is a str, not a float
    """
    _check(obj, hint, what, 0)


def _check(value: Any, hint: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH or hint is Any:
        return
    if hint is None:  # a dataclass of its own: its fields
        if is_dataclass(value) and not isinstance(value, type):
            hints = _hints(type(value))
            for f in fields(value):
                if f.name in hints:
                    _check(getattr(value, f.name, None), hints[f.name], f"{where}.{f.name}",
                           depth + 1)
            agree = getattr(value, "check_columns", None)  # a table's columns agree
            if agree is not None:
                try:
                    agree()
                except ValueError as exc:
                    raise TypeError(f"{where}: {exc}") from None
        return
    origin = get_origin(hint)
    if origin is Union or origin is UnionType:
        options = get_args(hint)
        errors = []
        for h in options:  # (two tuple shapes, say: the value must be one of them)
            if _fits(value, h):
                try:
                    _check(value, h, where, depth)
                    return
                except TypeError as exc:
                    errors.append(exc)
        if errors:
            raise errors[-1]
        raise TypeError(f"{where} is a {type(value).__name__}, not "
                        f"{' or '.join(_name(h) for h in options)}")
    if not _fits(value, hint):
        raise TypeError(f"{where} is a {type(value).__name__}, not a {_name(hint)}")
    args = get_args(hint)
    if origin is dict and len(args) == 2:
        # an item is named by its place, never its key: keys are often subscriber ids,
        # which a refusal (logged) must not show
        for i, (key, item) in enumerate(islice(value.items(), SAMPLE)):
            _check(key, args[0], f"{where} (key {i})", depth + 1)
            _check(item, args[1], f"{where}[item {i}]", depth + 1)
    elif origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise TypeError(f"{where} holds {len(value)} items, not {len(args)}")
        for i, (item, h) in enumerate(zip(value, args, strict=True)):
            _check(item, h, f"{where}[{i}]", depth + 1)
    elif origin in (list, set, frozenset, tuple) and args:
        for i, item in enumerate(islice(value, SAMPLE)):
            _check(item, args[0], f"{where}[{i}]", depth + 1)
    elif origin is None and is_dataclass(hint):
        _check(value, None, where, depth)


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is None or hint is NoneType:
        return value is None
    kind = get_origin(hint) or hint
    if kind is Union or kind is UnionType:
        return any(_fits(value, h) for h in get_args(hint))
    if not isinstance(kind, type):
        return True  # a Literal, a TypeVar, a Callable: not checked
    if kind is float:
        return isinstance(value, (float, int)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _name(hint: Any) -> str:
    if hint is None or hint is NoneType:
        return "None"
    kind = get_origin(hint) or hint
    return getattr(kind, "__name__", str(kind))


@cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except Exception:  # noqa: BLE001  (a name only imported for type checking: unchecked)
        return {}
