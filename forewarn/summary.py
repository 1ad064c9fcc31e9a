"""Run summary and quality against the simulator's ground truth.

Quality figures (``summary["quality"]``):

* ``recall_before_complaint`` — of the would-be complainers the contract lets
  us reach (known profile, a consented channel, not planned maintenance), the
  share who got a relevant action after their problem began and before their
  complaint time (outage notice for an outage; apology or outage notice for a
  dropped-call burst). ``recall_all`` counts every would-be complainer.
* ``precision`` — of the outage notices sent, the share that reached a
  subscriber really without service at the notice's event time.
* ``median_lead_s`` — complaint time minus first relevant action, over recalled.
* ``recall_knowable`` — the same, counting as misses only complainers the
  contract's impacted definition could see (on the cell by their latest fresh
  observation); ``missed_by_cause`` says why the others were invisible.
* ``messages_per_impacted`` — actions sent to really impacted subscribers per
  impacted subscriber who was told anything.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from forewarn import tmf681
from forewarn.codec import parse_time
from forewarn.model import OVERFLOW_EVIDENCE


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def summarize(out: Path, events_in: int, truth: list[dict] | None = None,
              flow_seconds: float | None = None, n_cells: int | None = None,
              anchors: dict[str, tuple[str | None, str | None]] | None = None) -> dict:
    actions = [tmf681.to_contract(a) if tmf681.is_message(a) else a
               for a in read_jsonl(out / "actions.jsonl")]
    incidents = read_jsonl(out / "incidents.jsonl")
    dead = read_jsonl(out / "dead_letters.jsonl")
    by_kind = Counter(a["kind"] for a in actions)
    seen = {i["incident_id"]: i["kind"] for i in incidents}
    inc_kinds = Counter(seen.values())
    summary = {
        "events_in": events_in,
        "dead_letters": len(dead),
        "dead_letters_by_reason": dict(sorted(Counter(d.get("code", "?") for d in dead).items())),
        "incidents": len(seen),
        "incidents_by_kind": dict(sorted(inc_kinds.items())),
        "actions": {k: by_kind.get(k, 0) for k in
                    ("outage_notice", "restored_notice", "apology", "compensation",
                     "care_callback", "area_notice")},
        "actions_total": len(actions),
        "deferred": sum(1 for a in actions if a.get("send_after")),
        "actions_by_channel": dict(sorted(Counter(a["channel"] for a in actions).items())),
    }
    if flow_seconds:
        summary["flow_seconds"] = round(flow_seconds, 2)
        summary["events_per_second"] = round(events_in / flow_seconds)
    if truth is not None:
        summary["quality"] = quality(actions, truth)
        if any(t.get("type") in ("truth_silent_failure", "truth_degraded_cell") for t in truth):
            summary["silent_failures"] = silent_from_incidents(incidents, truth, n_cells)
        if anchors is not None and any(t.get("type") == "truth_subscriber" for t in truth):
            summary["anchors"] = anchor_accuracy(anchors, truth)
    parents = {i["incident_id"] for i in incidents if i["kind"] == "regional_outage"}
    if parents or (truth is not None and any(t.get("type") == "truth_storm" for t in truth)):
        summary["storm"] = storm_figures(actions, incidents, truth or [])
    return summary


def _storm_recall(actions: list[dict], truth: list[dict], outages: set[str],
                  children: set[str]) -> dict:
    """Recall before complaint of the storm's reachable would-be complainers, counted two
    ways: ``recall_per_outage`` as ``quality`` counts it (a notice from the start of the
    spell they complain of: a notice about another site of the storm, told earlier, does
    not count), and ``recall_per_event`` counting the storm as one event (a notice about
    any of its site incidents from their first spell in the storm on), which is what
    ``inhibit.notice_when_notified_in_region`` aims at."""
    told: dict[str, list[float]] = defaultdict(list)
    for a in actions:
        if a["kind"] in ("outage_notice", "area_notice") and a.get("incident_id") in children:
            told[a["subscriber_id"]].append(parse_time(a["event_time"]))
    anyone: dict[str, list[float]] = defaultdict(list)
    for a in actions:
        if a["kind"] in ("outage_notice", "area_notice"):
            anyone[a["subscriber_id"]].append(parse_time(a["event_time"]))
    spells = [t for t in truth if t.get("type") == "truth_impact"
              and t.get("outage_id") in outages]
    first: dict[str, float] = {}
    for t in spells:
        at = parse_time(t["lost_from"]) - 300.0
        first[t["subscriber_id"]] = min(first.get(t["subscriber_id"], at), at)
    cases = per_outage = per_event = 0
    for t in spells:
        c = _t(t.get("complaint_time"))
        if c is None or t.get("planned") or not t.get("contactable", True):
            continue
        sid, began = t["subscriber_id"], parse_time(t["lost_from"]) - 300.0
        cases += 1
        per_outage += any(began <= at < c for at in anyone.get(sid, ()))
        per_event += any(first[sid] <= at < c for at in told.get(sid, ())) or any(
            began <= at < c for at in anyone.get(sid, ()))
    return {"complainers": cases, "recall_per_outage": _ratio(per_outage, cases),
            "recall_per_event": _ratio(per_event, cases)}


#: After a storm's last site is back, how long its restored notices may still come.
STORM_AFTER_S = 3600.0


def storm_figures(actions: list[dict], incidents: list[dict], truth: list[dict]) -> dict:
    """A storm day's figures (``summary["storm"]``), against the simulator's
    ``truth_storm`` records:

    * ``storms``, ``parents``: storms in the truth, ``regional_outage`` incidents the NOC
      got (one per storm is the goal), and ``parents_on_storms``: those whose sites are
      mostly (half or more) a storm's;
    * ``impacted``: subscribers who really lost service in a storm's outages;
      ``messages_per_impacted``: the actions they got from the storm's start to an hour
      after its end, per one of them told anything;
    * ``outage_notices``: notices about the storm's site incidents (on its sites, started
      while it lasted); ``time_to_notify_s``: from the storm's start to the
      last of them sent (``send_after`` when paced, else its time);
      ``max_send_delay_s``: the longest a notice waited for the budget; ``overflow``:
      those sent over the rate at the bound; ``complaints_before_paced_notice``: would-be
      complainers who complained while their notice waited for the budget (recall counts
      a notice at its time, not its send time).
    """
    storms = [t for t in truth if t.get("type") == "truth_storm"]
    latest: dict[str, dict] = {}
    for i in incidents:
        if i["kind"] == "regional_outage":
            latest[i["incident_id"]] = i
    out: dict = {"storms": len(storms), "parents": len(latest)}
    if not storms:
        return out
    on_storm: dict[str, dict] = {}
    for pid, p in latest.items():
        for st in storms:
            sites = set(p.get("sites", ()))
            if len(sites & set(st["site_ids"])) * 2 >= len(sites):
                on_storm[pid] = st
    out["parents_on_storms"] = len(on_storm)
    outages = {o for st in storms for o in st["outage_ids"]}
    impacted = {t["subscriber_id"] for t in truth
                if t.get("type") == "truth_impact" and t.get("outage_id") in outages}
    spans = [(parse_time(st["start_time"]) - 300.0, parse_time(st["end_time"]) + STORM_AFTER_S)
             for st in storms]
    got: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for a in actions:
        if a["subscriber_id"] in impacted and any(
                lo <= parse_time(a["event_time"]) <= hi for lo, hi in spans):
            got[a["subscriber_id"]] += 1
            kinds[a["kind"]] += 1
    # the storm's own site incidents: on its sites, started while it lasted (not the
    # region's later outages that joined its regional event; found without it, so the
    # figures compare with a run that groups nothing)
    children = {i["incident_id"] for i in incidents
                if i["kind"] in ("outage", "flapping") and any(
                    i["site_id"] in st["site_ids"] and lo <= parse_time(i["start_time"]) <= hi
                    for st, (lo, hi) in zip(storms, spans, strict=True))}
    notices = [a for a in actions if a["kind"] == "outage_notice"
               and a.get("incident_id") in children]
    sent = [parse_time(a["send_after"] or a["event_time"]) for a in notices]
    waits = sorted(s - parse_time(a["event_time"]) for s, a in zip(sent, notices, strict=True))
    start = min(parse_time(st["start_time"]) for st in storms)
    # the cost of pacing: would-be complainers whose complaint fell between a notice's
    # time (when recall counts it) and its send time
    complaints: dict[str, list[float]] = defaultdict(list)
    for t in truth:
        if t.get("type") == "truth_impact" and t.get("complaint_time"):
            complaints[t["subscriber_id"]].append(parse_time(t["complaint_time"]))
    late = sum(1 for s, a in zip(sent, notices, strict=True) if a["send_after"] and any(
        parse_time(a["event_time"]) <= c < s for c in complaints.get(a["subscriber_id"], ())))
    out.update(_storm_recall(actions, truth, outages, children))
    out.update({
        "impacted": len(impacted),
        "impacted_told": len(got),
        "messages_per_impacted": _ratio(sum(got.values()), len(got)),
        "actions_to_impacted": dict(sorted(kinds.items())),
        "outage_notices": len(notices),
        "time_to_notify_s": round(max(sent) - start, 1) if sent else None,
        "max_send_delay_s": round(waits[-1], 1) if waits else None,
        "p95_send_delay_s": round(waits[int(0.95 * (len(waits) - 1))], 1) if waits else None,
        "overflow": sum(1 for a in notices if OVERFLOW_EVIDENCE in a.get("evidence", ())),
        "complaints_before_paced_notice": late,
    })
    return out


def anchor_accuracy(anchors: dict[str, tuple[str | None, str | None]],
                    truth: list[dict]) -> dict:
    """Learnt anchor sites (``sid -> (night, work)``, :mod:`forewarn.dataflows.anchors`) against
    where the simulator makes each subscriber live and work (``truth_subscriber``).

    A night anchor is right when it is their home site; a working-hours anchor when it is
    their work site, or their home site for those without work. ``accuracy``: of the
    subscribers with an anchor learnt, the share whose every learnt anchor is right.

    >>> truth = [{"type": "truth_subscriber", "subscriber_id": "U1", "home_site": "S1",
    ...           "work_site": "S2"},
    ...          {"type": "truth_subscriber", "subscriber_id": "U2", "home_site": "S3",
    ...           "work_site": None}]
    >>> r = anchor_accuracy({"U1": ("S1", "S1"), "U2": ("S3", None)}, truth)
    >>> r["accuracy"], r["night"]["right"], r["work"]["right"], r["learnt_share"]
    (0.5, 1.0, 0.0, 1.0)
    """
    subs = {t["subscriber_id"]: t for t in truth if t.get("type") == "truth_subscriber"}
    learnt = {sid: a for sid, a in anchors.items() if sid in subs}
    counts = {name: [0, 0] for name in ("night", "work")}  # learnt, right
    all_right = 0
    for sid, (night, work) in learnt.items():
        t = subs[sid]
        ok = True
        for name, got, want in (("night", night, t["home_site"]),
                                ("work", work, t["work_site"] or t["home_site"])):
            if got is not None:
                counts[name][0] += 1
                counts[name][1] += got == want
                ok = ok and got == want
        all_right += ok
    commuters = sum(1 for t in subs.values() if t["work_site"] is not None)
    commuters_right = sum(1 for sid, (_, work) in learnt.items()
                          if subs[sid]["work_site"] is not None
                          and work == subs[sid]["work_site"])
    return {
        "subscribers": len(subs),
        "learnt": len(learnt),
        "learnt_share": _ratio(len(learnt), len(subs)),
        "accuracy": _ratio(all_right, len(learnt)),
        **{name: {"learnt": n, "right": _ratio(ok, n)} for name, (n, ok) in counts.items()},
        "commuters": commuters,
        "commuters_work_right": _ratio(commuters_right, commuters),
    }


def _t(s: str | None) -> float | None:
    return parse_time(s) if s else None


#: What reaches a subscriber about an outage they are in: an outage notice, an area notice
#: (a walk-in), or an apology that names an incident (after its restoration, or for calls
#: it cut). For a dropped-call burst: an apology or an outage notice.
OUTAGE_KINDS = ("outage_notice", "area_notice", "apology@incident")
BURST_KINDS = ("outage_notice", "apology", "apology@incident")


def _kind(a: dict) -> str:
    """An action's kind, ``apology@incident`` for an apology about an incident."""
    return "apology@incident" if a["kind"] == "apology" and a.get("incident_id") else a["kind"]


