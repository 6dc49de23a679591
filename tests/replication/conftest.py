"""The replication tests' three-broker cluster, fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _logged
from tests.replication.cluster import Cluster


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3).start()
    _logged(request.node).extend(c.brokers.values())  # their log tails in a failure's report
    try:
        yield c
    finally:
        c.stop()
