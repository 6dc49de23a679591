"""Leader epoch cache: (epoch, start offset) pairs in ``leader-epoch-checkpoint`` (Kafka's
LeaderEpochFileCache), used for OffsetForLeaderEpoch and follower truncation."""

from __future__ import annotations

import threading
from bisect import bisect_right
from pathlib import Path

from artesian.storage.files import write_checkpoint_atomically

__all__ = ["LEADER_EPOCH_CHECKPOINT", "UNDEFINED_EPOCH", "LeaderEpochFileCache"]

LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


class LeaderEpochFileCache:
    def __init__(self, path: Path, entries: list[tuple[int, int]] | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._epochs: list[int] = []
        self._offsets: list[int] = []
        for epoch, offset in entries or []:
            self._epochs.append(epoch)
            self._offsets.append(offset)

    @classmethod
    def load(cls, path: Path) -> LeaderEpochFileCache:
        """Read the checkpoint; a missing or malformed file gives an empty cache (Kafka then
        rebuilds it as leaders append)."""
        entries: list[tuple[int, int]] = []
        try:
            lines = path.read_text().split("\n")
            if lines[0].strip() == "0":
                count = int(lines[1])
                for line in lines[2 : 2 + count]:
                    epoch_s, offset_s = line.split()
                    entries.append((int(epoch_s), int(offset_s)))
        except (OSError, ValueError, IndexError):
            entries = []
        cache = cls(path)
        for epoch, offset in entries:
            cache._assign(epoch, offset)
        return cache

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._offsets, strict=True))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if epoch < 0 or start_offset < 0:
            return False
        if self._epochs and epoch == self._epochs[-1] and start_offset >= self._offsets[-1]:
            return False
        # A new entry supersedes entries with a higher epoch or a start offset not below it.
        while self._epochs and (self._epochs[-1] >= epoch or self._offsets[-1] >= start_offset):
            self._epochs.pop()
            self._offsets.pop()
        self._epochs.append(epoch)
        self._offsets.append(start_offset)
        return True

    def assign(self, epoch: int, start_offset: int) -> None:
        with self._lock:
            changed = self._assign(epoch, start_offset)
        if changed:
            self.flush()

    def epoch_for_offset(self, offset: int) -> int:
        """Epoch of the leader that wrote ``offset``, or -1 when unknown."""
        i = bisect_right(self._offsets, offset) - 1
        return self._epochs[i] if i >= 0 else UNDEFINED_EPOCH

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= ``epoch``, end offset of that epoch).

        The end offset is the start offset of the next epoch, or the LEO for the latest epoch.
        An epoch newer than the latest is UNDEFINED (-1, -1); one older than every entry gets
        (epoch, start offset of the oldest entry), as in Kafka."""
        with self._lock:
            if epoch == UNDEFINED_EPOCH or not self._epochs:
                return UNDEFINED_EPOCH, UNDEFINED_OFFSET
            if epoch == self._epochs[-1]:
                return epoch, log_end_offset
            if epoch > self._epochs[-1]:
                return UNDEFINED_EPOCH, UNDEFINED_OFFSET
            i = bisect_right(self._epochs, epoch)  # first entry with a larger epoch
            if i == 0:
                # Older than the oldest entry: Kafka answers (requested, oldest start offset).
                return epoch, self._offsets[0]
            return self._epochs[i - 1], self._offsets[i]

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop entries starting at or after ``end_offset`` (log truncated to it)."""
        with self._lock:
            changed = False
            while self._offsets and self._offsets[-1] >= end_offset:
                self._epochs.pop()
                self._offsets.pop()
                changed = True
        if changed:
            self.flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """Log start moved: entries wholly before it go; the one spanning it starts there."""
        with self._lock:
            i = bisect_right(self._offsets, start_offset) - 1
            if i < 0 or (i == 0 and self._offsets[0] == start_offset):
                return
            epoch = self._epochs[i]
            del self._epochs[: i + 1]
            del self._offsets[: i + 1]
            self._epochs.insert(0, epoch)
            self._offsets.insert(0, start_offset)
        self.flush()

    def clear(self) -> None:
        with self._lock:
            self._epochs.clear()
            self._offsets.clear()
        self.flush()

    def flush(self) -> None:
        with self._lock:
            pairs = list(zip(self._epochs, self._offsets, strict=True))
        lines = ["0", str(len(pairs))] + [f"{e} {o}" for e, o in pairs]
        write_checkpoint_atomically(self.path, "\n".join(lines) + "\n")
