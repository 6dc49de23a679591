"""Feature levels (KIP-584) on a real broker: what ApiVersions v3 reports, UpdateFeatures'
answers, a record kind refused until its level is finalized, a registration of an older
version blocking the upgrade, and a log from a newer version stopping a broker with a
reason."""

from __future__ import annotations

import functools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from kio.schema.api_versions.v3 import request as api_versions
from kio.schema.errors import ErrorCode
from kio.schema.update_features.v0 import request as update_v0
from kio.schema.update_features.v1 import request as update_v1
from kio.schema.update_features.v2 import request as update_v2

from artesian.metadata.features import LATEST, METADATA_VERSION
from artesian.metadata.records import RegisterBrokerRecord
from artesian.metadata.store import SqliteMetadataStore
from tests.broker_process import BrokerProcess
from tests.cli.test_admin_cli import cli as admin_cli
from tests.kafka_wire import WireConn

FEATURE = METADATA_VERSION


def versions(broker: BrokerProcess) -> Any:
    with WireConn(broker.port) as conn:
        return conn.request(
            18,
            3,
            api_versions.ApiVersionsRequest(
                client_software_name="tests", client_software_version="1"
            ),
        )


def finalized(broker: BrokerProcess) -> tuple[dict[str, int], int]:
    answer = versions(broker)
    levels = {f.name: int(f.max_version_level) for f in answer.finalized_features}
    return levels, int(answer.finalized_features_epoch)


def update(broker: BrokerProcess, level: int, version: int = 1, **extra: Any) -> Any:
    schema = {0: update_v0, 1: update_v1, 2: update_v2}[version]
    key: dict[str, Any] = {"feature": extra.pop("feature", FEATURE), "max_version_level": level}
    if version == 0:
        key["allow_downgrade"] = False
    elif "upgrade_type" in extra:
        key["upgrade_type"] = extra.pop("upgrade_type")
    with WireConn(broker.port) as conn:
        return conn.request(
            57,
            version,
            schema.UpdateFeaturesRequest(
                feature_updates=(schema.FeatureUpdateKey(**key),) * extra.pop("times", 1),
                **extra,
            ),
        )


# The callers look at the exit code themselves.
cli = functools.partial(admin_cli, check=False)


def store_of(broker: BrokerProcess) -> Path:
    return broker.data_dir / "metadata.db"


@pytest.fixture
def at_level_one(tmp_path: Path) -> Any:
    broker = BrokerProcess(tmp_path / "b", {"artesian.metadata.version.bootstrap": "1"})
    broker.start()
    try:
        yield broker
    finally:
        assert broker.stop() == 0, broker.log_tail()


def test_a_new_cluster_starts_at_the_newest_level(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "b").start()
    try:
        answer = versions(broker)
        assert [(f.name, f.min_version, f.max_version) for f in answer.supported_features] == [
            (FEATURE, 1, LATEST)
        ]
        assert [
            (f.name, f.min_version_level, f.max_version_level) for f in answer.finalized_features
        ] == [(FEATURE, LATEST, LATEST)]
        assert answer.finalized_features_epoch >= 0
        described = json.loads(cli(broker, "cluster", "features", "--json").stdout)
        assert described == [
            {
                "feature": FEATURE,
                "supported_min": 1,
                "supported_max": LATEST,
                "finalized": LATEST,
                "epoch": answer.finalized_features_epoch,
            }
        ]
    finally:
        assert broker.stop() == 0


def test_logical_clusters_wait_for_their_level(at_level_one: BrokerProcess) -> None:
    broker = at_level_one
    assert finalized(broker)[0] == {FEATURE: 1}
    refused = cli(broker, "logical-clusters", "bind", "lkc-a", "User:alice")
    assert refused.returncode != 0
    assert "UNSUPPORTED_VERSION" in refused.stderr + refused.stdout, refused
    assert "needs artesian.metadata.version 2" in refused.stderr + refused.stdout

    # What UpdateFeatures refuses, and that nothing changes for it: a refusal is the
    # answer's error and every update's (the updates are taken together).
    checks = [
        (update(broker, 2, validate_only=True), ErrorCode.none),
        (update(broker, 0), ErrorCode.invalid_update_version),
        (update(broker, LATEST + 1), ErrorCode.invalid_update_version),
        (update(broker, 2, feature="metadata.version"), ErrorCode.invalid_update_version),
        (update(broker, 2, times=2), ErrorCode.invalid_request),
        (update(broker, 2, upgrade_type=2), ErrorCode.invalid_update_version),
        (update(broker, 2, upgrade_type=7), ErrorCode.invalid_update_version),
    ]
    for answer, code in checks:
        assert answer.error_code == code, answer
        assert {r.error_code for r in answer.results} == {code}, answer
    with WireConn(broker.port) as conn:  # one good update beside a bad one: neither is made
        mixed = conn.request(
            57,
            1,
            update_v1.UpdateFeaturesRequest(
                feature_updates=(
                    update_v1.FeatureUpdateKey(feature=FEATURE, max_version_level=2),
                    update_v1.FeatureUpdateKey(feature="group.version", max_version_level=1),
                )
            ),
        )
    assert [r.error_code for r in mixed.results] == [ErrorCode.invalid_update_version] * 2
    assert finalized(broker)[0] == {FEATURE: 1}

    _, epoch = finalized(broker)
    upgraded = update(broker, 2, version=0)
    assert (upgraded.error_code, [r.error_code for r in upgraded.results]) == (
        ErrorCode.none,
        [ErrorCode.none],
    )
    levels, new_epoch = finalized(broker)
    assert levels == {FEATURE: 2} and new_epoch > epoch
    bound = cli(broker, "logical-clusters", "bind", "lkc-a", "User:alice")
    assert bound.returncode == 0, bound.stderr
    # No way back: records of level 2 are in the log now. v2 answers at the top.
    down = update(broker, 1, version=2)
    assert down.error_code == ErrorCode.invalid_update_version
    assert "downgrades are not supported" in down.error_message
    # The same level again is no change.
    assert update(broker, 2).results[0].error_code == ErrorCode.none
    assert finalized(broker) == (levels, new_epoch)
    # The level holds across a restart.
    broker.restart()
    assert finalized(broker) == (levels, new_epoch)


