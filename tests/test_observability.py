"""Observability against real components: a live `forewarn demo` scraped by a real Prometheus.

Every dashboard query and alert expression runs through Prometheus' HTTP API
over the demo's scraped data; promtool checks the config, rules and the
exposition. No sleeps stand in for readiness: every wait polls a real
condition (process log line, /-/ready, target health, a scraped value) with a
deadline. Needs `prometheus` and `promtool` on PATH (`make prometheus`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
PROM_DIR = ROOT / "prometheus"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS = PROM_DIR / "alerts.yml"
FOREWARN = [sys.executable, "-m", "forewarn.cli"]

# Metrics whose series exist only in some modes: their queries must be valid and the metric
# exported, but may return nothing from the demo.
MODE_SPECIFIC = {
    "forewarn_kafka_consumer_lag_messages": "Kafka mode (set by the Kafka source)",
    "forewarn_recovery_enabled": "recovery on (run --recovery) - the panel filters on == 1",
    "forewarn_recovery_snapshot_timestamp_seconds": "recovery on (run --recovery)",
    # per region with an open regional event (a storm); forewarn_regional_events_open
    # itself is 0 for every region seen
    "forewarn_regional_event_sites": "a regional event open (a storm day)",
    "forewarn_regional_event_impacted_subscribers": "a regional event open (a storm day)",
    "forewarn_regional_event_start_timestamp_seconds": "a regional event open (a storm day)",
}
SYNTHETIC = {"up"}  # made by Prometheus itself, not exported
#: Metrics of the care status service (`forewarn status serve`, job forewarn-status): a
#: process of its own, not the flow's; its exposition is checked on its own registry.
STATUS_PREFIX = "forewarn_status_"


def flow_metrics(names: set[str]) -> set[str]:
    """The names of ``names`` the flow's processes export (not the status service's)."""
    return {m for m in names if not m.startswith(STATUS_PREFIX)}
METRIC_RE = re.compile(r"\b((?:forewarn|bytewax|process)_[a-zA-Z0-9_]+|up)\b(?!\s*\()")



@pytest.fixture
def prometheus_tools() -> None:
    """Fail, never skip, when the real components are missing: say how to install them."""
    missing = [t for t in ("prometheus", "promtool") if not shutil.which(t)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not on PATH: install Debian's package with "
                    "`apt-get install prometheus` as root (`make test` does it when root)",
                    pytrace=False)


needs_prometheus = pytest.mark.usefixtures("prometheus_tools")


# ---- what the dashboards and rules ask for ----------------------------------------


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) for every panel target and annotation."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((path.name, p["title"], t["expr"]))
        for a in d["annotations"]["list"]:
            if a.get("expr"):
                out.append((path.name, f"annotation {a['name']}", a["expr"]))
    return out


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (labels inside {...} and strings stripped)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    return set(METRIC_RE.findall(bare))


def base_name(sample: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def exported_families(text: str) -> set[str]:
    """Metric names an exposition declares (# TYPE) or has samples of."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name + "_total" if not name.endswith("_total") else name)
        elif line and not line.startswith("#"):
            names.add(base_name(re.split(r"[{ ]", line, maxsplit=1)[0]))
    return names


def substitute(expr: str, range_s: int) -> str:
    """Grafana variables -> values Prometheus accepts (all jobs/instances, demo-sized windows)."""
    for var in ("job", "instance", "region", "site", "rule"):
        expr = expr.replace(f"${var}", ".*")
    return (expr.replace("$__rate_interval", "4s").replace("$__interval", "1s")
            .replace("$__range", f"{range_s}s"))


# ---- static checks (no Prometheus needed) ------------------------------------------


def test_dashboards_match_their_generator():
    sys.path.insert(0, str(GRAFANA))
    try:
        import build_dashboards
    finally:
        sys.path.remove(str(GRAFANA))
    rendered = build_dashboards.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], (
            f"{path.name} is stale: run python grafana/build_dashboards.py")


def test_dashboards_are_valid_grafana_json():
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/forewarn.yaml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    assert uids == {"forewarn-prometheus"}
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/forewarn.yaml").read_text())
    assert prov["apiVersion"] == 1 and prov["providers"][0]["type"] == "file"
    seen_uids = set()
    assert len(DASHBOARDS) == 3
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, path.name
        assert d["uid"] and d["uid"] not in seen_uids and len(d["uid"]) <= 40
        seen_uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (path.name, p["title"])
            if p["type"] == "row":
                continue
            assert p["targets"], (path.name, p["title"])
            for t in [p, *p["targets"]]:
                assert t["datasource"]["uid"] in uids, (path.name, p["title"])
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                assert v["datasource"]["uid"] in uids


