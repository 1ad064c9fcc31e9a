"""``forewarn status serve``: each subscriber's current impact over HTTP, for the IVR and
the agent desktop (``docs/care-context.md``, "The status service").

A Kafka consumer thread reads the compacted ``care.status`` topic from its beginning
(every partition assigned, nothing committed: each replica holds everything) into a
:class:`StatusStore` (subscriber id -> the latest ``care_status`` record's bytes; a
tombstone deletes). A Starlette app on uvicorn answers:

* ``GET /v1/subscribers/{subscriber_id}/status`` (bearer token): 200 with the record as
  the flow wrote it when the subscriber is impacted, 200 with ``"impacted": false`` when
  not (unknown, or their last incident restored); 401 without the right token; 503 until
  the store has caught up with the topic;
* ``GET /readyz``: 200 once the consumer has read every partition up to the end offsets
  it saw at start, 503 before; ``GET /healthz``: 200 while the consumer runs;
* ``GET /metrics``: Prometheus metrics of this service (its own registry).

Readiness, liveness and metrics carry no per-subscriber data and need no token. Logs
and metric labels name routes by their template (``/v1/subscribers/{id}/status``),
never a subscriber id; uvicorn's own access log (which prints the path) is off.

Binding: 127.0.0.1 by default. Any other address (not loopback) needs a token
(``--token-file`` or ``$FOREWARN_STATUS_TOKEN``) and is refused without one; on loopback
without a token the service runs unauthenticated and says so in its log.

>>> store = StatusStore()
>>> store.apply(b"U1", b'{"type":"care_status","subscriber_id":"U1","impacted":true,'
...             b'"incidents":[]}')
'stored'
>>> store.get("U1") is not None, len(store)
(True, 1)
>>> store.apply(b"U1", None), store.get("U1"), len(store)
('deleted', None, 0)
>>> route_template("/v1/subscribers/SUB000191/status")
'/v1/subscribers/{id}/status'
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hmac
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forewarn.connectors.kafka_config import (
    KafkaConfigError,
    KafkaUnreachableError,
    add_arguments,
    check_reachable,
    config_from_args,
)
from forewarn.logs import get_logger, setup_logging

log = get_logger("forewarn.status")
access_log = get_logger("forewarn.status.access")

TOPIC = "care.status"
DEFAULT_PORT = 8465
TOKEN_ENV = "FOREWARN_STATUS_TOKEN"
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
#: Longest subscriber id looked up (a longer one is a 400, not a dictionary probe).
MAX_ID_CHARS = 256
LOOKUP_ROUTE = "/v1/subscribers/{id}/status"
ROUTES = ("/readyz", "/healthz", "/metrics", LOOKUP_ROUTE)
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]


class StartError(Exception):
    """Something a user can fix stops the start; the message says what, where and how."""


# ----------------------------------------------------------------------------- the store

class StatusStore:
    """Subscriber id -> the latest ``care_status`` record (bytes, as on the topic) of an
    impacted subscriber. A tombstone, or a record with ``"impacted": false``, deletes.

    One writer (the consumer thread) and any number of readers: a dict's get, set and
    pop are atomic under the GIL, so readers need no lock.

    :meth:`apply` checks what it keeps: a JSON object of type ``care_status`` whose
    ``subscriber_id`` is the message key and ``impacted`` a boolean; anything else is
    skipped (the key's earlier record stays) and the reason returned.

    >>> s = StatusStore()
    >>> s.apply(b"U2", b'not json'), s.apply(b"U2", b'{"type":"care_status",'
    ...     b'"subscriber_id":"U3","impacted":true}'), s.apply(None, b"{}")
    ('not_json', 'key_mismatch', 'no_key')
    >>> s.apply(b"U2", b'{"type":"care_status","subscriber_id":"U2","impacted":false}')
    'deleted'
    """

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, subscriber_id: str) -> bytes | None:
        return self._records.get(subscriber_id)

    def apply(self, key: bytes | None, value: bytes | None) -> str:
        """Apply one message; returns ``stored``, ``deleted`` or why it was skipped
        (``no_key``, ``not_json``, ``not_care_status``, ``key_mismatch``, ``bad_impacted``)."""
        if not key:
            return "no_key"
        try:
            subscriber_id = key.decode("utf-8")
        except UnicodeDecodeError:
            return "no_key"
        if value is None:
            self._records.pop(subscriber_id, None)
            return "deleted"
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            return "not_json"
        if not isinstance(record, dict) or record.get("type") != "care_status":
            return "not_care_status"
        if record.get("subscriber_id") != subscriber_id:
            return "key_mismatch"
        impacted = record.get("impacted")
        if not isinstance(impacted, bool):
            return "bad_impacted"
        if impacted:
            self._records[subscriber_id] = bytes(value)
            return "stored"
        self._records.pop(subscriber_id, None)
        return "deleted"


def not_impacted(subscriber_id: str) -> bytes:
    """The answer for a subscriber with no record: not impacted (unknown, or restored).

    >>> not_impacted("U9")
    b'{"type":"care_status","subscriber_id":"U9","event_time":null,"impacted":false,"incidents":[]}'
    """
    return orjson.dumps({"type": "care_status", "subscriber_id": subscriber_id,
                         "event_time": None, "impacted": False, "incidents": []})


@dataclass
class CatchUp:
    """Readiness: every partition read up to the end offset it had at start.

    ``ends``: partition -> the end offset (high watermark) at start; ``begins``: the
    earliest offset still in the log (an empty partition is caught up at once).

    >>> c = CatchUp({0: 5, 1: 3}, {0: 0, 1: 3})
    >>> c.done, c.note(0, 4), c.note(0, 5), c.done
    (False, False, True, True)
    """

    ends: Mapping[int, int]
    begins: Mapping[int, int] = field(default_factory=dict)
    waiting: set[int] = field(init=False)

    def __post_init__(self) -> None:
        self.waiting = {p for p, end in self.ends.items() if end > self.begins.get(p, 0)}

    @property
    def done(self) -> bool:
        return not self.waiting

    def note(self, partition: int, next_offset: int) -> bool:
        """The consumer's next offset in ``partition`` (after a message, or at its end);
        returns whether every partition is caught up now."""
        if partition in self.waiting and next_offset >= self.ends[partition]:
            self.waiting.discard(partition)
        return self.done


def route_template(path: str) -> str:
    """The route a path matches, as logs and metric labels name it (never an id).

    >>> route_template("/readyz"), route_template("/v1/subscribers/x/y/status")
    ('/readyz', 'other')
    """
    if path in ROUTES:
        return path
    if path.startswith("/v1/subscribers/") and path.endswith("/status") \
            and path.count("/") == 4:
        return LOOKUP_ROUTE
    return "other"


# ----------------------------------------------------------------------------- metrics

class StatusMetrics:
    """The service's Prometheus metrics, in a registry of their own (``/metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "forewarn_status_requests", "HTTP requests by route template and status code",
            ["route", "code"], registry=r)
        self.duration = Histogram(
            "forewarn_status_request_duration_seconds",
            "time from a request's arrival to its response, by route template",
            ["route"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
        self.records = Gauge(
            "forewarn_status_records", "impacted subscribers held (care.status records)",
            registry=r)
        self.ready = Gauge(
            "forewarn_status_ready", "1 once care.status is read up to its end at start",
            registry=r)
        self.lag = Gauge(
            "forewarn_status_consumer_lag_messages",
            "care.status messages not yet read (end offset - position)", ["partition"],
            registry=r)
        self.messages = Counter(
            "forewarn_status_messages", "care.status messages read (tombstones included)",
            registry=r)
        self.skipped = Counter(
            "forewarn_status_messages_skipped",
            "care.status messages not applied, by reason", ["reason"], registry=r)
        self.last_message = Gauge(
            "forewarn_status_last_message_timestamp_seconds",
            "wall time the last care.status message was read (unix seconds)", registry=r)


# ----------------------------------------------------------------------------- consumer

class StatusConsumer:
    """Reads ``topic`` from the beginning into a :class:`StatusStore` on its own thread."""

    POLL_S = 0.2
    BATCH = 5000
    LAG_EVERY_S = 1.0

    def __init__(self, config: Mapping[str, str], topic: str, store: StatusStore,
                 metrics: StatusMetrics, on_fatal: Callable[[str], None]) -> None:
        self.topic = topic
        self.bootstrap = config.get("bootstrap.servers", "the bootstrap servers")
        self.store = store
        self.metrics = metrics
        self.on_fatal = on_fatal
        self.catch_up: CatchUp | None = None
        self._announced = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="care-status-consumer",
                                        daemon=True)
        self._consumer = Consumer({
            # a group id of its own (partitions are assigned, no group is joined)
            "group.id": f"forewarn-status-{uuid.uuid4().hex}",
            "fetch.wait.max.ms": "100",
            "logger": logging.getLogger("forewarn.status.kafka"),
            "error_cb": self._error,
            **config,
            # what the service relies on, whatever --config / -X say: nothing committed
            # (every replica reads everything), and the end of each partition reported
            # (readiness on a partition whose tail was compacted away)
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "true",
            "auto.offset.reset": "earliest",
        })

    @property
    def ready(self) -> bool:
        return self.catch_up is not None and self.catch_up.done

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout: float) -> None:
        """Assign every partition from its beginning, note the end offsets to catch up
        to, and start reading. Raises :class:`StartError` when the topic is missing."""
        bootstrap = self.bootstrap
        meta = self._consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise StartError(
                f"topic {self.topic} not found at {bootstrap}: the flow writes it (create "
                f"the contract's topics with `forewarn topics create --bootstrap "
                f"{bootstrap}`); with --topic-prefix, give the prefix `forewarn run` uses")
        partitions = sorted(meta.partitions)
        ends, begins = {}, {}
        try:
            for p in partitions:
                lo, hi = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=timeout)
                begins[p], ends[p] = int(lo), int(hi)
        except KafkaException as exc:
            raise StartError(f"cannot read the end offsets of {self.topic} at {bootstrap} "
                             f"({exc.args[0].str()}): is the broker healthy?") from None
        self.catch_up = CatchUp(ends, begins)
        self._partitions = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                               for p in partitions])
        log.info("reading care.status", extra={
            "topic": self.topic, "partitions": len(partitions),
            "messages_at_start": sum(ends[p] - begins[p] for p in partitions)})
        self._began = time.monotonic()
        self._announce_ready()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._consumer.close()

    def _error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("kafka consumer fatal error", extra={"error": err.str()})
        else:
            log.warning("kafka consumer error", extra={"error": err.str(), "code": err.name()})

    def _announce_ready(self) -> None:
        if self.ready and not self._announced:
            self._announced = True
            self.metrics.ready.set(1)
            log.info("ready", extra={"records": len(self.store),
                                     "seconds": round(time.monotonic() - self._began, 3)})

    def _run(self) -> None:
        store, m, catch_up = self.store, self.metrics, self.catch_up
        assert catch_up is not None
        next_lag = 0.0
        try:
            while not self._stop.is_set():
                msgs = self._consumer.consume(self.BATCH, self.POLL_S)
                read = 0
                for msg in msgs:
                    err = msg.error()
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            catch_up.note(partition, offset)
                            continue
                        if err.fatal():
                            raise RuntimeError(err.str())
                        log.warning("kafka consumer error", extra={
                            "error": err.str(), "code": err.name()})
                        continue
                    read += 1
                    outcome = store.apply(msg.key(), msg.value())
                    if outcome not in ("stored", "deleted"):
                        m.skipped.labels(outcome).inc()
                        log.warning("care.status message skipped", extra={
                            "reason": outcome, "partition": partition, "offset": offset})
                    catch_up.note(partition, offset + 1)
                if read:
                    m.messages.inc(read)
                    m.last_message.set(time.time())
                m.records.set(len(store))
                self._announce_ready()
                now = time.monotonic()
                if now >= next_lag:
                    next_lag = now + self.LAG_EVERY_S
                    self._update_lag()
        except Exception as exc:  # noqa: BLE001 - the consumer stopped for good: say so
            log.error("care.status consumer stopped", extra={"error": str(exc)})
            self.on_fatal(str(exc))

    def _update_lag(self) -> None:
        for tp in self._consumer.position(self._partitions):
            lo, hi = self._consumer.get_watermark_offsets(tp, cached=True)
            if hi < 0:
                continue
            position = tp.offset if tp.offset >= 0 else lo
            self.metrics.lag.labels(str(tp.partition)).set(max(hi - position, 0))


