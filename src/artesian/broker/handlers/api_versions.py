"""ApiVersions (18): advertises exactly the APIs and versions the registry implements."""

from __future__ import annotations

import datetime
import re
from typing import Any

from kio.schema.errors import ErrorCode

from artesian.broker.handlers._build import make, response_module
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
    cache = ctx.broker.response_cache
    cached = cache.get((API_KEY, version))
    if cached is None:
        mod = response_module(API_KEY, version)
        keys = tuple(
            make(mod.ApiVersion, api_key=k, min_version=e.min_version, max_version=e.max_version)
            for k, e in sorted(ctx.broker.handlers.items())
            if not api.is_private(k)
        )
        cached = cache[(API_KEY, version)] = make(
            mod.ApiVersionsResponse,
            error_code=ErrorCode.none,
            api_keys=keys,
            throttle_time=datetime.timedelta(0),
            supported_features=(),
            finalized_features_epoch=-1,
            finalized_features=(),
            zk_migration_ready=False,
        )
    return cached
