"""Defective input lines, as real feeds deliver them.

About ``bad_line_rate`` extra lines (at least one of each kind) are inserted
among the event lines (never among the leading ``cell`` and initial
``subscriber`` records). A defective record that has a time gets the stream
time of the line it is inserted before, so good and bad lines keep one order.

Kinds: ``not_json``, ``truncated_json``, ``missing_field``, ``wrong_type``
(``dropped: "yes"``), ``unknown_enum`` (``perceived_severity: "urgent"``),
``absurd_time`` (1999), ``unknown_cell`` (a well-formed ``location`` on a cell
the topology does not have; the contract does not say this is a dead letter),
``empty_line`` and ``json_array``.
"""

from __future__ import annotations

import random

import orjson

from forewarn.simulator.config import fmt_time

KINDS = ("not_json", "truncated_json", "missing_field", "wrong_type", "unknown_enum",
         "absurd_time", "unknown_cell", "empty_line", "json_array")
REQUIRED = {
    "alarm": ("alarm_id", "event_time", "perceived_severity", "probable_cause"),
    "location": ("subscriber_id", "cell_id", "event_time"),
    "call": ("call_id", "subscriber_id", "cell_id", "start_time", "end_time", "dropped"),
    "kpi": ("cell_id", "period_start", "period_s", "call_attempts", "dropped_calls"),
    "subscriber": ("subscriber_id", "op", "updated_at"),
    "maintenance": ("window_id", "op", "start_time", "end_time"),
    "complaint": ("complaint_id", "subscriber_id", "event_time", "category"),
}
_GARBAGE = (
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b"ERROR probe-7: ring buffer overflow, 1312 records lost",
    b"location,SUB000001,CELL0001-1,2026-11-23T06:00:00Z",
    b"\xff\xfe\x00b\x00i\x00n\x00\x00\x17\x80",
)


class _Maker:
    """Builds one defective line next to a good record."""

    def __init__(self, rng: random.Random, subscribers: list[str], cells: list[str],
                 unknown_cell: str) -> None:
        self.rng, self.cells = rng, cells
        self.subscribers = subscribers or ["SUB000000"]
        self.unknown_cell = unknown_cell
        self.serial = 0

    def location(self, t: int, cell: str | None = None) -> dict:
        return {"type": "location", "subscriber_id": self.rng.choice(self.subscribers),
                "cell_id": cell or self.rng.choice(self.cells), "event_time": fmt_time(t)}

    def make(self, kind: str, t: int, line: bytes, record: dict) -> bytes:
        """A defective line of ``kind`` at stream time ``t``."""
        rng = self.rng
        self.serial += 1
        if kind == "not_json":
            return rng.choice(_GARBAGE)
        if kind == "truncated_json":
            return line[: max(1, len(line) // 2)]
        if kind == "missing_field":
            broken = dict(record)
            del broken[rng.choice(REQUIRED[record["type"]])]
            return orjson.dumps(broken)
        if kind == "wrong_type":
            return orjson.dumps({
                "type": "call", "call_id": f"CLBAD-{self.serial:05d}",
                "subscriber_id": rng.choice(self.subscribers), "cell_id": rng.choice(self.cells),
                "start_time": fmt_time(t - rng.randint(10, 300)), "end_time": fmt_time(t),
                "dropped": "yes", "cause_code": 41})
        if kind == "unknown_enum":
            return orjson.dumps({
                "type": "alarm", "alarm_id": f"ALMBAD-{self.serial:05d}", "event_time": fmt_time(t),
                "perceived_severity": "urgent", "probable_cause": "lossOfSignal",
                "cell_id": rng.choice(self.cells), "alarm_type": "communicationsAlarm"})
        if kind == "absurd_time":
            return orjson.dumps({**self.location(t), "event_time": "1999-11-23T06:00:00Z"})
        if kind == "unknown_cell":
            return orjson.dumps(self.location(t, self.unknown_cell))
        if kind == "empty_line":
            return b""
        return b"[" + orjson.dumps(self.location(t)) + b"]"


def inject_bad_lines(
    rng: random.Random,
    lines: list[bytes],
    ordered: list[tuple[int, dict]],
    first_event: int,
    rate: float,
    subscribers: list[str],
    cells: list[str],
    unknown_cell: str,
) -> tuple[list[bytes], list[tuple[int, str]]]:
    """Insert defective lines; returns the new lines and ``(line index, kind)`` of each."""
    candidates = len(lines) - first_event
    if rate <= 0 or candidates <= 0:
        return lines, []
    count = max(len(KINDS), round(rate * len(lines)))
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(count - len(KINDS))]
    rng.shuffle(kinds)
    positions = sorted(rng.randrange(first_event, len(lines)) for _ in kinds)
    maker = _Maker(rng, subscribers, cells, unknown_cell)
    out: list[bytes] = []
    bad: list[tuple[int, str]] = []
    cursor = 0
    for pos, kind in zip(positions, kinds, strict=True):
        out.extend(lines[cursor:pos])
        cursor = pos
        t, record = ordered[pos]
        bad.append((len(out), kind))
        out.append(maker.make(kind, t, lines[pos], record))
    out.extend(lines[cursor:])
    return out, bad
