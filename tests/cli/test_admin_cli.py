"""The client commands (topic, produce, consume, groups) run as subprocesses against a real
broker, as a user would run them; outputs are checked exactly through --json."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.broker_process import free_port
from tests.cli_run import artesian


@pytest.fixture
def broker(module_broker_factory: Any) -> Any:
    """One broker for the module: its tests use topic and group names of their own. Tests that
    list every topic or group take a fresh one from broker_factory."""
    return module_broker_factory()


def cli(
    broker: Any, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARTESIAN_BOOTSTRAP"}
    if broker is not None:
        env["ARTESIAN_BOOTSTRAP"] = broker.bootstrap
    proc = artesian(*args, stdin=stdin, env=env, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def cli_json(broker: Any, *args: str, stdin: str | None = None) -> Any:
    return json.loads(cli(broker, *args, "--json", stdin=stdin).stdout)


def fails(broker: Any, *args: str) -> str:
    proc = cli(broker, *args, check=False)
    assert proc.returncode != 0, f"{args} should fail:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def records(stdout: str) -> list[dict[str, Any]]:
    """JSON Lines from consume, without the (wall-clock) timestamps."""
    out = []
    for line in stdout.splitlines():
        rec = json.loads(line)
        assert isinstance(rec.pop("timestamp"), int)
        out.append(rec)
    return out


def test_topic_create_list_describe_alter_delete(broker_factory: Any) -> None:
    broker = broker_factory()
    assert cli_json(
        broker, "topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=60000"
    ) == {"name": "orders", "created": True}
    err = fails(broker, "topic", "create", "orders")
    assert "topic 'orders' already exists" in err
    assert "--if-not-exists" in err
    assert cli_json(broker, "topic", "create", "orders", "--if-not-exists") == {
        "name": "orders",
        "created": False,
    }
    assert cli_json(broker, "topic", "list") == [{"name": "orders", "partitions": 3}]

    desc = cli_json(broker, "topic", "describe", "orders")
    assert desc == {
        "name": "orders",
        "internal": False,
        "partitions": [
            {"partition": p, "leader": 1, "replicas": [1], "isr": [1], "earliest": 0, "latest": 0}
            for p in range(3)
        ],
        "configs": {"retention.ms": {"value": "60000", "source": "DYNAMIC_TOPIC_CONFIG"}},
    }

    assert cli_json(
        broker,
        "topic",
        "alter",
        "orders",
        "--partitions",
        "4",
        "--config",
        "segment.bytes=1048576",
        "--delete-config",
        "retention.ms",
    ) == {
        "name": "orders",
        "set": {"segment.bytes": "1048576"},
        "deleted": ["retention.ms"],
        "partitions": 4,
    }
    desc = cli_json(broker, "topic", "describe", "orders")
    assert [p["partition"] for p in desc["partitions"]] == [0, 1, 2, 3]
    assert desc["configs"] == {
        "segment.bytes": {"value": "1048576", "source": "DYNAMIC_TOPIC_CONFIG"}
    }

    # The human-readable forms print tables.
    text = cli(broker, "topic", "describe", "orders").stdout
    assert "PARTITION" in text and "segment.bytes" in text

    assert cli_json(broker, "topic", "delete", "orders") == {"name": "orders", "deleted": True}
    assert cli_json(broker, "topic", "list") == []
    assert "topic 'orders' does not exist" in fails(broker, "topic", "delete", "orders")
    assert cli_json(broker, "topic", "delete", "orders", "--if-exists") == {
        "name": "orders",
        "deleted": False,
    }


def test_produce_then_consume_exact(broker: Any) -> None:
    cli(broker, "topic", "create", "events", "--partitions", "1")
    summary = cli_json(
        broker,
        "produce",
        "events",
        "--key-separator",
        ":",
        "--header",
        "source=cli",
        "--header",
        "v=2",
        stdin="k1:hello\nk2:wor:ld\n:empty-key\n",
    )
    assert summary["messages"] == 3
    assert summary["failed"] == 0
    assert summary["bytes"] == len("k1hellok2wor:ldempty-key")

    headers = [["source", "cli"], ["v", "2"]]
    consumed = cli(broker, "consume", "events", "--from-beginning", "--max-messages", "3", "--json")
    assert records(consumed.stdout) == [
        {
            "topic": "events",
            "partition": 0,
            "offset": i,
            "key": k,
            "value": v,
            "headers": headers,
        }
        for i, (k, v) in enumerate([("k1", "hello"), ("k2", "wor:ld"), ("", "empty-key")])
    ]
    assert "Processed a total of 3 messages" in consumed.stderr

    # Lines without the separator are reported one by one and make the exit code non-zero.
    proc = cli(broker, "produce", "events", "-K", ":", stdin="k3:ok\nno-separator\n", check=False)
    assert proc.returncode == 1
    assert "line 2: no key separator ':'" in proc.stderr
    assert "Produced 1 messages" in proc.stderr

    out = cli(
        broker,
        "consume",
        "events",
        "--offset",
        "2",
        "--max-messages",
        "2",
        "--format",
        "{offset}|{key}\\t{value}|{headers}",
    ).stdout
    assert out == "2|\tempty-key|source=cli,v=2\n3|k3\tok|\n"
    out = cli(
        broker,
        "consume",
        "events",
        "--partition",
        "0",
        "--offset",
        "3",
        "--max-messages",
        "1",
        "--print-key",
        "--print-offset",
        "--print-headers",
    ).stdout
    assert out == "Partition:0\tOffset:3\tNO_HEADERS\tk3\tok\n"


def test_consume_json_tells_bytes_from_text(broker: Any) -> None:
    from confluent_kafka import Producer

    cli(broker, "topic", "create", "binary", "--partitions", "1")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    # The text "\\xff" and the byte 0xff escape alike: only the byte is base64.
    producer.produce("binary", key=b"\\xff", value=b"\xff\x00a", headers=[("h", b"\xfe")])
    producer.produce("binary", key="é".encode(), value=None)
    assert producer.flush(10) == 0
    consumed = cli(broker, "consume", "binary", "--from-beginning", "-n", "2", "--json")
    assert [(r["key"], r["value"], r["headers"]) for r in records(consumed.stdout)] == [
        ("\\xff", {"base64": "/wBh"}, [["h", {"base64": "/g=="}]]),
        ("é", None, []),
    ]
    text = cli(broker, "consume", "binary", "--from-beginning", "-n", "1", "--print-key").stdout
    assert text == "\\xff\t\\xff\x00a\n"


def test_produce_from_file_to_partition(broker: Any, tmp_path: Any) -> None:
    cli(broker, "topic", "create", "files", "--partitions", "2")
    f = tmp_path / "lines.txt"
    f.write_text("".join(f"line-{i}\n" for i in range(50)))
    summary = cli_json(broker, "produce", "files", "--file", str(f), "--partition", "1")
    assert summary["messages"] == 50
    consumed = cli(broker, "consume", "files", "--from-beginning", "--timeout", "1.5", "--json")
    got = records(consumed.stdout)
    assert [(r["partition"], r["offset"], r["value"]) for r in got] == [
        (1, i, f"line-{i}") for i in range(50)
    ]


@pytest.mark.slow
def test_group_consume_describe_reset_delete(broker_factory: Any) -> None:
    # The consumer joins at once: no wait for more members (3 s by default).
    broker = broker_factory({"group.initial.rebalance.delay.ms": "0"})
    cli(broker, "topic", "create", "jobs", "--partitions", "1")
    cli(broker, "produce", "jobs", stdin="a\nb\nc\n")
    consumed = cli(
        broker, "consume", "jobs", "--group", "workers", "--from-beginning", "-n", "3", "--json"
    )
    assert [r["value"] for r in records(consumed.stdout)] == ["a", "b", "c"]

    assert cli_json(broker, "groups", "list") == [{"group": "workers", "state": "Empty"}]
    desc = cli_json(broker, "groups", "describe", "workers")
    assert desc["state"] == "Empty"
    assert desc["members"] == []
    assert desc["partitions"] == [
        {
            "topic": "jobs",
            "partition": 0,
            "committed_offset": 3,
            "log_end_offset": 3,
            "lag": 0,
            "member_id": None,
            "client_id": None,
            "host": None,
        }
    ]

    plan = [{"topic": "jobs", "partition": 0, "current_offset": 3, "new_offset": 0}]
    dry = cli(broker, "groups", "reset-offsets", "workers", "--topic", "jobs", "--to-earliest")
    assert "Dry run" in dry.stdout
    assert cli_json(
        broker, "groups", "reset-offsets", "workers", "--topic", "jobs", "--to-earliest"
    ) == {"group": "workers", "executed": False, "partitions": plan}
    assert cli_json(broker, "groups", "describe", "workers")["partitions"][0]["lag"] == 0
    assert cli_json(
        broker,
        "groups",
        "reset-offsets",
        "workers",
        "--topic",
        "jobs",
        "--to-earliest",
        "--execute",
    ) == {"group": "workers", "executed": True, "partitions": plan}
    (row,) = cli_json(broker, "groups", "describe", "workers")["partitions"]
    assert (row["committed_offset"], row["lag"]) == (0, 3)

    assert "exactly one of" in fails(broker, "groups", "reset-offsets", "workers", "-t", "jobs")
    assert cli_json(broker, "groups", "delete", "workers") == {"group": "workers", "deleted": True}
    assert cli_json(broker, "groups", "list") == []
    assert "consumer group 'workers' does not exist" in fails(
        broker, "groups", "describe", "workers"
    )


def test_reset_offsets_of_some_partitions(broker: Any) -> None:
    cli(broker, "topic", "create", "spread", "--partitions", "3")
    for p in range(3):
        cli(broker, "produce", "spread", "--partition", str(p), stdin="x\n" * (p + 1))
    plan = cli_json(
        broker, "groups", "reset-offsets", "g", "--topic", "spread:0,2", "--to-latest", "--execute"
    )
    assert plan == {
        "group": "g",
        "executed": True,
        "partitions": [
            {"topic": "spread", "partition": 0, "current_offset": None, "new_offset": 1},
            {"topic": "spread", "partition": 2, "current_offset": None, "new_offset": 3},
        ],
    }
    rows = cli_json(broker, "groups", "describe", "g")["partitions"]
    assert [(r["partition"], r["committed_offset"]) for r in rows] == [(0, 1), (2, 3)]

    assert "has no partition 7" in fails(
        broker, "groups", "reset-offsets", "g", "-t", "spread:0,7", "--to-earliest"
    )
    assert "Use TOPIC or TOPIC:P,P" in fails(
        broker, "groups", "reset-offsets", "g", "-t", "spread:x", "--to-earliest"
    )

    def reset(*args: str) -> list[tuple[int, int | None, int]]:
        got = cli_json(broker, "groups", "reset-offsets", "g", *args)["partitions"]
        assert {r["topic"] for r in got} == {"spread"}
        return [(r["partition"], r["current_offset"], r["new_offset"]) for r in got]

    # As kafka-consumer-groups: a shift needs a committed offset to shift from.
    err = fails(broker, "groups", "reset-offsets", "g", "-t", "spread", "--shift-by", "-1")
    assert "cannot shift the offset of spread[1]: the group has no committed offset" in err
    # --all-topics: the partitions with committed offsets.
    assert reset("--all-topics", "--shift-by", "-1", "--execute") == [(0, 1, 0), (2, 3, 2)]
    # --to-current keeps committed offsets; a partition without one goes to the log end.
    assert reset("-t", "spread", "--to-current") == [(0, 0, 0), (1, None, 2), (2, 2, 2)]
    # --by-duration: the first offset at or after that long ago; none (a negative duration
    # reaches into the future) means the log end.
    assert reset("-t", "spread:1", "--by-duration", "PT1H") == [(1, None, 0)]
    assert reset("-t", "spread:1", "--by-duration", "-PT1H") == [(1, None, 2)]
    assert "not an ISO 8601 duration" in fails(
        broker, "groups", "reset-offsets", "g", "-t", "spread", "--by-duration", "1h"
    )
    for topics in ((), ("-t", "spread", "--all-topics")):
        assert "give --topic (repeatable) or --all-topics" in fails(
            broker, "groups", "reset-offsets", "g", *topics, "--to-earliest"
        )
    assert "group 'h' has no committed offsets to reset" in fails(
        broker, "groups", "reset-offsets", "h", "--all-topics", "--to-earliest"
    )


def test_option_errors_raised_before_a_command_connects_are_messages() -> None:
    for args, message in (
        (("--replicas", "a,b"), "error: --replicas 'a,b' is not a list of broker ids"),
        ((), "error: give either --replicas or --cancel"),
    ):
        proc = cli(None, "topic", "reassign", "t", "-p", "0", *args, check=False)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr.startswith(message) and "Traceback" not in proc.stderr


def test_unreachable_broker() -> None:
    port = free_port()  # nothing listens there
    for args in (("topic", "list"), ("consume", "x", "-n", "1"), ("groups", "list")):
        proc = cli(None, *args, "--bootstrap-server", f"127.0.0.1:{port}", check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith(
            f"error: cannot reach 127.0.0.1:{port}: is a broker running?\n"
            "Start one with `artesian up`"
        ), proc.stderr
        assert proc.stdout == ""


def test_unknown_topic(broker: Any) -> None:
    for args in (("topic", "describe", "nope"), ("consume", "nope", "-n", "1")):
        err = fails(broker, *args)
        assert err.startswith("error: topic 'nope' does not exist\n"), err
        assert "artesian topic list" in err
    err = fails(broker, "topic", "alter", "nope", "--config", "retention.ms=1")
    assert "topic 'nope' does not exist" in err
    assert "key=value" in fails(broker, "topic", "create", "x", "--config", "oops")


def test_cluster_config_sets_shows_and_deletes_dynamic_broker_configs(broker_factory: Any) -> None:
    broker = broker_factory()
    d = cli_json(broker, "cluster", "config", "--set", "log.retention.ms=3600000")
    assert d == {
        "broker": None,
        "configs": [
            {
                "name": "log.retention.ms",
                "value": "3600000",
                "source": "DYNAMIC_DEFAULT_BROKER_CONFIG",
                "read_only": False,
            }
        ],
    }
    d = cli_json(broker, "cluster", "config", "--broker", "1", "--set", "log.roll.ms=60000")
    assert [(e["name"], e["value"], e["source"]) for e in d["configs"]] == [
        ("log.retention.ms", "3600000", "DYNAMIC_DEFAULT_BROKER_CONFIG"),
        ("log.roll.ms", "60000", "DYNAMIC_BROKER_CONFIG"),
    ]
    # A topic without overrides takes them.
    cli(broker, "topic", "create", "cfg-t")
    topic = cli_json(broker, "topic", "describe", "cfg-t")
    assert topic["configs"]["retention.ms"]["value"] == "3600000"
    cli(broker, "cluster", "config", "--delete-config", "log.retention.ms")
    assert "No dynamic configs for the cluster default." in cli(broker, "cluster", "config").stdout
    err = fails(broker, "cluster", "config", "--broker", "1", "--set", "log.dirs=/x")
    assert "INVALID_REQUEST" in err and "Cannot update these configs dynamically" in err
    assert "there is no live broker 9" in fails(broker, "cluster", "config", "--broker", "9")
    assert "Add --broker ID" in fails(broker, "cluster", "config", "--all")


def test_cluster_log_levels_shows_sets_and_resets(broker: Any) -> None:
    """kafka-configs --entity-type broker-loggers, as a command: levels change live."""
    shown = cli_json(broker, "cluster", "log-levels", "--broker", "1", "--prefix", "artesian.admin")
    assert shown == {"broker": 1, "loggers": {"artesian.admin": "INFO"}}
    changed = cli_json(
        broker, "cluster", "log-levels", "--broker", "1", "--set", "artesian.admin=debug"
    )
    assert (changed["loggers"]["artesian.admin"], changed["loggers"]["root"]) == ("DEBUG", "INFO")
    reset = cli_json(broker, "cluster", "log-levels", "--broker", "1", "--reset", "artesian.admin")
    assert reset["loggers"]["artesian.admin"] == "INFO"
    # The README's example, and a parent: its children without a level of their own follow.
    fetcher = cli_json(
        broker, "cluster", "log-levels", "--broker", "1", "--set", "artesian.replica_fetcher=DEBUG"
    )
    assert fetcher["loggers"]["artesian.replica_fetcher"] == "DEBUG"
    parent = cli_json(broker, "cluster", "log-levels", "--broker", "1", "--set", "artesian=WARN")
    assert parent["loggers"]["artesian.admin"] == "WARN"
    assert parent["loggers"]["artesian.replica_fetcher"] == "DEBUG"
    err = fails(broker, "cluster", "log-levels", "--broker", "1", "--set", "nope=DEBUG")
    assert "INVALID_CONFIG: Logger nope does not exist!" in err
    assert "there is no live broker 9" in fails(broker, "cluster", "log-levels", "--broker", "9")


def test_messages_print_what_the_user_typed() -> None:
    """Rich's emoji codes stay text: ":x:" in an argument is not turned into a cross."""
    assert "--autoscale '1:x:3' is not" in fails(
        None, "clusters", "create", "x", "--autoscale", "1:x:3"
    )


