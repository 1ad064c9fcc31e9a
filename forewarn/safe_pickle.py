"""Pickles read back from storage: only what Forewarn's own state is made of.

Bytewax stores every snapshot with :mod:`pickle`, and unpickling can call any
importable callable (``os.system`` included). The recovery directory is trusted
storage (``docs/kafka.md``), but a snapshot must still not be able to run code:
before Bytewax loads anything, :func:`check_pickle` reads every snapshot opcode by
opcode (:func:`pickletools.genops`, nothing is executed) and refuses a pickle that
names a global outside :func:`allowed_globals`; :func:`loads` is the restricted
unpickler Forewarn's own code uses for the snapshot bytes it wrote itself.

What is allowed (derived from the snapshots of real recovery runs):

* every class defined in the modules whose objects make up Forewarn's state
  (:data:`STATE_MODULES`: records, messages, the stages' state);
* the containers and river model classes the propensity model pickles
  (:data:`LIBRARY_GLOBALS`);
* ``getattr(cls, name)`` only as the reference to one of :data:`ALLOWED_METHODS`
  (a ``classmethod`` pickles that way: ``PropensityModel.from_bytes``).

A field of a new library type in a stage's state (a ``datetime``, a numpy scalar) is
refused until its class is added to :data:`LIBRARY_GLOBALS`:
``tests/test_hostile_recovery.py::test_real_snapshots_pass_the_pickle_check`` and
``tests/test_kafka_recovery.py`` (whose restarts are checked) fail until it is.

REDUCE and NEWOBJ may only call a global named by the pickle itself (never an
object the pickle built), BUILD may not set state on a global (a class or
function), and extension codes and persistent ids are refused. The bytes that
Forewarn's snapshots hold (a pickle inside Bytewax's pickle, and the propensity
model's pickled pipeline inside that) are checked the same way, recursively.

Snapshots written before the stages moved into the ``forewarn`` package name their
classes by the old top-level modules (``dataflows.care.CareShard``): both the check and
the loader read such a name as today's (:func:`current_name`, :data:`RENAMED_PACKAGES`),
so a recovery store written then still resumes.

A stage's snapshot is versioned bytes (:data:`SNAPSHOT_FORMAT`): a state record,
``b"forewarn-state:" + bytes([2]) + stage + b":" + bytes([version]) + pickle``
(:func:`dump_record`; what a record holds: :mod:`forewarn.dataflows.records`), or, as
written before records, ``b"forewarn-state:" + bytes([1]) + pickle`` of the stage's
object (:func:`dump_state`). A format, stage or record version this Forewarn does not
read is refused at the start, not met by a failing unpickle in a worker.
"""

from __future__ import annotations

import importlib
import io
import pickle
import pickletools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "ALLOWED_METHODS",
    "SNAPSHOT_FORMAT",
    "LIBRARY_GLOBALS",
    "RENAMED_PACKAGES",
    "STATE_MODULES",
    "UnsafePickle",
    "allowed_globals",
    "check_pickle",
    "current_name",
    "dump_record",
    "dump_state",
    "load_state",
    "read_record",
    "loads",
]

#: Modules whose classes are Forewarn's state: every class defined in one is allowed.
STATE_MODULES = (
    "forewarn.model",
    "forewarn.codec",
    "forewarn.dataflows.messages",
    "forewarn.dataflows.anchors",
    "forewarn.dataflows.heard",
    "forewarn.dataflows.members",
    "forewarn.dataflows.nearby",
    "forewarn.dataflows.sequencer",
    "forewarn.dataflows.site",
    "forewarn.dataflows.care",
    "forewarn.dataflows.degradation",
    "forewarn.dataflows.dispatch",
    "forewarn.dataflows.frontier",
    "forewarn.dataflows.merge",
    "forewarn.dataflows.region",
    "forewarn.dataflows.shards",
    "forewarn.dataflows.propensity",
)

