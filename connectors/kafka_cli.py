"""``forewarn replay``: publish recorded JSONL to the contract's topics by ``type``.

Several files are merged by stream time (each file keeps its own order), as
``forewarn run --input`` reads them. A line that cannot be published as it is
(no input type, no message key, too large, refused by the broker) becomes a dead
letter with its file and line, and publishing goes on (see
:mod:`forewarn.connectors.kafka_publish`). At the end a report says what was delivered per
topic, what went to dead letters and why, and what failed; the exit status is 0
only when every good record was delivered.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from forewarn.connectors.kafka_config import add_arguments

if TYPE_CHECKING:
    from forewarn.connectors.kafka_publish import PublishReport


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="publish recorded JSONL to the Kafka topics by type",
        description="Publish JSONL records to the contract's input topics, each to the topic "
        "of its `type`, keyed as the contract says. A line that cannot be published as it "
        "is (not an input record, no key, too large, refused by the broker) goes to the "
        "dead-letter topic with its line number, and publishing goes on. Exit status 0: "
        "every good record was delivered; 1: some were not (the report says which "
        "topic and why); 2: nothing was published (no broker, no topics, bad settings).")
    p.add_argument("files", nargs="+", metavar="FILE", type=Path, help="JSONL files")
    add_arguments(p)
    add_pacing_arguments(p)
    p.set_defaults(func=cmd_replay)


def add_pacing_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--speed``, ``--rate`` and ``--topic-prefix`` of the commands that publish."""
    p.add_argument("--speed", type=float, default=0.0, metavar="N",
                   help="publish at N x real time by event time (1: real time; "
                   "default 0: as fast as possible)")
    p.add_argument("--rate", type=float, default=0.0, metavar="R",
                   help="publish at a fixed R records/s instead")
    p.add_argument("--topic-prefix", default="", metavar="PREFIX",
                   help="prefix of every topic name (default none)")


def cmd_replay(args: argparse.Namespace) -> int:
    from forewarn.connectors.files import merge_by_time
    from forewarn.connectors.kafka_config import (
        KafkaConfigError,
        KafkaUnreachableError,
        check_reachable,
        config_from_args,
    )
    from forewarn.connectors.kafka_publish import Publisher, PublishError, Topics, paced

    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"replay: file(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
        check_reachable(config)
        pub = Publisher(config, Topics(args.topic_prefix))
    except (KafkaConfigError, KafkaUnreachableError, PublishError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    streams, line_numbers = [], {}
    for path in args.files:
        numbered = [(n, line.rstrip(b"\r\n")) for n, line in
                    enumerate(path.read_bytes().splitlines(keepends=True), start=1)]
        pub.report.blank += sum(1 for _, line in numbered if not line.strip())
        kept = [(n, line) for n, line in numbered if line.strip()]
        line_numbers[path.name] = [n for n, _ in kept]
        streams.append((path.name, [line for _, line in kept]))
    seen = dict.fromkeys(line_numbers, 0)
    began = time.monotonic()
    try:
        for name, line in paced(merge_by_time(streams), args.speed, args.rate,
                                line_of=lambda item: item[1]):
            seen[name] += 1
            pub.publish(line, name, line_numbers[name][seen[name] - 1])
        report = pub.flush()
    except PublishError as exc:
        report = pub.abort()
        report.seconds = time.monotonic() - began
        print(f"replay: {report_text(report)}", file=sys.stderr)
        print(f"replay: publishing failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("replay: interrupted", file=sys.stderr)
        return 130
    report.seconds = time.monotonic() - began
    print(f"replay: {report_text(report)}", file=sys.stderr)
    return 0


def report_text(report: PublishReport) -> str:
    """A publish report for the terminal (see ``PublishReport.summary``)."""
    return report.summary().replace("\n", "\n  ")
