from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for proc in getattr(item, "_brokers", []):
            report.sections.append((f"broker log tail ({proc.bootstrap})", proc.log_tail()))


@pytest.fixture
def broker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    started: list[BrokerProcess] = []
    request.node._brokers = started

    def make(
        settings: dict[str, str] | None = None,
        name: str = "broker",
        env: dict[str, str] | None = None,
    ) -> BrokerProcess:
        proc = BrokerProcess(tmp_path / name, settings, env)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        try:
            proc.stop()
        except Exception:
            proc.kill9()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (.ci/run installs PostgreSQL)."""
    from tests.postgres_server import PostgresServer, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    server = PostgresServer(bindir).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_url: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def broker(broker_factory: object) -> BrokerProcess:
    return broker_factory()  # type: ignore[operator]
