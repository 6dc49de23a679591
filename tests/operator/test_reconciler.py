"""The reconciler's decisions, sans I/O: what it starts, drains, stops and rolls for each
picture of the cluster, and what it waits for."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from artesian.operator.reconciler import Action, BrokerObservation, Observation, reconcile
from artesian.operator.spec import ClusterSpec, SpecError


def _spec(brokers: int = 3, version: str = "1") -> ClusterSpec:
    return ClusterSpec(brokers=brokers, data_dir=Path("/tmp/x"), version=version)


def _healthy(spec: ClusterSpec, nodes: list[int], **over: object) -> Observation:
    seen = Observation(reachable=True, controller=1, balancer_state="IDLE")
    for n in nodes:
        seen.brokers[n] = BrokerObservation(
            n,
            running=True,
            revision=spec.revision(n),
            live=True,
            under_replicated=0,
            registered=True,
        )
    for key, value in over.items():
        node, attr = key.split("_", 1)
        setattr(seen.brokers[int(node.removeprefix("b"))], attr, value)
    return seen


def test_a_new_cluster_starts_every_broker_at_once() -> None:
    plan = reconcile(_spec(), Observation())
    assert plan.actions == [
        Action("start", 1, "declared but not running"),
        Action("start", 2, "declared but not running"),
        Action("start", 3, "declared but not running"),
    ]
    assert plan.phase == "Reconciling"


def test_a_cluster_as_declared_is_ready() -> None:
    spec = _spec()
    plan = reconcile(spec, _healthy(spec, [1, 2, 3]))
    assert (plan.actions, plan.phase, plan.waiting_for) == ([], "Ready", None)


def test_running_is_not_ready_until_every_broker_joined() -> None:
    spec = _spec()
    plan = reconcile(spec, _healthy(spec, [1, 2, 3], b2_live=False))
    assert (plan.actions, plan.phase) == ([], "Reconciling")
    assert plan.waiting_for == "brokers [2] to join the cluster"


def test_scaling_in_drains_then_stops_the_highest_brokers() -> None:
    spec = _spec(2)
    seen = _healthy(spec, [1, 2, 3])
    assert reconcile(spec, seen).actions == [Action("remove", 3, "above the declared broker count")]
    seen.brokers[3].removal = "IN_PROGRESS"
    plan = reconcile(spec, seen)
    assert plan.actions == [] and plan.waiting_for == "the self-balancer to drain broker 3"
    seen.brokers[3].removal = "DRAINED"
    assert reconcile(spec, seen).actions == [Action("stop", 3, "drained")]
    seen.brokers[3].running = seen.brokers[3].live = False
    plan = reconcile(spec, seen)
    assert plan.waiting_for == "the cluster to unregister broker 3"
    seen.brokers[3].removal, seen.brokers[3].registered = "COMPLETE", False
    assert reconcile(spec, seen).phase == "Ready"


def test_an_extra_broker_that_is_down_is_still_drained() -> None:
    spec = _spec(2)
    seen = _healthy(spec, [1, 2, 3], b3_running=False, b3_live=False)
    assert reconcile(spec, seen).actions == [Action("remove", 3, "above the declared broker count")]


def test_a_removal_that_fails_needs_a_person_and_the_broker_keeps_running() -> None:
    spec = _spec(2)
    seen = _healthy(spec, [1, 2, 3], b3_removal="FAILED")
    plan = reconcile(spec, seen)
    assert plan.actions == [] and plan.phase == "Degraded"
    assert "broker 3 cannot be drained" in (plan.waiting_for or "")


def test_scaling_back_out_cancels_a_removal() -> None:
    spec = _spec(3)
    for state in ("IN_PROGRESS", "FAILED"):  # a failed one would otherwise show for good
        seen = _healthy(spec, [1, 2, 3], b3_removal=state)
        assert reconcile(spec, seen).actions == [Action("cancel_removal", 3, "declared again")]


def test_an_upgrade_rolls_one_broker_at_a_time_and_the_controller_last() -> None:
    old, new = _spec(3, "1"), _spec(3, "2")
    seen = _healthy(old, [1, 2, 3])
    assert reconcile(new, seen).actions == [Action("restart", 2, "revision out of date")]
    seen.brokers[2].revision = new.revision(2)
    assert reconcile(new, seen).actions == [Action("restart", 3, "revision out of date")]
    seen.brokers[3].revision = new.revision(3)
    assert reconcile(new, seen).actions == [Action("restart", 1, "revision out of date")]


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ({"b1_under_replicated": 4}, "broker 1 has 4 under-replicated partitions"),
        ({"b3_live": False}, "broker 3 is not live yet"),
        ({"b2_under_replicated": None}, "broker 2's metrics are unread"),
    ],
)
def test_the_roll_waits_for_a_healthy_cluster(fault: dict[str, object], why: str) -> None:
    old, new = _spec(3, "1"), _spec(3, "2")
    seen = _healthy(old, [1, 2, 3], **fault)
    plan = reconcile(new, seen)
    assert [a for a in plan.actions if a.kind == "restart"] == []
    assert plan.waiting_for == f"a healthy cluster before rolling ({why})"


@pytest.mark.parametrize("state", ["REBALANCING", "REMOVING_BROKERS", None])
def test_the_roll_waits_for_the_self_balancer(state: str | None) -> None:
    old, new = _spec(3, "1"), _spec(3, "2")
    seen = _healthy(old, [1, 2, 3])
    seen.balancer_state = state
    plan = reconcile(new, seen)
    assert plan.actions == []
    assert plan.waiting_for == (
        f"a healthy cluster before rolling (the self-balancer is {state or 'not answering'})"
    )


def test_after_the_roll_the_newest_metadata_version_is_finalized() -> None:
    spec = _spec()
    seen = _healthy(spec, [1, 2, 3])
    seen.metadata_version, seen.metadata_version_supported = 1, 2
    plan = reconcile(spec, seen)
    assert [(a.kind, a.node_id, a.level) for a in plan.actions] == [("finalize", 1, 2)]
    assert plan.phase == "Reconciling"
    # Not while a broker still runs the old revision: it rolls first.
    stale = _healthy(spec, [1, 2, 3], b2_revision="old")
    stale.metadata_version, stale.metadata_version_supported = 1, 2
    assert [(a.kind, a.node_id) for a in reconcile(spec, stale).actions] == [("restart", 2)]
    # Nor while a broker is away.
    away = _healthy(spec, [1, 2, 3], b3_live=False)
    away.metadata_version, away.metadata_version_supported = 1, 2
    assert reconcile(spec, away).actions == []
    # A spec may pin it lower, keeping the way back open.
    pinned = ClusterSpec(brokers=3, data_dir=Path("/tmp/x"), metadata_version=1)
    held = _healthy(pinned, [1, 2, 3])
    held.metadata_version, held.metadata_version_supported = 1, 2
    assert reconcile(pinned, held).actions == []
    pinned = ClusterSpec(brokers=3, data_dir=Path("/tmp/x"), metadata_version=2)
    held = _healthy(pinned, [1, 2, 3])
    held.metadata_version, held.metadata_version_supported = 1, 3
    assert [(a.kind, a.level) for a in reconcile(pinned, held).actions] == [("finalize", 2)]
    seen.metadata_version = 2
    assert reconcile(spec, seen).actions == []


def test_a_config_change_is_an_upgrade_too() -> None:
    a = ClusterSpec(3, Path("/x"), config={"log.retention.hours": "24"})
    b = ClusterSpec(3, Path("/x"), config={"log.retention.hours": "48"})
    assert a.revision(1) != b.revision(1) and a.revision(1) != a.revision(2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"brokers": 0}, "brokers must be"),
        ({"brokers": "3"}, "brokers must be"),
        ({"nodes": 3}, "unknown spec fields ['nodes']"),
        ({"config": {"node.id": 4}}, "set by the operator"),
        ({"config": {"inter.broker.listener.name": "X"}}, "set by the operator"),
        ({"config": {"log.dirs": "/data"}}, "set by the operator"),
        ({"first_port": 80}, "first_port"),
        ({"first_port": 65000}, "leaves no room for 1 brokers and their metrics"),
        ({"first_port": 64000, "client_protocol": "SSL"}, "first_port 64000 leaves no room"),
        ({"client_protocol": "sasl_ssl"}, "client_protocol 'sasl_ssl' is not one of"),
        ({"client_config": {"ssl.keystore.location": "k"}}, "needs a client_protocol other"),
        ({"client_protocol": "SSL", "client_config": []}, "[client_config] must be a table"),
        ({"racks": [1]}, "racks must be"),
        ({"metadata_version": 0}, "metadata_version must be a level from 1, not 0"),
        ({"metadata_version": "2"}, "metadata_version must be a level"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(raw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ClusterSpec.from_dict(raw, Path("/x"))


def test_a_spec_file_reads_as_declared(tmp_path: Path) -> None:
    f = tmp_path / "cluster.toml"
    f.write_text(
        'brokers = 2\nfirst_port = 19091\ndata_dir = "d"\nracks = ["a", "b"]\n'
        '[config]\n"min.insync.replicas" = 2\n"auto.leader.rebalance.enable" = false\n'
    )
    spec = ClusterSpec.load(f)
    assert spec.data_dir == tmp_path / "d" and spec.bootstrap() == "127.0.0.1:19091,127.0.0.1:19092"
    assert spec.properties(2) == {
        "rsm.config.store.url": f"file://{tmp_path / 'd' / 'remote-storage'}",
        "min.insync.replicas": "2",
        "auto.leader.rebalance.enable": "false",
        "node.id": "2",
        "artesian.metadata.store.url": f"sqlite:///{tmp_path / 'd' / 'metadata.db'}",
        "artesian.metrics.port": "20092",
        "broker.rack": "b",
    }


def test_a_client_listener_gives_each_broker_an_internal_and_a_client_listener(
    tmp_path: Path,
) -> None:
    import json

    from artesian.config.broker import load_properties
    from artesian.operator.runtime import LocalProcessRuntime

    f = tmp_path / "cluster.toml"
    f.write_text(
        'brokers = 2\nfirst_port = 19091\ndata_dir = "cluster-data"\nclient_protocol = "SASL_SSL"\n'
        '[client_config]\n"sasl.enabled.mechanisms" = ["SCRAM-SHA-512"]\n'
    )
    spec = ClusterSpec.load(f)
    assert spec.bootstrap() == "127.0.0.1:19091,127.0.0.1:19092"  # the operator's own
    assert spec.client_bootstrap() == "127.0.0.1:21091,127.0.0.1:21092"
    props = spec.properties(2)
    assert {k: v for k, v in props.items() if "listener" in k or "sasl" in k} == {
        "listeners": "INTERNAL://127.0.0.1:19092,CLIENT://127.0.0.1:21092",
        "listener.security.protocol.map": "INTERNAL:SASL_PLAINTEXT,CLIENT:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.internal.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
    }
    assert "super.users" not in props  # no authorizer configured
    runtime = LocalProcessRuntime(spec)
    command = runtime.command(2)
    assert "--listen" not in command and "listeners=" + props["listeners"] in command
    # INTERNAL's password: made once, kept in a file only its owner reads, never on a
    # command line (anyone on the machine can read those).
    password = spec.internal_password()
    secret_file = tmp_path / "cluster-data" / "internal.secret"
    assert secret_file.read_text() == password and secret_file.stat().st_mode & 0o777 == 0o600
    assert ClusterSpec.load(f).internal_password() == password  # read back, not made again
    assert not any(password in arg for arg in command) and password not in json.dumps(props)
    secret_file.chmod(0o644)  # someone widened it: narrowed again on the next read
    assert spec.internal_password() == password and secret_file.stat().st_mode & 0o777 == 0o600
    secret_file.write_text("")
    with pytest.raises(SpecError, match="is empty: remove it and restart every broker"):
        spec.internal_password()
    secret_file.write_text(password)
    spec.broker_dir(2).mkdir(parents=True)
    runtime._write_secrets(2)
    broker_file = spec.broker_dir(2) / "secret.properties"
    assert command[command.index("--config") + 1] == str(broker_file)
    assert broker_file.stat().st_mode & 0o777 == 0o600
    assert load_properties(broker_file) == {
        "listener.name.internal.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="artesian-internal" password="{password}" '
            f'user_artesian-internal="{password}";'
        )
    }
    # With an authorizer, the operator's own user is a super user besides those declared.
    authorized = ClusterSpec.from_dict(
        {
            "client_protocol": "SASL_PLAINTEXT",
            "config": {"authorizer.class.name": "x", "super.users": "User:admin"},
        },
        tmp_path,
    )
    assert authorized.properties(1)["super.users"] == "User:admin;User:artesian-internal"
    # Without a client listener: one PLAINTEXT listener, given as --listen, as before.
    plain = ClusterSpec.from_dict({"first_port": 19091}, tmp_path)
    assert plain.client_bootstrap() == plain.bootstrap() == "127.0.0.1:19091"
    assert "listeners" not in plain.properties(1)
    assert LocalProcessRuntime(plain).command(1)[4:6] == ["--listen", "127.0.0.1:19091"]
    assert plain.revision(1) != ClusterSpec.from_dict(
        {"first_port": 19091, "client_protocol": "SASL_PLAINTEXT"}, tmp_path
    ).revision(1)


def test_a_crashed_broker_is_started_again_at_once_the_first_time() -> None:
    spec = _spec()
    seen = _healthy(spec, [1, 3])
    seen.brokers[2] = BrokerObservation(2, crashes=1, last_exit="exit code 1: boom")
    plan = reconcile(spec, seen)
    assert plan.actions == [Action("start", 2, "crashed (exit code 1: boom)")]
    assert plan.phase == "Reconciling"


@pytest.mark.parametrize(("crashes", "phase"), [(2, "Reconciling"), (3, "Degraded")])
def test_a_crash_loop_waits_out_its_backoff(crashes: int, phase: str) -> None:
    spec = _spec()
    seen = _healthy(spec, [1, 3])
    seen.brokers[2] = BrokerObservation(
        2, crashes=crashes, restart_in=9.6, last_exit="exit code 1: port in use"
    )
    plan = reconcile(spec, seen)
    assert (plan.actions, plan.phase) == ([], phase)
    assert plan.waiting_for == (
        f"broker 2 to be started again in 10 s: it crashed {crashes} times in a row "
        "(last: exit code 1: port in use)"
    )


def test_crash_backoff_doubles_up_to_its_longest() -> None:
    from artesian.operator.operator import crash_backoff

    assert [crash_backoff(n, 10, 300) for n in range(1, 9)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_failed_removal_is_asked_for_again_when_due() -> None:
    """Topics or brokers may have changed since: the operator asks again now and then."""
    spec = _spec(2)
    seen = _healthy(spec, [1, 2, 3], b3_removal="FAILED", b3_removal_retry_due=True)
    plan = reconcile(spec, seen)
    assert plan.actions == [Action("remove", 3, "retrying a removal that failed")]
    assert plan.phase == "Degraded"


def test_a_failed_removal_is_asked_again_later_and_later(tmp_path: Path) -> None:
    """The operator's timer: due after removal_retry_after, then twice that after a retry
    that fails again; forgotten once the broker drains."""
    from artesian.operator.operator import Operator

    spec = ClusterSpec(brokers=2, data_dir=tmp_path, first_port=1)  # nothing listens there
    op = Operator(lambda: spec, runtime_for=lambda s: _NoRuntime(), removal_retry_after=0.5)

    def due() -> bool:
        seen = _healthy(spec, [1, 2, 3], b3_removal="FAILED")
        op._observe_failed_removals(seen)
        return seen.brokers[3].removal_retry_due

    assert not due()
    time.sleep(0.6)
    assert due()
    op._act(Action("remove", 3, "retrying a removal that failed"))  # unreachable: logged only
    assert not due()
    time.sleep(0.3)
    assert not due()  # the second wait is twice the first
    time.sleep(0.8)
    assert due()
    drained = _healthy(spec, [1, 2, 3], b3_removal="DRAINED")
    op._observe_failed_removals(drained)
    assert op._removal_failed == {}


class _NoRuntime:
    def running(self) -> dict[int, str | None]:
        return {}

    def start(self, node: int) -> None:
        raise AssertionError("not expected")

    def stop(self, node: int) -> None:
        raise AssertionError("not expected")

    def last_exit(self, node: int) -> str | None:
        return None


def test_the_operator_takes_a_changed_spec_once_it_reads_the_same_twice(tmp_path: Path) -> None:
    """An editor's save caught halfway must not drive the cluster: a new spec is taken when
    two passes in a row read it, and a spec that does not read leaves the last good one."""
    from artesian.operator.operator import Operator

    specs: list[ClusterSpec | SpecError] = [ClusterSpec(brokers=2, data_dir=tmp_path, first_port=1)]

    def load() -> ClusterSpec:
        current = specs[-1]
        if isinstance(current, SpecError):
            raise current
        return current

    op = Operator(load, runtime_for=lambda s: _NoRuntime(), settle=True)

    def reconciled() -> ClusterSpec:
        op.spec = op._read_spec()  # as reconcile_once takes it
        return op.spec

    first = op.spec
    three = ClusterSpec(brokers=3, data_dir=tmp_path, first_port=1)
    specs.append(ClusterSpec(brokers=1, data_dir=tmp_path, first_port=1))  # half-saved
    assert reconciled() is first
    specs.append(three)
    assert reconciled() is first  # read once: not yet
    assert reconciled() == three
    specs.append(SpecError("cannot read the cluster spec: bad"))
    assert reconciled() == three  # the last good one
    assert reconciled() == three