def test_every_metric_used_is_exported():
    """Dashboards and alerts only read metrics the exporter declares (in every mode), the
    flow's or the care status service's."""
    from prometheus_client import REGISTRY, generate_latest

    import forewarn.dataflows.flow  # noqa: F401  (module-level metric children)
    from forewarn import metrics
    from forewarn.rules.rulebook import load_rulebook
    from forewarn.status_service import StatusMetrics

    metrics.declare_rulebook(load_rulebook(None))
    exported = exported_families(generate_latest(REGISTRY).decode())
    status = exported_families(generate_latest(StatusMetrics().registry).decode())
    assert all(m.startswith(STATUS_PREFIX) for m in status), status
    exported |= status
    used = {m for _, _, e in dashboard_queries() for m in metric_names(e)}
    used |= {m for r in alert_rules() for m in metric_names(r["expr"])}
    assert used - SYNTHETIC, "no metric names found: the parser is broken"
    missing = {base_name(m) for m in used - SYNTHETIC} - exported
    assert not missing, f"used by dashboards/alerts but not exported: {sorted(missing)}"


def test_no_personal_data_in_labels():
    """After a flow has acted for known subscribers, no metric label is personal: label
    names are from a fixed list and no value is a subscriber's id, name or address."""
    from prometheus_client import REGISTRY

    from tests.builders import Scenario

    s = Scenario().site("S1").site("S2")
    personal = {"SUBJ-7301", "Name SUBJ-7301", "+447700900731", "subj7301@example.org"}
    s.subscriber("SUBJ-7301", channels={
        "sms": {"address": "+447700900731", "consent": True},
        "email": {"address": "subj7301@example.org", "consent": True}})
    s.seen("SUBJ-7301", "S1-C1", 1)
    s.call("K1", "SUBJ-7301", "S2-C1", 20, dropped=True)
    s.call("K2", "SUBJ-7301", "S2-C1", 25, dropped=True)
    s.alarm("A1", 10, cell="S1-C1").clear("A1", 40, cell="S1-C1").tick(60)
    r = s.run()
    assert r.kinds("SUBJ-7301") == ["outage_notice", "apology", "restored_notice"]

    allowed = {"source", "outcome", "reason", "kind", "channel", "rule", "segment", "status",
               "region", "scope", "site_id", "topic", "partition", "step_id", "step",
               "output", "offer_kind", "category", "forewarned", "rulebook", "version",
               "python", "bytewax", "le"}
    families = [f for f in REGISTRY.collect() if f.name.startswith(("forewarn_", "bytewax_"))]
    labelled = {f.name for f in families if any(s.labels for s in f.samples)}
    # the flow's own counters must be there, with labels, or this test checks nothing
    assert {"forewarn_actions", "forewarn_incident_updates", "forewarn_events"} <= labelled
    for family in families:
        for sample in family.samples:
            extra = set(sample.labels) - allowed
            assert not extra, f"{sample.name} has labels {extra}"
            leaked = {v for v in sample.labels.values() if any(p in v for p in personal)}
            assert not leaked, f"{sample.name} has personal label values {leaked}"


@needs_prometheus
def test_promtool_checks_config_and_rules(tmp_path):
    for args in (["check", "config", str(PROM_DIR / "prometheus.yml")],
                 ["check", "rules", str(ALERTS)],
                 ["test", "rules", str(PROM_DIR / "alerts_test.yml")]):
        r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}\n{r.stderr}"


# ---- the live stack ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check: Callable[[], object], timeout: float, proc=None) -> object:
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            got = check()
            if got:
                return got
        except OSError as exc:
            last_err = exc
        time.sleep(0.1)  # poll interval of a readiness check, not a stand-in for one
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last_err})")


