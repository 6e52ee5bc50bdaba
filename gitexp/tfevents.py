"""TensorBoard event files, read without TensorFlow: scalars with their steps and wall times.

An event file is a TFRecord file: records of ``uint64 length, uint32 masked crc32c(length),
data, uint32 masked crc32c(data)`` (little-endian), each ``data`` an ``Event`` protobuf. Only
what scalars need is decoded:

* ``Event``: wall_time (1, double), step (2, int64), summary (5);
* ``Summary``: value (1, repeated) -> tag (1), simple_value (2, float), tensor (8);
* ``TensorProto`` (what newer writers, TF2's ``tf.summary`` and PyTorch's, store scalars as):
  dtype (1), tensor_content (4), float_val (5), double_val (6), half_val (13), int_val (7),
  int64_val (10); a tensor counts as a scalar when it holds exactly one number.

Files are read while they are written: :class:`EventFiles` keeps an offset per file and stops at
a record that is not whole yet, so each call reads only new bytes. A corrupt record (a length
whose checksum is wrong, data whose checksum is wrong, data that is not a protobuf) is skipped
with one warning per file; nothing here raises on a file's content.
"""
from __future__ import annotations

import glob
import os
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

HEADER = 12  # uint64 length + uint32 crc of it
FOOTER = 4
MAX_RECORD = 256 * 1024 * 1024  # a "length" beyond this is garbage, not a record
PATTERN_HINT = "events.out.tfevents.*"


# -- crc32c (Castagnoli), as TFRecord masks it -------------------------------------------------
def _table() -> List[int]:
    out = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        out.append(crc)
    return out


