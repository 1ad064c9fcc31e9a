"""bench.routing places keys on workers as Bytewax 0.21.1 does: checked against a real
run with 2, 3 and 4 workers (each key's worker seen by the thread that ran its logic)."""

from __future__ import annotations

import threading
from collections import Counter

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from bench.routing import project, worker_of

KEYS = [f"SITE{i:04d}" for i in range(60)] + [
    "clock", "clock-0", "clock-1", "frontier", "dispatch", "care-07", "noc-1", "SUB000123",
    "Zürich-ü"]


class _Where(op.StatefulBatchLogic):
    def __init__(self, seen: dict[str, int]) -> None:
        self.seen = seen

    def on_batch(self, values: list) -> tuple[list, bool]:
        for key in values:
            self.seen[key] = threading.get_ident()
        return [], False

    def snapshot(self) -> None:
        return None


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_keys_go_where_bytewax_sends_them(workers: int) -> None:
    seen: dict[str, int] = {}
    flow = Dataflow("routing")
    keyed = op.map("key", op.input("in", flow, TestingSource(KEYS)), lambda k: (k, k))
    op.output("out", op.stateful_batch("where", keyed, lambda _: _Where(seen)), TestingSink([]))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)

    def groups(of: dict[str, object]) -> list[list[str]]:
        by: dict[object, list[str]] = {}
        for key, at in of.items():
            by.setdefault(at, []).append(key)
        return sorted(sorted(g) for g in by.values())

    # threads are workers up to their numbering: the same keys share one
    assert groups(seen) == groups({k: worker_of(k, workers) for k in KEYS})
    assert len(groups(seen)) == workers


def test_a_projection_puts_the_busiest_key_on_one_worker() -> None:
    keys = {f"SITE{i:04d}": 1.0 for i in range(20)} | {"SITE0099": 30.0}
    p = project({"site": keys, "dispatch": {"dispatch": 2.0}}, spread_s=8.0, workers=4)
    assert p["busiest_key"]["site"] == ("SITE0099", 30.0)
    assert p["busiest_s"] >= 30.0 + 2.0  # the big site and the spread share
    assert p["speedup"] == pytest.approx(60.0 / p["busiest_s"])
    # input shards are re-cut into one per worker, whatever they were measured at
    q = project({"sequence": {"clock": 8.0}}, spread_s=0.0, workers=4, shards={"sequence": 1})
    per_worker = Counter(worker_of(f"clock-{i}", 4) for i in range(4))
    assert q["busiest_s"] == pytest.approx(2.0 * max(per_worker.values()))


def test_the_module_examples_hold() -> None:
    import doctest

    import bench.routing

    assert doctest.testmod(bench.routing).failed == 0