#: Library globals seen in real snapshots (``module.qualname``): containers, and the
#: river pipeline, metrics and optimiser of :class:`forewarn.dataflows.propensity.PropensityModel`.
LIBRARY_GLOBALS = frozenset({
    "builtins.set", "builtins.frozenset", "builtins.float", "builtins.int",
    "builtins.complex", "builtins.bytearray", "builtins.slice", "builtins.range",
    "collections.deque", "collections.OrderedDict", "collections.defaultdict",
    "collections.Counter", "functools.partial",
    # the silence detector's hour profile (compact typed arrays: typecode and bytes)
    "array.array", "array._array_reconstructor",
    "river.compose.pipeline.Pipeline", "river.compose.union.TransformerUnion",
    "river.compose.select.Select", "river.preprocessing.one_hot.OneHotEncoder",
    "river.preprocessing.scale.StandardScaler",
    "river.linear_model.log_reg.LogisticRegression", "river.optim.sgd.SGD",
    "river.optim.schedulers.Constant", "river.optim.losses.Log",
    "river.optim.initializers.Zeros", "river._river_rust.vectordict.VectorDict",
    "river.metrics.roc_auc.ROCAUC", "river.metrics.confusion.ConfusionMatrix",
    "river.metrics.log_loss.LogLoss", "river.stats.mean.Mean",
})

#: ``getattr(cls, name)`` a pickle may use: ``(class, attribute)``; what it returns is
#: called with bytes that are a pickle themselves (checked in turn).
ALLOWED_METHODS = frozenset({("forewarn.dataflows.propensity.PropensityModel", "from_bytes")})

#: Top-level packages that became subpackages of ``forewarn``: a pickle written before
#: names ``dataflows.care.CareShard`` for today's ``forewarn.dataflows.care.CareShard``.
RENAMED_PACKAGES = {name: f"forewarn.{name}"
                    for name in ("dataflows", "connectors", "rules", "simulator")}

_GETATTR = "builtins.getattr"
_MAX_DEPTH = 4  # pickles inside pickles: Bytewax's, Forewarn's, the propensity pipeline's


class UnsafePickle(ValueError):
    """A pickle that could run code Forewarn's state never needs (the message says what)."""


def current_name(module: str) -> str:
    """The module a pickle's module name stands for today (:data:`RENAMED_PACKAGES`).

    >>> current_name("dataflows.care"), current_name("forewarn.codec")
    ('forewarn.dataflows.care', 'forewarn.codec')
    >>> current_name("dataflowsx.care"), current_name("builtins")
    ('dataflowsx.care', 'builtins')
    """
    top, dot, rest = module.partition(".")
    renamed = RENAMED_PACKAGES.get(top)
    return renamed + dot + rest if renamed else module


@lru_cache(maxsize=1)
def allowed_globals() -> frozenset[str]:
    """``module.qualname`` of every global a snapshot may name (imports the state modules).

    >>> "forewarn.dataflows.care.CareShard" in allowed_globals(), "os.system" in allowed_globals()
    (True, False)
    """
    names = set(LIBRARY_GLOBALS)
    for module_name in STATE_MODULES:
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module_name:
                names.add(f"{module_name}.{value.__qualname__}")
    return frozenset(names)


# ---- the static check ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sym:
    """What the check knows of a stack item: a kind and, for some kinds, a value."""

    kind: str  # "str", "bytes", "global", "method", "tuple", "obj", "mark", "any"
    value: Any = None


_ANY = _Sym("any")
_MARK = _Sym("mark")
_STRINGS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                      "SHORT_BINUNICODE", "BINUNICODE8"})
_BYTES = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8"})
_REFUSED = {"EXT1": "an extension code", "EXT2": "an extension code",
            "EXT4": "an extension code", "PERSID": "a persistent id",
            "BINPERSID": "a persistent id", "NEXT_BUFFER": "an out-of-band buffer",
            "READONLY_BUFFER": "an out-of-band buffer"}


