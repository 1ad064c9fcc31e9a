"""Where Bytewax runs a key, and what a flow's per-key CPU makes of N workers.

Bytewax 0.21.1 sends an item of a stateful step to worker ``h % N`` of the N workers in
index order, ``h`` being Rust's ``DefaultHasher`` (SipHash-1-3 with zero keys) of the
key string as Rust hashes a ``str``: its UTF-8 bytes, then one ``0xff`` byte
(``src/timely.rs``: ``PartitionFn`` for any ``BuildHasher``, ``PartitionOp::partition``;
``StateKey`` derives ``Hash``; :mod:`forewarn.dataflows.placement`, which the flow uses
to ship another worker's lists together). Source partitions are balanced over the workers that
can read them (``assign_primaries``), so a step without keys spreads evenly.

:func:`project` takes one run's CPU per step and key (``bench.scale_out --per-key``)
and places the keys on N workers as Bytewax would: the busiest worker bounds the
speed-up.

>>> worker_of("SITE0001", 1)
0
>>> sorted({worker_of(f"SITE{i:04d}", 4) for i in range(40)})
[0, 1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Mapping

from forewarn.dataflows.placement import siphash13, worker_of

__all__ = ["project", "siphash13", "worker_of"]


def project(per_key: Mapping[str, Mapping[str, float]], spread_s: float, workers: int,
            shards: Mapping[str, int] | None = None) -> dict:
    """The busiest of ``workers`` workers, with each step's keys placed as Bytewax places
    them and ``spread_s`` seconds of keyless work (decode, stateless steps, the engine)
    spread evenly.

    ``per_key``: step -> key -> CPU seconds, measured in one run. ``shards``: steps whose
    keys are input shards (``{"sequence": P}``, measured at P shards): their CPU is
    re-cut into ``workers`` shards of equal CPU, named as the flow names them
    (``clock-N``), as a run with one input partition per worker would have.

    Returns the busiest worker's CPU, the mean, their ratio, the speed-up over one
    worker doing all of it (``total / busiest``) and the busiest key of each step.

    >>> p = project({"site": {"A": 3.0, "B": 1.0}}, spread_s=0.0, workers=1)
    >>> p["speedup"], p["busiest_s"]
    (1.0, 4.0)
    """
    load = [spread_s / workers] * workers
    busiest_key: dict[str, tuple[str, float]] = {}
    for step, keys in per_key.items():
        if shards and step in shards:
            total = sum(keys.values())
            keys = {f"clock-{i}": total / workers for i in range(workers)}
        for key, cpu in keys.items():
            load[worker_of(key, workers)] += cpu
        if keys:
            k = max(keys, key=lambda x: keys[x])
            busiest_key[step] = (k, keys[k])
    total = sum(load)
    busiest = max(load)
    return {"workers": workers, "busiest_s": busiest, "mean_s": total / workers,
            "max_mean": busiest / (total / workers) if total else 1.0,
            "speedup": total / busiest if busiest else 1.0, "busiest_key": busiest_key}
