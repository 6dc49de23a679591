"""All partition logs of one data directory (Kafka's LogManager).

Layout: ``<data_dir>/<topic>-<partition>/`` per log, plus ``recovery-point-offset-checkpoint``,
``log-start-offset-checkpoint`` and, between a clean shutdown and the next startup,
``.kafka_cleanshutdown``. Everything here is synchronous; the broker runs it on threads.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from artesian.storage.files import fsync_dir, write_checkpoint_atomically
from artesian.storage.log import Log
from artesian.storage.log_config import LogConfig

__all__ = [
    "CLEAN_SHUTDOWN_FILE",
    "LOG_START_OFFSET_CHECKPOINT",
    "RECOVERY_POINT_CHECKPOINT",
    "LogManager",
    "parse_partition_dir",
]

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
DELETE_DIR_SUFFIX = "-delete"
MAX_DIR_NAME = 255  # bytes in a file name, on every file system Kafka runs on

TopicPartition = tuple[str, int]


def parse_partition_dir(name: str) -> TopicPartition | None:
    """``my.topic-with-dash-3`` -> (``my.topic-with-dash``, 3): split at the last '-'."""
    topic, sep, part = name.rpartition("-")
    if not sep or not topic or not part.isdigit():
        return None
    return topic, int(part)


def read_offset_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """Kafka's OffsetCheckpointFile: version 0, count, then ``topic partition offset`` lines.
    A missing or malformed file reads as empty (recovery then checks everything)."""
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return {}
    out: dict[TopicPartition, int] = {}
    try:
        if lines[0].strip() != "0":
            return {}
        count = int(lines[1])
        for line in lines[2 : 2 + count]:
            topic, part, offset = line.split(" ")
            out[(topic, int(part))] = int(offset)
    except (ValueError, IndexError):
        return {}
    return out


def write_offset_checkpoint(path: Path, offsets: dict[TopicPartition, int]) -> None:
    lines = ["0", str(len(offsets))]
    lines += [f"{t} {p} {o}" for (t, p), o in sorted(offsets.items())]
    write_checkpoint_atomically(path, "\n".join(lines) + "\n")


class StartupAborted(Exception):
    """The load was asked to stop part-way: the logs opened so far are closed again, and no
    checkpoint nor the clean-shutdown marker is touched, so the next start loads (and if need
    be recovers) every log as if this one had never begun."""

    def __init__(self, loaded: int, total: int) -> None:
        super().__init__(f"stopped after loading {loaded} of {total} log(s)")
        self.loaded = loaded
        self.total = total


class LogManager:
    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig,
        producer_id_expiration_ms: int = 86_400_000,
    ) -> None:
        self.data_dir = data_dir
        self.default_config = default_config
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._logs: dict[TopicPartition, Log] = {}
        self.recovered = False  # the last startup found no clean shutdown file
        self._topic_configs: dict[str, LogConfig] = {}
        self._lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self._pending_deletes: list[tuple[int, Path, Log]] = []

    def startup(
        self,
        now_ms: int,
        topic_configs: Mapping[str, LogConfig] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Load every partition directory; after an unclean shutdown each log recovers from
        its checkpointed recovery point. ``topic_configs`` are the topics' own configs, which
        recovery and everything after it must use. ``should_stop`` is asked before each log
        (a SIGTERM while thousands recover): True raises StartupAborted."""
        self._topic_configs.update(topic_configs or {})
        self.data_dir.mkdir(parents=True, exist_ok=True)
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        self.recovered = not clean
        recovery_points = read_offset_checkpoint(self.data_dir / RECOVERY_POINT_CHECKPOINT)
        start_offsets = read_offset_checkpoint(self.data_dir / LOG_START_OFFSET_CHECKPOINT)
        entries = sorted((e for e in os.scandir(self.data_dir) if e.is_dir()), key=lambda e: e.name)
        for entry in entries:
            if entry.name.endswith(DELETE_DIR_SUFFIX):
                shutil.rmtree(entry.path, ignore_errors=True)  # a delete interrupted by a stop
                continue
            tp = parse_partition_dir(entry.name)
            if tp is None:
                continue
            if should_stop():
                loaded = len(self._logs)
                for opened in self._logs.values():
                    opened.close()
                self._logs.clear()
                raise StartupAborted(loaded, sum(1 for e in entries if parse_partition_dir(e.name)))
            config = self._topic_configs.get(tp[0], self.default_config)
            self._logs[tp] = Log.open(
                Path(entry.path),
                tp[0],
                tp[1],
                config,
                recovery_point=recovery_points.get(tp, 0),
                log_start_offset=start_offsets.get(tp, 0),
                now_ms=now_ms,
                clean_shutdown=clean,
                producer_id_expiration_ms=self.producer_id_expiration_ms,
            )
        # From now on a crash must be treated as unclean.
        if clean:
            marker.unlink()
            fsync_dir(self.data_dir)

    # -- lookup -------------------------------------------------------------------------------

    def get_log(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def all_logs(self) -> list[Log]:
        return list(self._logs.values())

    def get_or_create_log(
        self, topic: str, partition: int, config: LogConfig | None, now_ms: int
    ) -> Log:
        with self._lock:
            log = self._logs.get((topic, partition))
            if log is not None:
                if config is not None and config != log.config:
                    self._topic_configs[topic] = config
                    log.update_config(config)
                return log
            if config is not None:
                self._topic_configs[topic] = config
            config = self._topic_configs.get(topic, self.default_config)
            directory = self.data_dir / f"{topic}-{partition}"
            log = Log.open(
                directory,
                topic,
                partition,
                config,
                recovery_point=0,
                log_start_offset=0,
                now_ms=now_ms,
                clean_shutdown=True,
                producer_id_expiration_ms=self.producer_id_expiration_ms,
            )
            self._logs[(topic, partition)] = log
            return log

    def update_config(self, topic: str, config: LogConfig) -> None:
        with self._lock:
            self._topic_configs[topic] = config
            logs = [log for (t, _), log in self._logs.items() if t == topic]
        for log in logs:
            log.update_config(config)

    # -- deletion -----------------------------------------------------------------------------

    def delete_log(self, topic: str, partition: int, now_ms: int = 0) -> bool:
        """Rename the directory to ``<topic>-<partition>.<uuid>-delete`` at once; the files go
        in :meth:`remove_deleted_logs` after file.delete.delay.ms (fetches may still read)."""
        with self._lock:
            log = self._logs.pop((topic, partition), None)
        if log is None:
            return False
        # The topic part is cut to keep the name within 255 bytes, as Kafka's LocalLog does:
        # a 249-character topic would not fit whole.
        suffix = f"-{partition}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}"
        target = self.data_dir / f"{topic[: MAX_DIR_NAME - len(suffix)]}{suffix}"
        os.replace(log.dir, target)
        fsync_dir(self.data_dir)
        log.dir = target
        with self._lock:
            self._pending_deletes.append((now_ms + log.config.file_delete_delay_ms, target, log))
        return True

    def remove_deleted_logs(self, now_ms: int) -> int:
        with self._lock:
            due = [(p, log) for t, p, log in self._pending_deletes if t <= now_ms]
            self._pending_deletes = [x for x in self._pending_deletes if x[0] > now_ms]
        for path, log in due:
            log.delete()
            shutil.rmtree(path, ignore_errors=True)
        return len(due)

    # -- background duties ----------------------------------------------------------------------

    def cleanup_logs(self, now_ms: int) -> int:
        """Retention for every log, then physical removal of expired ``.deleted`` files."""
        deleted = 0
        for log in self.all_logs():
            deleted += log.delete_old_segments(now_ms)
            log.remove_deleted_segments(now_ms)
        self.remove_deleted_logs(now_ms)
        return deleted

    def flush_dirty_logs(self, now_ms: int) -> list[Log]:
        """Flush logs due by flush.messages / flush.ms; returns them. Runs on a worker thread
        (every log.flush.scheduler.interval.ms) while the event loop keeps appending."""
        flushed = []
        for log in self.all_logs():
            if not log.closed and log.needs_flush(now_ms):
                log.flush(now_ms=now_ms)
                flushed.append(log)
        return flushed

    def checkpoint(self) -> None:
        """Write the recovery point and log start offset checkpoints (atomically)."""
        with self._checkpoint_lock:
            logs = dict(self._logs)
            write_offset_checkpoint(
                self.data_dir / RECOVERY_POINT_CHECKPOINT,
                {tp: log.recovery_point for tp, log in logs.items()},
            )
            write_offset_checkpoint(
                self.data_dir / LOG_START_OFFSET_CHECKPOINT,
                {tp: log.log_start_offset for tp, log in logs.items()},
            )

    def shutdown(self) -> None:
        """Flush and close every log, checkpoint, then mark the shutdown clean."""
        for log in self.all_logs():
            log.flush()
        self.checkpoint()
        for log in self.all_logs():
            log.close()
        marker = self.data_dir / CLEAN_SHUTDOWN_FILE
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.data_dir)