def check_pickle(data: bytes, _depth: int = 0) -> tuple[str, int] | None:
    """Raise :class:`UnsafePickle` unless ``data`` only names allowed globals (nothing runs).

    A pickle whose value is bytes (Forewarn's snapshots: Bytewax pickles the bytes
    Forewarn pickled) has those bytes checked too, and so has the argument of an
    allowed method (the propensity model's pipeline). Returns the stage and version
    of the state record those bytes are (:func:`dump_record`), if they are one.

    >>> check_pickle(pickle.dumps({"a": [1, 2.5, "x"]}))
    >>> check_pickle(b"cos\\nsystem\\n(S'true'\\ntR.")
    Traceback (most recent call last):
    ...
    forewarn.safe_pickle.UnsafePickle: it names os.system, which Forewarn's state never holds
    """
    if _depth > _MAX_DEPTH:
        raise UnsafePickle(f"pickles nested more than {_MAX_DEPTH} deep")
    allowed = allowed_globals()
    stack: list[_Sym] = []
    push = stack.append
    memo: dict[int, _Sym] = {}

    def pop() -> _Sym:
        if not stack:
            raise UnsafePickle("it pops from an empty stack (not a pickle Python wrote)")
        return stack.pop()

    def pop_mark() -> list[_Sym]:
        items: list[_Sym] = []
        while True:
            item = pop()
            if item is _MARK:
                items.reverse()
                return items
            items.append(item)

    def name_global(name: str) -> _Sym:
        name = current_name(name)
        if name not in allowed and name != _GETATTR:
            raise UnsafePickle(f"it names {name}, which Forewarn's state never holds")
        return _Sym("global", name)

    # most frequent first (Forewarn's snapshots: MEMOIZE ~30 %, strings ~18 %)
    for op, arg in _ops(data):
        name = op.name
        if name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else _ANY
        elif name in _STRINGS:
            push(_Sym("str", arg))
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            if arg not in memo:
                raise UnsafePickle(f"it reads memo slot {arg}, which it never wrote")
            push(memo[arg])
        elif name in _PLAIN:  # values, no mark: pops/pushes only
            pops, pushes = _PLAIN[name]
            for _ in range(pops):
                pop()
            for _ in range(pushes):
                push(_ANY)
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            push(_Sym("tuple", tuple(items)))
        elif name == "STACK_GLOBAL":
            qual, module = pop(), pop()
            if qual.kind != "str" or module.kind != "str":
                raise UnsafePickle("it builds a global's name at load time")
            push(name_global(f"{module.value}.{qual.value}"))
        elif name == "NEWOBJ":
            pop()
            cls = pop()
            _callable(cls, "NEWOBJ")
            push(_Sym("obj", cls.value))
        elif name == "BUILD":
            pop()
            target = stack[-1] if stack else _ANY
            if target.kind in ("global", "method"):
                raise UnsafePickle(f"it sets the state of {target.value} (BUILD on a global)")
        elif name in _FILLS:  # container, MARK?, items -> the same container
            if name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                pop_mark()
            else:
                for _ in range(_FILLS[name]):
                    pop()
            target = stack[-1] if stack else _ANY
            if target.kind in ("global", "method"):
                raise UnsafePickle(f"it fills {target.value} ({name} on a global)")
        elif name == "MARK":
            push(_MARK)
        elif name == "REDUCE":
            args, func = pop(), pop()
            push(_reduce(func, args, _depth))
        elif name in _BYTES:
            push(_Sym("bytes", arg))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else _ANY
        elif name == "TUPLE":
            push(_Sym("tuple", tuple(pop_mark())))
        elif name == "EMPTY_TUPLE":
            push(_Sym("tuple", ()))
        elif name == "GLOBAL":
            push(name_global(arg.replace(" ", ".", 1)))
        elif name == "INST":
            cls = name_global(arg.replace(" ", ".", 1))
            _callable(cls, "INST")
            pop_mark()
            push(_Sym("obj", cls.value))
        elif name == "OBJ":
            items = pop_mark()
            cls = items[0] if items else _ANY
            _callable(cls, "OBJ")
            push(_Sym("obj", cls.value))
        elif name == "NEWOBJ_EX":
            pop()
            pop()
            cls = pop()
            _callable(cls, "NEWOBJ_EX")
            push(_Sym("obj", cls.value))
        elif name == "STOP":
            break
        elif name in _REFUSED:
            raise UnsafePickle(f"it uses {_REFUSED[name]} ({name})")
        else:  # LIST, DICT, FROZENSET, POP, POP_MARK, DUP: their effect from the table
            _generic(op, stack, pop, pop_mark)
    else:
        raise UnsafePickle("it has no STOP opcode (truncated)")
    if len(stack) == 1 and stack[0].kind == "bytes":
        inner = _state_pickle(stack[0].value)
        if inner is not None:
            _nested(inner, _depth, "the state it holds")
            header = _record_header(stack[0].value)
            return None if header is None else header[:2]
    return None


def _ops(data: bytes) -> Iterator[tuple[pickletools.OpcodeInfo, Any]]:
    """:func:`pickletools.genops`, its decoding errors as :class:`UnsafePickle`."""
    ops = pickletools.genops(data)
    while True:
        try:
            op, arg, _pos = next(ops)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - any decoding failure: not a pickle
            raise UnsafePickle(f"not a readable pickle ({exc})") from None
        yield op, arg


