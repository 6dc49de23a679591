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


@pytest.fixture
def broker(broker_factory: object) -> BrokerProcess:
    return broker_factory()  # type: ignore[operator]
