from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artesian.protocol.compression import (
    DecompressedSizeExceeded,
    DecompressionError,
    compress,
    decompress,
)
from artesian.protocol.records import CompressionType
from artesian.storage.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    RecordTooLargeError,
)
from artesian.storage.leader_epoch import LeaderEpochFileCache
from artesian.storage.log_config import LogConfig
from artesian.storage.log_validator import validate_and_assign_offsets
from tests.storage.batches import (
    Rec,
    batch_of,
    decode_batches,
    encode_record,
    make_batch,
    zigzag_varint,
    zstd_zeros,
)

NOW = 1_700_000_000_000
CODECS = range(5)


def validate(buf: bytearray, config: LogConfig | None = None, base: int = 100, now: int = NOW):
    return validate_and_assign_offsets(
        buf, base_offset=base, leader_epoch=7, config=config or LogConfig(), now_ms=now
    )


def test_offsets_patched_without_touching_crc() -> None:
    b1, b2 = make_batch(n=3), make_batch(n=2, timestamp=NOW + 50)
    buf = b1 + b2
    crcs = (bytes(buf[17:21]), bytes(buf[len(b1) + 17 : len(b1) + 21]))
    info = validate(buf)
    assert (info.first_offset, info.last_offset, info.batch_count, info.records_count) == (
        100,
        104,
        2,
        5,
    )
    assert (info.max_timestamp, info.offset_of_max_timestamp, info.log_append_time) == (
        NOW + 51,
        104,
        -1,
    )
    assert info.records is buf and not info.recompressed
    assert (bytes(buf[17:21]), bytes(buf[len(b1) + 17 : len(b1) + 21])) == crcs
    decoded = decode_batches(bytes(buf))
    assert [(b.base_offset, b.leader_epoch) for b in decoded] == [(100, 7), (103, 7)]


def test_memoryview_input() -> None:
    buf = bytearray(b"xx") + make_batch(n=2)
    info = validate(memoryview(buf)[2:])  # type: ignore[arg-type]
    assert info.last_offset == 101
    assert decode_batches(bytes(buf[2:]))[0].base_offset == 100


@pytest.mark.parametrize(
    ("mutate", "error", "code"),
    [
        (lambda b: b.__setitem__(80, b[80] ^ 1), CorruptRecordError, 2),  # CRC
        (lambda b: b.__setitem__(16, 1), CorruptRecordError, 2),  # magic
        (lambda b: b.extend(b"\x00" * 20), CorruptRecordError, 2),  # trailing partial header
        (lambda b: b.extend(make_batch()[:70]), CorruptRecordError, 2),  # trailing partial batch
        (lambda b: b.clear(), CorruptRecordError, 2),
    ],
)
def test_corrupt(mutate, error, code) -> None:  # type: ignore[no-untyped-def]
    buf = make_batch(n=3)
    mutate(buf)
    with pytest.raises(error) as e:
        validate(buf)
    assert e.value.error_code == code


def _resign(buf: bytearray) -> bytearray:
    from crc32c import crc32c

    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    return buf


def test_invalid_record_count() -> None:
    buf = make_batch(n=3)
    struct.pack_into(">i", buf, 23, 5)  # lastOffsetDelta 5 with 3 records
    with pytest.raises(InvalidRecordError) as e:
        validate(_resign(buf))
    assert e.value.error_code == 87
    buf = make_batch(n=1)
    struct.pack_into(">i", buf, 57, 0)
    with pytest.raises(InvalidRecordError):
        validate(_resign(buf))
    with pytest.raises(InvalidRecordError):
        validate(make_batch(attributes=0x20))  # control batch from a client


def test_too_large() -> None:
    buf = make_batch(n=1, value_size=1000)
    with pytest.raises(RecordTooLargeError) as e:
        validate(buf, LogConfig(max_message_bytes=len(buf) - 1))
    assert e.value.error_code == 10
    assert validate(make_batch(n=1, value_size=1000), LogConfig(max_message_bytes=len(buf)))


def test_timestamps() -> None:
    config = LogConfig(message_timestamp_before_max_ms=1000, message_timestamp_after_max_ms=500)
    validate(make_batch(timestamp=NOW - 1000), config)
    validate(make_batch(timestamp=NOW + 500), config)
    validate(make_batch(timestamp=-1), config)
    with pytest.raises(InvalidTimestampError) as e:
        validate(make_batch(timestamp=NOW - 1001), config)
    assert e.value.error_code == 32
    with pytest.raises(InvalidTimestampError):
        validate(make_batch(n=2, timestamp=NOW + 500), config)  # max timestamp NOW + 501
    # Default: an hour in the future is the limit, any past timestamp is fine.
    validate(make_batch(timestamp=0))
    with pytest.raises(InvalidTimestampError):
        validate(make_batch(timestamp=NOW + 3_600_001))


