from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker_process import BrokerProcess, claims_dir


def pytest_configure(config: pytest.Config) -> None:
    """With xdist, name the run ourselves: its workers claim ports in a directory named after
    it (broker_process.claim_port), which the controller removes at the end."""
    if (
        not hasattr(config, "workerinput")
        and config.pluginmanager.hasplugin("xdist")
        and getattr(config.option, "testrunuid", None) is None
    ):
        config.option.testrunuid = uuid.uuid4().hex


def pytest_unconfigure(config: pytest.Config) -> None:
    run = getattr(config.option, "testrunuid", None)
    if not hasattr(config, "workerinput") and run:
        shutil.rmtree(claims_dir(run), ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for proc in getattr(item, "_brokers", []):
            report.sections.append((f"broker log tail ({proc.bootstrap})", proc.log_tail()))


def _logged(node: pytest.Item) -> list[BrokerProcess]:
    """The brokers whose log tails a failure report of this test shows."""
    brokers: list[BrokerProcess] | None = getattr(node, "_brokers", None)
    if brokers is None:
        brokers = []
        node._brokers = brokers
    return brokers


@pytest.fixture
def broker_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    started: list[BrokerProcess] = []

    def make(
        settings: dict[str, str] | None = None,
        name: str = "broker",
        env: dict[str, str] | None = None,
    ) -> BrokerProcess:
        proc = BrokerProcess(tmp_path / name, settings, env)
        started.append(proc)
        _logged(request.node).append(proc)
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


@pytest.fixture(scope="module")
def _module_brokers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[tuple[str, str], ...], BrokerProcess]]:
    """The brokers module_broker_factory started in this module, by settings."""
    pool: dict[tuple[tuple[str, str], ...], BrokerProcess] = {}
    yield pool
    codes = {}
    for proc in pool.values():
        try:
            codes[proc.bootstrap] = proc.stop()
        except Exception:
            proc.kill9()
            raise
    assert set(codes.values()) <= {0}, f"unclean shutdown of a module's broker: {codes}"


@pytest.fixture
def module_broker_factory(
    request: pytest.FixtureRequest,
    _module_brokers: dict[tuple[tuple[str, str], ...], BrokerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[object]:
    """Like broker_factory, but one broker per settings for the whole module, saving a broker
    start (~2 s) per test. Only for tests that need no fresh broker: they use topic, group and
    transactional ids of their own, and neither stop nor restart the broker. Each test that
    used one checks at its end that the broker is still alive."""
    used: list[BrokerProcess] = []

    def get(settings: dict[str, str] | None = None) -> BrokerProcess:
        key = tuple(sorted((settings or {}).items()))
        proc = _module_brokers.get(key)
        if proc is None or not proc.alive():
            if proc is not None:
                proc.kill9()  # died in an earlier test (which failed for it): a new one
            data_dir = tmp_path_factory.mktemp("module-broker") / "broker"
            proc = BrokerProcess(data_dir, settings).start()
            _module_brokers[key] = proc
        if proc not in used:
            used.append(proc)
            _logged(request.node).append(proc)
        return proc

    yield get
    for proc in used:
        assert proc.alive(), f"the module's broker {proc.bootstrap} died:\n{proc.log_tail()}"
