"""Prometheus metrics (prometheus-client's default registry).

Labels are bounded sets only — record types, topics, reason codes, action
kinds, channels, rule ids — never subscriber ids, MSISDNs or names.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

from forewarn import __version__

TOPIC_FOR_TYPE = {
    "cell": "oss.topology",
    "alarm": "oss.alarms",
    "location": "oss.locations",
    "call": "oss.calls",
    "kpi": "oss.kpis",
    "subscriber": "bss.subscribers",
    "maintenance": "bss.maintenance",
    "complaint": "care.complaints",
}

EVENTS = Counter("forewarn_events", "Input records by source topic and outcome",
                 ["source", "outcome"])
DEAD_LETTERS = Counter("forewarn_dead_letters", "Inputs sent to the dead-letter output",
                       ["reason"])
ACTIONS = Counter("forewarn_actions", "Customer actions emitted", ["kind", "channel", "rule"])
DEFERRED = Counter("forewarn_deferred_actions", "Actions deferred to after quiet hours",
                   ["kind"])
SUPPRESSED = Counter("forewarn_suppressed_actions", "Actions a rule wanted but policy stopped",
                     ["kind", "reason"])
INCIDENTS = Counter("forewarn_incident_updates", "NOC incident updates", ["kind", "status"])
OPEN_INCIDENTS = Gauge("forewarn_open_incidents", "Incidents open now", ["kind", "scope"])
IMPACTED = Counter("forewarn_impacted_subscribers", "Subscribers found impacted by incidents")
WATERMARK = Gauge("forewarn_watermark_timestamp_seconds",
                  "Event-time progress of the flow (every input before it is in)")
DELIVERY_FAILURES = Counter("forewarn_kafka_delivery_failures",
                            "Kafka deliveries that failed (after the producer's retries)",
                            ["topic"])
SNAPSHOT_TIMESTAMP = Gauge("forewarn_recovery_snapshot_timestamp_seconds",
                           "Wall time of the last recovery snapshot taken")
RULEBOOK = Gauge("forewarn_rulebook_version", "Version of the active rulebook", ["rulebook"])
BUILD = Gauge("forewarn_build_info", "Build information", ["version"])
BUILD.labels(version=__version__).set(1)

_served: dict[int, object] = {}


def serve(port: int, addr: str = "127.0.0.1") -> int:
    """Serve /metrics on ``addr:port`` once per process; port 0 picks a free one."""
    if port in _served:
        return port
    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {addr}:{port}: {exc.strerror}; "
                      f"pick another port with --metrics-port") from None
    bound = server.server_address[1]
    _served[bound] = server
    return bound
