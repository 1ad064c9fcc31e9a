"""Generate grafana/dashboards/*.json (run: python grafana/build_dashboards.py).

The JSON files are committed (Grafana provisions them as they are); this
script is their source, and tests/test_observability.py checks they match it.
Every query uses the provisioned datasource uid and the ``$job`` / ``$instance``
variables; docs/observability.md says what each dashboard answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DATASOURCE_UID = "forewarn-prometheus"
DS = {"type": "prometheus", "uid": DATASOURCE_UID}
SEL = 'job=~"$job",instance=~"$instance"'
OUT = Path(__file__).resolve().parent / "dashboards"


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict:
    return {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend or "__auto",
            "range": not instant, "instant": instant}


def panel(kind: str, title: str, targets: list[dict], w: int = 12, h: int = 8,
          unit: str | None = None, description: str = "", **options) -> dict:
    if kind in ("stat", "bargauge", "piechart", "gauge"):
        options.setdefault("reduceOptions", {"calcs": ["lastNotNull"], "fields": "",
                                             "values": False})
    p = {"type": kind, "title": title, "description": description, "datasource": DS,
         "targets": targets,
         "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
         "options": options, "_w": w, "_h": h}
    return p


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_w": 24, "_h": 1}


def query_var(name: str, label: str, query: str, multi: bool = True) -> dict:
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query, "query": {"query": query, "refId": f"{name}-var"},
            "refresh": 2, "includeAll": multi, "multi": multi, "allValue": ".*",
            "current": {"selected": True, "text": "All", "value": "$__all"} if multi else {},
            "sort": 1}


def common_vars() -> list[dict]:
    return [query_var("job", "Job", "label_values(forewarn_build_info, job)"),
            query_var("instance", "Instance",
                      'label_values(forewarn_build_info{job=~"$job"}, instance)')]


def layout(panels: list[dict]) -> list[dict]:
    """Flow panels left to right, top to bottom, on Grafana's 24-column grid."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_w"), p.pop("_h")
        if x + w > 24 or p["type"] == "row":
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        x += w
        row_h = max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
    return panels


def dashboard(uid: str, title: str, description: str, panels: list[dict],
              extra_vars: list[dict] = (), time_from: str = "now-1h") -> dict:
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["forewarn"], "timezone": "utc", "schemaVersion": 39, "version": 1,
        "editable": True, "graphTooltip": 1, "refresh": "10s",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": common_vars() + list(extra_vars)},
        "annotations": {"list": [{
            "name": "Incidents opened", "datasource": DS, "enable": True,
            "iconColor": "red", "step": "30s", "titleFormat": "incident opened",
            "expr": "sum(increase(forewarn_incident_updates_total"
                    f'{{{SEL},status="open"}}[1m])) > 0',
        }]},
        "links": [{"title": "Forewarn", "type": "dashboards", "tags": ["forewarn"],
                   "asDropdown": True}],
        "panels": layout(panels),
    }


# ---- NOC overview ------------------------------------------------------------------

SITE = f'{SEL},region=~"$region",site_id=~"$site"'