def test_log_append_time() -> None:
    config = LogConfig(message_timestamp_type="LogAppendTime")
    buf = make_batch(n=3, timestamp=5) + make_batch(n=1, timestamp=NOW + 10**9)
    info = validate(buf, config, now=NOW)
    assert (info.log_append_time, info.max_timestamp, info.offset_of_max_timestamp) == (
        NOW,
        NOW,
        100,
    )
    decoded = decode_batches(bytes(buf))  # checks the recomputed CRCs
    assert [b.attributes & 0x08 for b in decoded] == [8, 8]
    assert [r[1] for b in decoded for r in b.records] == [NOW] * 4
    assert [b.max_timestamp for b in decoded] == [NOW, NOW]


@pytest.mark.parametrize("target", ["gzip", "uncompressed"])
def test_log_append_time_survives_recompression(target: str) -> None:
    config = LogConfig(message_timestamp_type="LogAppendTime", compression_type=target)
    codec = CompressionType.LZ4 if target == "gzip" else CompressionType.SNAPPY
    info = validate(make_batch(n=3, timestamp=5, codec=codec), config, now=NOW)
    assert info.recompressed
    decoded = decode_batches(bytes(info.records))
    assert [(b.attributes & 0x08, b.attributes & 7) for b in decoded] == [
        (8, CompressionType.GZIP if target == "gzip" else 0)
    ]
    assert [r[1] for b in decoded for r in b.records] == [NOW] * 3


def _records(n: int) -> list[Rec]:
    return [
        Rec(
            None if i % 3 == 0 else b"key%d" % i, b"value-%d" % i * (i + 1), NOW + i, (("h", b"x"),)
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(("source", "target"), list(itertools.product(CODECS, CODECS)))
def test_recompression_between_codecs(source: int, target: int) -> None:
    recs = _records(40)
    name = CompressionType.NAMES[target] if target else "uncompressed"
    buf = make_batch(recs, codec=source) + make_batch(recs[:5], codec=source)
    info = validate(buf, LogConfig(compression_type=name))
    assert info.recompressed == (source != target)
    out = bytes(info.records)
    decoded = decode_batches(out)
    assert [b.attributes & 7 for b in decoded] == [target, target]
    assert [b.base_offset for b in decoded] == [100, 140]
    got = [(r[1], r[2], r[3]) for b in decoded for r in b.records]
    assert got == [(r.timestamp, r.key, r.value) for r in recs + recs[:5]]
    assert [r[0] for b in decoded for r in b.records] == list(range(100, 145))


def test_producer_compression_is_kept() -> None:
    buf = make_batch(_records(10), codec=CompressionType.ZSTD)
    before = bytes(buf[21:])
    info = validate(buf)
    assert info.records is buf and bytes(buf[21:]) == before


@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=5), st.sampled_from(list(CODECS)))
@settings(max_examples=40, deadline=None)
def test_codec_round_trip(chunks: list[bytes], codec: int) -> None:
    data = b"".join(chunks) * 3
    assert decompress(codec, compress(codec, data)) == data


