"""Readers and writers compiled from kio's message schemas.

kio gives us the schema classes of every Kafka API (generated from Kafka's own JSON), but its
Rust decoder is not safe on untrusted input: an array count near 2**31 makes it attempt a huge
allocation that aborts the process, and an unknown tagged field raises KeyError instead of
being skipped (see shared/design/protocol-notes.md). So we keep kio's classes and compile our
own closures from them, once per class:

- every length and count is checked against the bytes that remain before anything is
  allocated, so a hostile frame costs no more memory than its own size;
- unknown tagged fields are skipped, as the spec says;
- the writer appends to one bytearray with precompiled struct formats, which is several times
  faster than kio's BytesIO-based writer on large responses such as Metadata.

Values come back as kio expects them (ErrorCode, timedelta, datetime, UUID); ``records``
fields are returned as zero-copy memoryviews into the frame.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from kio.schema.errors import ErrorCode
from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

from artesian.protocol.errors import DecodeError

__all__ = ["DecodeError", "Reader", "Writer", "read_uvarint", "reader_for", "writer_for"]

Buf = bytes | bytearray | memoryview
Reader = Callable[[memoryview, int], tuple[Any, int]]
Writer = Callable[[bytearray, Any], None]


_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MS = datetime.timedelta(milliseconds=1)


# --- varints ------------------------------------------------------------------------------


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def write_uvarint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


# --- primitive readers --------------------------------------------------------------------


def _fixed(st: struct.Struct) -> Reader:
    size = st.size
    unpack = st.unpack_from

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        if pos + size > len(buf):
            raise DecodeError("truncated")
        return unpack(buf, pos)[0], pos + size

    return read


def _read_bool(buf: memoryview, pos: int) -> tuple[bool, int]:
    if pos >= len(buf):
        raise DecodeError("truncated")
    return buf[pos] != 0, pos + 1


def _length(buf: memoryview, pos: int, compact: bool, wide: bool) -> tuple[int, int]:
    """Length prefix: -1 for null; checked against the bytes that remain."""
    if compact:
        n, pos = read_uvarint(buf, pos)
        n -= 1
    elif wide:
        if pos + 4 > len(buf):
            raise DecodeError("truncated")
        n = _I32.unpack_from(buf, pos)[0]
        pos += 4
    else:
        if pos + 2 > len(buf):
            raise DecodeError("truncated")
        n = _I16.unpack_from(buf, pos)[0]
        pos += 2
    if n < -1:
        raise DecodeError(f"negative length {n}")
    if n > len(buf) - pos:
        raise DecodeError(f"length {n} exceeds the {len(buf) - pos} bytes left")
    return n, pos


def _string_reader(compact: bool, nullable: bool) -> Reader:
    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        n, pos = _length(buf, pos, compact, wide=False)
        if n < 0:
            if not nullable:
                raise DecodeError("null in a non-nullable string")
            return None, pos
        try:
            return str(buf[pos : pos + n], "utf-8"), pos + n
        except UnicodeDecodeError as e:
            raise DecodeError("invalid UTF-8") from e

    return read


def _bytes_reader(compact: bool, nullable: bool, as_view: bool) -> Reader:
    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        n, pos = _length(buf, pos, compact, wide=True)
        if n < 0:
            if not nullable:
                raise DecodeError("null in non-nullable bytes")
            return None, pos
        view = buf[pos : pos + n]
        return (view if as_view else bytes(view)), pos + n

    return read


def _read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID | None, int]:
    if pos + 16 > len(buf):
        raise DecodeError("truncated")
    raw = bytes(buf[pos : pos + 16])
    # kio models the all-zero UUID as None.
    return (None if raw == bytes(16) else uuid.UUID(bytes=raw)), pos + 16


def _read_error_code(buf: memoryview, pos: int) -> tuple[Any, int]:
    if pos + 2 > len(buf):
        raise DecodeError("truncated")
    code = _I16.unpack_from(buf, pos)[0]
    try:
        return ErrorCode(code), pos + 2
    except ValueError:
        return code, pos + 2


# A duration beyond what timedelta holds (999,999,999 days; Kafka's clients send
# Long.MAX_VALUE for "forever") reads as the longest one, not as a malformed request.
_LONGEST, _MOST_NEGATIVE = datetime.timedelta.max, datetime.timedelta.min


def _timedelta_reader(st: struct.Struct) -> Reader:
    size = st.size

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        if pos + size > len(buf):
            raise DecodeError("truncated")
        ms = st.unpack_from(buf, pos)[0]
        try:
            return datetime.timedelta(milliseconds=ms), pos + size
        except OverflowError:
            return (_LONGEST if ms > 0 else _MOST_NEGATIVE), pos + size

    return read


def _datetime_reader(nullable: bool) -> Reader:
    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        if pos + 8 > len(buf):
            raise DecodeError("truncated")
        ms = _I64.unpack_from(buf, pos)[0]
        if ms == -1 and nullable:
            return None, pos + 8
        try:
            return _EPOCH + datetime.timedelta(milliseconds=ms), pos + 8
        except OverflowError as e:
            raise DecodeError("timestamp out of range") from e

    return read


def _primitive_reader(kafka_type: str, flexible: bool, nullable: bool) -> Reader:
    match kafka_type:
        case "int8":
            return _fixed(_I8)
        case "int16":
            return _fixed(_I16)
        case "int32":
            return _fixed(_I32)
        case "int64":
            return _fixed(_I64)
        case "uint8":
            return _fixed(_U8)
        case "uint16":
            return _fixed(_U16)
        case "uint32":
            return _fixed(_U32)
        case "uint64":
            return _fixed(_U64)
        case "float64":
            return _fixed(_F64)
        case "bool":
            return _read_bool
        case "string":
            return _string_reader(flexible, nullable)
        case "bytes":
            return _bytes_reader(flexible, nullable, as_view=False)
        case "records":
            return _bytes_reader(flexible, nullable, as_view=True)
        case "uuid":
            return _read_uuid
        case "error_code":
            return _read_error_code
        case "timedelta_i32":
            return _timedelta_reader(_I32)
        case "timedelta_i64":
            return _timedelta_reader(_I64)
        case "datetime_i64":
            return _datetime_reader(nullable)
    raise NotImplementedError(kafka_type)


def _array_reader(inner: Reader, flexible: bool, nullable: bool) -> Reader:
    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        if flexible:
            n, pos = read_uvarint(buf, pos)
            n -= 1
        else:
            if pos + 4 > len(buf):
                raise DecodeError("truncated")
            n = _I32.unpack_from(buf, pos)[0]
            pos += 4
        if n < 0:
            if n == -1 and nullable:
                return None, pos
            if n == -1:
                # Kafka readers treat a null non-nullable array as empty in practice
                # (librdkafka sends -1 for "all topics" in old Metadata versions).
                return (), pos
            raise DecodeError(f"negative array count {n}")
        # Every element takes at least one byte: a count beyond the remaining bytes is a lie.
        if n > len(buf) - pos:
            raise DecodeError(f"array count {n} exceeds the {len(buf) - pos} bytes left")
        items: list[Any] = []
        append = items.append
        for _ in range(n):
            item, pos = inner(buf, pos)
            append(item)
        return tuple(items), pos

    return read


def _field_reader(field: Any, flexible: bool, is_tag: bool, is_header: bool) -> Reader:
    if is_header and field.name == "client_id":
        # RequestHeader.client_id is always a legacy nullable string, even in header v2.
        return _string_reader(compact=False, nullable=True)
    optional = False if is_tag else is_optional(field)
    fc = classify_field(field)
    inner: Reader
    match fc:
        case PrimitiveField():
            inner = _primitive_reader(get_schema_field_type(field), flexible, optional)
        case PrimitiveTupleField():
            inner = _primitive_reader(get_schema_field_type(field), flexible, False)
        case EntityField(entity_type):
            inner = reader_for(entity_type, nullable=optional)
        case EntityTupleField(entity_type):
            inner = reader_for(entity_type)
    if fc.is_array:
        return _array_reader(inner, flexible, optional)
    return inner


_reader_cache: dict[tuple[type, bool], Reader] = {}


def reader_for(entity_type: type, nullable: bool = False) -> Reader:
    """Compile (once) a reader that returns ``(entity, new_pos)``."""
    key = (entity_type, nullable)
    cached = _reader_cache.get(key)
    if cached is not None:
        return cached
    flexible: bool = entity_type.__flexible__  # type: ignore[attr-defined]
    is_header = entity_type.__name__ == "RequestHeader"
    plain: list[tuple[str, Reader]] = []
    tagged: dict[int, tuple[str, Reader]] = {}
    tag_defaults: dict[str, Any] = {}
    for f in fields(entity_type):
        tag = get_field_tag(f)
        r = _field_reader(f, flexible, is_tag=tag is not None, is_header=is_header)
        if tag is None:
            plain.append((f.name, r))
        else:
            tagged[int(tag)] = (f.name, r)
            if f.default is MISSING and f.default_factory is MISSING:
                tag_defaults[f.name] = get_tagged_field_default(f)

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        for name, r in plain:
            values[name], pos = r(buf, pos)
        if flexible:
            count, pos = read_uvarint(buf, pos)
            if count > len(buf) - pos:
                raise DecodeError("tagged field count exceeds the bytes left")
            for _ in range(count):
                tag, pos = read_uvarint(buf, pos)
                size, pos = read_uvarint(buf, pos)
                end = pos + size
                if end > len(buf):
                    raise DecodeError("truncated tagged field")
                known = tagged.get(tag)
                if known is not None:
                    name, r = known
                    values[name], used = r(buf[:end], pos)
                    if used != end:
                        raise DecodeError(f"tagged field {tag} has a wrong size")
                # Unknown tags are skipped, as the protocol requires.
                pos = end
            for name, default in tag_defaults.items():
                values.setdefault(name, default)
        try:
            return entity_type(**values), pos
        except (TypeError, ValueError) as e:
            raise DecodeError(str(e)) from e

    result: Reader = read
    if nullable:

        def read_nullable(buf: memoryview, pos: int) -> tuple[Any, int]:
            if pos >= len(buf):
                raise DecodeError("truncated")
            marker = _I8.unpack_from(buf, pos)[0]
            if marker < 0:
                return None, pos + 1
            return read(buf, pos + 1)

        result = read_nullable
    _reader_cache[key] = result
    return result


# --- writers ------------------------------------------------------------------------------


def _fixed_writer(st: struct.Struct) -> Writer:
    pack = st.pack

    def write(out: bytearray, value: Any) -> None:
        out += pack(value)

    return write


def _write_bool(out: bytearray, value: Any) -> None:
    out.append(1 if value else 0)


def _string_writer(compact: bool, nullable: bool, is_bytes: bool) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if value is None:
            if not nullable:
                raise ValueError("None in a non-nullable field")
            if compact:
                out.append(0)
            else:
                out += _I32.pack(-1) if is_bytes else _I16.pack(-1)
            return
        data = value if is_bytes else value.encode()
        n = len(data)
        if compact:
            write_uvarint(out, n + 1)
        else:
            out += _I32.pack(n) if is_bytes else _I16.pack(n)
        out += data

    return write


def _write_uuid(out: bytearray, value: Any) -> None:
    out += bytes(16) if value is None else value.bytes


def _write_error_code(out: bytearray, value: Any) -> None:
    out += _I16.pack(int(value))


def _timedelta_writer(st: struct.Struct) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if isinstance(value, datetime.timedelta):
            value = value // _MS
        out += st.pack(value)

    return write


def _write_datetime(out: bytearray, value: Any) -> None:
    if value is None:
        ms = -1
    elif isinstance(value, datetime.datetime):
        ms = (value - _EPOCH) // _MS
    else:
        ms = int(value)
    out += _I64.pack(ms)


def _primitive_writer(kafka_type: str, flexible: bool, nullable: bool) -> Writer:
    match kafka_type:
        case "int8":
            return _fixed_writer(_I8)
        case "int16":
            return _fixed_writer(_I16)
        case "int32":
            return _fixed_writer(_I32)
        case "int64":
            return _fixed_writer(_I64)
        case "uint8":
            return _fixed_writer(_U8)
        case "uint16":
            return _fixed_writer(_U16)
        case "uint32":
            return _fixed_writer(_U32)
        case "uint64":
            return _fixed_writer(_U64)
        case "float64":
            return _fixed_writer(_F64)
        case "bool":
            return _write_bool
        case "string":
            return _string_writer(flexible, nullable, is_bytes=False)
        case "bytes" | "records":
            return _string_writer(flexible, nullable, is_bytes=True)
        case "uuid":
            return _write_uuid
        case "error_code":
            return _write_error_code
        case "timedelta_i32":
            return _timedelta_writer(_I32)
        case "timedelta_i64":
            return _timedelta_writer(_I64)
        case "datetime_i64":
            return _write_datetime
    raise NotImplementedError(kafka_type)


def _array_writer(inner: Writer, flexible: bool) -> Writer:
    def write(out: bytearray, value: Any) -> None:
        if value is None:
            if flexible:
                out.append(0)
            else:
                out += _I32.pack(-1)
            return
        if flexible:
            write_uvarint(out, len(value) + 1)
        else:
            out += _I32.pack(len(value))
        for item in value:
            inner(out, item)

    return write


def _field_writer(field: Any, flexible: bool, is_tag: bool, is_header: bool) -> Writer:
    if is_header and field.name == "client_id":
        return _string_writer(compact=False, nullable=True, is_bytes=False)
    optional = False if is_tag else is_optional(field)
    fc = classify_field(field)
    inner: Writer
    match fc:
        case PrimitiveField():
            inner = _primitive_writer(get_schema_field_type(field), flexible, optional)
        case PrimitiveTupleField():
            inner = _primitive_writer(get_schema_field_type(field), flexible, False)
        case EntityField(entity_type):
            inner = writer_for(entity_type, nullable=optional)
        case EntityTupleField(entity_type):
            inner = writer_for(entity_type)
    if fc.is_array:
        return _array_writer(inner, flexible)
    return inner


_writer_cache: dict[tuple[type, bool], Writer] = {}


def writer_for(entity_type: type, nullable: bool = False) -> Writer:
    """Compile (once) a writer that appends an entity's encoding to a bytearray."""
    key = (entity_type, nullable)
    cached = _writer_cache.get(key)
    if cached is not None:
        return cached
    flexible: bool = entity_type.__flexible__  # type: ignore[attr-defined]
    is_header = entity_type.__name__ == "RequestHeader"
    plain: list[tuple[str, Writer]] = []
    tagged: list[tuple[int, str, Writer, Any]] = []
    for f in fields(entity_type):
        tag = get_field_tag(f)
        w = _field_writer(f, flexible, is_tag=tag is not None, is_header=is_header)
        if tag is None:
            plain.append((f.name, w))
        else:
            default = f.default if f.default is not MISSING else get_tagged_field_default(f)
            tagged.append((int(tag), f.name, w, default))
    tagged.sort(key=lambda t: t[0])

    def write(out: bytearray, entity: Any) -> None:
        for name, w in plain:
            w(out, getattr(entity, name))
        if not flexible:
            return
        if not tagged:
            out.append(0)
            return
        present = []
        for tag, name, w, default in tagged:
            value = getattr(entity, name)
            if value != default:
                body = bytearray()
                w(body, value)
                present.append((tag, body))
        write_uvarint(out, len(present))
        for tag, body in present:
            write_uvarint(out, tag)
            write_uvarint(out, len(body))
            out += body

    result: Writer = write
    if nullable:

        def write_nullable(out: bytearray, entity: Any) -> None:
            if entity is None:
                out += _I8.pack(-1)
            else:
                out += _I8.pack(1)
                write(out, entity)

        result = write_nullable
    _writer_cache[key] = result
    return result
