"""UpdateFeatures (57), as `kafka-features.sh upgrade` and the admin client's updateFeatures
send it: finalize a newer level of a feature (metadata/features.py) once every registered
broker supports it. Needs ALTER on the cluster.

The updates of one request are taken together or not at all, as KRaft's controller takes
them. Artesian has one feature, ``artesian.metadata.version``, and no downgrade: a level's
records may already be in the log, and an older broker could not read them.
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
from artesian.metadata.features import LEVELS, SUPPORTED_FEATURES
from artesian.metadata.image import MetadataImage
from artesian.metadata.records import FeatureLevelRecord, MetadataRecord

API_KEY = 57
MIN_VERSION = 0
MAX_VERSION = 2

log = logging.getLogger("artesian.admin")


def plan_feature_level(image: MetadataImage, name: str, level: int) -> list[MetadataRecord]:
    """The record finalizing ``name`` at ``level`` (none when it is there already)."""
    if name not in SUPPORTED_FEATURES:
        known = ", ".join(SUPPORTED_FEATURES)
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}. The cluster knows no such "
            f"feature; it has {known}",
        )
    current = image.metadata_version
    if level < 1:
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}: it cannot be removed",
        )
    if level < current:
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}: the cluster is at {current}, "
            "and downgrades are not supported (records of the newer level may be in the log)",
        )
    if level not in LEVELS:
        raise ControllerError(
            ErrorCode.invalid_update_version,
            f"Invalid update version {level} for feature {name}: the levels are "
            f"{min(LEVELS)} to {max(LEVELS)}",
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
    if level == current and name in image.features:
        return []
    return [FeatureLevelRecord(name, level)]


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    mod = response_module(API_KEY, version)
    broker = ctx.broker
    updates = request.feature_updates
    errors: dict[str, tuple[ErrorCode, str | None]] = {}
    top: tuple[ErrorCode, str | None] = (ErrorCode.none, None)
    counts = collections.Counter(u.feature for u in updates)
    if not cluster_authorized(ctx, AclOperation.ALTER):
        top = (ErrorCode.cluster_authorization_failed, CLUSTER_DENIED)
    elif dup := [name for name, n in counts.items() if n > 1]:
        top = (ErrorCode.invalid_request, f"Feature {dup[0]} was specified more than once.")
    else:

        def plan() -> list[MetadataRecord]:
            errors.clear()
            records: list[MetadataRecord] = []
            for u in updates:
                try:
                    records += plan_feature_level(broker.image, u.feature, u.max_version_level)
                except ControllerError as e:
                    errors[u.feature] = (e.code, e.message)
            return [] if errors or getattr(request, "validate_only", False) else records

        try:
            written = broker.plan_and_commit(plan)
        except ControllerError as e:
            top = (e.code, e.message)
        else:
            for record in written:
                if isinstance(record, FeatureLevelRecord):
                    log.info("finalized %s at level %d", record.name, record.level)
        if errors and version >= 2:  # v2 answers with the first error alone
            top = next(iter(errors.values()))
    results = None
    if hasattr(mod, "UpdatableFeatureResult"):  # v0-v1: one result a feature
        results = tuple(
            make(
                mod.UpdatableFeatureResult,
                feature=u.feature,
                error_code=errors.get(u.feature, top)[0],
                error_message=errors.get(u.feature, top)[1],
            )
            for u in updates
        )
    return make(
        mod.UpdateFeaturesResponse,
        throttle_time=datetime.timedelta(0),
        error_code=top[0],
        error_message=top[1],
        results=results,
    )