def test_snappy_raw_and_xerial_and_bombs() -> None:
    import cramjam

    data = bytes(range(256)) * 1000
    xerial = compress(CompressionType.SNAPPY, data)
    assert xerial[:16] == b"\x82SNAPPY\x00" + b"\x00\x00\x00\x01" * 2
    assert decompress(CompressionType.SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data
    assert decompress(CompressionType.SNAPPY, xerial) == data
    lz4 = compress(CompressionType.LZ4, data)
    assert lz4[:4] == b"\x04\x22\x4d\x18" and lz4[4] & 0x20  # frame, independent blocks
    bomb = b"\x00" * (50 * 1024 * 1024)
    for codec in (1, 2, 3, 4):
        with pytest.raises(DecompressedSizeExceeded) as e:
            decompress(codec, compress(codec, bomb), max_output_size=1024 * 1024)
        assert e.value.limit == 1024 * 1024
        assert decompress(codec, compress(codec, data), max_output_size=len(data)) == data
        with pytest.raises(DecompressionError):
            decompress(codec, b"definitely not compressed data")
    with pytest.raises(DecompressionError):  # xerial block longer than the data
        decompress(2, b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x09ab")


def test_log_config_from_properties() -> None:
    c = LogConfig.from_properties(
        {"retention.ms": 1000, "cleanup.policy": ["compact", "delete"], "bogus": 1}
    )
    assert c.retention_ms == 1000 and c.cleanup_policy == ("compact", "delete")
    assert c.compact_enabled and c.delete_enabled and c.segment_bytes == 1073741824
    d = LogConfig.from_properties({"segment.ms": 5}, base=c)
    assert (d.segment_ms, d.retention_ms) == (5, 1000)
    assert LogConfig().target_codec is None
    assert LogConfig(compression_type="uncompressed").target_codec == 0


def test_leader_epoch_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "leader-epoch-checkpoint"
    c = LeaderEpochFileCache(path)
    assert c.end_offset_for(0, 10) == (-1, -1)
    c.assign(1, 0)
    c.assign(1, 5)  # same epoch, later offset: ignored
    c.assign(3, 10)
    c.assign(5, 20)
    assert c.entries == [(1, 0), (3, 10), (5, 20)]
    assert path.read_text() == "0\n3\n1 0\n3 10\n5 20\n"
    assert c.latest_epoch == 5
    assert c.end_offset_for(5, 30) == (5, 30)
    assert c.end_offset_for(3, 30) == (3, 20)
    assert c.end_offset_for(4, 30) == (3, 20)
    assert c.end_offset_for(1, 30) == (1, 10)
    assert c.end_offset_for(0, 30) == (0, 0)
    assert c.end_offset_for(6, 30) == (-1, -1)
    assert c.end_offset_for(-1, 30) == (-1, -1)
    assert (c.epoch_for_offset(9), c.epoch_for_offset(10), c.epoch_for_offset(99)) == (1, 3, 5)
    c.truncate_from_end(20)
    assert c.entries == [(1, 0), (3, 10)]
    c.truncate_from_start(15)
    assert c.entries == [(3, 15)]
    c.assign(4, 12)  # start offset below the latest one: supersedes it
    assert c.entries == [(4, 12)]
    again = LeaderEpochFileCache.load(path)
    assert again.entries == [(4, 12)]
    path.write_text("garbage")
    assert LeaderEpochFileCache.load(path).entries == []


@pytest.mark.parametrize("codec", CODECS)
def test_batch_claiming_more_records_than_it_holds_is_rejected(codec: int) -> None:
    """The count moves the log end offset: one record claiming 2**31-1 must not burn offsets."""
    from artesian.protocol.records import set_crc

    buf = make_batch(n=1, codec=codec)
    claimed = 2**31 - 1
    struct.pack_into(">i", buf, 23, claimed - 1)  # lastOffsetDelta
    struct.pack_into(">i", buf, 57, claimed)  # recordsCount
    set_crc(buf, 0, len(buf))
    with pytest.raises(InvalidRecordError, match="Found invalid record structure"):
        validate(buf)


@pytest.mark.parametrize("codec", CODECS)
def test_honest_counts_pass_the_record_count_check(codec: int) -> None:
    buf = make_batch(n=500, codec=codec, value_size=1)
    info = validate(buf)
    assert (info.first_offset, info.last_offset) == (100, 599)


def _record(body: bytes) -> bytes:
    """A record of ``body`` (everything after its length), length-prefixed."""
    return zigzag_varint(len(body)) + body


GOOD = encode_record(0, 0, Rec(b"k", b"value", NOW))
# Malformed record areas, each with the count it claims and what Kafka's reader says.
MALFORMED = {
    "zero bytes": (bytes(40), 5, "invalid record length 0"),
    "0xff bytes": (b"\xff" * 100, 1, "varint is too long"),
    "a record then zeros": (GOOD + bytes(40), 5, "invalid record length 0"),
    "fewer records than claimed": (GOOD, 2, "Found invalid record structure"),
    "more records than claimed": (GOOD * 2, 1, "records still remaining"),
    "a record cut short": (GOOD[:-1], 1, "Found invalid record structure"),
    "fields short of the length": (
        _record(b"\x00\x00\x00\x02k\x02v\x00" + b"xyz"),
        1,
        "expected to read 11 bytes in record payload, but instead read 8",
    ),
    "key past the record": (
        _record(b"\x00\x00\x00\x0ak\x02v\x00") + GOOD,
        2,
        "expected to read 8 bytes in record payload, but instead read 11",
    ),
    "key length -2": (_record(b"\x00\x00\x00\x03\x02v\x00"), 1, "invalid key length -2"),
    "value length -3": (_record(b"\x00\x00\x00\x01\x05\x00"), 1, "invalid value length -3"),
    "header count -2": (_record(b"\x00\x00\x00\x01\x01\x03"), 1, "number of record headers -2"),
    "null header key": (
        _record(b"\x00\x00\x00\x01\x01\x02\x01\x01"),
        1,
        "Invalid negative header key size -1",
    ),
    "a timestamp delta of 11 bytes": (
        _record(b"\x00" + b"\x80" * 10 + b"\x00\x00\x01\x01\x00"),
        1,
        "varlong is too long",
    ),
    "an offset delta of 6 bytes": (
        _record(b"\x00\x00" + b"\x80" * 5 + b"\x00\x01\x01\x00"),
        1,
        "varint is too long",
    ),
    "a key length of 6 bytes": (
        _record(b"\x00\x00\x00" + b"\x81" * 5 + b"\x00\x01\x00"),
        1,
        "varint is too long",
    ),
    "header value length -2": (
        _record(b"\x00\x00\x00\x01\x01\x02\x02h\x03"),
        1,
        "invalid header value length -2",
    ),
}


@pytest.mark.parametrize("codec", [0, CompressionType.GZIP, CompressionType.ZSTD])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_records_are_refused(case: str, codec: int) -> None:
    """Every record is read before the batch is taken, as Kafka's LogValidator does: a batch
    whose CRC is right but whose records are not would move the log end by a made-up count
    and leave consumers a batch they cannot read."""
    raw, count, message = MALFORMED[case]
    buf = batch_of(compress(codec, raw) if codec else raw, count, codec=codec)
    with pytest.raises(InvalidRecordError, match=message):
        validate(buf)


_ANY_RECORDS = st.lists(
    st.builds(
        Rec,
        key=st.none() | st.binary(max_size=200),
        value=st.none() | st.binary(max_size=400),
        timestamp=st.integers(NOW - 10**9, NOW + 10**6),
        headers=st.lists(
            st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=200)), max_size=3
        ).map(tuple),
    ),
    min_size=1,
    max_size=40,
)


