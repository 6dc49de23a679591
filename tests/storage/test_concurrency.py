from __future__ import annotations

import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from artesian.storage.log_config import LogConfig
from tests.storage.batches import make_batch
from tests.storage.test_log import NOW, offsets_of, open_log


def test_flush_on_worker_thread_while_appending(tmp_path: Path) -> None:
    size = len(make_batch(n=2))
    config = LogConfig(segment_bytes=size * 7, index_interval_bytes=1)
    log = open_log(tmp_path / "t-0", config)
    stop = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            while not stop.is_set():
                log.flush(now_ms=NOW)
                log.read(0, 1 << 20)
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=flusher)
    t.start()
    for _ in range(300):
        log.append_as_leader(make_batch(n=2), 0, NOW)
    stop.set()
    t.join()
    assert errors == []
    log.flush()
    assert log.recovery_point == 600
    log.close()
    log = open_log(tmp_path / "t-0", config, clean=False, recovery_point=0)
    assert log.log_end_offset == 600
    got = []
    for seg in log.segments:
        info = log.read(seg.base_offset, 1 << 20)
        assert info.records is not None
        got += offsets_of(info.records.read_bytes())
    assert got == list(range(600))
    log.close()


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 300)), min_size=1, max_size=25))
@settings(max_examples=25, deadline=None)
def test_round_trip_any_batch_sizes(tmp_path_factory, shape) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("log") / "t-0"
    log = open_log(d, LogConfig(segment_bytes=2000, index_interval_bytes=300))
    written = []
    for n, vs in shape:
        b = make_batch(n=n, value_size=vs)
        log.append_as_leader(b, 0, NOW)
        written.append(bytes(b))
    log.close()
    log = open_log(d, LogConfig(segment_bytes=2000, index_interval_bytes=300), clean=False)
    out = b""
    offset = 0
    while offset < log.log_end_offset:
        info = log.read(offset, 1)  # one batch at a time
        assert info.records is not None
        chunk = info.records.read_bytes()
        out += chunk
        offset = offsets_of(chunk)[-1] + 1
    assert out == b"".join(written)
    assert offset == sum(n for n, _ in shape)
    log.close()
