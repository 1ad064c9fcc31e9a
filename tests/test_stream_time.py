"""One definition of stream time: the file merge, the Kafka merge and the decoded record
agree on every input line (KPIs by their period's end)."""

from __future__ import annotations

import orjson

from forewarn.codec import decode, stream_time
from forewarn.connectors.files import merge_by_time
from forewarn.model import DeadLetter, stream_at
from forewarn.simulator import ScenarioConfig, simulate


def test_raw_stream_time_is_the_decoded_records_for_every_kind_of_line() -> None:
    sc = simulate(ScenarioConfig(seed=5, sites=20, hours=3.0, subscribers_per_cell=4))
    kinds = set()
    for line in sc.lines:
        rec = decode(line, "f")
        if isinstance(rec, DeadLetter):
            continue
        at = stream_at(rec)
        kinds.add(rec.kind)
        assert stream_time(line) == (float("-inf") if at is None else at), line
    assert kinds >= {"cell", "subscriber", "alarm", "kpi", "call", "location", "complaint"}


def kpi(start: str) -> bytes:
    return orjson.dumps({"type": "kpi", "cell_id": "C1", "period_start": start,
                         "period_s": 900, "call_attempts": 1, "dropped_calls": 0})


def loc(at: str) -> bytes:
    return orjson.dumps({"type": "location", "subscriber_id": "U1", "cell_id": "C1",
                         "event_time": at})


def test_the_file_merge_places_a_kpi_period_at_its_end_as_kafka_does() -> None:
    """A KPI period 10:00-10:15 in file A merges after B's 10:10 location, by its end
    (10:15), not at the place it happens to have in A."""
    a = [loc("2026-11-23T10:00:00Z"), kpi("2026-11-23T10:00:00Z"),
         loc("2026-11-23T10:20:00Z")]
    b = [loc("2026-11-23T10:05:00Z"), loc("2026-11-23T10:10:00Z"),
         loc("2026-11-23T10:16:00Z")]
    merged = [line for _, line in merge_by_time([("a", a), ("b", b)])]
    assert merged == [a[0], b[0], b[1], a[1], b[2], a[2]]
    assert [stream_time(x) for x in merged] == sorted(stream_time(x) for x in merged)