def quality(actions: list[dict], truth: list[dict]) -> dict:
    by_sub: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for a in actions:
        by_sub[a["subscriber_id"]].append((parse_time(a["event_time"]), _kind(a)))
    for lst in by_sub.values():
        lst.sort()
    impacts = [t for t in truth if t.get("type") == "truth_impact"]
    bursts = [t for t in truth if t.get("type") == "truth_drop_burst"]

    # Recall before complaint.
    leads: list[float] = []
    eligible = hit_eligible = total = hit_total = planned = hit_contract = 0
    misses: Counter[str] = Counter()
    # A subscriber may lose service more than once in one outage (on it at its start, away,
    # back into the hole): told during an earlier spell, they were told about the outage
    # they complain of. So a notice counts from the complaint's spell on, or within any
    # earlier spell of the same outage (not between them: that may be about another).
    spells: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for t in impacts:
        if t.get("outage_id"):
            spells[(t["subscriber_id"], t["outage_id"])].append(
                (parse_time(t["lost_from"]) - 300.0, parse_time(t["lost_to"])))
    cases: list[tuple[dict, str, tuple[str, ...], bool, tuple[str, ...]]] = [
        (t, t["lost_from"], OUTAGE_KINDS, bool(t.get("planned")), ("outage_notice",))
        for t in impacts]
    cases += [(t, t["first_drop"], BURST_KINDS, False, BURST_KINDS) for t in bursts]
    for t, began, kinds, is_planned, contract_kinds in cases:
        complaint = _t(t.get("complaint_time"))
        if complaint is None:
            continue
        start = parse_time(began) - 300.0  # an alarm may slightly precede the truth's start
        earlier = [(lo, hi) for lo, hi in spells.get((t["subscriber_id"], t.get("outage_id")
                                                      or ""), ()) if lo < start]

        def counts(at: float, start: float = start, earlier: list = earlier,
                   complaint: float = complaint) -> bool:
            return at < complaint and (at >= start or any(lo <= at <= hi for lo, hi in earlier))

        first = next((at for at, k in by_sub.get(t["subscriber_id"], ())
                      if k in kinds and counts(at)), None)
        total += 1
        hit_total += first is not None
        if is_planned:
            planned += 1
            continue
        if not t.get("contactable", True):
            continue
        eligible += 1
        hit_contract += any(k in contract_kinds and counts(at)
                            for at, k in by_sub.get(t["subscriber_id"], ()))
        if first is not None:
            hit_eligible += 1
            leads.append(complaint - first)
        else:
            misses[_miss_cause(t)] += 1

    # Precision of outage notices: really without service at notice time.
    lost: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for t in impacts:
        lost[t["subscriber_id"]].append((parse_time(t["lost_from"]), parse_time(t["lost_to"])))
    notices = [(a["subscriber_id"], parse_time(a["event_time"])) for a in actions
               if a["kind"] == "outage_notice"]
    correct = sum(1 for sub, at in notices
                  if any(lo <= at <= hi for lo, hi in lost.get(sub, ())))

    impacted_told = {t["subscriber_id"] for t in impacts} & set(by_sub)
    msgs = sum(len(by_sub[s]) for s in impacted_told)
    impacts_of: dict[str, list[dict]] = defaultdict(list)
    for t in impacts:
        impacts_of[t["subscriber_id"]].append(t)
    truths = [_true_contact(a, lost, impacts_of, bursts) for a in actions]
    by_rule: dict[str, list[bool]] = defaultdict(list)
    for a, ok in zip(actions, truths, strict=True):
        if a.get("rule_id") and _kind(a) in OUTAGE_KINDS:
            by_rule[a["rule_id"]].append(ok)
    return {
        "recall_before_complaint": _ratio(hit_eligible, eligible),
        "recall_all": _ratio(hit_total, total),
        # the same counting only the contract's actions (an outage notice for an outage)
        "recall_contract_actions": _ratio(hit_contract, eligible),
        "would_be_complainers": total,
        "reachable_complainers": eligible,
        "planned_maintenance_complainers": planned,
        "precision": _ratio(correct, len(notices)),
        "outage_notices_checked": len(notices),
        "median_lead_s": round(statistics.median(leads), 1) if leads else None,
        "missed_by_cause": dict(misses.most_common()),
        "recall_knowable": _ratio(hit_eligible, hit_eligible + sum(
            n for cause, n in misses.items() if cause in KNOWABLE)),
        "messages_per_impacted": _ratio(msgs, len(impacted_told)),
        "false_contact_share": _ratio(truths.count(False), len(truths)),
        "precision_by_rule": {rule: {"sent": len(oks), "precision": _ratio(sum(oks), len(oks))}
                              for rule, oks in sorted(by_rule.items())},
    }


