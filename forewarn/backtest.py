"""Backtest: what a rulebook would have done on recorded events.

Replays the events through the real dataflow (in-process, no broker) and
reports, per rule and in total: actions by kind, channel and segment,
contacts per subscriber, deferred and suppressed counts by reason,
compensation spend, sample rendered messages, and — when the events carry
complaints or a ground truth is given — recall before complaint, precision and
lead time. With a second rulebook, both side by side with the differences.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import orjson

from forewarn.codec import parse_time
from forewarn.connectors.files import JsonlFilesSource
from forewarn.rules.rulebook import Rulebook
from forewarn.runner import Collected, collect
from forewarn.summary import quality

COMPLAINT_WINDOW_S = 3 * 3600.0  # an action this long before a complaint counts as ahead of it


def run_backtest(book: Rulebook, events: Sequence[str | Path],
                 truth: list[dict] | None = None) -> dict:
    got = collect(JsonlFilesSource(events), book)
    return report(book, got, events, truth)


def report(book: Rulebook, got: Collected, events: Sequence[str | Path],
           truth: list[dict] | None) -> dict:
    actions = [orjson.loads(a) for a in got.actions]
    per_rule: dict[str, dict] = {}
    for rule in book.rules:
        mine = [a for a in actions if a["rule_id"] == rule.id]
        supp = [s for s in got.suppressed if s.rule_id == rule.id]
        per_rule[rule.id] = {
            "version": rule.version,
            "owner": rule.owner,
            **_figures(mine, supp),
            "samples": _samples(book, rule.id),
        }
    out = {
        "rulebook": {"name": book.name, "version": book.version, "source": book.source,
                     "digest": book.digest},
        "events": [str(e) for e in events],
        "incidents": len({orjson.loads(i)["incident_id"] for i in got.incidents}),
        "dead_letters": len(got.dead_letters),
        "totals": _figures(actions, got.suppressed),
        "rules": per_rule,
        "action_ids": sorted(a["action_id"] for a in actions),
    }
    complaints = _complaints(events)
    if complaints:
        out["complaints"] = _complaint_recall(actions, complaints)
    if truth is not None:
        out["quality"] = quality(actions, truth)
    return out


def _figures(actions: list[dict], suppressed: list) -> dict:
    per_sub = Counter(a["subscriber_id"] for a in actions)
    counts = sorted(per_sub.values())
    spend = sum((a.get("offer") or {}).get("amount_gb", 0) for a in actions
                if a["kind"] == "compensation")
    return {
        "actions": len(actions),
        "by_kind": dict(sorted(Counter(a["kind"] for a in actions).items())),
        "by_channel": dict(sorted(Counter(a["channel"] for a in actions).items())),
        "by_segment": dict(sorted(Counter(a.get("segment") or "?" for a in actions).items())),
        "subscribers": len(per_sub),
        "contacts_per_subscriber": {
            "mean": round(statistics.mean(counts), 3) if counts else 0,
            "max": counts[-1] if counts else 0,
            "p95": counts[int(0.95 * (len(counts) - 1))] if counts else 0,
        },
        "deferred": sum(1 for a in actions if a.get("send_after")),
        "suppressed_by_reason": dict(sorted(Counter(s.reason for s in suppressed).items())),
        "compensation_gb": spend,
    }


SAMPLE_FIELDS = {"name": "Alex", "area": "North", "plan": "Unlimited",
                 "incident_id": "INC-SITE0001-20261123T101500", "eta": "18:00",
                 "offer": "5 GB"}


def _samples(book: Rulebook, rule_id: str) -> dict[str, str]:
    """Each language's message rendered with example fields (no customer data)."""
    rule = book.rule(rule_id)
    return {lang: book.render(rule, lang, SAMPLE_FIELDS) for lang in sorted(rule.templates)}


def _complaints(events: Sequence[str | Path]) -> list[tuple[str, float]]:
    out = []
    for path in events:
        with Path(path).open("rb") as fh:
            for line in fh:
                if b'"complaint"' not in line:
                    continue
                try:
                    rec = orjson.loads(line)
                    if rec.get("type") == "complaint":
                        out.append((rec["subscriber_id"], parse_time(rec["event_time"])))
                except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                    continue  # the flow dead-letters it; not a complaint we can count
    return out


def _complaint_recall(actions: list[dict], complaints: list[tuple[str, float]]) -> dict:
    told: dict[str, list[float]] = defaultdict(list)
    for a in actions:
        told[a["subscriber_id"]].append(parse_time(a["event_time"]))
    leads = []
    for sub, at in complaints:
        before = [t for t in told.get(sub, ()) if at - COMPLAINT_WINDOW_S <= t < at]
        if before:
            leads.append(at - min(before))
    return {
        "complaints": len(complaints),
        "contacted_before_complaint": len(leads),
        "recall_before_complaint": round(len(leads) / len(complaints), 4),
        "median_lead_s": round(statistics.median(leads), 1) if leads else None,
    }