def test_sigterm_stops_a_group_consumer_as_ctrl_c_does(broker_factory: Any) -> None:
    """kill (SIGTERM) ends `consume --group` as Ctrl-C does: what it printed is committed
    and it leaves the group, rather than dying with its partitions held."""
    import signal
    import subprocess
    import sys
    import time

    broker = broker_factory({"group.initial.rebalance.delay.ms": "0"})
    cli(broker, "topic", "create", "termed", "--partitions", "1")
    cli(broker, "produce", "termed", stdin="a\nb\nc\n")
    env = {**os.environ, "ARTESIAN_BOOTSTRAP": broker.bootstrap}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "artesian.cli.main",
            *("consume", "termed", "--group", "g-term"),
            "--from-beginning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert [line.strip() for line in lines] == ["a", "b", "c"]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 15
    while True:
        desc = cli_json(broker, "groups", "describe", "g-term")
        if not desc["members"]:
            break
        assert time.monotonic() < deadline, desc  # it left, not timed out
        time.sleep(0.2)
    assert [p["committed_offset"] for p in desc["partitions"]] == [3]


def test_piped_tables_keep_their_values_whole(broker: Any) -> None:
    """Piped into grep, a table was laid out for 80 columns and its values cut to '…'."""
    shown = cli(broker, "cluster", "config", "--broker", "1", "--all").stdout
    assert "…" not in shown
    line = next(
        x for x in shown.splitlines() if x.split()[:1] == ["log.cleaner.delete.retention.ms"]
    )
    assert "86400000" in line and "DEFAULT_CONFIG" in line
