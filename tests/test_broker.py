"""The local Kafka broker, topics and client settings, against a REAL broker."""

from __future__ import annotations

import doctest
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

import forewarn.connectors.kafka_config
import forewarn.connectors.topics
from forewarn.cli import main
from forewarn.connectors import broker
from forewarn.connectors.kafka_config import KafkaConfigError, KafkaUnreachableError, build_config
from forewarn.connectors.topics import ALL_TOPICS, create_topics, key_for
from tests.kafka_helpers import (  # noqa: F401  (kafka_broker, kafka_config: fixtures)
    consume_all,
    create_topic,
    free_port,
    kafka_broker,
    kafka_config,
    produce_lines,
    unique_topic,
)

# --------------------------------------------------------------- no broker needed


@pytest.mark.parametrize("module", [forewarn.connectors.kafka_config, forewarn.connectors.topics])
def test_doctests(module: object) -> None:
    # pytest's --doctest-modules only covers tests/ (testpaths), so run these here.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


def test_config_file_overrides_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "client.properties"
    good.write_text(
        "# SASL over TLS\n! Java-style comment\n\nsecurity.protocol = SASL_SSL\n"
        "sasl.mechanism=PLAIN\nbootstrap.servers=file:9092\n"
    )
    settings = build_config("cli:9092", good, ["sasl.mechanism=SCRAM-SHA-512"])
    assert settings == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",  # -X wins over the file
        "bootstrap.servers": "cli:9092",  # --bootstrap wins over the file
    }
    bad = tmp_path / "bad.properties"
    bad.write_text("acks=all\n# fine\nlinger.ms 5\n")
    with pytest.raises(KafkaConfigError, match=rf"{bad}:3: expected key=value"):
        build_config("x:1", bad)
    with pytest.raises(KafkaConfigError, match="cannot read Kafka client config"):
        build_config("x:1", tmp_path / "missing.properties")


def test_key_fields() -> None:
    assert forewarn.connectors.topics.TOPIC_FOR_TYPE["subscriber"] == "bss.subscribers"
    assert forewarn.connectors.topics.KEY_FIELD_FOR_TYPE["alarm"] == "site_id"
    assert key_for({"type": "alarm", "cell_id": "C9", "alarm_id": "a"}) == b"C9"
    assert key_for({"type": "call", "subscriber_id": "s1", "cell_id": "C1"}) == b"s1"
    assert key_for({"type": "nonsense", "cell_id": "C1"}) is None


