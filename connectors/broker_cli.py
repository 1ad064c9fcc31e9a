"""``forewarn broker start|stop|status|restart`` and ``forewarn topics create``.

Registered by :mod:`forewarn.cli` through :func:`register`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from confluent_kafka import KafkaException

from forewarn.connectors import broker, topics
from forewarn.connectors.kafka_config import (
    KafkaConfigError,
    KafkaUnreachableError,
    add_arguments,
    config_from_args,
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``broker`` and ``topics`` commands to the ``forewarn`` parser."""
    _register_broker(subparsers)
    _register_topics(subparsers)


def _register_broker(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="a local single-node Apache Kafka for development and tests",
        description=(
            f"A local single-node Apache Kafka {broker.KAFKA_VERSION} (KRaft), assembled from "
            "Maven Central on first use (needs Java 17+ and Maven). State lives in --dir, by "
            f"default {broker.cache_root()}/broker-PORT."
        ),
    )
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION", required=True)
    for name, func, help_text in (
        ("start", _start, "start a broker (no-op if it already runs) and wait until it answers"),
        ("stop", _stop, "stop the broker (SIGTERM, then SIGKILL after --timeout s)"),
        ("status", _status, "exit 0 if the broker runs and answers, 1 if not"),
        ("restart", _restart, "stop, then start"),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        action.add_argument(
            "--port",
            type=_port,
            metavar="P",
            default=broker.DEFAULT_PORT,
            help=f"listener port on 127.0.0.1 (default {broker.DEFAULT_PORT})",
        )
        action.add_argument(
            "--dir",
            type=Path,
            default=None,
            metavar="D",
            help="state dir (default: per port under the forewarn cache; see `broker --help`)",
        )
        if name in ("start", "restart"):
            action.add_argument(
                "--timeout",
                type=float,
                metavar="SECONDS",
                default=broker.READY_TIMEOUT,
                help=f"seconds to wait for the broker to answer (default {broker.READY_TIMEOUT:g})",
            )
        if name == "stop":
            action.add_argument(
                "--timeout",
                type=float,
                metavar="SECONDS",
                default=30.0,
                help="seconds to wait after SIGTERM before SIGKILL (default 30)",
            )
        action.set_defaults(func=func)


def _register_topics(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="manage the contract's Kafka topics",
        description="Manage the Kafka topics of the Forewarn wire contract.",
    )
    actions = parser.add_subparsers(dest="topics_action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create the contract topics that do not exist yet",
        description=(
            "Create the contract topics that do not exist yet (existing ones are left as they "
            "are): " + ", ".join(spec.name for spec in topics.ALL_TOPICS) + "."
        ),
    )
    add_arguments(create)
    create.add_argument(
        "--partitions",
        type=positive_int,
        default=1,
        metavar="N",
        help="partitions per new topic (default 1)",
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        metavar="N",
        default=-1,
        help="replicas per partition (default: the cluster's default.replication.factor)",
    )
    create.add_argument(
        "--topic-prefix",
        default="",
        metavar="PREFIX",
        help="prefix of every topic name, as given to run/replay/simulate (default none)",
    )
    create.set_defaults(func=_topics_create)


def _fail(command: str, message: object) -> int:
    print(f"forewarn {command}: error: {message}", file=sys.stderr)
    return 1


def _start_message(info: broker.BrokerInfo) -> str:
    return f"Kafka broker running on {info.bootstrap} (pid {info.pid}, dir {info.dir})"


def _announce_assembly() -> None:
    """Say why the first start takes longer (Maven downloads ~45 MB)."""
    if not broker.dist_is_complete():
        print(
            f"assembling Apache Kafka {broker.KAFKA_VERSION} with Maven into "
            f"{broker.dist_dir()} (first use only)...",
            file=sys.stderr,
        )


def _start(args: argparse.Namespace, restart: bool = False) -> int:
    _announce_assembly()
    how = broker.restart if restart else broker.start
    try:
        info = how(args.port, args.dir, timeout=args.timeout)
    except broker.BrokerError as exc:
        return _fail("broker restart" if restart else "broker start", exc)
    print(_start_message(info))
    return 0


def _restart(args: argparse.Namespace) -> int:
    return _start(args, restart=True)


def _stop(args: argparse.Namespace) -> int:
    where = broker.broker_dir(args.port, args.dir)
    try:
        stopped = broker.stop(args.dir, args.timeout, port=args.port)
    except broker.BrokerError as exc:
        return _fail("broker stop", exc)
    print(f"stopped the Kafka broker of {where}" if stopped else f"no broker running in {where}")
    return 0


def _status(args: argparse.Namespace) -> int:
    where = broker.broker_dir(args.port, args.dir)
    info = broker.status(args.dir, port=args.port)
    if info is None:
        print(f"no Kafka broker answering for {where}")
        return 1
    print(_start_message(info))
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        created = topics.create_topics(
            config,
            args.partitions,
            replication_factor=args.replication_factor,
            prefix=args.topic_prefix,
        )
    except (KafkaConfigError, KafkaUnreachableError, KafkaException, TimeoutError) as exc:
        return _fail("topics create", exc)
    names = [args.topic_prefix + spec.name for spec in topics.ALL_TOPICS]
    existing = [name for name in names if name not in created]
    if created:
        print("created: " + ", ".join(created))
    if existing:
        print("already there: " + ", ".join(existing))
    return 0
