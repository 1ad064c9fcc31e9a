"""Where Bytewax runs a key: the worker of a stateful step's key among N workers.

Bytewax 0.21.1 sends an item of a stateful step to worker ``h % N`` of the N workers in
index order, ``h`` being Rust's ``DefaultHasher`` (SipHash-1-3 with zero keys) of the
key string as Rust hashes a ``str``: its UTF-8 bytes, then one ``0xff`` byte
(``src/timely.rs``: ``PartitionFn`` for any ``BuildHasher``, ``PartitionOp::partition``;
``StateKey`` derives ``Hash``). ``tests/test_routing.py`` checks it against real runs.

The flow uses it only to save work, never for its outputs: the sequencer sends what is
bound for keys of another worker as one item per worker (:func:`route_keys`), and a
wrong guess would only cost that item a second hop.

>>> worker_of("SITE0001", 1)
0
>>> sorted({worker_of(f"SITE{i:04d}", 4) for i in range(40)})
[0, 1, 2, 3]
>>> [worker_of(k, 3) for k in route_keys(3)]
[0, 1, 2]
"""

from __future__ import annotations

import struct

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 of ``data`` (Rust's ``DefaultHasher``; zero keys by default).

    >>> hex(siphash13(b""))
    '0xd1fba762150c532c'
    """
    v0, v1 = k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D
    v2, v3 = k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for (m,) in struct.iter_unpack("<Q", data[:whole]):
        v3 ^= m
        rounds(1)
        v0 ^= m
    last = (len(data) & 0xFF) << 56 | int.from_bytes(data[whole:], "little")
    v3 ^= last
    rounds(1)
    v0 ^= last
    v2 ^= 0xFF
    rounds(3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker index Bytewax 0.21.1 gives a stateful step's ``key`` among ``workers``."""
    return siphash13(key.encode() + b"\xff") % workers


def route_keys(workers: int) -> tuple[str, ...]:
    """One key per worker, in worker order, that Bytewax places on that worker:
    ``route-N``, the first N for each."""
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < workers:
        key = f"route-{i}"
        keys.setdefault(worker_of(key, workers), key)
        i += 1
    return tuple(keys[w] for w in range(workers))


class Placement:
    """Which worker each key is on, among ``workers``, remembered per key."""

    __slots__ = ("workers", "_of")

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._of: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        w = self._of.get(key)
        if w is None:
            w = self._of[key] = worker_of(key, self.workers)
        return w