def _plain_effects() -> dict[str, tuple[int, int]]:
    """Opcodes without a mark or a value the check follows: (items popped, pushed)."""
    special = {"MEMOIZE", "BINGET", "LONG_BINGET", "GET", "PUT", "BINPUT", "LONG_BINPUT",
               "TUPLE1", "TUPLE2", "TUPLE3", "TUPLE", "EMPTY_TUPLE", "STACK_GLOBAL", "GLOBAL",
               "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD", "MARK", "STOP",
               "POP", "DUP", *_STRINGS, *_BYTES, *_REFUSED, *_FILLS}
    return {op.name: (len(op.stack_before), len(op.stack_after))
            for op in pickletools.opcodes
            if op.name not in special and pickletools.markobject not in op.stack_before
            and pickletools.markobject not in op.stack_after}


#: Opcodes that fill the container under their items: items popped (marked: to the mark).
_FILLS = {"APPEND": 1, "APPENDS": 0, "SETITEM": 2, "SETITEMS": 0, "ADDITEMS": 0}
_PLAIN = _plain_effects()


def _generic(op: pickletools.OpcodeInfo, stack: list[_Sym], pop: Callable[[], _Sym],
             pop_mark: Callable[[], list[_Sym]]) -> None:
    """Any other opcode: its stack effect from :mod:`pickletools`' table (values unknown)."""
    before, after = op.stack_before, op.stack_after
    if pickletools.markobject in before:
        pop_mark()
        for _ in range(before.index(pickletools.markobject)):
            pop()
    else:
        for _ in before:
            pop()
    for item in after:
        stack.append(_MARK if item is pickletools.markobject else _ANY)


def _callable(sym: _Sym, opcode: str) -> None:
    """Only a global the pickle names (and the allowlist holds) may be called."""
    if sym.kind != "global" or sym.value == _GETATTR:
        what = sym.value if sym.kind == "global" else f"a computed {sym.kind} value"
        raise UnsafePickle(f"{opcode} calls {what}, which is not a class Forewarn's state holds")


def _items(args: _Sym) -> tuple[_Sym, ...]:
    """What a call's argument tuple holds (nothing known of any other argument)."""
    return args.value if args.kind == "tuple" else ()


def _reduce(func: _Sym, args: _Sym, depth: int) -> _Sym:
    if func.kind == "global" and func.value == _GETATTR:
        items = _items(args)
        if (len(items) == 2 and items[0].kind == "global" and items[1].kind == "str"
                and (items[0].value, items[1].value) in ALLOWED_METHODS):
            return _Sym("method", f"{items[0].value}.{items[1].value}")
        shown = ", ".join(str(i.value) if i.value is not None else i.kind for i in items)
        raise UnsafePickle(f"it calls getattr({shown}), which Forewarn's state never needs")
    if func.kind == "method":
        items = _items(args)
        if len(items) != 1 or items[0].kind != "bytes":
            raise UnsafePickle(f"it calls {func.value} with something other than bytes")
        _nested(items[0].value, depth, f"the argument of {func.value}")
        return _Sym("obj", func.value)
    _callable(func, "REDUCE")
    return _Sym("obj", func.value)


def _nested(data: bytes, depth: int, where: str) -> None:
    try:
        check_pickle(data, depth + 1)
    except UnsafePickle as exc:
        raise UnsafePickle(f"{where}: {exc}") from None


