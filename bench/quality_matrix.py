"""Quality over a matrix of simulated scenarios (nights, a weekend, two sizes).

Each scenario is simulated once (cached under ``--dir``; one simulation at a time),
run through the flow with ``forewarn run --truth``, and its ``summary.json`` read:

* outage-notice precision, recall before complaint, median lead, messages per impacted;
* silent-failure detections: precision, false alarms per healthy cell-day, sleeping
  cells found and their delay, silent-failure notices and how many were deferred to
  the morning (quiet hours).

Usage::

    python -m bench.quality_matrix [--dir out/quality] [--only NAME ...] [--json FILE]

prints a Markdown table (``docs/quality.md`` holds the latest) and the commands that
reproduce each row by hand.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from forewarn.codec import parse_time


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int
    sites: int
    hours: float
    start: str = "2026-11-23T06:00:00Z"  # a Monday
    storm: str | None = None  # a region hit by a storm (a regional power cut)

    def simulate_args(self, events: Path) -> list[str]:
        return ["simulate", "--out", str(events), "--seed", str(self.seed), "--sites",
                str(self.sites), "--hours", str(self.hours), "--start", self.start,
                *(["--storm", self.storm] if self.storm else [])]


#: Different seeds; 24 h (a night) and 72 h (a weekend: Friday 18:00 to Monday 18:00);
#: 100, 300 and 600 sites; 12 h of a night or of a working day; a storm day (most of one
#: region down within minutes).
MATRIX = (
    Scenario("s11-100s-24h", 11, 100, 24),
    Scenario("s12-100s-24h", 12, 100, 24),
    Scenario("s13-100s-72h-weekend", 13, 100, 72, start="2026-11-20T18:00:00Z"),
    Scenario("s14-300s-24h", 14, 300, 24),
    Scenario("s15-100s-72h", 15, 100, 72),  # held out: not looked at while tuning
    Scenario("s16-600s-12h-night", 16, 600, 12, start="2026-11-24T18:00:00Z"),
    Scenario("s17-600s-12h-day", 17, 600, 12, start="2026-11-25T06:00:00Z"),
    Scenario("demo-s7-300s-6h", 7, 300, 6),  # the demo's scenario (daytime only)
    Scenario("storm-s13-200s-8h", 13, 200, 8, storm="north"),  # a regional power cut
)


def _forewarn(args: list[str]) -> None:
    if args[0] == "run":  # quiet, and no /metrics port (other runs may hold the default)
        args = [*args, "--log-level", "warning", "--metrics-port", "-1"]
    subprocess.run([sys.executable, "-m", "forewarn.cli", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run(sc: Scenario, root: Path, tag: str, rules: str | None = None) -> dict:
    """Simulate (if not cached) and run one scenario (with the rulebook in ``rules``, or
    the default); its figures."""
    d = root / sc.name
    events, truth = d / "events.jsonl", d / "truth.jsonl"
    if not (events.exists() and truth.exists()):
        d.mkdir(parents=True, exist_ok=True)
        _forewarn(sc.simulate_args(events))
    out = d / tag
    _forewarn(["run", "--input", str(events), "--out", str(out), "--truth", str(truth),
               *(["--rules", rules] if rules else [])])
    summary = orjson.loads((out / "summary.json").read_bytes())
    return figures(sc, summary, out, truth)


def figures(sc: Scenario, summary: dict, out: Path, truth: Path) -> dict:
    q, sf = summary["quality"], summary.get("silent_failures", {})
    notices, held = 0, {}  # deferred silent-failure notices: subscriber -> (at, send_after)
    with (out / "actions.jsonl").open("rb") as fh:
        for line in fh:
            a = orjson.loads(line)
            if a["kind"] == "outage_notice" and a["rule_id"] == "silent-failure-notice":
                notices += 1
                if a.get("send_after"):
                    held[a["subscriber_id"]] = (parse_time(a["event_time"]),
                                                parse_time(a["send_after"]))
    # The cost of deferring: would-be complainers whose complaint falls between the
    # notice's time and its send_after (reached at once, missed when deferred).
    missed = 0
    if held:
        with truth.open("rb") as fh:
            for line in fh:
                t = orjson.loads(line)
                if t.get("type") != "truth_impact" or t["subscriber_id"] not in held:
                    continue
                at, after = held[t["subscriber_id"]]
                c = t.get("complaint_time")
                missed += c is not None and at <= parse_time(c) < after
    waits = sorted(after - at for at, after in held.values())
    sleeping = sf.get("sleeping", {})
    return {
        "scenario": sc.name,
        "precision": q["precision"],
        "recall": q["recall_before_complaint"],
        "median_lead_min": round(q["median_lead_s"] / 60, 1) if q["median_lead_s"] else None,
        "messages_per_impacted": q["messages_per_impacted"],
        "false_contact_share": q.get("false_contact_share"),
        "walk_in_notices": q.get("precision_by_rule", {}).get("walk-in-notice", {}).get("sent", 0),
        "walk_in_precision": q.get("precision_by_rule", {}).get("walk-in-notice", {}).get(
            "precision"),
        "expected_notices": q.get("precision_by_rule", {}).get("expected-notice", {}).get(
            "sent", 0),
        "expected_precision": q.get("precision_by_rule", {}).get("expected-notice", {}).get(
            "precision"),
        "anchors_learnt": summary.get("anchors", {}).get("learnt_share"),
        "anchors_accuracy": summary.get("anchors", {}).get("accuracy"),
        "misses": " ".join(f"{k.split('_')[0]}:{v}" for k, v in q["missed_by_cause"].items()),
        "detections": sf.get("detections"),
        "detection_precision": sf.get("precision"),
        "false_alarms_per_healthy_cell_day": sf.get("false_alarms_per_healthy_cell_day"),
        "sleeping_found": f"{sleeping.get('detected')}/{sleeping.get('injected')}",
        "sleeping_delay_max_min": (round(sleeping["delay_max_s"] / 60, 1)
                                   if sleeping.get("delay_max_s") is not None else None),
        "silent_notices": notices,
        "silent_notices_deferred": len(held),
        "deferred_wait_median_h": round(waits[len(waits) // 2] / 3600, 1) if waits else None,
        "complaints_before_deferred_notice": missed,
    }


COLUMNS = (("scenario", "scenario"), ("precision", "notice precision"),
           ("recall", "recall"), ("median_lead_min", "lead min"),
           ("messages_per_impacted", "msgs/impacted"),
           ("false_contact_share", "false contacts"), ("walk_in_notices", "walk-in notices"),
           ("walk_in_precision", "walk-in precision"),
           ("expected_notices", "expected notices"),
           ("expected_precision", "expected precision"),
           ("anchors_learnt", "anchors learnt"), ("anchors_accuracy", "anchors right"),
           ("misses", "misses by cause"),
           ("detections", "detections"),
           ("detection_precision", "det. precision"),
           ("false_alarms_per_healthy_cell_day", "false/healthy cell-day"),
           ("sleeping_found", "sleeping found"), ("sleeping_delay_max_min", "max delay min"),
           ("silent_notices", "silent notices"), ("silent_notices_deferred", "deferred"),
           ("deferred_wait_median_h", "deferred wait h"),
           ("complaints_before_deferred_notice", "complaints before deferred"))


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="out/quality", help="scenario cache and outputs")
    ap.add_argument("--tag", default="run", help="output subdirectory of each scenario")
    ap.add_argument("--only", nargs="*", help="scenario names to run")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--rules", help="rulebook directory (default: the built-in one)")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    rows = [run(sc, root, args.tag, args.rules) for sc in MATRIX
            if not args.only or sc.name in args.only]
    print(markdown(rows))
    print()
    for sc in MATRIX:
        if not args.only or sc.name in args.only:
            d = root / sc.name
            print(f"forewarn {' '.join(sc.simulate_args(d / 'events.jsonl'))}")
            rules = f" --rules {args.rules}" if args.rules else ""
            print(f"forewarn run --input {d}/events.jsonl --out {d}/{args.tag} "
                  f"--truth {d}/truth.jsonl --metrics-port -1{rules}")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
