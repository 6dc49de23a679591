"""ApiVersions (18): advertises exactly the APIs and versions the registry implements, and
(v3+, KIP-584) the feature levels this broker supports and the cluster has finalized."""

from __future__ import annotations

import datetime
import re
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
from artesian.metadata.features import METADATA_VERSION, SUPPORTED_FEATURES
from artesian.protocol import api

API_KEY = 18
MIN_VERSION = 0
MAX_VERSION = 4


# KIP-511: what a client may call itself.
_SOFTWARE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")


def handle(ctx: Any, request: Any) -> Any:
    version = ctx.header.api_version
    if version >= 3 and not (
        _SOFTWARE.match(request.client_software_name)
        and _SOFTWARE.match(request.client_software_version)
    ):
        mod = response_module(API_KEY, version)
        return make(
            mod.ApiVersionsResponse,
            error_code=ErrorCode.invalid_request,
            api_keys=(),
            throttle_time=datetime.timedelta(0),
            supported_features=(),
            finalized_features_epoch=-1,
            finalized_features=(),
            zk_migration_ready=False,
        )
    if version >= 3:
        ctx.connection.client_software = (
            str(request.client_software_name),
            str(request.client_software_version),
        )
    image = ctx.broker.image
    cache = ctx.broker.response_cache
    epoch, cached = cache.get((API_KEY, version), (None, None))
    if cached is None or epoch != image.features_epoch:  # finalized features changed
        mod = response_module(API_KEY, version)
        keys = tuple(
            make(mod.ApiVersion, api_key=k, min_version=e.min_version, max_version=e.max_version)
            for k, e in sorted(ctx.broker.handlers.items())
            if not api.is_private(k)
        )
        features: dict[str, Any] = {}
        if version >= 3:
            features = dict(
                supported_features=tuple(
                    make(mod.SupportedFeatureKey, name=name, min_version=lo, max_version=hi)
                    for name, (lo, hi) in SUPPORTED_FEATURES.items()
                ),
                # A log from before feature levels is at level 1, finalized from the start.
                finalized_features_epoch=max(image.features_epoch, 0),
                finalized_features=tuple(
                    make(
                        mod.FinalizedFeatureKey,
                        name=name,
                        max_version_level=level,
                        min_version_level=level,
                    )
                    for name, level in sorted(
                        {**image.features, METADATA_VERSION: image.metadata_version}.items()
                    )
                ),
            )
        cached = make(
            mod.ApiVersionsResponse,
            error_code=ErrorCode.none,
            api_keys=keys,
            throttle_time=datetime.timedelta(0),
            zk_migration_ready=False,
            **features,
        )
        cache[(API_KEY, version)] = (image.features_epoch, cached)
    return cached