_TABLE = _table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# -- protobuf wire format ------------------------------------------------------------------------
class Malformed(ValueError):
    """Bytes that are not the protobuf they should be."""


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Malformed("varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[Tuple[int, int, Any]]:
    """(field number, wire type, value): an int for varints and fixed widths (as raw bytes for
    the fixed ones, so the reader picks float or double), bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            raise Malformed(f"wire type {wire} is not used by event files")
        if pos > len(data):
            raise Malformed("a field runs past the end")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    wall_time: float
    value: float


def decode_event(data: bytes) -> List[Scalar]:
    """The scalars of one ``Event`` record (none for file-version, graph, image... events)."""
    wall_time, step, summaries = 0.0, 0, []
    for number, wire, value in fields(data):
        if number == 1 and wire == 1:
            wall_time = struct.unpack("<d", value)[0]
        elif number == 2 and wire == 0:
            step = _signed64(value)
        elif number == 5 and wire == 2:
            summaries.append(value)
    out = []
    for summary in summaries:
        for number, wire, value in fields(summary):
            if number == 1 and wire == 2:
                tagged = _summary_value(value)
                if tagged is not None:
                    out.append(Scalar(tagged[0], step, wall_time, tagged[1]))
    return out


def _float32(raw: bytes) -> float:
    """A float32 as the shortest decimal that is the same float32 (0.6, not 0.6000000238418579):
    the value the program logged, as TensorBoard shows it."""
    value = struct.unpack("<f", raw)[0]
    if value != value or value in (float("inf"), float("-inf")):
        return float(value)
    for digits in range(1, 10):
        short = float(f"{value:.{digits}g}")
        if struct.pack("<f", short) == raw:
            return short
    return float(value)


def _summary_value(data: bytes) -> Optional[Tuple[str, float]]:
    tag, number_value = None, None
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            tag = value.decode("utf-8", "replace")
        elif number == 2 and wire == 5:
            number_value = _float32(value)
        elif number == 8 and wire == 2:
            number_value = _tensor_scalar(value)
    return (tag, float(number_value)) if tag is not None and number_value is not None else None


# TensorProto dtypes that hold one number as a scalar, and how tensor_content packs them.
_CONTENT = {1: "<f", 2: "<d", 3: "<i", 9: "<q", 19: "<e"}  # float, double, int32, int64, half
_PACKED = {5: ("<f", 5, 4), 6: ("<d", 1, 8), 7: (None, 0, 0), 10: (None, 0, 0), 13: ("half", 0, 0)}


def _tensor_scalar(data: bytes) -> Optional[float]:
    dtype, values = 0, []
    for number, wire, value in fields(data):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            fmt = _CONTENT.get(dtype)
            size = struct.calcsize(fmt) if fmt else 0
            if fmt == "<f" and len(value) % 4 == 0:
                values += [_float32(value[i:i + 4]) for i in range(0, len(value), 4)]
            elif fmt and len(value) % size == 0:
                values += [v[0] for v in struct.iter_unpack(fmt, value)]
        elif number in _PACKED:
            values += _repeated(number, wire, value)
    if dtype not in _CONTENT or len(values) != 1:
        return None  # text, histograms, images: not a scalar
    return float(values[0])


def _repeated(number: int, wire: int, value: Any) -> List[float]:
    """float_val/double_val (fixed width), int_val/int64_val/half_val (varints), packed or not."""
    fmt, fixed_wire, size = _PACKED[number]
    if fmt in ("<f", "<d"):
        raw: bytes = value if wire in (fixed_wire, 2) else b""
        if len(raw) % size:
            return []
        if fmt == "<f":
            return [_float32(raw[i:i + 4]) for i in range(0, len(raw), 4)]
        return [v[0] for v in struct.iter_unpack(fmt, raw)]
    ints: List[int] = []
    if wire == 0:
        ints = [value]
    elif wire == 2:
        pos, raw = 0, value
        while pos < len(raw):
            item, pos = _varint(raw, pos)
            ints.append(item)
    if fmt == "half":
        return [struct.unpack("<e", struct.pack("<H", i & 0xFFFF))[0] for i in ints]
    return [float(_signed64(i)) for i in ints]


# -- records, followed across calls ------------------------------------------------------------
@dataclass
class _File:
    ident: Tuple[int, int] = (0, 0)  # (device, inode): a file replaced under the same name is read anew
    offset: int = 0
    scalars: List[Scalar] = field(default_factory=list)
    warned: bool = False


class EventFiles:
    """Event files followed across calls: an offset per file, so only new bytes are read."""

    def __init__(self, warn: Optional[Callable[[str], None]] = None) -> None:
        self.warn = warn or (lambda text: print(text, file=sys.stderr))
        self.files: Dict[str, _File] = {}
        self.lock = threading.Lock()

    def scalars(self, path: str) -> List[Scalar]:
        """Every scalar of the file so far (its new whole records read now)."""
        with self.lock:
            try:
                with open(path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    state = self.files.get(path)
                    ident = (stat.st_dev, stat.st_ino)
                    if state is None or state.ident != ident or stat.st_size < state.offset:
                        state = self.files[path] = _File(ident)
                    handle.seek(state.offset)
                    data = handle.read()
            except OSError:
                return list(self.files[path].scalars) if path in self.files else []
            used = self._records(path, state, data)
            state.offset += used
            return list(state.scalars)

    def _records(self, path: str, state: _File, data: bytes) -> int:
        """Decode the whole records of ``data``; how many bytes were used (a partial record waits)."""
        pos = 0
        while len(data) - pos >= HEADER:
            header = data[pos:pos + 8]
            length = struct.unpack("<Q", header)[0]
            if struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked_crc(header) or length > MAX_RECORD:
                self._warn_once(path, state, f"a record's length at byte {state.offset + pos} fails its checksum")
                pos += 1  # resynchronise on the next header whose checksum holds
                continue
            end = pos + HEADER + length + FOOTER
            if end > len(data):
                break  # not written whole yet
            body = data[pos + HEADER:pos + HEADER + length]
            try:
                found = decode_event(body)
            except (Malformed, struct.error, UnicodeDecodeError):
                found, bad = [], True
            else:
                # Checking the checksum costs more than decoding in pure Python: only records that
                # carry scalars (not images or graphs) are checked.
                bad = bool(found) and struct.unpack("<I", data[end - FOOTER:end])[0] != masked_crc(body)
            if bad:
                self._warn_once(path, state, f"the record at byte {state.offset + pos} is corrupt "
                                "(its checksum or content is wrong); skipped")
            else:
                state.scalars += found
            pos = end
        return pos

    def _warn_once(self, path: str, state: _File, what: str) -> None:
        if not state.warned:
            state.warned = True
            self.warn(f"gitexp: warning: TensorBoard file {path}: {what} (further problems in it are not reported)")


def find(pattern: str, base_dir: str) -> List[str]:
    """Event files matching ``pattern`` (``**`` crosses folders), relative to ``base_dir``."""
    full = pattern if os.path.isabs(pattern) else os.path.join(base_dir, pattern)
    return sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p))


def logdir_files(logdir: str) -> List[str]:
    """Every event file under a TensorBoard log directory."""
    return find(os.path.join("**", PATTERN_HINT), logdir)


SHARED = EventFiles()  # one per process: the executor and the views read through it