def noc() -> dict:
    panels = [
        panel("stat", "Open incidents", [target(
            f"sum(forewarn_open_incidents{{{SEL}}})", "open")], w=4, h=5,
            description="Incidents open now (all kinds and scopes)."),
        panel("stat", "Subscribers in open incidents", [target(
            f'sum(forewarn_open_incident_impacted_subscribers{{{SEL},region=~"$region"}})',
            "impacted")], w=5, h=5,
            description="Subscribers the open incidents impact (found at hold-down)."),
        panel("stat", "Notices sent / deferred / suppressed", [
            target(f'sum(increase(forewarn_actions_total{{{SEL}}}[$__range]))', "sent", "A"),
            target(f'sum(increase(forewarn_deferred_actions_total{{{SEL}}}[$__range]))',
                   "deferred", "B"),
            target(f'sum(increase(forewarn_suppressed_actions_total{{{SEL}}}[$__range]))',
                   "suppressed", "C")], w=9, h=5,
            description="Customer actions in the time range: emitted, of which held to after "
                        "quiet hours, and wanted by a rule but stopped by policy."),
        panel("stat", "Outage start to first notice (median, p95)", [
            target("histogram_quantile(0.5, sum by (le) (increase("
                   f"forewarn_first_notice_delay_seconds_bucket{{{SEL}}}[$__range])))",
                   "median", "A"),
            target("histogram_quantile(0.95, sum by (le) (increase("
                   f"forewarn_first_notice_delay_seconds_bucket{{{SEL}}}[$__range])))",
                   "p95", "B")], w=6, h=5, unit="s",
            description="Event time from an incident's start to its first outage notice "
                        "(the hold-down is 120 s by default)."),
        panel("stat", "Regional events open (storms)", [target(
            f'sum(forewarn_regional_events_open{{{SEL},region=~"$region"}})', "open")],
            w=6, h=5, description="regional_outage incidents open now: site incidents of "
            "one region grouped as one event (correlation.storm in the rulebook)."),
        panel("table", "Regional events (region, sites, impacted, age)", [
            target(f'sum by (region) (forewarn_regional_event_sites{{{SEL},region=~"$region"}})',
                   "", "A", instant=True),
            target("sum by (region) (forewarn_regional_event_impacted_subscribers"
                   f'{{{SEL},region=~"$region"}})', "", "B", instant=True),
            target(f"scalar(max(forewarn_watermark_timestamp_seconds{{{SEL}}}))"
                   " - min by (region) (forewarn_regional_event_start_timestamp_seconds"
                   f'{{{SEL},region=~"$region"}})', "", "C", instant=True)],
            w=18, h=5, description="Each region with an open regional event: its sites "
            "(A), subscribers its site incidents impacted (B) and its age in event time in "
            "seconds (C). The event's id and its child incident ids are on noc.incidents "
            "(kind regional_outage)."),
        panel("table", "Open incidents (site, kind, scope, age)", [target(
            "max by (site_id, region, kind, scope) ("
            f"scalar(max(forewarn_watermark_timestamp_seconds{{{SEL}}}))"
            f" - forewarn_site_open_incident_start_timestamp_seconds{{{SITE}}})",
            "", instant=True)], w=12, h=9, unit="s",
            description="Each site with an open incident; value = age of its oldest open "
                        "incident in event time (watermark minus start). Incident ids are "
                        "in the incidents output and the logs."),
        panel("bargauge", "Top affected sites (impacted subscribers)", [target(
            "topk(10, max by (site_id, region) (max_over_time("
            f"forewarn_site_open_incident_impacted_subscribers{{{SITE}}}[$__range])))",
            "{{site_id}} ({{region}})", instant=True)], w=12, h=9,
            description="Sites whose open incidents impacted the most subscribers in the "
                        "time range.", orientation="horizontal", displayMode="gradient"),
        panel("state-timeline", "Incident timeline by site", [target(
            f"sum by (site_id) (forewarn_site_open_incidents{{{SITE}}})", "{{site_id}}")],
            w=24, h=9, description="When each site had incidents open (value: how many).",
            mergeValues=True, showValue="never"),
        panel("timeseries", "Open incidents by kind and scope", [target(
            f"sum by (kind, scope) (forewarn_open_incidents{{{SEL}}})", "{{kind}} / {{scope}}")]),
        panel("piechart", "Impacted subscribers notified, by segment", [target(
            "sum by (segment) (increase(forewarn_actions_total"
            f'{{{SEL},kind="outage_notice"}}[$__range]))', "{{segment}}", instant=True)],
            w=6, description="Outage notices in the time range by customer segment (each "
                             "impacted, reachable subscriber gets one per incident).",
            pieType="donut"),
        panel("timeseries", "Newly impacted subscribers by region", [target(
            "sum by (region) (increase(forewarn_impacted_subscribers_total"
            f'{{{SEL},region=~"$region"}}[$__rate_interval]))', "{{region}}")], w=6),
        panel("timeseries", "Notices sent, deferred, suppressed", [
            target(f"sum by (kind) (increase(forewarn_actions_total{{{SEL}}}[$__rate_interval]))",
                   "sent {{kind}}", "A"),
            target("sum by (kind) (increase(forewarn_deferred_actions_total"
                   f"{{{SEL}}}[$__rate_interval]))", "deferred {{kind}}", "B"),
            target("sum by (reason) (increase(forewarn_suppressed_actions_total"
                   f"{{{SEL}}}[$__rate_interval]))", "suppressed: {{reason}}", "C")], w=24),
        panel("timeseries", "Incident updates", [target(
            "sum by (kind, status) (increase(forewarn_incident_updates_total"
            f"{{{SEL}}}[$__rate_interval]))", "{{kind}} {{status}}")], w=24, h=7),
    ]
    region = query_var("region", "Region",
                       'label_values(forewarn_impacted_subscribers_total{job=~"$job"}, region)')
    site = query_var("site", "Site", 'label_values(forewarn_site_open_incidents'
                                     '{job=~"$job",region=~"$region"}, site_id)')
    return dashboard("forewarn-noc", "Forewarn — NOC overview",
                     "Which incidents are open, where, for how long, who they hit, and what "
                     "customers were told.", panels, [region, site])