# ----------------------------------------------------------------------------- the app

class Auth:
    """``Authorization: Bearer <token>``, compared in constant time; no token: open."""

    def __init__(self, token: str | None) -> None:
        self.token = token.encode("ascii") if token else None

    def allows(self, header: str | None) -> bool:
        """
        >>> a = Auth("s3cret-token-0123456789")
        >>> a.allows("Bearer s3cret-token-0123456789"), a.allows("bearer x"), a.allows(None)
        (True, False, False)
        >>> Auth(None).allows(None)
        True
        """
        if self.token is None:
            return True
        if not header or header[:7].lower() != "bearer ":
            return False
        return hmac.compare_digest(header[7:].strip().encode("utf-8", "replace"), self.token)


def build_app(store: StatusStore, consumer: StatusConsumer, auth: Auth,
              metrics: StatusMetrics, *, access: bool = True) -> ASGIApp:
    """The Starlette app, wrapped in the metrics and access-log layer."""
    json_type = "application/json"
    no_store = {"Cache-Control": "no-store"}

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps({"error": message}), status, headers=headers,
                        media_type=json_type)

    def not_ready() -> Response:
        return error(503, "not ready: care.status is still being read; retry shortly",
                     {"Retry-After": "1"})

    async def lookup(request: Request) -> Response:
        if not auth.allows(request.headers.get("authorization")):
            given = request.headers.get("authorization") is not None
            challenge = 'Bearer realm="forewarn-status"' + (
                ', error="invalid_token"' if given else "")
            return error(401, "missing or wrong bearer token: send Authorization: Bearer "
                         "<token> (the token the service was started with)",
                         {"WWW-Authenticate": challenge})
        if not consumer.ready:
            return not_ready()
        subscriber_id: str = request.path_params["subscriber_id"]
        if not subscriber_id or len(subscriber_id) > MAX_ID_CHARS:
            return error(400, f"a subscriber id has 1 to {MAX_ID_CHARS} characters")
        body = store.get(subscriber_id)
        if body is None:
            body = not_impacted(subscriber_id)
        return Response(body, 200, headers=no_store, media_type=json_type)

    async def readyz(_: Request) -> Response:
        doc = {"ready": consumer.ready, "records": len(store)}
        return Response(orjson.dumps(doc), 200 if consumer.ready else 503,
                        media_type=json_type)

    async def healthz(_: Request) -> Response:
        alive = consumer.alive
        return Response(orjson.dumps({"alive": alive}), 200 if alive else 503,
                        media_type=json_type)

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), 200,
                        headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def not_found(scope: Any, receive: Any, send: Any) -> None:
        await error(404, "no such endpoint: GET /v1/subscribers/{id}/status, /readyz, "
                    "/healthz or /metrics")(scope, receive, send)

    app = Starlette(routes=[
        Route("/v1/subscribers/{subscriber_id}/status", lookup, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ])
    app.router.default = not_found
    return observed(app, metrics, access=access)


#: Methods logged as they are; a client's any other string is logged as "other" (the log
#: must not carry what a caller chose to put there).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def _method(method: str) -> str:
    """``method`` if it is a standard HTTP method, else ``"other"``.

    >>> _method("GET"), _method("SUB0001")
    ('GET', 'other')
    """
    return method if method in _METHODS else "other"


def observed(app: ASGIApp, metrics: StatusMetrics, *, access: bool) -> ASGIApp:
    """Counts, times and logs every request by its route template and status code."""

    async def wrapped(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - began
            route = route_template(scope["path"])
            metrics.requests.labels(route, str(status)).inc()
            metrics.duration.labels(route).observe(seconds)
            if access:
                client = scope.get("client")
                access_log.info("request", extra={
                    "method": _method(scope["method"]), "route": route, "status": status,
                    "ms": round(seconds * 1000, 3), "client": client[0] if client else None})

    return wrapped


# ----------------------------------------------------------------------------- start-up

def read_token(token_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The bearer token: ``--token-file`` (whitespace around it dropped), else
    ``$FOREWARN_STATUS_TOKEN``, else ``None``. Raises :class:`StartError` for an
    unreadable file or a token too short or with characters a header cannot carry."""
    if token_file is not None:
        where = f"--token-file {token_file}"
        try:
            text = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StartError(f"{where}: {exc.strerror}; write a token there "
                             f"(e.g. {MAKE_TOKEN} > {token_file})") from None
        except UnicodeDecodeError:
            raise StartError(f"{where}: not UTF-8 text; write a token there "
                             f"(e.g. {MAKE_TOKEN} > {token_file})") from None
    elif env.get(TOKEN_ENV):
        where, text = f"${TOKEN_ENV}", env[TOKEN_ENV].strip()
    else:
        return None
    if not MIN_TOKEN_CHARS <= len(text) <= MAX_TOKEN_CHARS or not text.isascii() \
            or not text.isprintable() or any(c.isspace() for c in text):
        raise StartError(
            f"{where}: a token is {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} printable ASCII "
            f"characters without spaces (this one has {len(text)} characters); make one "
            f"with {MAKE_TOKEN}")
    return text


@dataclass(frozen=True)
class Tls:
    """``--tls-cert``/``--tls-key`` (HTTPS) and ``--tls-client-ca`` (mutual TLS: clients
    must present a certificate this CA signed)."""

    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    @property
    def on(self) -> bool:
        return self.cert is not None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def check(self) -> ssl.SSLContext | None:
        """Load the files as the server will; :class:`StartError` naming the file and what
        is wrong with it."""
        if self.cert is None and self.key is None and self.client_ca is None:
            return None
        if self.cert is None or self.key is None:
            raise StartError("--tls-cert FILE and --tls-key FILE go together (a PEM "
                             "certificate and its private key); --tls-client-ca needs them")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except OSError as exc:  # ssl.SSLError is an OSError
            reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
            raise StartError(f"--tls-cert {self.cert} / --tls-key {self.key}: {reason}; give "
                             f"a PEM certificate and the private key it was made for "
                             f"(the key unencrypted)") from None
        if self.client_ca is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except OSError as exc:
                reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
                raise StartError(f"--tls-client-ca {self.client_ca}: {reason}; give the PEM "
                                 f"certificate of the CA that signs the clients' "
                                 f"certificates") from None
        return ctx

    def uvicorn_options(self) -> dict[str, Any]:
        if not self.on:
            return {}
        return {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key),
                **({"ssl_ca_certs": str(self.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
                   if self.mutual else {})}


def check_exposure(host: str, token: str | None, tls: Tls) -> str | None:
    """Refuses (:class:`StartError`) a non-loopback address without a token or mutual TLS;
    returns a warning to log, if any.

    >>> check_exposure("127.0.0.1", None, Tls())
    "no token: anyone on this machine can read subscribers' status (loopback only); ..."
    >>> check_exposure("0.0.0.0", "t" * 16, Tls())
    'the bearer token travels in clear over the network: ...'
    >>> check_exposure("0.0.0.0", None, Tls(Path("c"), Path("k"), Path("ca"))) is None
    True
    """
    if is_loopback(host):
        if token is None and not tls.mutual:
            return ("no token: anyone on this machine can read subscribers' status (loopback "
                    "only); give --token-file to require one")
        return None
    if token is None and not tls.mutual:
        raise StartError(
            f"--host {host} is not loopback: serving subscribers' status beyond this "
            f"machine needs a token or mutual TLS. Give --token-file PATH (or set "
            f"${TOKEN_ENV}; make one with {MAKE_TOKEN}), or --tls-cert, --tls-key and "
            f"--tls-client-ca")
    if token is not None and not tls.on:
        return ("the bearer token travels in clear over the network: give --tls-cert and "
                "--tls-key unless TLS ends before this service (a sidecar or ingress)")
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (a hostname other than localhost
    counts as exposed).

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.0.0.5")]
    [True, True, True, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); :class:`StartError`
    saying what to do when the address is taken or not this machine's."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartError(f"--host {host}: {exc.strerror}; give an address of this machine "
                         f"(default 127.0.0.1)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = ("another process listens there: stop it or pick another --port"
                if exc.errno in (98, 48) else
                "give an address of this machine with --host (default 127.0.0.1)")
        raise StartError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None
    sock.set_inheritable(True)
    return sock


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="the care status service (HTTP)")
    sub = p.add_subparsers(dest="status_command", metavar="COMMAND")
    s = sub.add_parser(
        "serve", help="serve each subscriber's current impact over HTTP from care.status",
        description="Read the compacted care.status topic from its beginning and answer "
        "GET /v1/subscribers/{id}/status (JSON) for the IVR and the agent desktop, with "
        "/readyz, /healthz and /metrics. Binds 127.0.0.1 unless --host says otherwise; any "
        "other address needs a token (--token-file or $FOREWARN_STATUS_TOKEN). "
        "Exit status 0 after SIGINT/SIGTERM; 2 when it cannot start (the message says "
        "why); 1 when reading care.status fails for good.")
    add_arguments(s)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; another address "
                        "needs a token)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port, "
                        "logged)")
    s.add_argument("--token-file", type=Path, metavar="PATH",
                   help=f"file holding the bearer token clients must send (else "
                        f"${TOKEN_ENV}); at least {MIN_TOKEN_CHARS} characters")
    s.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="serve HTTPS with this PEM certificate (chain); with --tls-key")
    s.add_argument("--tls-key", type=Path, metavar="FILE",
                   help="the certificate's PEM private key (unencrypted)")
    s.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="mutual TLS: require a client certificate signed by this PEM CA")
    s.add_argument("--topic-prefix", default="", metavar="PREFIX",
                   help="prefix of the topic name, as given to `forewarn run` (default none)")
    s.add_argument("--kafka-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the broker at start (default 10)")
    s.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                   help="log each request (method, route template, status, ms; never the "
                        "path): default on")
    s.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning",
                            "error"], help="log level of the JSON logs on stderr (default INFO)")
    s.set_defaults(func=cmd_serve)

    def usage(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _fail(message: str) -> int:
    print(f"forewarn status serve: {message}", file=sys.stderr)
    return 2


def _quiet_uvicorn() -> None:
    """uvicorn's loggers: warnings and errors through Forewarn's JSON handler; its access
    log (which prints the path, and so a subscriber id) never."""
    handlers = logging.getLogger("forewarn").handlers
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = list(handlers) if name == "uvicorn" else []
        lg.setLevel(logging.WARNING)
        lg.propagate = name != "uvicorn"
    logging.getLogger("uvicorn.access").disabled = True


def cmd_serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    _quiet_uvicorn()
    # A request's objects die young; CPython's default thresholds keep collections short
    # (the flow's much larger young generation, runner.tune_gc, would mean rare but long
    # pauses here, each one a latency spike).
    gc.set_threshold(700, 10, 10)
    try:
        token = read_token(args.token_file, os.environ)
        tls = Tls(args.tls_cert, args.tls_key, args.tls_client_ca)
        tls.check()
        warning = check_exposure(args.host, token, tls)
        if not 0 <= args.port <= 65535:
            raise StartError(f"--port {args.port}: a port is 0 to 65535")
        config = config_from_args(args)
        sock = bind(args.host, args.port)
    except (StartError, KafkaConfigError) as exc:
        return _fail(str(exc))
    try:
        check_reachable(config, timeout=args.kafka_timeout)
    except (KafkaUnreachableError, KafkaConfigError) as exc:  # (config: a setting refused)
        sock.close()
        return _fail(str(exc))
    if warning:
        log.warning(warning)

    store, metrics = StatusStore(), StatusMetrics()
    fatal: list[str] = []
    server_box: list[Any] = []

    def on_fatal(reason: str) -> None:
        fatal.append(reason)
        if server_box:
            server_box[0].should_exit = True

    topic = args.topic_prefix + TOPIC
    try:
        consumer = StatusConsumer(config, topic, store, metrics, on_fatal)
    except KafkaException as exc:
        sock.close()
        return _fail(f"Kafka consumer settings (--config / -X): {exc.args[0].str()}")
    try:
        consumer.start(args.kafka_timeout)
    except (StartError, KafkaException) as exc:
        sock.close()
        consumer.stop()
        reason = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
        return _fail(reason if isinstance(exc, StartError) else
                     f"reading {topic} at {consumer.bootstrap}: {reason}")
    app = build_app(store, consumer, Auth(token), metrics, access=args.access_log)
    server = Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                   server_header=False, proxy_headers=False,
                                   timeout_keep_alive=30, **tls.uvicorn_options()))
    server_box.append(server)
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls.on else "http"
    log.info("status service listening", extra={
        "url": f"{scheme}://{args.host if ':' not in args.host else f'[{args.host}]'}:{port}",
        "host": host, "port": port, "topic": topic, "token": token is not None,
        "mutual_tls": tls.mutual})
    try:
        server.run(sockets=[sock])
    finally:
        consumer.stop()
        sock.close()
    if fatal:
        print(f"forewarn status serve: reading {topic} failed: {fatal[0]}; is the broker "
              f"up at {config.get('bootstrap.servers')}?", file=sys.stderr)
        return 1
    log.info("status service stopped")
    return 0


class Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM and returning (exit 0) rather than
    raising the signal again after its graceful shutdown, as uvicorn does."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {sig: signal.signal(sig, self.handle_exit)
               for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


__all__ = ["Auth", "CatchUp", "Server", "StatusConsumer", "StatusMetrics", "StatusStore",
           "Tls", "build_app", "check_exposure", "is_loopback", "read_token", "register",
           "route_template"]