def _looks_like_pickle(data: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO; Forewarn writes the highest protocol."""
    return len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= pickle.HIGHEST_PROTOCOL


# ---- Forewarn's snapshot format --------------------------------------------------------

#: Version of what a stage's ``snapshot()`` returns, after :data:`_MAGIC` as one byte.
#: Format 2 (:func:`dump_record`): the stage's name, ``b":"``, the version of that stage's
#: record as one byte, then a pickle of the record's data (a dict of the state's fields:
#: :mod:`forewarn.dataflows.records`). Format 1 (:func:`dump_state`): a pickle of the
#: stage's live object, as stages wrote before records; snapshots without the header
#: (written before it existed) are that pickle alone. All three still load.
SNAPSHOT_FORMAT = 2
_OBJECT_FORMAT = 1
_MAGIC = b"forewarn-state:"
_MAX_STAGE = 32  # bytes of a stage's name in a record's header


def dump_state(state: Any) -> bytes:
    """An object as snapshot bytes of format 1 (a pickle of the object itself; the
    stages write records instead, :func:`dump_record`).

    >>> dump_state({"a": 1})[:16]
    b'forewarn-state:\\x01'
    """
    return _MAGIC + bytes([_OBJECT_FORMAT]) + pickle.dumps(state, pickle.HIGHEST_PROTOCOL)


def dump_record(stage: str, version: int, data: Any) -> bytes:
    """A stage's state record as snapshot bytes (format :data:`SNAPSHOT_FORMAT`).

    >>> dump_record("care", 2, {"subscribers": {}})[:22]
    b'forewarn-state:\\x02care:\\x02'
    """
    return (_MAGIC + bytes([SNAPSHOT_FORMAT]) + stage.encode("ascii") + b":" + bytes([version])
            + pickle.dumps(data, pickle.HIGHEST_PROTOCOL))


def load_state(blob: bytes) -> Any:
    """What :func:`dump_state` wrote (or an unversioned pickle), read with :func:`loads`.

    >>> load_state(dump_state({"a": (1, 2)}))
    {'a': (1, 2)}
    """
    stage, _version, value = read_record(blob)
    if stage is not None:
        raise UnsafePickle(f"it is a record of the {stage} stage, not a pickled object")
    return value


def read_record(blob: bytes) -> tuple[str | None, int, Any]:
    """``(stage, version, data)`` of :func:`dump_record`'s bytes; ``(None, 1, object)`` of
    format 1 or a bare pickle (the stage's live object), read with :func:`loads`.

    >>> read_record(dump_record("region", 2, {"held": []}))
    ('region', 2, {'held': []})
    >>> read_record(dump_state([1]))
    (None, 1, [1])
    """
    header = _record_header(blob)
    inner = _state_pickle(blob)
    if inner is None:
        raise UnsafePickle("not a Forewarn state snapshot")
    if header is None:
        return None, 1, loads(inner)
    return header[0], header[1], loads(inner)


def _record_header(blob: bytes) -> tuple[str, int, int] | None:
    """``(stage, version, where its pickle starts)`` of a record's bytes; None for any
    other bytes; UnsafePickle for a record header that is not one Forewarn writes."""
    start = len(_MAGIC) + 1
    if not blob.startswith(_MAGIC) or blob[start - 1:start] != bytes([SNAPSHOT_FORMAT]):
        return None
    end = blob.find(b":", start, start + _MAX_STAGE + 1)
    name = blob[start:end]
    if end < 0 or end + 1 >= len(blob) or not name.isascii() or not name.isalpha():
        raise UnsafePickle("its state record header names no stage")
    return name.decode("ascii"), blob[end + 1], end + 2


def _state_pickle(blob: bytes) -> bytes | None:
    """The pickle inside snapshot bytes; None if they are not a snapshot; UnsafePickle
    for a format this Forewarn does not read (a snapshot format, a stage, a version of
    a stage's record)."""
    if blob.startswith(_MAGIC):
        version = blob[len(_MAGIC)] if len(blob) > len(_MAGIC) else None
        if version == _OBJECT_FORMAT:
            return blob[len(_MAGIC) + 1:]
        if version != SNAPSHOT_FORMAT:
            raise UnsafePickle(f"it is state snapshot format {version}; this Forewarn reads "
                               f"formats {_OBJECT_FORMAT} to {SNAPSHOT_FORMAT} (a different "
                               f"version wrote it)")
        header = _record_header(blob)
        assert header is not None
        stage, version, start = header
        from forewarn.dataflows.records import FORMATS  # (it imports the stages)

        known = FORMATS.get(stage)
        if known is None:
            raise UnsafePickle(f"it is a record of a stage named {stage!r}, which this "
                               f"Forewarn has none of")
        if not 2 <= version <= known.version:
            raise UnsafePickle(f"it is version {version} of the {stage} stage's record; this "
                               f"Forewarn reads versions up to {known.version} (a different "
                               f"version wrote it)")
        return blob[start:]
    return blob if _looks_like_pickle(blob) else None


# ---- the restricted loader -------------------------------------------------------------


def _safe_getattr(obj: Any, name: str) -> Any:
    owner = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
    if (owner, name) not in ALLOWED_METHODS:
        raise UnsafePickle(f"it calls getattr({owner}, {name!r}), "
                           f"which Forewarn's state never needs")
    return getattr(obj, name)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = current_name(module)
        full = f"{module}.{name}"
        if full == _GETATTR:
            return _safe_getattr
        if full not in allowed_globals():
            raise UnsafePickle(f"it names {full}, which Forewarn's state never holds")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle("it uses a persistent id")


def loads(data: bytes) -> Any:
    """:func:`pickle.loads` that resolves only :func:`allowed_globals` (else UnsafePickle).

    >>> loads(pickle.dumps({"a": (1, 2)}))
    {'a': (1, 2)}
    """
    return _Unpickler(io.BytesIO(data)).load()
