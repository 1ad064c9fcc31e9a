"""The care status service (``forewarn status serve``): the store's rules on their own, the
start-up refusals a user can hit, and the real service as a subprocess reading a real
``care.status`` topic, asked by a real HTTP client (httpx)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from forewarn.dataflows.care import CareStatus
from forewarn.status_service import (
    LOOKUP_ROUTE,
    Auth,
    CatchUp,
    StartError,
    StatusConsumer,
    StatusMetrics,
    StatusStore,
    Tls,
    build_app,
    check_exposure,
    is_loopback,
    read_token,
    route_template,
)
from tests.kafka_flow_helpers import forewarn_cmd, produce, start_flow, tail, wait_until
from tests.kafka_helpers import (  # noqa: F401  (fixtures)
    contract_topics,
    create_topic,
    free_port,
    kafka_broker,
    kafka_config,
    unique_topic,
)

TOKEN = "tok-" + "7f3a9c" * 6
T0 = 1795435200.0  # 2026-11-23T10:00:00Z


def status_value(subscriber_id: str, *incidents: str, at: float = T0) -> bytes:
    """A ``care_status`` record as the flow encodes it (CareStatus.record(), orjson)."""
    incs = tuple((inc, "outage", "cell", "North", at - 60.0, (f"{inc}-C1",))
                 for inc in incidents)
    return orjson.dumps(CareStatus(subscriber_id, at, incs).record())


# ---- the store, readiness and auth on their own --------------------------------------

def test_the_store_keeps_the_latest_impacted_record_and_forgets_on_a_tombstone() -> None:
    store = StatusStore()
    first, second = status_value("U1", "INC-A"), status_value("U1", "INC-A", "INC-B")
    assert store.apply(b"U1", first) == "stored" and store.get("U1") == first
    assert store.apply(b"U1", second) == "stored" and store.get("U1") == second
    assert store.apply(b"U1", None) == "deleted" and store.get("U1") is None
    assert store.apply(b"U2", status_value("U2", "INC-A")) == "stored"
    assert store.apply(b"U2", status_value("U2")) == "deleted"  # the file's "impacted": false
    assert len(store) == 0


@pytest.mark.parametrize(("key", "value", "reason"), [
    (None, status_value("U1", "I"), "no_key"),
    (b"\xff", status_value("U1", "I"), "no_key"),
    (b"U1", b"{not json", "not_json"),
    (b"U1", b'["care_status"]', "not_care_status"),
    (b"U1", orjson.dumps({"type": "care_context", "subscriber_id": "U1"}), "not_care_status"),
    (b"U1", status_value("U2", "I"), "key_mismatch"),
    (b"U1", orjson.dumps({"type": "care_status", "subscriber_id": "U1", "impacted": 1}),
     "bad_impacted"),
])
def test_a_message_that_is_not_a_status_record_of_its_key_changes_nothing(
        key: bytes | None, value: bytes, reason: str) -> None:
    store = StatusStore()
    kept = status_value("U1", "INC-A")
    store.apply(b"U1", kept)
    assert store.apply(key, value) == reason
    assert store.get("U1") == kept and len(store) == 1


def test_ready_once_every_partition_reaches_its_end_at_start() -> None:
    catch_up = CatchUp({0: 10, 1: 4, 2: 7}, {0: 0, 1: 4, 2: 3})  # partition 1: empty
    assert not catch_up.done and catch_up.waiting == {0, 2}
    assert not catch_up.note(0, 10)
    assert not catch_up.note(2, 6)
    assert catch_up.note(2, 7)  # e.g. the end of a partition whose tail was compacted
    assert catch_up.note(0, 3)  # stays done
    assert CatchUp({}).done and CatchUp({0: 0}).done


def test_routes_are_named_by_their_template_never_by_the_subscriber() -> None:
    assert route_template("/v1/subscribers/SUB000191/status") == LOOKUP_ROUTE
    assert route_template("/v1/subscribers/SUB000191") == "other"
    assert route_template("/metrics") == "/metrics"
    assert route_template("/SUB000191") == "other"


def test_a_bearer_token_is_compared_whole() -> None:
    auth = Auth(TOKEN)
    assert auth.allows(f"Bearer {TOKEN}") and auth.allows(f"bearer {TOKEN}")
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}",
                   f"Bearer {TOKEN}x", "Bearer ", "Bearer é"):
        assert not auth.allows(header), header


def test_the_token_comes_from_the_file_then_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token(path, {"FOREWARN_STATUS_TOKEN": "x" * 20}) == TOKEN
    assert read_token(None, {"FOREWARN_STATUS_TOKEN": "y" * 20}) == "y" * 20
    assert read_token(None, {}) is None
    with pytest.raises(StartError, match=r"--token-file .*missing: No such file.*secrets"):
        read_token(tmp_path / "missing", {})
    path.write_text("short\n")
    with pytest.raises(StartError, match="16 to 4096 printable ASCII.*5 characters"):
        read_token(path, {})
    with pytest.raises(StartError, match=r"\$FOREWARN_STATUS_TOKEN: a token is"):
        read_token(None, {"FOREWARN_STATUS_TOKEN": "two words that are long"})


def test_loopback_is_this_machine_only() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.0.1") and is_loopback("::1")
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "status.example"))


def test_beyond_loopback_needs_a_token_or_mutual_tls() -> None:
    mutual = Tls(Path("cert.pem"), Path("key.pem"), Path("ca.pem"))
    https = Tls(Path("cert.pem"), Path("key.pem"))
    with pytest.raises(StartError, match="needs a token or mutual TLS"):
        check_exposure("0.0.0.0", None, Tls())
    with pytest.raises(StartError, match="needs a token or mutual TLS"):
        check_exposure("10.1.2.3", None, https)  # TLS alone authenticates nobody
    assert check_exposure("0.0.0.0", None, mutual) is None
    assert check_exposure("0.0.0.0", TOKEN, https) is None
    assert "travels in clear" in str(check_exposure("0.0.0.0", TOKEN, Tls()))
    assert "no token" in str(check_exposure("127.0.0.1", None, Tls()))
    assert check_exposure("127.0.0.1", TOKEN, Tls()) is None
    assert check_exposure("::1", None, mutual) is None


# ---- refused at start: one line, what and how, exit 2, no traceback -------------------

def serve_cmd(bootstrap: str, port: int, *extra: str) -> list[str]:
    return forewarn_cmd("status", "serve", "--bootstrap", bootstrap, "--port", str(port),
                        *extra)


def refused(cmd: list[str]) -> str:
    """Run a start that must be refused; its one line on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "FOREWARN_STATUS_TOKEN"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("forewarn status serve: ")
    return lines[0]