def _get(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Stack:
    def __init__(self, demo_port: int, prom_url: str, started: float, lines: list[str]):
        self.demo_port = demo_port
        self.prom = prom_url
        self.started = started
        self.lines = lines

    def api(self, path: str, **params) -> dict:
        body = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(f"{self.prom}/api/v1/{path}", data=body or None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400/422: the query is invalid
            return json.loads(exc.read())

    def query_range(self, expr: str) -> dict:
        end = time.time()
        return self.api("query_range", query=expr, start=f"{self.started:.3f}",
                        end=f"{end:.3f}", step="1")

    def window_s(self) -> int:
        return int(time.time() - self.started) + 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("observability")
    started = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [*FOREWARN, "demo", "--out", str(tmp / "demo"), "--sites", "20", "--hours", "3",
         "--pace", "10", "--metrics-port", "0", "--linger", "150", "--log-level", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(demo.stderr.readline, "")),
                     daemon=True).start()
    prom = None
    try:
        def port_logged() -> int | None:
            for line in list(lines):
                if '"metrics served"' in line:
                    return json.loads(line[line.index("{"):])["port"]
            return None

        demo_port = _wait("the demo's metrics port", port_logged, 30, demo)
        conf = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        conf["global"].update(scrape_interval="500ms", evaluation_interval="1s")
        conf["rule_files"] = [str(ALERTS)]
        job = next(j for j in conf["scrape_configs"] if j["job_name"] == "forewarn-demo")
        job["scrape_interval"] = "500ms"
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{demo_port}"]
        conf["scrape_configs"] = [job]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(conf))
        prom_port = _free_port()
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
        url = f"http://127.0.0.1:{prom_port}"
        st = Stack(demo_port, url, started, lines)

        def ready() -> bool:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                return r.status == 200

        _wait("Prometheus ready", ready, 30, prom)

        def target_up() -> bool:
            active = _get(f"{url}/api/v1/targets")["data"]["activeTargets"]
            return any(t["health"] == "up" for t in active)

        _wait("the demo target up in Prometheus", target_up, 30, prom)

        def finished_scraped() -> bool:
            r = st.api("query", query="forewarn_run_finished_timestamp_seconds > 0")
            return bool(r["data"]["result"])

        _wait("Prometheus to scrape the finished run", finished_scraped, 90, demo)
        finished_at = time.time()

        def rules_evaluated_after_finish() -> bool:
            groups = st.api("rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) == len(alert_rules()) and all(
                _ts(r.get("lastEvaluation")) > finished_at for r in rules)

        _wait("alert rules evaluated after the run", rules_evaluated_after_finish, 30, prom)
        yield st
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)  # ends --linger cleanly
        try:
            code = demo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            demo.kill()
            code = demo.wait()
        if prom is not None:
            prom.terminate()
            try:
                prom.wait(timeout=20)
            except subprocess.TimeoutExpired:
                prom.kill()
        assert code == 0, "".join(lines[-20:])


def _ts(value: str | None) -> float:
    if not value or value.startswith("0001"):
        return 0.0
    from datetime import datetime
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", value.replace("Z", "+00:00"))
                                  ).timestamp()


@needs_prometheus
def test_exposition_passes_promtool_and_declares_every_used_metric(stack: Stack):
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.demo_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    exported = exported_families(text)
    used = {m for _, _, e in dashboard_queries() for m in metric_names(e)}
    used |= {m for r in alert_rules() for m in metric_names(r["expr"])}
    missing = {base_name(m) for m in flow_metrics(used - SYNTHETIC)} - exported
    assert not missing, f"not on the live /metrics: {sorted(missing)}"


@needs_prometheus
def test_every_dashboard_query_is_valid_and_returns_data(stack: Stack):
    failures, empty = [], []
    for board, title, expr in dashboard_queries():
        q = substitute(expr, stack.window_s())
        r = stack.query_range(q)
        if r.get("status") != "success":
            failures.append(f"{board} / {title}: {r.get('error')}\n    {q}")
        elif not r["data"]["result"] and not metric_names(expr) & set(MODE_SPECIFIC):
            empty.append(f"{board} / {title}\n    {q}")
    assert not failures, "invalid queries:\n" + "\n".join(failures)
    assert not empty, "queries without data from the demo:\n" + "\n".join(empty)


