"""A dependency-free TensorBoard event writer (scalars only) and a matching reader.

TensorBoard reads ``events.out.tfevents.{timestamp}.{hostname}`` files: a sequence of
TFRecords, each laid out as::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes)
    | data (length bytes)         | uint32 masked_crc32c(data)

with ``masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (mod 2^32)`` and ``crc32c``
the CRC-32C (Castagnoli, reflected polynomial 0x82F63B78). Each ``data`` is a serialised
``tensorflow.Event`` protobuf, encoded here by hand:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
              Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

The first record of every file is the ``file_version = "brain.Event:2"`` event.
References: tensorflow/core/util/event.proto, tensorflow/core/lib/io/record_writer.cc.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

# the writer and a reader for tests and figures; the CRC and protobuf helpers are internals,
# checked against the real tensorboard package (a dev dependency) in tests/test_tensorboard.py
__all__ = [
    "EventWriter",
    "read_scalars",
]

FILE_VERSION = "brain.Event:2"
"""Value of ``Event.file_version`` in the first record of an event file."""

_CRC32C_POLY = 0x82F63B78  # Castagnoli polynomial, bit-reversed
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1

# Protobuf wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, table driven, pure Python.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    crc = _U32
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _U32


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus 0xa282ead8 (mod 2^32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


# --------------------------------------------------------------------------- protobuf


def _varint(value: int) -> bytes:
    """Base-128 varint; negative int64 values use their 64-bit two's complement."""
    value &= _U64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field_number: int, wire_type: int) -> bytes:
    return _varint((field_number << 3) | wire_type)


def _len_field(field_number: int, payload: bytes) -> bytes:
    return _key(field_number, _LEN) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:  # finite but beyond float32 range: TensorBoard shows +-inf
        return struct.pack("<f", math.copysign(math.inf, value))