# ---- presentation --------------------------------------------------------------------


def compare(a: dict, b: dict) -> dict:
    ids_a, ids_b = set(a["action_ids"]), set(b["action_ids"])
    rules = sorted(set(a["rules"]) | set(b["rules"]))
    return {
        "only_in_a": len(ids_a - ids_b),
        "only_in_b": len(ids_b - ids_a),
        "in_both": len(ids_a & ids_b),
        "actions_delta": b["totals"]["actions"] - a["totals"]["actions"],
        "rules": {r: (a["rules"].get(r, {}).get("actions", 0),
                      b["rules"].get(r, {}).get("actions", 0)) for r in rules},
    }


def labels(a: dict, b: dict | None = None) -> list[str]:
    """Column heads: ``name vN``, plus each rulebook's directory when name and
    version alone do not tell the two apart (and ``a``/``b`` when neither does).

    >>> book = lambda src: {"rulebook": {"name": "default", "version": 1, "source": src}}
    >>> labels(book("rules/default/rulebook.yaml"))
    ['default v1']
    >>> labels(book("rules/default/rulebook.yaml"), book("/tmp/try/rulebook.yaml"))
    ['default v1 (rules/default)', 'default v1 (/tmp/try)']
    >>> labels(book("r/rulebook.yaml"), book("r/rulebook.yaml"))
    ['default v1 (r, a)', 'default v1 (r, b)']
    """
    cols = [a] + ([b] if b else [])
    heads = [f"{c['rulebook']['name']} v{c['rulebook']['version']}" for c in cols]
    if len(set(heads)) == len(heads):
        return heads
    dirs = [str(Path(c["rulebook"]["source"]).parent) for c in cols]
    if len(set(dirs)) < len(dirs):
        dirs = [f"{d}, {tag}" for d, tag in zip(dirs, "ab", strict=False)]
    return [f"{h} ({d})" for h, d in zip(heads, dirs, strict=True)]


def format_report(a: dict, b: dict | None = None) -> str:
    cols = [a] + ([b] if b else [])
    head = ["", *labels(a, b)]
    rows: list[list[str]] = [head]

    def row(label: str, get) -> None:
        rows.append([label, *(str(get(c)) for c in cols)])

    row("actions", lambda c: c["totals"]["actions"])
    kinds = sorted({k for c in cols for k in c["totals"]["by_kind"]})
    for k in kinds:
        row(f"  {k}", lambda c, k=k: c["totals"]["by_kind"].get(k, 0))
    for ch in sorted({k for c in cols for k in c["totals"]["by_channel"]}):
        row(f"  via {ch}", lambda c, ch=ch: c["totals"]["by_channel"].get(ch, 0))
    for seg in sorted({k for c in cols for k in c["totals"]["by_segment"]}):
        row(f"  to {seg}", lambda c, seg=seg: c["totals"]["by_segment"].get(seg, 0))
    row("subscribers contacted", lambda c: c["totals"]["subscribers"])
    row("contacts per subscriber (mean/max)",
        lambda c: f"{c['totals']['contacts_per_subscriber']['mean']}"
                  f"/{c['totals']['contacts_per_subscriber']['max']}")
    row("deferred (quiet hours, budgets)", lambda c: c["totals"]["deferred"])
    for r in sorted({k for c in cols for k in c["totals"]["suppressed_by_reason"]}):
        row(f"suppressed: {r}", lambda c, r=r: c["totals"]["suppressed_by_reason"].get(r, 0))
    row("compensation spend (GB)", lambda c: c["totals"]["compensation_gb"])
    for rid in sorted({k for c in cols for k in c["rules"]}):
        row(f"rule {rid}", lambda c, rid=rid: c["rules"].get(rid, {}).get("actions", "-"))
    if any("complaints" in c for c in cols):
        row("complaints in events", lambda c: c.get("complaints", {}).get("complaints", "-"))
        row("recall before complaint", lambda c: c.get("complaints", {}).get(
            "recall_before_complaint", "-"))
    if any("quality" in c for c in cols):
        for key in ("recall_before_complaint", "precision", "median_lead_s",
                    "messages_per_impacted"):
            row(f"truth: {key}", lambda c, key=key: c.get("quality", {}).get(key, "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    if b is not None:
        d = compare(a, b)
        lines += ["", f"differences: {d['only_in_a']} actions only with {head[1]}, "
                      f"{d['only_in_b']} only with {head[2]}, {d['in_both']} in both"]
        for rid, (x, y) in d["rules"].items():
            if x != y:
                lines.append(f"  {rid}: {x} -> {y}")
    samples = [(rid, lang, msg) for rid, r in (b or a)["rules"].items()
               for lang, msg in list(r["samples"].items())[:2]]
    if samples:
        lines += ["", "sample messages:"]
        lines += [f"  [{rid} {lang}] {msg}" for rid, lang, msg in samples[:10]]
    return "\n".join(lines)