@given(_ANY_RECORDS, st.sampled_from([0, CompressionType.LZ4]))
@settings(max_examples=60, deadline=None)
def test_well_formed_records_pass_and_a_cut_never_does(records: list[Rec], codec: int) -> None:
    """Any records a client can write pass the walk, keys, headers, nulls and multi-byte
    varints included; the same bytes one short, or one over, never do."""
    info = validate(make_batch(records, codec=codec))
    assert (info.first_offset, info.last_offset) == (100, 100 + len(records) - 1)
    base = records[0].timestamp
    raw = b"".join(encode_record(i, r.timestamp - base, r) for i, r in enumerate(records))
    for wrong in (raw[:-1], raw + b"\x00"):
        with pytest.raises(InvalidRecordError):
            validate(
                batch_of(compress(codec, wrong) if codec else wrong, len(records), codec=codec)
            )


def test_a_decompression_bomb_is_refused_at_the_bound() -> None:
    """8 KiB of zstd that would be 1 GiB of zeros: refused once the output passes the bound,
    never held whole."""
    buf = batch_of(zstd_zeros(1 << 30), 2**31 - 1, codec=CompressionType.ZSTD)
    assert len(buf) < 40_000
    with pytest.raises(InvalidRecordError, match="decompresses to more than 268435456 bytes"):
        validate(buf)


def test_producers_may_not_set_offsets_or_log_append_time() -> None:
    """A client's batch starts at offset 0 and says CreateTime (Kafka's UnifiedLog and
    LogValidator); a coordinator's own writes are not held to it."""
    with pytest.raises(InvalidRecordError, match="baseOffset of the record batch should be 0"):
        validate(make_batch(n=2, base_offset=5))
    with pytest.raises(InvalidTimestampError, match="should not set timestamp type to LogAppend"):
        validate(make_batch(n=2, attributes=0x08))
    for codec in (5, 6, 7):
        with pytest.raises(InvalidRecordError, match=f"unsupported compression codec {codec}"):
            validate(batch_of(GOOD, 1, codec=codec))


def test_decompression_takes_the_size_a_frame_states_and_survives_a_wrong_one() -> None:
    """gzip's trailer and a zstd frame's content size size the output at once; a stated size
    that is wrong (two gzip members, the trailer naming the last) costs a pass, not the
    answer, and never lifts the bound."""
    import cramjam

    from artesian.protocol.compression import _size_hint

    data = bytes(range(256)) * 4000
    gz, zs = compress(CompressionType.GZIP, data), compress(CompressionType.ZSTD, data)
    assert _size_hint(CompressionType.GZIP, gz) == len(data)
    assert _size_hint(CompressionType.ZSTD, zs) == len(data)
    streamed = cramjam.zstd.Compressor()
    streamed.compress(data)
    no_size = bytes(streamed.finish())  # a streamed frame may not state its size
    assert decompress(CompressionType.ZSTD, no_size) == data
    two_members = gz + compress(CompressionType.GZIP, b"tail")
    assert _size_hint(CompressionType.GZIP, two_members) == 4
    assert decompress(CompressionType.GZIP, two_members) == data + b"tail"
    with pytest.raises(DecompressedSizeExceeded):
        decompress(CompressionType.ZSTD, zs, max_output_size=len(data) - 1)
    # A forged trailer (200 MiB stated for 4 bytes) is corrupt gzip, found as such.
    tiny = compress(CompressionType.GZIP, b"tiny")
    forged = tiny[:-4] + (200 << 20).to_bytes(4, "little")
    with pytest.raises(DecompressionError):
        decompress(CompressionType.GZIP, forged)