def test_a_broker_of_an_older_version_blocks_the_upgrade(at_level_one: BrokerProcess) -> None:
    broker = at_level_one
    assert broker.stop() == 0
    # Broker 2 registered with a version from before feature levels, and has gone.
    store = SqliteMetadataStore(store_of(broker))
    store.append([RegisterBrokerRecord(2, "127.0.0.1", 1)])
    store.close()
    broker.start()
    answer = update(broker, 2)
    assert answer.results[0].error_code == ErrorCode.invalid_update_version
    assert "Broker 2 only supports versions 1-1" in answer.results[0].error_message
    upgrade = cli(broker, "cluster", "features", "--upgrade")
    assert upgrade.returncode != 0 and "Broker 2 only supports" in upgrade.stderr
    assert finalized(broker)[0] == {FEATURE: 1}
    stray = cli(broker, "cluster", "features", "--dry-run")
    assert stray.returncode != 0 and "go with --upgrade" in stray.stderr
    gone = cli(broker, "cluster", "unregister-broker", "2")
    assert gone.returncode == 0, gone.stderr
    checked = cli(broker, "cluster", "features", "--upgrade", "--dry-run")
    assert checked.returncode == 0, checked.stderr
    assert finalized(broker)[0] == {FEATURE: 1}
    upgraded = cli(broker, "cluster", "features", "--upgrade", "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    assert json.loads(upgraded.stdout)[0]["finalized"] == LATEST
    assert finalized(broker)[0] == {FEATURE: LATEST}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (("from_a_newer_artesian", "{}"), "which this version of Artesian does not know"),
        (
            ("feature_level", json.dumps({"name": FEATURE, "level": LATEST + 1})),
            f"is {LATEST + 1}, and this version of Artesian supports 1 to {LATEST}",
        ),
    ],
)
def test_a_log_of_a_newer_version_stops_the_broker_with_a_reason(
    tmp_path: Path, row: tuple[str, str], reason: str
) -> None:
    broker = BrokerProcess(tmp_path / "b").start()
    assert broker.stop() == 0
    offset_of_last = SqliteMetadataStore(store_of(broker)).append([])
    with sqlite3.connect(store_of(broker)) as db:
        db.execute(
            "INSERT INTO metadata_log (offset, kind, payload) VALUES (?, ?, ?)",
            (offset_of_last + 1, *row),
        )
    with pytest.raises(RuntimeError, match="broker exited"):
        broker.start()
    assert reason in broker.log_tail(), broker.log_tail()
    broker.stop()


def test_the_bootstrap_level_is_one_this_version_has(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "b", {"artesian.metadata.version.bootstrap": str(LATEST + 1)})
    with pytest.raises(RuntimeError, match="broker exited"):
        broker.start()
    assert f"supports up to {LATEST}" in broker.log_tail()
    broker.stop()


def test_a_log_from_before_feature_levels_is_at_level_one(tmp_path: Path) -> None:
    """As a cluster rolled from an older release has it: no FeatureLevelRecord at all."""
    broker = BrokerProcess(tmp_path / "b").start()
    assert broker.stop() == 0
    with sqlite3.connect(store_of(broker)) as db:
        db.execute("DELETE FROM metadata_log WHERE kind = 'feature_level'")
    broker.start()
    try:
        # Reported as finalized, so that the operator and kafka-features see where it is.
        assert finalized(broker) == ({FEATURE: 1}, 0)
        # Level 1 again writes nothing: a broker of that release could not read the record.
        assert update(broker, 1).results[0].error_code == ErrorCode.none
        kinds = [type(r).__name__ for _, r in SqliteMetadataStore(store_of(broker)).read()]
        assert "FeatureLevelRecord" not in kinds
        upgraded = cli(broker, "cluster", "features", "--upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        levels, epoch = finalized(broker)
        assert levels == {FEATURE: LATEST} and epoch >= len(kinds)
    finally:
        assert broker.stop() == 0
