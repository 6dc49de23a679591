"""The ``artesian`` command: help texts, start-up errors, and shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.broker_process import BrokerProcess, free_port
from tests.cli_run import artesian as run_artesian

# Wide and plain: rich must neither wrap a config name across lines nor colour it.
ENV = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def artesian(
    *args: str, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_artesian(*args, timeout=timeout, cwd=cwd, env=ENV)


def test_top_level_help() -> None:
    r = artesian("--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout
    for command in ("broker", "up"):
        assert command in r.stdout
    assert artesian("-h").stdout == r.stdout


def test_no_arguments_shows_help() -> None:
    r = artesian()
    assert "Usage:" in r.stdout + r.stderr
    assert "broker" in r.stdout + r.stderr


def test_broker_help() -> None:
    r = artesian("broker", "--help")
    assert r.returncode == 0, r.stderr
    for option in ("--listen", "--data-dir", "--set", "--config", "--log-level"):
        assert option in r.stdout, option
    assert "log.retention.hours" in r.stdout  # the --set example names a Kafka config


def test_up_help() -> None:
    r = artesian("up", "--help")
    assert r.returncode == 0, r.stderr
    for option in ("--data-dir", "--port", "--log-level"):
        assert option in r.stdout, option
    assert "127.0.0.1" in r.stdout and ".artesian" in r.stdout


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("no.such.key=1", "no.such.key"),
        ("log.retention.ms=abc", "log.retention.ms"),
        ("num.partitions=0", "num.partitions"),
        ("missing-equals-sign", "missing-equals-sign"),
    ],
)
def test_broker_bad_set_exits_with_message(tmp_path: Path, setting: str, needle: str) -> None:
    r = artesian(
        "broker",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--data-dir",
        str(tmp_path / "d"),
        "--set",
        setting,
    )
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert needle in out, out
    assert "Traceback" not in out, out


def test_broker_bad_listen(tmp_path: Path) -> None:
    r = artesian("broker", "--listen", "nope", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "--listen" in r.stderr and "HOST:PORT" in r.stderr
    assert "Traceback" not in r.stderr


def test_broker_port_in_use(broker: Any, tmp_path: Path) -> None:
    r = artesian("broker", "--listen", broker.bootstrap, "--data-dir", str(tmp_path / "other"))
    assert r.returncode == 1
    assert "cannot start the broker" in r.stderr
    assert "Traceback" not in r.stderr
    assert broker.alive()
    # A metrics port in use is named as a suspect too, not only the listener.
    import socket

    from tests.broker_process import free_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        metrics = held.getsockname()[1]
        r = artesian(
            "broker",
            *("--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "m")),
            *("--set", f"artesian.metrics.port={metrics}"),
        )
    assert r.returncode == 1 and f"metrics port {metrics}" in r.stderr, r.stderr
    # Another OSError says what failed, with its file, not "another broker".
    (tmp_path / "a-file").write_text("")
    r = artesian(
        "broker", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "a-file")
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "another broker" not in r.stderr


def test_urls_in_logs_lose_their_secrets_and_nothing_else() -> None:
    from artesian.broker.server import _without_password

    assert (
        _without_password(
            "postgresql://art:UserPW@127.0.0.1:5432/db?sslpassword=KeyPhrase&password=QueryPW&sslmode=require"
        )
        == "postgresql://art:***@127.0.0.1:5432/db?sslpassword=***&password=***&sslmode=require"
    )
    for url in ("sqlite:////tmp/d/metadata.db", "sqlite:///rel/m.db", "postgresql://h/db"):
        assert _without_password(url) == url


def test_sigterm_exits_zero(broker: Any) -> None:
    assert broker.alive()
    assert broker.stop() == 0
    log = broker.log_path.read_text()
    assert "received SIGTERM: shutting down" in log
    assert "stopped cleanly" in log
    assert "Traceback" not in log


def test_sigint_exits_zero(broker: Any) -> None:
    """Ctrl-C in a terminal: the same clean shutdown."""
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGINT)
    assert broker.proc.wait(20) == 0
    log = broker.log_path.read_text()
    assert "received SIGINT: shutting down" in log
    assert "stopped cleanly" in log


def test_data_dir_of_another_node_id_refuses_to_start(tmp_path: Path) -> None:
    """A different node.id would make every log look foreign (and be deleted): Kafka refuses."""
    first = BrokerProcess(tmp_path / "data").start()
    first.stop()
    other = BrokerProcess(tmp_path / "data", {"node.id": "2"})
    with pytest.raises(RuntimeError, match=r"belongs to node\.id=1"):
        other.start()
    assert other.proc is not None and other.proc.returncode == 2
    again = BrokerProcess(tmp_path / "data").start()  # the logs are still there for node 1
    again.stop()


def _round_trip_from_properties(properties: Path, port: int, topic: str, check: Any = None) -> str:
    """Runs ``artesian broker --config properties`` (in its folder), writes one record to
    ``topic`` with confluent-kafka and reads it back; ``check(consumer)`` may look further
    while it runs. Returns the broker's stderr after a clean SIGTERM."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    proc = subprocess.Popen(
        [sys.executable, "-m", "artesian.cli.main", "broker", "--config", str(properties)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=properties.parent,
    )
    try:
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}"})
        producer.produce(topic, topic.encode())
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "g"})
        consumer.assign([TopicPartition(topic, 0, 0)])
        message = consumer.poll(15)
        if check is not None:
            check(consumer)
        consumer.close()
        assert message is not None and message.value() == topic.encode()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    return stderr.decode()