def _incident_place(incident_id: str) -> tuple[str, str, float] | None:
    """What an incident id names: ``("site_id" | "cell_id", id, start)``.

    >>> _incident_place("INC-SITE0001-20261123T101500")
    ('site_id', 'SITE0001', 1795428900.0)
    """
    prefix, _, rest = incident_id.partition("-")
    place, _, stamp = rest.rpartition("-")
    if prefix not in ("INC", "DEG") or not place or len(stamp) != 15:
        return None
    start = parse_time(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:"
                       f"{stamp[13:15]}Z")
    return ("site_id" if prefix == "INC" else "cell_id", place, start)


def _true_contact(a: dict, lost: dict[str, list[tuple[float, float]]],
                  impacts_of: dict[str, list[dict]], bursts: list[dict]) -> bool:
    """Did this action reach someone who really had the trouble it speaks of?

    An outage or area notice: without service at its time. Anything else about an incident
    (restored notice, compensation, callback, apology): lost service at the incident's
    site (or cell) between its start and the action. A dropped-call apology: within a
    burst of their dropped calls (first drop to 30 min after the last). Other actions
    count as true.
    """
    sub, at, kind = a["subscriber_id"], parse_time(a["event_time"]), _kind(a)
    if kind in ("outage_notice", "area_notice"):
        return any(lo <= at <= hi for lo, hi in lost.get(sub, ()))
    place = _incident_place(a["incident_id"]) if a.get("incident_id") else None
    if place is not None:
        key, where, start = place
        return any(t.get(key) == where and parse_time(t["lost_from"]) <= at
                   and parse_time(t["lost_to"]) >= start for t in impacts_of.get(sub, ()))
    if kind == "apology":
        return any(t["subscriber_id"] == sub and parse_time(t["first_drop"]) - 300 <= at
                   <= parse_time(t.get("last_drop") or t["first_drop"]) + 1800 for t in bursts)
    return True