def test_an_address_beyond_this_machine_without_a_token_is_refused() -> None:
    msg = refused(serve_cmd("127.0.0.1:9", free_port(), "--host", "0.0.0.0"))
    assert "--host 0.0.0.0 is not loopback" in msg and "--token-file PATH" in msg
    assert "FOREWARN_STATUS_TOKEN" in msg


def test_a_missing_or_short_token_file_is_refused(tmp_path: Path) -> None:
    msg = refused(serve_cmd("127.0.0.1:9", free_port(), "--token-file",
                            str(tmp_path / "nope")))
    assert f"--token-file {tmp_path / 'nope'}: No such file or directory" in msg
    (tmp_path / "short").write_text("abc\n")
    msg = refused(serve_cmd("127.0.0.1:9", free_port(), "--token-file",
                            str(tmp_path / "short")))
    assert "a token is 16 to 4096" in msg and "secrets.token_urlsafe" in msg


def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        msg = refused(serve_cmd("127.0.0.1:9", port))
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in msg
    assert "pick another --port" in msg


def test_tls_files_that_do_not_load_are_refused(tmp_path: Path, pki: Path) -> None:
    msg = refused(serve_cmd("127.0.0.1:9", free_port(), "--tls-cert", str(pki / "server.pem")))
    assert "--tls-cert FILE and --tls-key FILE go together" in msg
    msg = refused(serve_cmd("127.0.0.1:9", free_port(), "--tls-cert", str(pki / "server.pem"),
                            "--tls-key", str(pki / "client.key")))
    assert f"--tls-cert {pki / 'server.pem'} / --tls-key {pki / 'client.key'}:" in msg
    assert "the private key it was made for" in msg
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    msg = refused(serve_cmd("127.0.0.1:9", free_port(), "--tls-cert", str(pki / "server.pem"),
                            "--tls-key", str(pki / "server.key"), "--tls-client-ca",
                            str(tmp_path / "ca.pem")))
    assert f"--tls-client-ca {tmp_path / 'ca.pem'}:" in msg


def test_no_broker_is_refused() -> None:
    nobody = free_port()
    msg = refused(serve_cmd(f"127.0.0.1:{nobody}", free_port(), "--kafka-timeout", "2"))
    assert f"no Kafka broker answered at 127.0.0.1:{nobody}" in msg


