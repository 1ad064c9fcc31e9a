"""The Kubernetes StatefulSet (deploy/), without Kubernetes: the manifest agrees with
itself and with the CLI, and its init container and both pods' commands, run here as
processes against a REAL broker, survive a pod's crash with every action sent once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import yaml

from forewarn.cli import build_parser
from forewarn.connectors.kafka_publish import publish_lines
from tests.builders import comparable
from tests.kafka_flow_helpers import (
    expected,
    fresh_topics,
    records,
    tail,
    wait_until,
    whole_record_diff,
)
from tests.kafka_helpers import free_port, kafka_broker, kafka_config  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "forewarn-statefulset.yaml"
MOUNT = "/var/lib/forewarn"  # the recovery volume's mount path
CLIENT = "/etc/forewarn/client.properties"  # the ConfigMap's file


def _manifest() -> tuple[dict, dict, dict, dict]:
    """(ConfigMap, StatefulSet, init container, container) of the manifest."""
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    return config_map, sts, pod["initContainers"][0], pod["containers"][0]


def _env(container: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container["env"]}


def _argv(container: dict, env: dict[str, str]) -> list[str]:
    """The arguments the container's `sh -c` script gives `forewarn`, as the pod's shell
    expands them with ``env``."""
    script = container["args"][0]
    assert script.lstrip().startswith("exec forewarn "), script
    shown = script.replace("exec forewarn ", "exec printf '%s\\0' ", 1)
    done = subprocess.run(["/bin/sh", "-c", shown], capture_output=True, check=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})
    return done.stdout.decode().split("\0")[:-1]


def _flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_manifest_agrees_with_itself_and_the_cli() -> None:
    _, sts, init, main = _manifest()
    replicas = sts["spec"]["replicas"]
    env, init_env = _env(main), _env(init)
    addresses = env["FOREWARN_ADDRESSES"].split(";")
    words = _argv(main, {"POD_NAME": "forewarn-1", "KAFKA_BOOTSTRAP": "k:9092",
                         "FOREWARN_ADDRESSES": env["FOREWARN_ADDRESSES"],
                         "SASL_PASSWORD": "p w"})
    assert len(addresses) == replicas == int(init_env["REPLICAS"])
    assert addresses == [f"forewarn-{i}.{sts['spec']['serviceName']}:2101"
                         for i in range(replicas)]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"cluster": 2101, "metrics": int(_flag(words, "--metrics-port"))}
    assert _flag(words, "--recovery-partitions") == init_env["PARTITIONS"]
    assert _flag(words, "--recovery").startswith(MOUNT)
    assert sts["spec"]["podManagementPolicy"] == "Parallel"  # processes start together
    assert words[words.index("-X") + 1] == "sasl.password=p w"  # from the secret
    args = build_parser().parse_args(words)  # the CLI takes the command as the pod runs it
    assert (args.command, args.process_id, args.addresses, args.bootstrap) == (
        "run", 1, env["FOREWARN_ADDRESSES"], "k:9092")


STATUS_MANIFEST = ROOT / "deploy" / "forewarn-status.yaml"


def test_the_status_service_manifest_agrees_with_the_cli_and_its_routes() -> None:
    """The care status service's Deployment: the command the pod runs parses, binds
    beyond loopback with a token and TLS from mounted secrets (what the service itself
    demands there), and its probes and port are the service's own."""
    from forewarn.status_service import ROUTES, Tls, check_exposure

    docs = [d for d in yaml.safe_load_all(STATUS_MANIFEST.read_text()) if d]
    service = next(d for d in docs if d["kind"] == "Service")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    words = _argv(main, {"KAFKA_BOOTSTRAP": "k:9092", "SASL_PASSWORD": "p w"})
    args = build_parser().parse_args(words)
    assert (args.command, args.bootstrap, args.host) == ("status", "k:9092", "0.0.0.0")
    assert words[words.index("-X") + 1] == "sasl.password=p w"
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for flag, volume in ((args.token_file, "token"), (args.tls_cert, "tls"),
                         (args.tls_key, "tls")):
        assert str(flag).startswith(mounts[volume] + "/") and volume in secrets
    # beyond loopback the service starts with these (and would refuse without a token)
    assert check_exposure(args.host, "t" * 16, Tls(args.tls_cert, args.tls_key)) is None
    (port,) = main["ports"]
    assert port["containerPort"] == args.port == service["spec"]["ports"][0]["port"]
    for probe in ("readinessProbe", "livenessProbe"):
        get = main[probe]["httpGet"]
        assert get["path"] in ROUTES and get["scheme"] == "HTTPS"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _pod_env(container: dict, ordinal: int, addresses: str, bootstrap: str) -> dict[str, str]:
    """The container's environment on pod ``ordinal``, with this machine's addresses."""
    env = {k: v for k, v in os.environ.items() if k != "SASL_PASSWORD"}
    env.update({k: v for k, v in _env(container).items() if v is not None})
    return {**env, "POD_NAME": f"forewarn-{ordinal}", "FOREWARN_ADDRESSES": addresses,
            "KAFKA_BOOTSTRAP": bootstrap,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT)}