KNOWABLE = ("observed_on_cell", "drop_burst")


def _miss_cause(t: dict) -> str:
    """Why the contract's impacted definition could (not) have seen this complainer."""
    if t.get("type") == "truth_drop_burst":
        return "drop_burst"
    if t.get("kind") in ("sleeping", "degradation"):
        return "silent_failure_no_alarm"
    if not t.get("at_start", True):
        return "entered_outage_area_later"
    if t.get("observed_cell_at_start") != t.get("cell_id"):
        return "unobserved_move_before_start"
    if (t.get("observed_age_s") or 0) > 3600:
        return "stale_position"
    return "observed_on_cell"


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def format_table(s: dict) -> str:
    rows = [
        ("events in", f"{s['events_in']:,}"),
        ("dead letters", f"{s['dead_letters']:,}"),
        ("incidents", f"{s['incidents']:,}  "
         + ", ".join(f"{k} {v}" for k, v in s.get("incidents_by_kind", {}).items())),
    ]
    for kind, n in s["actions"].items():
        rows.append((f"actions: {kind}", f"{n:,}"))
    rows.append(("actions deferred (quiet hours, pacing)", f"{s.get('deferred', 0):,}"))
    if "events_per_second" in s:
        rows.append(("flow throughput", f"{s['events_per_second']:,} events/s "
                     f"({s['flow_seconds']} s)"))
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    q = s.get("quality")
    if q:
        rows += [
            ("recall before complaint", f"{pct(q['recall_before_complaint'])} "
             f"of {q['reachable_complainers']} reachable would-be complainers"),
            ("recall (all complainers)", f"{pct(q['recall_all'])} of {q['would_be_complainers']}"),
            ("recall (knowable by contract rules)", pct(q["recall_knowable"])),
            ("missed, by cause", ", ".join(f"{k} {v}" for k, v in q["missed_by_cause"].items())
             or "none"),
            ("precision of outage notices", f"{pct(q['precision'])} "
             f"of {q['outage_notices_checked']}"),
            *([("precision of area notices (walk-ins)",
                f"{pct(walk['precision'])} of {walk['sent']}")]
              if (walk := q.get("precision_by_rule", {}).get("walk-in-notice")) else []),
            ("false contacts (share of all actions)", pct(q.get("false_contact_share"))),
            ("median lead before complaint",
             "n/a" if q["median_lead_s"] is None else f"{q['median_lead_s'] / 60:.1f} min"),
            ("messages per impacted subscriber", str(q["messages_per_impacted"])),
        ]
    st = s.get("storm")
    if st:
        rows.append(("storms / NOC regional events", f"{st['storms']} / {st['parents']}"
                     + (f" ({st['parents_on_storms']} on a storm)"
                        if "parents_on_storms" in st else "")))
        if st.get("impacted"):
            ttn = st["time_to_notify_s"]
            rows += [
                ("storm: messages per impacted", f"{st['messages_per_impacted']} "
                 f"({st['impacted_told']:,} of {st['impacted']:,} impacted told)"),
                ("storm: time to notify everyone",
                 "n/a" if ttn is None else f"{ttn / 60:.1f} min from its start "
                 f"({st['outage_notices']:,} outage notices; longest budget wait "
                 f"{(st['max_send_delay_s'] or 0) / 60:.1f} min, {st['overflow']} over the rate)"),
            ]
    an = s.get("anchors")
    if an:
        rows.append(("anchor places learnt (night, work)",
                     f"{an['learnt']:,} of {an['subscribers']:,} subscribers, "
                     f"{pct(an['accuracy'])} all right (night {pct(an['night']['right'])} "
                     f"of {an['night']['learnt']:,}, work {pct(an['work']['right'])} "
                     f"of {an['work']['learnt']:,})"))
    pm = s.get("propensity")
    if pm:
        rows.append(("complaint propensity model", f"{pm.get('version')}: ROC AUC "
                     f"{pm.get('roc_auc')}, log loss {pm.get('log_loss')} (progressive, "
                     f"{pm.get('examples')} examples)"))
    sf = s.get("silent_failures")
    if sf:
        for kind in ("sleeping", "degradation"):
            k = sf[kind]
            delay = "n/a" if k["delay_median_s"] is None else \
                f"median {k['delay_median_s'] / 60:.0f} min, max {k['delay_max_s'] / 60:.0f} min"
            rows.append((f"silent {kind} cells found", f"{k['detected']}/{k['injected']} "
                         f"(delay {delay})"))
        rows.append(("silent-failure detections", f"{sf['detections']}, precision "
                     f"{sf['precision']}, false alarms/healthy cell-day "
                     f"{sf['false_alarms_per_healthy_cell_day']}"))
    width = max(len(k) for k, _ in rows)
    lines = ["", "Forewarn summary", "-" * (width + 30)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


# ---- silent failures -------------------------------------------------------------------

MATCH_BEFORE_S = 900.0  # a detection may precede the truth start by one KPI period
MATCH_AFTER_S = 1800.0


def silent_quality(detections: list[tuple[str, str, float]], truth: list[dict],
                   n_cells: int, hours: float) -> dict:
    """Recall, delay, precision and false alarms of silent-failure detections.

    ``detections``: ``(cell_id, kind, at)`` of each opened detection. A detection matches
    a truth failure on the same cell when ``start - 15 min <= at <= end + 30 min``; the
    older step degradations (``truth_degraded_cell``) count as real too (not as misses).
    Healthy cells are those with no truth degradation or silent failure at all.
    """
    ts = parse_time
    silent = [t for t in truth if t.get("type") == "truth_silent_failure"]
    steps = [t for t in truth if t.get("type") == "truth_degraded_cell"]
    real: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for t in silent:
        real[t["cell_id"]].append((ts(t["start_time"]), ts(t["end_time"]), t["kind"]))
    for t in steps:
        real[t["cell_id"]].append((ts(t["start_time"]), ts(t["end_time"]), "step"))

    def matches(cell: str, at: float, a: float, b: float) -> bool:
        return a - MATCH_BEFORE_S <= at <= b + MATCH_AFTER_S

    out: dict = {}
    for kind in ("sleeping", "degradation"):
        cases = [t for t in silent if t["kind"] == kind]
        delays, kinds_ok = [], 0
        for t in cases:
            a, b = ts(t["start_time"]), ts(t["end_time"])
            hits = sorted((at, k) for c, k, at in detections
                          if c == t["cell_id"] and matches(c, at, a, b))
            if hits:
                delays.append(hits[0][0] - a)
                kinds_ok += any(k == kind for _, k in hits)
        out[kind] = {
            "injected": len(cases),
            "detected": len(delays),
            "recall": round(len(delays) / len(cases), 3) if cases else None,
            "right_kind": kinds_ok,
            "delay_median_s": round(statistics.median(delays)) if delays else None,
            "delay_max_s": round(max(delays)) if delays else None,
        }
    step_hits = sum(1 for t in steps if any(
        c == t["cell_id"] and matches(c, at, ts(t["start_time"]), ts(t["end_time"]))
        for c, _, at in detections))
    out["step_degradations"] = {"cells": len(steps), "detected": step_hits}
    true_pos = [d for d in detections if any(matches(d[0], d[2], a, b)
                                             for a, b, _ in real.get(d[0], ()))]
    false = [d for d in detections if d not in true_pos]
    healthy_false = [d for d in false if d[0] not in real]
    healthy_cells = n_cells - len(real)
    cell_days = healthy_cells * hours / 24
    out["detections"] = len(detections)
    out["precision"] = round(len(true_pos) / len(detections), 3) if detections else None
    out["false_alarms"] = len(false)
    out["healthy_cells"] = healthy_cells
    out["false_alarms_per_healthy_cell_day"] = (
        round(len(healthy_false) / cell_days, 4) if cell_days else None)
    return out


def silent_from_incidents(incidents: list[dict], truth: list[dict],
                          n_cells: int | None = None) -> dict:
    """Detection quality of the run's `degradation` incidents against the truth."""
    detections = [(i["cell_ids"][0], i.get("silent_kind") or "degradation",
                   parse_time(i["event_time"])) for i in incidents
                  if i["kind"] == "degradation" and i["status"] == "open" and i["cell_ids"]]
    cells = {t["cell_id"] for t in truth if "cell_id" in t}
    hours = max((parse_time(t["end_time"]) for t in truth if t.get("end_time")), default=0.0)
    first = min((parse_time(t["start_time"]) for t in truth if t.get("start_time")), default=0.0)
    n_cells = max(n_cells or len(cells), 1)
    return silent_quality(detections, truth, n_cells, max(hours - first, 0.0) / 3600)
