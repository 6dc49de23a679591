"""Per-topic log configuration with Kafka's topic-config names, semantics and 4.x defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from artesian.protocol.records import CompressionType

__all__ = ["LONG_MAX", "LogConfig"]

LONG_MAX = 2**63 - 1

# compression.type values to codec ids; "producer" keeps whatever the producer sent.
_TARGET_CODECS = {
    "uncompressed": CompressionType.NONE,
    "none": CompressionType.NONE,
    "gzip": CompressionType.GZIP,
    "snappy": CompressionType.SNAPPY,
    "lz4": CompressionType.LZ4,
    "zstd": CompressionType.ZSTD,
}


@dataclass(slots=True, frozen=True)
class LogConfig:
    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    segment_jitter_ms: int = 0
    segment_index_bytes: int = 10485760
    retention_ms: int = 604800000  # -1: infinite
    retention_bytes: int = -1  # -1: infinite
    index_interval_bytes: int = 4096
    flush_messages: int = LONG_MAX
    flush_ms: int = LONG_MAX
    max_message_bytes: int = 1048588
    message_timestamp_type: str = "CreateTime"
    message_timestamp_before_max_ms: int = LONG_MAX
    message_timestamp_after_max_ms: int = 3600000
    compression_type: str = "producer"
    compression_gzip_level: int = -1
    compression_lz4_level: int = 9
    compression_zstd_level: int = 3
    cleanup_policy: tuple[str, ...] = ("delete",)
    file_delete_delay_ms: int = 60000
    delete_retention_ms: int = 86400000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    preallocate: bool = False
    local_retention_ms: int = -2  # -2: follow retention.ms
    local_retention_bytes: int = -2  # -2: follow retention.bytes
    remote_storage_enable: bool = False
    remote_log_copy_disable: bool = False
    remote_log_delete_on_disable: bool = False
    min_insync_replicas: int = 1  # read by the produce path (acks=all), not by the log

    @classmethod
    def from_properties(
        cls, props: Mapping[str, object], base: LogConfig | None = None
    ) -> LogConfig:
        """Build from already-typed values keyed by Kafka names (``"retention.ms"``), on top of
        ``base`` (the broker defaults) or Kafka's defaults. Unknown keys are ignored: parsing
        and validating strings belongs to the config module."""
        names = {f.name for f in dataclasses.fields(cls)}
        changes: dict[str, object] = {}
        for key, value in props.items():
            name = key.replace(".", "_")
            if name not in names:
                continue
            if name == "cleanup_policy":
                if isinstance(value, str):
                    value = tuple(v.strip() for v in value.split(","))
                elif isinstance(value, Iterable):
                    value = tuple(str(v) for v in value)
            changes[name] = value
        return dataclasses.replace(base if base is not None else cls(), **changes)  # type: ignore[arg-type]

    @property
    def delete_enabled(self) -> bool:
        return "delete" in self.cleanup_policy

    @property
    def compact_enabled(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @property
    def target_codec(self) -> int | None:
        """Codec the broker stores, or None to keep the producer's."""
        return _TARGET_CODECS.get(self.compression_type)

    def compression_level(self, codec: int) -> int | None:
        if codec == CompressionType.GZIP:
            return self.compression_gzip_level
        if codec == CompressionType.LZ4:
            return self.compression_lz4_level
        if codec == CompressionType.ZSTD:
            return self.compression_zstd_level
        return None
