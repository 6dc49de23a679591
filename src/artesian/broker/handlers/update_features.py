"""UpdateFeatures (57), as `kafka-features.sh upgrade` and the admin client's updateFeatures
send it: finalize a newer level of a feature (metadata/features.py) once every registered
broker supports it. Needs ALTER on the cluster.

The updates of one request are taken together or not at all, as KRaft's controller takes
them, and a refusal is the answer's error and every update's. Artesian has one feature,
``artesian.metadata.version``, and no downgrade: a level's records may already be in the
log, and an older broker could not read them.
"""

from __future__ import annotations

import collections
import datetime
import logging
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._authz import CLUSTER_DENIED, AclOperation, cluster_authorized
from artesian.broker.handlers._build import make, response_module
from artesian.metadata.controller import ControllerError
from artesian.metadata.features import SUPPORTED_FEATURES
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import FeatureLevelRecord, MetadataRecord

API_KEY = 57
MIN_VERSION = 0
MAX_VERSION = 2

log = logging.getLogger("artesian.admin")


_UPGRADE, _SAFE_DOWNGRADE, _UNSAFE_DOWNGRADE = 1, 2, 3


def _plan_feature_level(
    image: MetadataImage, name: str, level: int, upgrade_type: int
) -> list[MetadataRecord]:
    """The record finalizing ``name`` at ``level``: none when it is there already (a log
    from before feature levels is at level 1 without a record, and gets none: a broker of
    that time could not read it)."""
    if upgrade_type not in (_UPGRADE, _SAFE_DOWNGRADE, _UNSAFE_DOWNGRADE):
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid upgrade type {upgrade_type}: the controller does not support it",
        )
    if name not in SUPPORTED_FEATURES:
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}. The cluster knows no such "
            f"feature; it has {', '.join(SUPPORTED_FEATURES)}",
        )
    current = image.metadata_version  # the one feature there is
    if level == current:
        return []
    if level < current:
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}: the cluster is at {current}, "
            "and downgrades are not supported (records of the newer level may be in the log)",
        )
    if upgrade_type != _UPGRADE:
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}: a downgrade cannot raise "
            f"it above {current}",
        )
    for node, broker in sorted(image.brokers.items()):
        lowest, highest = broker.features.get(name, (0, 0))
        if not lowest <= level <= highest:
            raise ControllerError(
                ErrorCode.invalid_update_version,
                f"Invalid update version {level} for feature {name}. Broker {node} only "
                f"supports versions {lowest}-{highest}: upgrade it first (or unregister it, "
                "if it has left for good)",
            )
    return [FeatureLevelRecord(name, level)]


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    broker = ctx.broker
    updates = request.feature_updates
    error: tuple[ErrorCode, str | None] = (ErrorCode.none, None)
    counts = collections.Counter(u.feature for u in updates)
    if not cluster_authorized(ctx, AclOperation.ALTER):
        error = (ErrorCode.cluster_authorization_failed, CLUSTER_DENIED)
    elif dup := [name for name, n in counts.items() if n > 1]:
        error = (ErrorCode.invalid_request, f"Feature {dup[0]} was specified more than once.")
    else:

        def plan() -> list[MetadataRecord]:
            records: list[MetadataRecord] = []
            for u in updates:
                if version == 0:  # allow_downgrade asks for a safe downgrade
                    kind = _SAFE_DOWNGRADE if u.allow_downgrade else _UPGRADE
                else:
                    kind = u.upgrade_type
                records += _plan_feature_level(broker.image, u.feature, u.max_version_level, kind)
            return [] if getattr(request, "validate_only", False) else records

        try:
            for record in broker.plan_and_commit(plan):
                if isinstance(record, FeatureLevelRecord):
                    log.info("finalized %s at level %d", record.name, record.level)
        except ControllerError as e:
            error = (e.code, e.message)
    # The updates are taken together: one refused is all refused, and every result says why.
    results = None
    if hasattr(mod, "UpdatableFeatureResult"):  # v0-v1
        results = tuple(
            make(
                mod.UpdatableFeatureResult,
                feature=u.feature,
                error_code=error[0],
                error_message=error[1],
            )
            for u in updates
        )
    return make(
        mod.UpdateFeaturesResponse,
        throttle_time=datetime.timedelta(0),
        error_code=error[0],
        error_message=error[1],
        results=results,
    )