def test_log_dirs_in_a_properties_file_is_the_data_directory(tmp_path: Path) -> None:
    port = free_port()
    log_dir = tmp_path / "kafka-logs"
    properties = tmp_path / "server.properties"
    properties.write_text(f"listeners=PLAINTEXT://127.0.0.1:{port}\nlog.dirs={log_dir}\n")
    _round_trip_from_properties(properties, port, "in-log-dirs")
    assert (log_dir / "meta.properties").is_file()
    assert any(p.name == "in-log-dirs-0" for p in log_dir.rglob("in-log-dirs-0"))
    assert not (tmp_path / ".artesian").exists()  # the default is not used besides


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (["--set", "log.dirs=/tmp/a,/tmp/b"], "JBOD is not supported"),
        (["--set", "log.dir=/tmp/elsewhere", "--data-dir", "here"], "name different directories"),
    ],
)
def test_log_dirs_that_cannot_be_honoured_stop_the_start(
    tmp_path: Path, settings: list[str], needle: str
) -> None:
    r = artesian("broker", "--listen", f"127.0.0.1:{free_port()}", *settings, cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_log_dirs_does_not_strand_data_kept_in_the_default(tmp_path: Path) -> None:
    # Before log.dirs was honoured, a broker with it in its properties kept its data in
    # ./.artesian: starting it again must not found a new cluster elsewhere.
    (tmp_path / ".artesian").mkdir()
    (tmp_path / ".artesian" / "meta.properties").write_text("node.id=1\n")
    r = artesian(
        *("broker", "--listen", f"127.0.0.1:{free_port()}"),
        *("--set", f"log.dirs={tmp_path / 'kafka-logs'}"),
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "holds a broker's data" in r.stderr and "--data-dir .artesian" in r.stderr
    # Nor is an Apache Kafka data directory taken over.
    kafka = tmp_path / "kafka-data"
    (kafka / "orders-0").mkdir(parents=True)
    (kafka / "meta.properties").write_text("cluster.id=x\nnode.id=1\n")
    (tmp_path / "elsewhere").mkdir()  # no ./.artesian there
    r = artesian(
        *("broker", "--listen", f"127.0.0.1:{free_port()}", "--set", f"log.dir={kafka}"),
        cwd=tmp_path / "elsewhere",
    )
    assert r.returncode == 2 and "an Apache Kafka data directory" in r.stderr
    assert "log.dir " in r.stderr  # the key that was set
    empty = artesian(
        *("broker", "--listen", f"127.0.0.1:{free_port()}", "--set", "log.dirs="),
        cwd=tmp_path / "elsewhere",
    )
    assert empty.returncode == 2 and "log.dirs is empty" in empty.stderr


# Apache Kafka 4's config/server.properties (KRaft, combined roles), with this test's ports
# and directory: it must run as it is.
KAFKA_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,\\
SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={log_dirs}
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


def test_kafkas_own_server_properties_runs_as_it_is(tmp_path: Path) -> None:
    import socket

    port, controller = free_port(), free_port()
    properties = tmp_path / "server.properties"
    properties.write_text(
        KAFKA_SERVER_PROPERTIES.format(
            port=port, controller=controller, log_dirs=tmp_path / "kraft-combined-logs"
        )
    )

    def only_plaintext(consumer: Any) -> None:
        # The controller listener is neither advertised nor opened.
        brokers = consumer.list_topics(timeout=10).brokers
        assert [(b.host, b.port) for b in brokers.values()] == [("127.0.0.1", port)]
        with pytest.raises(ConnectionRefusedError), socket.socket() as s:
            s.connect(("127.0.0.1", controller))

    stderr = _round_trip_from_properties(properties, port, "from-kafka-config", only_plaintext)
    assert "listener CONTROLLER is not opened" in stderr
    assert (tmp_path / "kraft-combined-logs" / "meta.properties").is_file()


def test_a_controller_only_node_is_refused(tmp_path: Path) -> None:
    r = artesian(
        *("broker", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d")),
        *("--set", "process.roles=controller"),
    )
    assert r.returncode == 2
    assert "process.roles=controller" in r.stderr and "broker role" in r.stderr


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (
            {
                "listeners": "CONTROLLER://127.0.0.1:{port}",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
            },
            "names only KRaft controller listeners",
        ),
        (
            {
                "listeners": "PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{other}",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "CONTROLLER",
            },
            "inter.broker.listener.name=CONTROLLER is a KRaft controller listener",
        ),
        (
            {"log.cleaner.dedupe.buffer.size": "10"},
            "too small to fit even a single message",
        ),
    ],
)
def test_settings_that_cannot_work_stop_the_start(
    tmp_path: Path, settings: dict[str, str], needle: str
) -> None:
    ports = {"port": free_port(), "other": free_port()}
    args = [a for k, v in settings.items() for a in ("--set", f"{k}={v.format(**ports)}")]
    if "listeners" not in settings:
        args += ["--listen", f"127.0.0.1:{ports['port']}"]
    r = artesian("broker", "--data-dir", str(tmp_path / "d"), *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_version() -> None:
    from importlib.metadata import version

    for flag in ("--version", "-V"):
        r = artesian(flag)
        assert (r.returncode, r.stdout.strip()) == (0, f"artesian {version('artesian')}")