def test_port_in_use_is_named(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(broker.BrokerError, match=rf"127\.0\.0\.1:{port}.*already in use"):
            broker.start(port, tmp_path / "b")


def test_unreachable_cluster_fails_fast() -> None:
    with pytest.raises(KafkaUnreachableError, match="Connection refused"):
        create_topics({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, timeout=2)


@pytest.mark.parametrize("command", ["replay", "run"])
def test_a_client_setting_librdkafka_refuses_is_one_line_not_a_traceback(
        tmp_path, command: str) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"type": "cell", "cell_id": "C1", "site_id": "S1"}\n')
    extra = [str(events)] if command == "replay" else ["--metrics-port", "-1"]
    done = subprocess.run(
        [sys.executable, "-m", "forewarn.cli", command, *extra,
         "--bootstrap", f"127.0.0.1:{free_port()}", "-X", "no.such.setting=1"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert 'a Kafka client setting was refused: No such configuration property: "no.such.setting"' \
        in done.stderr and "-X key=value" in done.stderr


# -------------------------------------------------------------- real broker needed


def test_session_broker_status(kafka_broker: broker.BrokerInfo) -> None:  # noqa: F811
    info = broker.status(kafka_broker.dir)
    assert info == kafka_broker
    assert info.bootstrap == f"127.0.0.1:{kafka_broker.port}"
    # start() on a running broker's dir returns it rather than starting another
    assert broker.start(kafka_broker.port, kafka_broker.dir).pid == kafka_broker.pid


def test_produce_and_consume(kafka_config: dict[str, str]) -> None:  # noqa: F811
    topic = unique_topic("produce")
    create_topic(kafka_config, topic, partitions=3)
    lines = [f'{{"type": "call", "subscriber_id": "s{i % 5}", "n": {i}}}' for i in range(50)]
    delivered = produce_lines(kafka_config, topic, lines, key=lambda v: key_for(json.loads(v)))
    assert delivered == 50
    records = consume_all(kafka_config, topic, quiet=0.5)
    assert sorted(r.value for r in records) == sorted(line.encode() for line in lines)
    assert {r.partition for r in records} <= {0, 1, 2}
    for r in records:  # keyed by subscriber_id, as the contract says for calls
        assert r.key == json.loads(r.value)["subscriber_id"].encode()
    by_key: dict[bytes | None, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())  # one key, one partition
    # an empty topic reads as empty once quiet
    empty = unique_topic("empty")
    create_topic(kafka_config, empty)
    assert consume_all(kafka_config, empty, quiet=0.3) == []


def test_cli_status_and_topics(kafka_broker: broker.BrokerInfo, capsys) -> None:  # noqa: F811
    assert main(["broker", "status", "--dir", str(kafka_broker.dir)]) == 0
    assert kafka_broker.bootstrap in capsys.readouterr().out
    assert main(["topics", "create", "--bootstrap", kafka_broker.bootstrap]) == 0
    assert main(["topics", "create", "--bootstrap", kafka_broker.bootstrap]) == 0
    assert "already there: oss.topology" in capsys.readouterr().out


def _describe_topics(config: dict[str, str], names: list[str]) -> dict[str, tuple[int, str]]:
    """name -> (partition count, cleanup.policy). The client is gone on return (a
    client left alive while its broker is stopped fills stderr with reconnects)."""
    admin = AdminClient(config)
    metadata = admin.list_topics(timeout=10)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    policies = {
        resource.name: future.result()["cleanup.policy"].value
        for resource, future in admin.describe_configs(resources).items()
    }
    return {name: (len(metadata.topics[name].partitions), policies[name]) for name in names}


def test_dedicated_broker_round_trip(tmp_path: Path) -> None:
    """start, status, topics with policy + partitions, stop, restart keeps data, stop."""
    port = free_port()
    dir = tmp_path / "broker"
    info = broker.start(port, dir, die_with_parent=True)
    try:
        assert info.bootstrap == f"127.0.0.1:{port}"
        assert broker.status(dir) == info
        config = {"bootstrap.servers": info.bootstrap}

        names = [spec.name for spec in ALL_TOPICS]
        assert sorted(create_topics(config, partitions=3)) == sorted(names)
        assert create_topics(config, partitions=3) == []  # idempotent
        for name, (partitions, policy) in _describe_topics(config, names).items():
            assert partitions == 3, name
            compacted = name in ("oss.topology", "bss.subscribers", "care.status")
            assert policy == ("compact" if compacted else "delete"), name

        produce_lines(
            config, "oss.topology", ['{"type":"cell","cell_id":"C1","site_id":"S1"}'], key=b"C1"
        )

        assert broker.stop(dir) is True
        assert broker.status(dir) is None
        assert not (dir / "broker.pid").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(info.pid, 0)
        assert broker.stop(dir) is False  # already stopped: fine

        again = broker.start(port, dir, die_with_parent=True)
        assert again.pid != info.pid
        assert create_topics(config, partitions=3) == []  # topics survived the restart
        [record] = consume_all(config, "oss.topology", quiet=0.5)
        assert record.key == b"C1"
    finally:
        broker.stop(dir)


def test_broker_that_dies_reports_its_log(tmp_path: Path) -> None:
    dir = tmp_path / "broken"
    (dir / "data").mkdir(parents=True)
    # A formatted-looking but corrupt log dir: start() skips formatting, Kafka refuses it.
    (dir / "data" / "meta.properties").write_text("version=1\nnode.id=7\n")
    with pytest.raises(broker.BrokerError) as caught:
        broker.start(free_port(), dir, die_with_parent=True)
    message = str(caught.value)
    assert "exited" in message
    assert str(dir / "server.log") in message
    assert broker.status(dir) is None