def test_a_kafka_setting_librdkafka_refuses_is_refused(
        kafka_config: dict[str, str]) -> None:  # noqa: F811
    msg = refused(serve_cmd(kafka_config["bootstrap.servers"], free_port(),
                            "-X", "no.such.setting=1"))
    assert 'a Kafka client setting was refused: No such configuration property: ' \
           '"no.such.setting": fix it in --config FILE or -X key=value' in msg


def test_a_missing_topic_is_refused(kafka_config: dict[str, str]) -> None:  # noqa: F811
    bootstrap = kafka_config["bootstrap.servers"]
    prefix = unique_topic("absent") + "."
    msg = refused(serve_cmd(bootstrap, free_port(), "--topic-prefix", prefix))
    assert f"topic {prefix}care.status not found at {bootstrap}" in msg
    assert "forewarn topics create" in msg


def test_before_it_has_caught_up_lookups_are_503_and_the_token_comes_first(
        kafka_config: dict[str, str]) -> None:  # noqa: F811
    """The app over a real consumer that has not started reading (in process, over ASGI)."""
    store, metrics = StatusStore(), StatusMetrics()
    store.apply(b"U1", status_value("U1", "INC-A"))  # read, but not everything yet
    consumer = StatusConsumer(kafka_config, unique_topic("unread"), store, metrics,
                              on_fatal=lambda reason: None)
    app = build_app(store, consumer, Auth(TOKEN), metrics, access=False)

    async def ask() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://status") as client:
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            return [await client.get("/v1/subscribers/U1/status", headers=bearer),
                    await client.get("/v1/subscribers/U1/status"),
                    await client.get("/readyz"), await client.get("/healthz")]

    try:
        lookup, no_token, ready, health = asyncio.run(ask())
    finally:
        consumer.stop()
    assert lookup.status_code == 503 and lookup.headers["retry-after"] == "1"
    assert "INC-A" not in lookup.text and lookup.json()["error"].startswith("not ready")
    assert no_token.status_code == 401
    assert ready.status_code == 503 and ready.json() == {"ready": False, "records": 1}
    assert health.status_code == 503  # its thread is not running


# ---- the service on a real broker ----------------------------------------------------

@dataclass
class Service:
    url: str
    topic: str
    config: dict[str, str]
    proc: subprocess.Popen
    log: Path
    verify: ssl.SSLContext | bool = True

    def get(self, path: str, token: str | None = TOKEN,
            headers: dict[str, str] | None = None) -> httpx.Response:
        auth = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(self.url + path, headers={**auth, **(headers or {})}, timeout=10,
                         verify=self.verify)

    def status(self, subscriber_id: str) -> httpx.Response:
        return self.get(f"/v1/subscribers/{subscriber_id}/status")


#: On the topic before the service starts: U1 impacted by two incidents (an update),
#: U2 impacted then restored (tombstone), U3 impacted, one message that is no record.
BEFORE = [("U1", status_value("U1", "INC-A")),
          ("U2", status_value("U2", "INC-A")),
          ("U1", status_value("U1", "INC-A", "INC-B", at=T0 + 30)),
          ("U3", status_value("U3", "INC-B")),
          ("U2", None),
          ("U4", b"not json")]


def _ready(svc: Service) -> bool:
    try:
        return svc.get("/readyz", token=None).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


@contextlib.contextmanager
def running(bootstrap: str, records: list[tuple[str, bytes | None]], tmp: Path,
            *extra: str, scheme: str = "http", verify: ssl.SSLContext | bool = True,
            ) -> Iterator[Service]:
    """``forewarn status serve`` on a fresh topic holding ``records``, once /readyz is 200
    (polled: readiness, not a sleep); SIGTERM after."""
    config = {"bootstrap.servers": bootstrap}
    prefix = unique_topic("status") + "."
    topic = prefix + "care.status"
    create_topic(config, topic, partitions=3, topic_config={"cleanup.policy": "compact"})
    produce(config, [(topic, k.encode(), v) for k, v in records])
    port = free_port()
    log = tmp / "service.log"
    proc = start_flow(serve_cmd(bootstrap, port, "--topic-prefix", prefix, *extra), log)
    svc = Service(f"{scheme}://127.0.0.1:{port}", topic, config, proc, log, verify)
    try:
        wait_until(lambda: _ready(svc), 60, "the status service's /readyz", proc=proc, log=log)
        yield svc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def service(kafka_broker, tmp_path_factory) -> Iterator[Service]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("status")
    (tmp / "token").write_text(TOKEN + "\n")
    with running(kafka_broker.bootstrap, BEFORE, tmp, "--token-file", str(tmp / "token")) \
            as svc:
        yield svc