def _encode_event(
    wall_time: float,
    step: int | None = None,
    file_version: str | None = None,
    scalars: Mapping[str, float] | None = None,
) -> bytes:
    out = _key(1, _FIXED64) + struct.pack("<d", wall_time)
    if step is not None:
        out += _key(2, _VARINT) + _varint(step)
    if file_version is not None:
        out += _len_field(3, file_version.encode("utf-8"))
    if scalars:
        summary = b"".join(
            _len_field(1, _len_field(1, tag.encode("utf-8")) + _key(2, _FIXED32) + _float32(v))
            for tag, v in scalars.items()
        )
        out += _len_field(5, summary)
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Decode one protobuf message into (field number, wire type, raw value) triples."""
    pos, out = 0, []
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        out.append((number, wire, value))
    return out


def _decode_event(data: bytes) -> dict[str, Any]:
    event: dict[str, Any] = {"wall_time": 0.0, "step": 0, "file_version": None, "summary": []}
    for number, wire, value in _fields(data):
        if number == 1 and wire == _FIXED64:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif number == 2 and wire == _VARINT:
            event["step"] = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 3 and wire == _LEN:
            event["file_version"] = value.decode("utf-8")
        elif number == 5 and wire == _LEN:
            for vnum, vwire, vbytes in _fields(value):
                if vnum != 1 or vwire != _LEN:
                    continue
                entry: dict[str, Any] = {"tag": "", "simple_value": None}
                for fnum, fwire, fval in _fields(vbytes):
                    if fnum == 1 and fwire == _LEN:
                        entry["tag"] = fval.decode("utf-8")
                    elif fnum == 2 and fwire == _FIXED32:
                        entry["simple_value"] = struct.unpack("<f", fval)[0]
                event["summary"].append(entry)
    return event


# --------------------------------------------------------------------------- records


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Decode every record of an event file, verifying both CRCs of each.

    Returns one dict per event: ``wall_time`` (float), ``step`` (int), ``file_version``
    (str or None) and ``summary`` (list of ``{"tag": str, "simple_value": float}``).

    Raises:
        ValueError: a CRC mismatch or a truncated record (message gives path and offset).
    """
    path = Path(path)
    buf = path.read_bytes()
    events, pos = [], 0
    while pos < len(buf):
        if pos + 12 > len(buf):
            raise ValueError(f"{path}: truncated record header at byte {pos}")
        header = buf[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", buf[pos + 8 : pos + 12])
        if header_crc != masked_crc32c(header):
            raise ValueError(f"{path}: length CRC mismatch in record at byte {pos}")
        end = pos + 12 + length
        if end + 4 > len(buf):
            raise ValueError(f"{path}: truncated record data at byte {pos}")
        data = buf[pos + 12 : end]
        (data_crc,) = struct.unpack("<I", buf[end : end + 4])
        if data_crc != masked_crc32c(data):
            raise ValueError(f"{path}: data CRC mismatch in record at byte {pos}")
        try:
            events.append(_decode_event(data))
        except (ValueError, UnicodeDecodeError, struct.error) as err:
            raise ValueError(f"{path}: malformed Event in record at byte {pos} ({err})") from None
        pos = end + 4
    return events


def read_scalars(path: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` in file order, from :func:`read_events`."""
    out: dict[str, list[tuple[int, float]]] = {}
    for event in read_events(path):
        for value in event["summary"]:
            if value["simple_value"] is not None:
                out.setdefault(value["tag"], []).append((event["step"], value["simple_value"]))
    return out


# --------------------------------------------------------------------------- writer


class EventWriter:
    """Append scalar summaries to a new TensorBoard event file in ``log_dir``.

    The file is ``events.out.tfevents.{unix time}.{hostname}{filename_suffix}``; its first
    record is the ``file_version`` event. Records are buffered and flushed on
    :meth:`flush`, :meth:`close`, exit from a ``with`` block, or automatically once
    ``flush_secs`` seconds have passed since the last flush. Values are stored as
    float32 (``simple_value``), as TensorBoard does.

    >>> import tempfile
    >>> with EventWriter(tempfile.mkdtemp()) as w:
    ...     w.add_scalar("loss", 0.5, step=1)
    >>> read_scalars(w.path)
    {'loss': [(1, 0.5)]}
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        filename_suffix: str = "",
        flush_secs: float = 10.0,
    ) -> None:
        if flush_secs < 0:
            raise ValueError(f"flush_secs must be >= 0, got {flush_secs}")
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.flush_secs = float(flush_secs)
        now = time.time()
        base = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}{filename_suffix}"
        path, n = self.log_dir / base, 0
        while True:  # never clobber another writer's file from the same second
            try:
                self._file = open(path, "xb")  # closed in close()
                break
            except FileExistsError:
                n += 1
                path = self.log_dir / f"{base}.{os.getpid()}.{n}"
        self.path = path
        self._closed = False
        self._last_flush = now
        self._file.write(_record(_encode_event(now, file_version=FILE_VERSION)))
        self.flush()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Log one scalar (anything ``float()`` accepts: Python/NumPy numbers, 1-element
        tensors) under ``tag`` at integer ``step``."""
        self.add_scalars({tag: value}, step, wall_time)

    def add_scalars(self, scalars: Mapping[str, float], step: int, wall_time: float | None = None) -> None:
        """Log several scalars at the same ``step`` in one event."""
        if self._closed:
            raise ValueError(f"EventWriter for {self.path} is closed")
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValueError(f"step must be an int, got {step!r}")
        if not isinstance(scalars, Mapping) or not scalars:
            raise ValueError("scalars must be a non-empty dict of tag -> value")
        values: dict[str, float] = {}
        for tag, value in scalars.items():
            if not isinstance(tag, str) or not tag:
                raise ValueError(f"tags must be non-empty strings, got {tag!r}")
            try:
                values[tag] = float(value)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"value for tag {tag!r} must be a real number, got {value!r}") from None
        wall = time.time() if wall_time is None else float(wall_time)
        self._file.write(_record(_encode_event(wall, step=step, scalars=values)))
        if time.time() - self._last_flush >= self.flush_secs:
            self.flush()

    def flush(self) -> None:
        """Push buffered records to the operating system (TensorBoard sees them)."""
        if not self._closed:
            self._file.flush()
            self._last_flush = time.time()

    def close(self) -> None:
        """Flush and close the file; further writes raise ``ValueError``. Idempotent."""
        if not self._closed:
            self.flush()
            self._file.close()
            self._closed = True

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()