# ---- SRE pipeline ------------------------------------------------------------------


def sre() -> dict:
    def quantiles(metric: str, by: str, legend: str) -> list[dict]:
        return [target(f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket"
                       f"{{{SEL}}}[$__rate_interval])))", f"p{int(q * 100)} {legend}", ref)
                for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))]

    panels = [
        row("Throughput and input quality"),
        panel("timeseries", "Records accepted per source", [target(
            "sum by (source) (rate(forewarn_events_total"
            f'{{{SEL},outcome="accepted"}}[$__rate_interval]))', "{{source}}")],
            unit="reqps", description="Decoded input records per second, by Kafka topic."),
        panel("timeseries", "Dead letters by source and reason", [target(
            "sum by (source, reason) (rate(forewarn_dead_letters_total"
            f"{{{SEL}}}[$__rate_interval]))", "{{source}} {{reason}}")], unit="reqps"),
        panel("timeseries", "Late records (beyond the reorder window) by source", [target(
            "sum by (source) (rate(forewarn_late_records_total"
            f"{{{SEL}}}[$__rate_interval]))", "{{source}}")], unit="reqps",
            description="Records older than what the flow had already released: applied "
            "as of its current event time, so impact judgements may differ from an "
            "in-order replay. Raise --lateness or fix the producer's skew."),
        panel("stat", "Dead-letter ratio", [target(
            f"sum(increase(forewarn_dead_letters_total{{{SEL}}}[$__range])) / "
            f"sum(increase(forewarn_events_total{{{SEL}}}[$__range]))", "ratio")],
            w=6, h=5, unit="percentunit"),
        panel("stat", "Replay speed (event s per wall s)", [target(
            f"max(deriv(forewarn_watermark_timestamp_seconds{{{SEL}}}[$__rate_interval]))",
            "speed")], w=6, h=5, unit="short",
            description="1 means live; above 1 the flow replays history faster than real time."),
        panel("stat", "Watermark behind wall clock", [target(
            f"time() - max(forewarn_watermark_timestamp_seconds{{{SEL}}})", "behind")],
            w=6, h=5, unit="s",
            description="Meaningful live (Kafka); on replayed data it is the age of the data."),
        panel("stat", "Recovery snapshot age", [target(
            "(time() - max by (instance) ("
            f"forewarn_recovery_snapshot_timestamp_seconds{{{SEL}}}))"
            f" and on (instance) max by (instance) (forewarn_recovery_enabled{{{SEL}}}) == 1",
            "{{instance}}")], w=6, h=5, unit="s",
            description="Only with recovery on (run --recovery); empty otherwise."),
        row("Latency"),
        panel("timeseries", "Processing latency (input arrival to output, wall clock)",
              quantiles("forewarn_processing_latency_seconds", ", output", "{{output}}"),
              unit="s", description="Wall time from the arrival of the input that made an "
                                    "output due to its emission."),
        panel("timeseries", "Action delay after incident start (event time)",
              quantiles("forewarn_action_delay_seconds", ", kind", "{{kind}}"), unit="s",
              description="Event time from incident start to the action: hold-down for "
                          "outage notices, outage length for restored notices."),
        panel("timeseries", "Stateful step batch time", quantiles(
            "forewarn_step_batch_duration_seconds", ", step", "{{step}}"), unit="s"),
        panel("timeseries", "Outage start to first notice (event time)", quantiles(
            "forewarn_first_notice_delay_seconds", "", ""), unit="s"),
        row("Kafka"),
        panel("timeseries", "Consumer lag per topic and partition", [target(
            f"sum by (topic, partition) (forewarn_kafka_consumer_lag_messages{{{SEL}}})",
            "{{topic}}[{{partition}}]")], description="Messages not yet consumed per input "
                                                     "partition (Kafka mode only)."),
        panel("timeseries", "Delivery failures by topic", [target(
            "sum by (topic) (increase(forewarn_kafka_delivery_failures_total"
            f"{{{SEL}}}[$__rate_interval]))", "{{topic}}")]),
        row("Workers"),
        panel("state-timeline", "Scrape target up", [target(
            f"up{{{SEL}}}", "{{instance}}")], w=8, mergeValues=True),
        panel("timeseries", "CPU (cores)", [target(
            f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}}")],
            w=8, unit="short"),
        panel("timeseries", "Resident memory", [target(
            f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], w=8, unit="bytes"),
        panel("table", "Build and rulebook", [
            target("max by (instance, version, python, bytewax) "
                   f"(forewarn_build_info{{{SEL}}})", "", "A", instant=True),
            target(f"max by (instance, rulebook) (forewarn_rulebook_version{{{SEL}}})",
                   "", "B", instant=True)], w=24, h=6),
    ]
    return dashboard("forewarn-sre", "Forewarn — SRE pipeline",
                     "Is the pipeline keeping up, what does it reject, how late are its "
                     "outputs, and are its workers healthy?", panels)


# ---- Care outcomes -----------------------------------------------------------------

RULE = f'{SEL},rule=~"$rule"'


def care() -> dict:
    panels = [
        panel("stat", "Recall before complaint", [target(
            f'sum(increase(forewarn_complaints_total{{{SEL},forewarned="true"}}[$__range])) / '
            f"sum(increase(forewarn_complaints_total{{{SEL}}}[$__range]))", "recall")],
            w=6, h=5, unit="percentunit",
            description="Of complaints received (care.complaints), the share whose subscriber "
                        "had an outage notice or apology in the day before."),
        panel("stat", "Contacts per impacted subscriber", [target(
            f"sum(increase(forewarn_actions_total{{{SEL}}}[$__range])) / "
            f"sum(increase(forewarn_impacted_subscribers_total{{{SEL}}}[$__range]))",
            "contacts")], w=6, h=5, unit="none",
            description="All actions sent per subscriber found impacted by an incident."),
        panel("stat", "Compensation offered", [
            target(f"sum(increase(forewarn_compensation_data_credit_bytes_total{{{RULE}}}"
                   "[$__range]))", "data credit", "A")], w=6, h=5, unit="decbytes"),
        panel("stat", "Offers made", [target(
            f"sum(increase(forewarn_compensation_offers_total{{{RULE}}}[$__range]))",
            "offers")], w=6, h=5),
        panel("timeseries", "Actions by rule", [target(
            f"sum by (rule) (increase(forewarn_actions_total{{{RULE}}}[$__rate_interval]))",
            "{{rule}}")]),
        panel("bargauge", "Actions by kind and channel", [target(
            "sum by (kind, channel) (increase(forewarn_actions_total"
            f"{{{RULE}}}[$__range]))", "{{kind}} via {{channel}}", instant=True)],
            orientation="horizontal", displayMode="gradient"),
        panel("bargauge", "Suppressed by reason", [target(
            "sum by (kind, reason) (increase(forewarn_suppressed_actions_total"
            f"{{{SEL}}}[$__range]))", "{{kind}}: {{reason}}", instant=True)],
            orientation="horizontal", displayMode="gradient"),
        panel("timeseries", "Deferred to after quiet hours", [target(
            "sum by (kind) (increase(forewarn_deferred_actions_total"
            f"{{{SEL}}}[$__rate_interval]))", "{{kind}}")]),
        panel("timeseries", "Complaints, forewarned or not", [target(
            "sum by (forewarned) (increase(forewarn_complaints_total"
            f"{{{SEL}}}[$__rate_interval]))", "forewarned={{forewarned}}")]),
        panel("piechart", "Actions by segment", [target(
            f"sum by (segment) (increase(forewarn_actions_total{{{RULE}}}[$__range]))",
            "{{segment}}", instant=True)], pieType="donut"),
    ]
    rule = query_var("rule", "Rule", 'label_values(forewarn_actions_total{job=~"$job"}, rule)')
    return dashboard("forewarn-care", "Forewarn — Care outcomes",
                     "What care actions did for customers: reach before complaints, contacts "
                     "per customer, compensation, and what each rule did.", panels, [rule],
                     time_from="now-6h")


DASHBOARDS = {"noc-overview.json": noc, "sre-pipeline.json": sre, "care-outcomes.json": care}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