def test_an_impacted_subscriber_gets_the_latest_record_as_the_flow_wrote_it(
        service: Service) -> None:
    got = service.status("U1")
    assert got.status_code == 200
    assert got.content == status_value("U1", "INC-A", "INC-B", at=T0 + 30)
    assert got.headers["content-type"] == "application/json"
    assert got.headers["cache-control"] == "no-store"
    assert service.status("U3").json()["incidents"][0]["incident_id"] == "INC-B"


@pytest.mark.parametrize("subscriber_id", ["U2", "U4", "NOBODY"])
def test_restored_unknown_or_unreadable_answers_not_impacted(
        service: Service, subscriber_id: str) -> None:
    got = service.status(subscriber_id)
    assert got.status_code == 200
    assert got.json() == {"type": "care_status", "subscriber_id": subscriber_id,
                          "event_time": None, "impacted": False, "incidents": []}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"}])
def test_no_or_a_wrong_token_is_401_with_a_bearer_challenge(
        service: Service, headers: dict[str, str]) -> None:
    got = service.get("/v1/subscribers/U1/status", token=None, headers=headers)
    assert got.status_code == 401
    assert got.headers["www-authenticate"].startswith('Bearer realm="forewarn-status"')
    assert "INC-A" not in got.text and "U1" not in got.text
    assert got.json()["error"].startswith("missing or wrong bearer token")


def test_health_readiness_and_metrics_need_no_token(service: Service) -> None:
    ready = service.get("/readyz", token=None)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert service.get("/healthz", token=None).json() == {"alive": True}
    assert service.get("/metrics", token=None).status_code == 200


def test_an_unknown_path_or_a_too_long_id_is_a_json_error(service: Service) -> None:
    missing = service.get("/v1/subscribers/U1")
    assert missing.status_code == 404 and "GET /v1/subscribers/{id}/status" in missing.text
    long = service.status("U" * 257)
    assert long.status_code == 400 and long.json() == {
        "error": "a subscriber id has 1 to 256 characters"}


def test_changes_after_start_are_served(service: Service) -> None:
    produce(service.config, [(service.topic, b"U5", status_value("U5", "INC-C")),
                             (service.topic, b"U3", None),
                             (service.topic, b"U1", status_value("U1", "INC-B", at=T0 + 60))])
    wait_until(lambda: service.status("U5").json()["impacted"], 30, "U5 impacted",
               proc=service.proc, log=service.log)
    wait_until(lambda: not service.status("U3").json()["impacted"], 30, "U3 restored",
               proc=service.proc, log=service.log)
    wait_until(lambda: service.status("U1").content == status_value("U1", "INC-B", at=T0 + 60),
               30, "U1's update", proc=service.proc, log=service.log)


def test_metrics_count_by_route_and_code_never_by_subscriber(service: Service) -> None:
    service.status("U1")
    service.get("/v1/subscribers/U1/status", token=None)
    text = service.get("/metrics", token=None).text
    route = 'route="/v1/subscribers/{id}/status"'
    assert f'forewarn_status_requests_total{{code="200",{route}}}' in text
    assert f'forewarn_status_requests_total{{code="401",{route}}}' in text
    assert f"forewarn_status_request_duration_seconds_bucket{{le=\"0.01\",{route}}}" in text
    assert 'forewarn_status_messages_skipped_total{reason="not_json"} 1.0' in text
    assert "forewarn_status_ready 1.0" in text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line and not line.startswith("#")}
    assert lines["forewarn_status_messages_total"] >= len(BEFORE)
    assert lines["forewarn_status_records"] >= 1
    assert sum(v for k, v in lines.items()
               if k.startswith("forewarn_status_consumer_lag_messages")) >= 0
    for subscriber_id in ("U1", "U2", "U3", "U5", "NOBODY"):
        assert subscriber_id not in text


def test_no_subscriber_id_in_the_logs_and_a_clean_stop(service: Service) -> None:
    for subscriber_id in ("U1", "NOBODY"):
        service.status(subscriber_id)
    service.get("/v1/subscribers/U2/status", token="wrong-token-0123456789")
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(30) == 0
    log = service.log.read_text()
    records = [orjson.loads(line) for line in log.splitlines()]  # every line JSON
    requests = [r for r in records if r["msg"] == "request"]
    assert {r["route"] for r in requests} >= {LOOKUP_ROUTE, "/readyz"}
    assert {r["status"] for r in requests if r["route"] == LOOKUP_ROUTE} >= {200, 401}
    assert any(r["msg"] == "ready" for r in records)
    assert any(r["msg"] == "care.status message skipped" and r["reason"] == "not_json"
               for r in records)
    for subscriber_id in ("U1", "U2", "U3", "U4", "U5", "NOBODY"):
        assert subscriber_id not in log, tail(service.log)
    assert TOKEN not in log
    assert "Traceback" not in log