@needs_prometheus
def test_every_alert_expression_evaluates_and_its_series_exist(stack: Stack):
    problems = []
    for rule in alert_rules():
        r = stack.api("query", query=rule["expr"])
        if r.get("status") != "success":
            problems.append(f"{rule['alert']}: {r.get('error')}")
        for name in flow_metrics(metric_names(rule["expr"]) - set(MODE_SPECIFIC)):
            series = stack.api("series", **{"match[]": name, "start": f"{stack.started:.0f}"})
            if series.get("status") != "success" or not series["data"]:
                problems.append(f"{rule['alert']}: no series of {name}")
    groups = stack.api("rules")["data"]["groups"]
    for g in groups:
        for r in g["rules"]:
            if r["health"] != "ok":
                problems.append(f"{r['name']}: health {r['health']} {r.get('lastError')}")
    assert not problems, "\n".join(problems)


@needs_prometheus
def test_demo_values_reach_prometheus(stack: Stack):
    """Spot-check figures end to end: what the demo wrote is what Prometheus holds."""
    def value(expr: str) -> float:
        res = stack.api("query", query=expr)["data"]["result"]
        assert res, expr
        return float(res[0]["value"][1])

    summary_path = None
    for line in stack.lines:
        if '"run finished"' in line:
            summary_path = json.loads(line[line.index("{"):])
    assert summary_path, "no run finished log line"
    assert value("sum(forewarn_events_total)") == summary_path["events_in"]
    assert value("sum(forewarn_dead_letters_total)") == summary_path["dead_letters"]
    assert value('sum(forewarn_incident_updates_total{status="open"})') == (
        summary_path["incidents"])
    for kind, n in summary_path["actions"].items():
        got = value(f'sum(forewarn_actions_total{{kind="{kind}"}}) or vector(0)')
        assert got == n, kind
    # open incidents were visible while the paced demo ran; at the end the gauge holds
    # exactly those opened and never resolved (a silent failure may outlast the input)
    seen = stack.query_range("sum(forewarn_open_incidents)")["data"]["result"][0]["values"]
    assert max(float(v) for _, v in seen) >= 1
    assert value("sum(forewarn_open_incidents)") == value(
        'sum(forewarn_incident_updates_total{status="open"})'
        ' - sum(forewarn_incident_updates_total{status="resolved"})')
    assert value("sum(forewarn_first_notice_delay_seconds_count)") >= 1
    assert value('sum(forewarn_complaints_total{forewarned="true"})') >= 1


def test_open_incident_gauges_group_by_site_and_by_region():
    """The per-site and per-region gauges: a count, the oldest start and the sums of what
    is open now in each group; a region seen but calm has 0 regional events."""
    from forewarn.metrics import FlowObserver
    from forewarn.model import Incident

    def inc(iid, site, region, start, impacted, kind="outage", status="open", **kw):
        return Incident(iid, status, kind, "site", site, (f"{site}-C1",), start, None,
                        impacted, start, region, **kw)

    obs = FlowObserver()
    for i in (inc("I1", "S1", "north", 100.0, 5), inc("I2", "S1", "north", 50.0, 7),
              inc("I3", "S2", "north", 70.0, 2), inc("I4", "S3", "south", 10.0, 1),
              inc("R1", "S1", "north", 50.0, 9, kind="regional_outage",
                  child_ids=("I2", "I3"), sites=("S1", "S2")),
              inc("R2", "S2", "north", 40.0, 4, kind="regional_outage",
                  child_ids=("I3",), sites=("S2",)),
              inc("I1", "S1", "north", 100.0, 5, status="resolved")):
        obs.incident(i)
    got = {(f.name, tuple(s.labels.values())): s.value
           for f in obs.collect() for s in f.samples}
    site = ("S1", "north", "outage", "site")
    assert (got[("forewarn_site_open_incidents", site)],
            got[("forewarn_site_open_incident_start_timestamp_seconds", site)],
            got[("forewarn_site_open_incident_impacted_subscribers", site)]) == (1, 50.0, 7)
    assert got[("forewarn_site_open_incidents", ("S2", "north", "outage", "site"))] == 1
    north = ("north",)
    assert (got[("forewarn_regional_events_open", north)],
            got[("forewarn_regional_event_start_timestamp_seconds", north)],
            got[("forewarn_regional_event_sites", north)],
            got[("forewarn_regional_event_impacted_subscribers", north)]) == (2, 40.0, 3, 13)
    assert got[("forewarn_regional_events_open", ("south",))] == 0
    assert ("forewarn_regional_event_sites", ("south",)) not in got