def test_the_statefulset_runs_here_and_survives_a_pod_crash(kafka_config, tmp_path):  # noqa: F811
    """Only host paths and ports are changed, and the test adds a topic prefix. Pod 1
    is killed mid-run (Bytewax then stops the other process too); both restart, as the
    StatefulSet would restart them, resume from their shares of the recovery partitions
    and read to the end: the actions are exactly those of the in-memory run."""
    config_map, _, init, main = _manifest()
    client = tmp_path / "client.properties"
    client.write_text(config_map["data"]["client.properties"])
    topics = fresh_topics(kafka_config, partitions=3)  # three input shards on two processes
    exp = expected(partitions=3)
    publish_lines(kafka_config, exp.lines, topics=topics)
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    bootstrap = kafka_config["bootstrap.servers"]

    def host(text: str, ordinal: int) -> str:  # the pod's volume and config map, here
        return text.replace(MOUNT, str(tmp_path / f"pod-{ordinal}")).replace(CLIENT, str(client))

    for i in (0, 1):  # the init container: each pod's share of the recovery partitions
        script = host(init["args"][0], i)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                       env=_pod_env(init, i, addresses, bootstrap))
    shares = [sorted(p.name for p in (tmp_path / f"pod-{i}" / "recovery").glob("part-*"))
              for i in (0, 1)]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert len(shares[0]) + len(shares[1]) == int(_env(init)["PARTITIONS"])

    def start(ordinal: int, *extra: str) -> subprocess.Popen:
        script = host(main["args"][0], ordinal).replace("--metrics-port 9464",
                                                         "--metrics-port 0")
        script += f" --topic-prefix {topics.prefix} --log-level INFO " + " ".join(extra)
        log = (tmp_path / f"pod-{ordinal}.log").open("ab")
        return subprocess.Popen(["/bin/sh", "-c", script], stdout=log, stderr=subprocess.STDOUT,
                                env=_pod_env(main, ordinal, addresses, bootstrap))

    pods = [start(i) for i in (0, 1)]
    try:
        wait_until(lambda: len(records(kafka_config, topics.actions, quiet=0.2))
                   >= len(exp.actions) // 3, 90, "a third of the actions before the crash",
                   proc=pods[1], log=tmp_path / "pod-1.log")
        pods[1].kill()  # a pod dies
        pods[1].wait()
        try:  # Bytewax ends the other process too; a real pod would be restarted
            pods[0].wait(30)
        except subprocess.TimeoutExpired:
            pods[0].kill()
            pods[0].wait()
        pods = [start(i, "--exit-at-end") for i in (0, 1)]  # restarted by the StatefulSet
        for i, pod in enumerate(pods):
            assert pod.wait(120) == 0, tail(tmp_path / f"pod-{i}.log")
    finally:
        for pod in pods:
            if pod.poll() is None:
                pod.kill()
                pod.wait()
    out = records(kafka_config, topics.actions)
    got = [orjson.loads(r.value)["action_id"] for r in out]
    assert len(got) == len(set(got)), "an action was sent twice"
    whole = sorted(comparable(r.value) for r in out)  # times, channels, send_after, offers
    assert whole == exp.comparable_actions, whole_record_diff(whole, exp.comparable_actions)
    resumed = [line for i in (0, 1)
               for line in (tmp_path / f"pod-{i}.log").read_text().splitlines()
               if '"kafka input assigned"' in line]
    assert any(orjson.loads(line).get("resumed") for line in resumed), "no pod resumed"