def test_the_module_has_no_subscriber_id_in_a_log_call() -> None:
    """The logger calls of the service name no subscriber id (a guard on the source, for
    the paths the test above does not take)."""
    import ast
    import inspect

    import forewarn.status_service as mod

    for node in ast.walk(ast.parse(inspect.getsource(mod))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                "debug", "info", "warning", "error", "exception"):
            assert "subscriber_id" not in ast.unparse(node), ast.unparse(node)


# ---- mutual TLS ------------------------------------------------------------------------

def openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the mutual TLS tests make certificates with the openssl command: "
                    "install it (apt-get install openssl)", pytrace=False)
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def issue(pki: Path, ca: str, name: str, ext: str) -> None:
    """``name``.key and ``name``.pem, signed by the CA ``ca`` (``ca``.pem, ``ca``.key)."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.csr"),
            "-subj", f"/CN={name}")
    (pki / f"{name}.ext").write_text(ext + "\n")
    openssl("x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(pki / f"{ca}.pem"),
            "-CAkey", str(pki / f"{ca}.key"), "-CAcreateserial", "-days", "2",
            "-out", str(pki / f"{name}.pem"), "-extfile", str(pki / f"{name}.ext"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate it signed; and a
    client certificate from another CA (``openssl``)."""
    pki = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(pki / f"{ca}.key"), "-out", str(pki / f"{ca}.pem"),
                "-days", "2", "-subj", f"/CN={ca}")
    issue(pki, "ca", "server", "subjectAltName=IP:127.0.0.1")
    issue(pki, "ca", "client", "extendedKeyUsage=clientAuth")
    issue(pki, "other-ca", "stranger", "extendedKeyUsage=clientAuth")
    return pki


def client_tls(pki: Path, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return ctx


def test_mutual_tls_serves_a_client_the_ca_signed_and_no_other(
        kafka_broker, pki: Path, tmp_path: Path) -> None:  # noqa: F811
    with running(kafka_broker.bootstrap, BEFORE, tmp_path,
                 "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                 "--tls-client-ca", str(pki / "ca.pem"), scheme="https",
                 verify=client_tls(pki, "client")) as svc:
        got = svc.get("/v1/subscribers/U1/status", token=None)  # no token: the certificate
        assert got.status_code == 200
        assert got.content == status_value("U1", "INC-A", "INC-B", at=T0 + 30)
        for who in (None, "stranger"):
            with pytest.raises(httpx.TransportError):
                httpx.get(svc.url + "/v1/subscribers/U1/status", timeout=10,
                          verify=client_tls(pki, who))
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
            httpx.get(svc.url.replace("https", "http") + "/v1/subscribers/U1/status",
                      timeout=10)
        assert svc.get("/v1/subscribers/U1/status", token=None).status_code == 200
    log = svc.log.read_text()
    assert '"mutual_tls":true' in log and "https://127.0.0.1" in log
    assert "U1" not in log


# ---- the README's command --------------------------------------------------------------

def readme_command() -> list[str]:
    """The ``forewarn status serve`` command of the README's status service section."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## The care status service", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("forewarn status serve")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def test_the_service_starts_from_the_readmes_command(
        contract_topics: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    cmd = readme_command()
    assert cmd[:3] == ["forewarn", "status", "serve"]
    options = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert set(options) == {"--bootstrap", "--port", "--token-file"}
    token_file = tmp_path / options["--token-file"]
    token_file.write_text(TOKEN + "\n")  # as the README's line before makes it
    options.update({"--bootstrap": contract_topics["bootstrap.servers"],
                    "--port": str(free_port()), "--token-file": str(token_file)})
    sid = f"README-{uuid.uuid4().hex[:8]}"
    produce(contract_topics, [("care.status", sid.encode(), status_value(sid, "INC-R"))])
    log = tmp_path / "service.log"
    proc = start_flow(forewarn_cmd(*cmd[1:3], *(x for kv in options.items() for x in kv)),
                      log)
    svc = Service(f"http://127.0.0.1:{options['--port']}", "care.status", contract_topics,
                  proc, log)
    try:
        wait_until(lambda: _ready(svc), 60, "/readyz", proc=proc, log=log)
        assert svc.status(sid).content == status_value(sid, "INC-R")
        assert svc.get(f"/v1/subscribers/{sid}/status", token=None).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, tail(log)
