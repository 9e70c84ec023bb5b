"""HJ 212-2017: the one codec of the project (CRC, decoder, encoder, stream splitter). Pure, no I/O.

A frame (domain.md §1.1)::

    ##  LLLL  QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;CP=&&DataTime=…;a34004-Rtd=35.2,a34004-Flag=N&&  CRC4  [CR LF]

``LLLL`` is the length of the data segment only (4 decimal digits), ``CRC4`` the HJ 212 CRC16 of the data
segment as 4 hex digits. Every refusal raises :class:`ingest.errors.Hj212Error` with a stable ``reason``:

    decode_frame        not_ascii, missing_header, truncated, bad_length_field, length_mismatch,
                        bad_crc_field, crc_modbus, crc_mismatch, segment_too_long, malformed_segment,
                        missing_field, bad_field                                  (checked in that order)
    frame_to_readings   unknown_cn, missing_datatime, bad_datatime, bad_value, duplicate_value, no_values
    FrameSplitter       missing_header (bytes outside a frame), bad_length_field, segment_too_long,
                        truncated, length_mismatch, bad_crc_field, crc_modbus, crc_mismatch

The encoder raises ``ValueError``: building a wrong frame is a programming error, not bad data.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, NamedTuple, TypeVar

from ingest.errors import Hj212Error

MAX_SEGMENT: Final = 1024
"""Longest data segment (HJ 212-2017 §6.3 as recalled in domain.md §1.1: 0-1024 characters)."""

MAX_FRAME: Final = 2 + 4 + MAX_SEGMENT + 4 + 2
"""Longest frame in bytes: header, length, segment, CRC, CR LF."""

_CRLF: Final = b"\r\n"
_HEADER: Final = "##"
_HEX: Final = frozenset(string.hexdigits)
_NOT_PRINTABLE: Final = re.compile(rb"[^\x20-\x7e]")
_PRINTABLE: Final = bytes(range(0x20, 0x7F))  # what _NOT_PRINTABLE does not refuse
_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RESERVED: Final = frozenset(";,=&")
_V = TypeVar("_V", float, str)
_Predicate = Callable[[str], bool]

# ---------------------------------------------------------------------------------------------- CRC


def _reflected_round(value: int) -> int:
    for _ in range(8):
        value = (value >> 1) ^ 0xA001 if value & 1 else value >> 1
    return value


_CRC_TABLE: Final = tuple(_reflected_round(i) for i in range(256))


def _crc_of_zeros(count: int) -> tuple[int, ...]:
    """The CRC of 0, 1, ... count zero bytes."""
    regs, reg = [0xFFFF], 0xFFFF
    for _ in range(count):
        reg = _CRC_TABLE[reg >> 8]
        regs.append(reg)
    return tuple(regs)


def _spread(byte: int) -> int:
    """Bit j of ``byte`` moved to bit 8 j: one bit per byte, for the transposition in _crc_masks."""
    return sum(((byte >> j) & 1) << (8 * j) for j in range(8))


_SPREAD: Final = tuple(_spread(b) for b in range(256))


def _crc_masks(count: int) -> tuple[tuple[int, int], ...]:
    """For each CRC bit j, ``(1 << j, mask)``: bit 8 d + k of the mask says whether bit k of the byte d
    places before the end of the data flips CRC bit j.

    A change in the register before a byte's step leaves the step as the table lookup of its high byte
    (the step is linear), so the change a byte makes is ``_CRC_TABLE[bit]`` at its own step and is carried
    through each later step the same way: ``column`` holds it for the 8 bits of a byte, one place further
    back each round. Each row transposes the 8 x 16 bits of a column into 16 bytes, one per CRC bit.
    """
    column = [_CRC_TABLE[1 << k] for k in range(8)]
    rows = bytearray()
    for _ in range(count):
        row = 0
        for k, change in enumerate(column):
            row |= (_SPREAD[change & 0xFF] | _SPREAD[change >> 8] << 64) << k
        rows += row.to_bytes(16, "little")
        column = [_CRC_TABLE[change >> 8] for change in column]
    return tuple((1 << j, int.from_bytes(rows[j::16], "little")) for j in range(16))


_CRC_ZEROS: Final = _crc_of_zeros(MAX_FRAME)
_CRC_HIGH_MASKS: Final = tuple((flip >> 8, mask << 8) for flip, mask in _crc_masks(MAX_FRAME)[8:])
"""The masks of the CRC's high byte, each moved one byte up: applied to the whole data, they give the high
byte of the CRC of all but its last byte."""


def crc16(data: bytes) -> int:
    """HJ 212 CRC16 (domain.md §1.3): ``reg = (reg >> 8) ^ byte`` then 8 reflected rounds of 0xA001.

    After the shift the register holds one byte only, so the 8 rounds are one lookup in the table of
    0xA001 rounds, and a step depends only on the high byte the step before left. That byte is affine in
    the data's bits: that of as many zero bytes, with each set bit of the data flipping a fixed set of
    its bits that depends only on the bit's place from the end. So for data up to a frame long the CRC
    is 8 parities of all but the last byte, read as one integer, under the masks of `_crc_masks`, then
    one lookup. For a 220-byte segment that is 28,500 instructions (callgrind), against 40,400 for 16
    parities of the whole CRC; the byte-by-byte table loop took 2.7 times as long as those 16 parities
    (bench machine, 2026-12-03). Longer data takes the loop.
    ``tests/unit/test_hj212.py`` proves both equal to the bitwise reference.
    """
    count = len(data)
    if 0 < count <= MAX_FRAME:
        bits = int.from_bytes(data, "big")  # the last byte lowest: place d from the end at bit 8 d
        high = _CRC_ZEROS[count - 1] >> 8
        for flip, mask in _CRC_HIGH_MASKS:
            if (bits & mask).bit_count() & 1:
                high ^= flip
        return _CRC_TABLE[high ^ data[-1]]
    reg = 0xFFFF
    for byte in data:
        reg = _CRC_TABLE[(reg >> 8) ^ byte]
    return reg


def modbus_crc16(data: bytes) -> int:
    """Modbus CRC16 (``reg ^= byte``, no shift first): only to recognise frames that wrongly carry it."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ _CRC_TABLE[(reg ^ byte) & 0xFF]
    return reg


# -------------------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class CpItem:
    """One ``key=value`` item of CP, as sent: ``a34004-Rtd=35.2`` or a plain key such as ``DataTime``."""

    key: str
    value: str

    @property
    def code(self) -> str:
        """The factor code before the last ``-`` (``a34004``), or the whole key when it has no ``-``."""
        code, dash, _ = self.key.rpartition("-")
        return code if dash else self.key

    @property
    def suffix(self) -> str:
        """The part after the last ``-`` (``Rtd``, ``Flag``, unknown ones as sent); ``""`` for a plain key."""
        _, dash, suffix = self.key.rpartition("-")
        return suffix if dash else ""


@dataclass(frozen=True, slots=True)
class CpGroup:
    """One ``;``-separated group of CP: the ``,``-separated items of one pollutant (or ``DataTime``)."""

    items: tuple[CpItem, ...]

    def get(self, key: str) -> str | None:
        return next((item.value for item in self.items if item.key == key), None)


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded HJ 212 data segment. Field values are kept as sent (strings), Flag/PNUM/PNO as ints.

    ``extra`` keeps header fields the standard does not name, in the order sent.
    """

    st: str
    cn: str
    mn: str
    cp: tuple[CpGroup, ...]
    qn: str | None = None
    pw: str | None = None
    flag: int | None = None
    pnum: int | None = None
    pno: int | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def needs_answer(self) -> bool:
        """Flag bit 0 (A): the receiver must answer (CN 9014 for a data upload)."""
        return self.flag is not None and bool(self.flag & 1)

    @property
    def is_split(self) -> bool:
        """Flag bit 1 (D): the packet is one of several; PNUM and PNO say which."""
        return self.flag is not None and bool(self.flag & 2)

    @property
    def version(self) -> int:
        """Flag bits 2-7: 0 = HJ/T 212-2005, 1 = HJ 212-2017. A frame without Flag (2005 style) gives 0."""
        return 0 if self.flag is None else self.flag >> 2

    @property
    def data_time(self) -> str | None:
        """The raw ``DataTime`` of CP, if any."""
        return self.get("DataTime")

    def items(self) -> Iterator[CpItem]:
        """Every CP item, group after group."""
        for group in self.cp:
            yield from group.items

    def get(self, key: str) -> str | None:
        """The value of the first CP item with this key."""
        return next((item.value for item in self.items() if item.key == key), None)

    def segment(self) -> str:
        """The data segment this frame encodes to (field order of the standard)."""
        return _segment(self._header_pairs(), [[(i.key, i.value) for i in g.items] for g in self.cp])

    def _header_pairs(self) -> list[tuple[str, str | int | None]]:
        named = _header(
            qn=self.qn, st=self.st, cn=self.cn, pw=self.pw, mn=self.mn,
            flag=self.flag, pnum=self.pnum, pno=self.pno,
        )  # fmt: skip
        return named + list(self.extra)


Period = Literal["rtd", "minute", "hour", "day"]


class Hj212Readings(NamedTuple):
    """The readings of one data upload (CN 2011/2051/2061/2031), keyed by reading name (contract §2).

    A named tuple, immutable like the frozen classes here: every upload makes one on the ingest worker's
    hot path, in 0.5 µs instead of a frozen dataclass's 1.7.

    ``values`` holds the period's main value under the reading name (``-Rtd`` for CN 2011, ``-Avg``
    otherwise) and every other numeric suffix as ``f"{name}_{suffix.lower()}"`` (``pm25_min``,
    ``pm25_max``, ``pm25_cou``, ``so2_zsavg``...). ``flags`` holds ``-Flag`` letters as sent.
    """

    mn: str
    st: str
    cn: str
    period: Period
    ts: datetime
    values: Mapping[str, float]
    flags: Mapping[str, str]


# ----------------------------------------------------------------------------------- factor tables

DEFAULT_FACTORS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "a34004": "pm25",
        "a34002": "pm10",
        "a34001": "tsp",
        "a34005": "pm1",
        "a21026": "so2",
        "a21004": "no2",
        "a21005": "co",
        "a05024": "o3",
        "a21002": "nox",
        "a21003": "no",
        "a01001": "temp",
        "a01002": "rh",
        "a01006": "pressure",
        "a01007": "wind_speed",
        "a01008": "wind_dir",
        "a21028": "h2s",
        "a21001": "nh3",
        "a21022": "cl2",
        "a21024": "hcl",
        "a05002": "ch4",
        "a24088": "nmhc",
        "a24087": "thc",
        "a25002": "benzene",
        "a25003": "toluene",
        "a25005": "xylene",
        "a25004": "ethylbenzene",
        "a30001": "methanol",
        "a31001": "formaldehyde",
        "a24046": "vinyl_chloride",
        "a99054": "tvoc",  # UNCONFIRMED (domain.md §1.8): seen in one Java project only
    }
)
"""HJ 212-2017 factor code -> reading name (domain.md §1.8, contract §3)."""

VENDOR_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "PM25": "pm25",
        "PM10": "pm10",
        "SO2": "so2",
        "NO2": "no2",
        "CO": "co",
        "O3": "o3",
        "TEM": "temp",
        "RH": "rh",
        "WD": "wind_dir",
        "WS": "wind_speed",
    }
)
"""Non-standard codes common in old or vendor data (domain.md §1.8); off unless the config asks."""


def build_factor_map(extra: Mapping[str, str] | None = None, *, vendor_aliases: bool = False) -> dict[str, str]:
    """DEFAULT_FACTORS, then VENDOR_ALIASES if asked, then the configuration's codes (which win)."""
    merged = dict(DEFAULT_FACTORS)
    if vendor_aliases:
        merged.update(VENDOR_ALIASES)
    merged.update(extra or {})
    return merged


# ------------------------------------------------------------------------------------------ decoder


def decode_frame(raw: bytes, *, lenient_length: bool = False) -> Frame:
    """Decode one frame, with or without the trailing CR LF; the checks run in the module doc's order.

    ``lenient_length`` also accepts the variant whose length field counts the CRC and CR LF too.
    """
    return parse_segment(_checked_segment(raw, lenient_length))


def _checked_segment(raw: bytes, lenient_length: bool) -> str:
    """The data segment of a frame whose characters, header, length and CRC are right."""
    text = _ascii_text(raw)
    segment, crc_field = _unwrap(text, lenient_length=lenient_length)
    _check_crc(segment.encode("ascii"), crc_field)
    if len(segment) > MAX_SEGMENT:
        raise Hj212Error("segment_too_long", f"{len(segment)} characters, at most {MAX_SEGMENT}")
    return segment


def parse_segment(segment: str) -> Frame:
    """Parse a data segment (``QN=…;…;CP=&&…&&``) whose framing and CRC are already checked."""
    header, cp_text = _split_cp(segment)
    fields = _parse_header(header)
    cp = _parse_cp(cp_text) if cp_text is not None else None
    return _build_frame(fields, cp)


def _ascii_text(raw: bytes) -> str:
    body = raw[:-2] if raw.endswith(_CRLF) else raw
    if not body.translate(None, _PRINTABLE):  # nothing but printable ASCII
        return body.decode("ascii")
    bad = _NOT_PRINTABLE.search(body)
    if bad is not None:
        raise Hj212Error("not_ascii", f"byte 0x{body[bad.start()]:02x} at offset {bad.start()}")
    return body.decode("ascii")


def _unwrap(text: str, *, lenient_length: bool) -> tuple[str, str]:
    if not text.startswith(_HEADER):
        raise Hj212Error("missing_header", f"starts with {text[:8]!r}, not '##'")
    if len(text) < 10:
        raise Hj212Error("truncated", f"{len(text)} characters, no room for length and CRC")
    field = text[2:6]
    if not _is_digits(field):
        raise Hj212Error("bad_length_field", f"{field!r} is not 4 decimal digits")
    segment, crc_field = text[6:-4], text[-4:]
    _check_length(int(field), len(segment), lenient=lenient_length)
    return segment, crc_field


def _check_length(declared: int, actual: int, *, lenient: bool) -> None:
    if declared == actual or (lenient and declared == actual + 6):
        return
    if declared == actual + 6:
        raise Hj212Error("length_mismatch", f"{declared} counts CRC and CR LF too (lenient mode only)")
    if declared > actual:
        raise Hj212Error("truncated", f"length field says {declared}, the segment has {actual}")
    raise Hj212Error("length_mismatch", f"length field says {declared}, the segment has {actual}")


def _check_crc(segment: bytes, crc_field: str) -> None:
    if len(crc_field) != 4 or not _HEX.issuperset(crc_field):
        raise Hj212Error("bad_crc_field", f"{crc_field!r} is not 4 hex digits")
    got = int(crc_field, 16)
    expected = crc16(segment)
    if got == expected:
        return
    if got == modbus_crc16(segment):
        raise Hj212Error("crc_modbus", f"{crc_field} is the Modbus CRC16; the HJ 212 CRC is {expected:04X}")
    raise Hj212Error("crc_mismatch", f"expected {expected:04X}, got {crc_field}")


def _split_cp(segment: str) -> tuple[str, str | None]:
    if segment.startswith("CP="):
        start = 0
    else:
        start = segment.find(";CP=")
        if start < 0:
            return segment.removesuffix(";"), None
        start += 1
    cp = segment[start + 3 :]
    if len(cp) < 4 or not cp.startswith("&&") or not cp.endswith("&&"):
        raise Hj212Error("malformed_segment", f"CP is not delimited by '&&': {cp[:40]!r}")
    return segment[:start].removesuffix(";"), cp[2:-2]


def _parse_header(header: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    if not header:
        return fields
    for part in header.split(";"):
        key, value = _key_value(part, "field")
        if key in fields:
            raise Hj212Error("malformed_segment", f"field {key} appears twice")
        fields[key] = value
    return fields


def _parse_cp(text: str) -> tuple[CpGroup, ...]:
    # An empty group (a trailing ';' before '&&', seen in the wild) is skipped; an empty item is not.
    return tuple(
        CpGroup(tuple(CpItem(*_key_value(item, "CP item")) for item in group.split(",")))
        for group in text.split(";")
        if group
    )


def _key_value(part: str, what: str) -> tuple[str, str]:
    key, sep, value = part.partition("=")
    if not sep or not key:
        raise Hj212Error("malformed_segment", f"{what} {part[:40]!r} is not key=value")
    return key, value


_KNOWN_FIELDS: Final = ("QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO")


def _build_frame(fields: dict[str, str], cp: tuple[CpGroup, ...] | None) -> Frame:
    _require(fields)
    if cp is None:
        raise Hj212Error("missing_field", "CP")
    _check_fields(fields)
    return Frame(
        st=fields["ST"],
        cn=fields["CN"],
        mn=fields["MN"],
        cp=cp,
        qn=fields.get("QN"),
        pw=fields.get("PW"),
        flag=_optional_int(fields.get("Flag")),
        pnum=_optional_int(fields.get("PNUM")),
        pno=_optional_int(fields.get("PNO")),
        extra=tuple((k, v) for k, v in fields.items() if k not in _KNOWN_FIELDS),
    )


def _require(fields: Mapping[str, str]) -> None:
    for required in ("ST", "CN", "MN"):
        if required not in fields:
            raise Hj212Error("missing_field", required)


def _check_fields(fields: Mapping[str, str]) -> None:
    _check_field(fields, "ST", lambda v: _is_digits(v, 2), "2 digits")
    _check_field(fields, "CN", lambda v: _is_digits(v, 4), "4 digits")
    _check_field(fields, "QN", lambda v: _is_digits(v, 17), "17 digits (YYYYMMDDhhmmsszzz)")
    _check_field(fields, "MN", lambda v: 0 < len(v) <= 24, "1 to 24 characters")
    _check_field(fields, "Flag", lambda v: _is_digits(v) and int(v) <= 255, "an integer 0-255")
    _check_field(fields, "PNUM", lambda v: _is_digits(v) and len(v) <= 4, "up to 4 digits")
    _check_field(fields, "PNO", lambda v: _is_digits(v) and len(v) <= 4, "up to 4 digits")


def _check_field(fields: Mapping[str, str], key: str, ok: _Predicate, shape: str) -> None:
    value = fields.get(key)
    if value is not None and not ok(value):
        raise Hj212Error("bad_field", f"{key}={value[:40]!r} is not {shape}")


def _is_digits(text: str, width: int | None = None) -> bool:
    return text.isascii() and text.isdigit() and (width is None or len(text) == width)


def _optional_int(text: str | None) -> int | None:
    return None if text is None else int(text)


# ----------------------------------------------------------------------------------------- readings

_PERIODS: Final[Mapping[str, tuple[Period, str]]] = MappingProxyType(
    {"2011": ("rtd", "Rtd"), "2051": ("minute", "Avg"), "2061": ("hour", "Avg"), "2031": ("day", "Avg")}
)
READING_CNS: Final = frozenset(_PERIODS)  # the CNs that are data uploads and become readings
_NUMERIC_SUFFIXES: Final = ("Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax")
_STAT_SUFFIXES: Final = MappingProxyType({s.lower(): s for s in _NUMERIC_SUFFIXES})


def frame_to_readings(frame: Frame, *, tz: tzinfo, factor_map: Mapping[str, str]) -> Hj212Readings:
    """The readings of a data upload; DataTime is local time in ``tz``, codes become names by ``factor_map``.

    Items with other suffixes (``-SampleTime``, ``-RS``...) and plain keys other than DataTime are left
    out; an unmapped code keeps its code as its name.
    """
    period, main = _period(frame.cn)
    ts = parse_data_time(frame.data_time, tz)
    values: dict[str, float] = {}
    flags: dict[str, str] = {}
    for item in frame.items():
        _collect(item.key, item.value, main, factor_map, values=values, flags=flags)
    if not values:
        raise Hj212Error("no_values", f"CN {frame.cn} frame from MN {frame.mn} carries no value")
    return Hj212Readings(frame.mn, frame.st, frame.cn, period, ts, values, flags)


def _period(cn: str) -> tuple[Period, str]:
    try:
        return _PERIODS[cn]
    except KeyError:
        raise Hj212Error("unknown_cn", f"CN {cn} is not a data upload (2011, 2051, 2061, 2031)") from None


@functools.lru_cache(maxsize=4096)
def parse_data_time(text: str | None, tz: tzinfo) -> datetime:
    """``YYYYMMDDhhmmss`` read as local time in ``tz``.

    Remembered for the last 4,096 texts: a park's stations send the same DataTime, and the same datetime
    is then one object, which costs 0.2 µs instead of 3.0 (and, in a batch handed to the rules, is pickled
    once); a text that is not a time raises every time."""
    if text is None:
        raise Hj212Error("missing_datatime", "CP has no DataTime")
    if not _is_digits(text, 14):
        raise Hj212Error("bad_datatime", f"{text[:40]!r} is not YYYYMMDDhhmmss")
    year, month, day = int(text[0:4]), int(text[4:6]), int(text[6:8])
    hour, minute, second = int(text[8:10]), int(text[10:12]), int(text[12:14])
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise Hj212Error("bad_datatime", f"{text}: {exc}") from None


def _collect(
    key: str, value: str, main: str, factor_map: Mapping[str, str], *, values: dict[str, float],
    flags: dict[str, str],
) -> None:
    """Take one CP item (as CpItem.code and CpItem.suffix split it) into `values` or `flags`."""
    code, dash, suffix = key.rpartition("-")
    if not dash or (suffix != "Flag" and suffix not in _NUMERIC_SUFFIXES):
        return
    if not code:
        raise Hj212Error("bad_value", f"{key!r} has no factor code")
    name = factor_map.get(code, code)
    if suffix == "Flag":
        _put(flags, name, _flag(key, value), key)
    else:
        _put(values, name if suffix == main else f"{name}_{suffix.lower()}", _number(key, value), key)


def _put(target: dict[str, _V], name: str, value: _V, key: str) -> None:
    if name in target:
        raise Hj212Error("duplicate_value", f"{key} gives {name} a second time")
    target[name] = value


def _number(key: str, text: str) -> float:
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    raise Hj212Error("bad_value", f"{key}={text[:40]!r} is not a finite number")


def _flag(key: str, text: str) -> str:
    if not text:
        raise Hj212Error("bad_value", f"{key} is empty")
    return text


# ------------------------------------------------------------------------------- data-upload fast path


def read_upload(
    raw: bytes, *, tz: tzinfo, factor_map: Mapping[str, str], lenient_length: bool = False
) -> Hj212Readings | None:
    """The readings of a data upload, read without building a Frame; None for anything else.

    Equal to ``frame_to_readings(decode_frame(raw))`` whenever it returns readings: it runs the same
    checks, through the same helpers, and only leaves out the Frame, CpGroup and CpItem objects, which
    cost 55 of the 80 µs an upload took to decode (bench machine). It never raises: a frame that fails a
    check, or that is not a data upload (another CN, no CP), gives None, and the caller decodes it with
    ``decode_frame``, which names what is wrong (``tests/unit/test_hj212.py`` proves the two equal on
    valid, mutated and random frames).
    """
    try:
        segment = _checked_segment(raw, lenient_length)
        plain = read_plain_upload(segment, tz=tz, factor_map=factor_map)
        if plain is not None:
            return plain
        header, cp = _split_cp(segment)
        fields = _parse_header(header)
        _require(fields)
        if cp is None or fields["CN"] not in _PERIODS:
            return None
        _check_fields(fields)
        period, main = _PERIODS[fields["CN"]]
        data_time, values, flags = _cp_values(cp, main, factor_map)
        if not values:
            return None
        ts = parse_data_time(data_time, tz)
    except Hj212Error:
        return None
    return Hj212Readings(fields["MN"], fields["ST"], fields["CN"], period, ts, values, flags)


_PLAIN_UPLOAD: Final = re.compile(
    r"(?:QN=[0-9]{17};)?ST=([0-9]{2});CN=(2011|2051|2061|2031);(?:PW=[^;]*;)?MN=([^;]{1,24});"
    r"(?:Flag=([0-9]{1,3});)?CP=&&DataTime=([0-9]{14})([;,][^&]*)&&"
)
"""A data upload as stations send it: the header fields in the standard's order, CP opening with DataTime.
The items after DataTime are left to `_PLAIN_ITEM`."""
_PLAIN_ITEM: Final = re.compile(  # a number is _NUMBER's shape, its digits ASCII as the segment's are
    rf"[;,]([A-Za-z0-9]+)-(?:({'|'.join(_NUMERIC_SUFFIXES)})=((?a:{_NUMBER.pattern}))|Flag=([^;,=&]+))|(?s:(.))"
)
"""One item of the plain shape: a code of letters and digits, then a number with a numeric suffix or a
letter with ``-Flag``. Anything else matches the last group, one character at a time: one scan both cuts
the items and proves that nothing but such items is there."""


def read_plain_upload(segment: str, *, tz: tzinfo, factor_map: Mapping[str, str]) -> Hj212Readings | None:
    """The readings of a checked data segment in the plain shape; None for any other.

    Two regular expressions, `_PLAIN_UPLOAD` over the header and `_PLAIN_ITEM` over the items, prove
    what the header checks and the item loop of `_cp_values` would prove, in C: the bench's nine-value
    upload took 22.5 µs from segment to readings by `_parse_header`, `_check_fields` and `_cp_values`,
    and takes 13.0 µs here (bench machine, 2026-12-03). What the shape cannot prove (a Flag above 255, a
    duplicate, a number too large to be finite, a date that does not exist) gives None, and
    `read_upload` reads the segment the general way, which finds the same fault. The agreement tests of
    read_upload (tests/unit/test_hj212.py) hold this path to the full decoder as well.
    """
    match = _PLAIN_UPLOAD.fullmatch(segment)
    if match is None or (match[4] is not None and int(match[4]) > 255):  # group 4: Flag
        return None
    st, cn, mn, _, data_time, items = match.groups()
    period, main = _PERIODS[cn]
    read = _plain_items(items, main, factor_map)
    if read is None or not read[0]:
        return None
    try:
        ts = parse_data_time(data_time, tz)
    except Hj212Error:
        return None
    return Hj212Readings(mn, st, cn, period, ts, *read)


def _plain_items(
    items: str, main: str, factor_map: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, str]] | None:
    """Values and flags of the items; None for anything but plain items, a duplicate or an infinite number."""
    values: dict[str, float] = {}
    flags: dict[str, str] = {}
    isfinite = math.isfinite
    for code, suffix, number_text, letter, other in _PLAIN_ITEM.findall(items):
        if other:
            return None
        name = factor_map.get(code, code)
        if letter:
            if name in flags:
                return None
            flags[name] = letter
            continue
        if suffix != main:
            name = f"{name}_{suffix.lower()}"
        number = float(number_text)
        if name in values or not isfinite(number):
            return None
        values[name] = number
    return values, flags


def _cp_values(
    cp: str, main: str, factor_map: Mapping[str, str]
) -> tuple[str | None, dict[str, float], dict[str, str]]:
    """What _parse_cp, Frame.data_time and frame_to_readings make of CP text, without their objects.

    _key_value, _collect, _put and _number written out in the loop, for values: nine values took 10.0 µs
    with a call of each per item, 8.3 µs without (bench machine, 2026-12-03). The agreement tests of
    read_upload (tests/unit/test_hj212.py) hold it to the full path on valid, mutated and random frames.
    """
    data_time: str | None = None
    values: dict[str, float] = {}
    flags: dict[str, str] = {}
    numeric, number_shape, isfinite = _NUMERIC_SUFFIXES, _NUMBER.fullmatch, math.isfinite
    for group in cp.split(";"):
        if not group:  # an empty group is skipped, as in _parse_cp
            continue
        for item in group.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise Hj212Error("malformed_segment", f"CP item {item[:40]!r} is not key=value")
            code, dash, suffix = key.rpartition("-")
            if not dash:
                if data_time is None and key == "DataTime":
                    data_time = value
                continue
            is_number = suffix == main or (suffix != "Flag" and suffix in numeric)
            if not is_number and suffix != "Flag":
                continue  # -SampleTime, -RS ...: not a value
            if not code:
                raise Hj212Error("bad_value", f"{key!r} has no factor code")
            name = factor_map.get(code, code)
            if not is_number:
                _put(flags, name, _flag(key, value), key)
                continue
            if suffix != main:
                name = f"{name}_{suffix.lower()}"
            if number_shape(value) is None or not isfinite(number := float(value)):
                raise Hj212Error("bad_value", f"{key}={value[:40]!r} is not a finite number")
            if name in values:
                raise Hj212Error("duplicate_value", f"{key} gives {name} a second time")
            values[name] = number
    return data_time, values, flags


# ------------------------------------------------------------------------------------------ encoder


def build_frame(segment: str, *, crlf: bool = True) -> bytes:
    """``##`` + length + segment + HJ 212 CRC (upper-case hex) + optional CR LF."""
    if not segment.isascii() or _NOT_PRINTABLE.search(segment.encode("ascii")):
        raise ValueError(f"segment is not printable ASCII: {segment[:60]!r}")
    if len(segment) > MAX_SEGMENT:
        raise ValueError(f"segment has {len(segment)} characters, at most {MAX_SEGMENT}")
    data = segment.encode("ascii")
    frame = f"{_HEADER}{len(segment):04d}{segment}{crc16(data):04X}".encode("ascii")
    return frame + _CRLF if crlf else frame


def encode_frame(
    *,
    st: str,
    cn: str,
    mn: str,
    cp: Iterable[Iterable[tuple[str, str]]] = (),
    qn: str | None = None,
    pw: str | None = "123456",
    flag: int | None = 4,
    pnum: int | None = None,
    pno: int | None = None,
    crlf: bool = True,
) -> bytes:
    """A complete frame from its fields; ``cp`` is a list of groups of ``(key, value)`` items.

    A field given as None is left out (QN and Flag are absent in 2005-style packets). The result is
    decoded again before it is returned, so the encoder never produces a frame the decoder refuses.
    """
    header = _header(qn=qn, st=st, cn=cn, pw=pw, mn=mn, flag=flag, pnum=pnum, pno=pno)
    frame = build_frame(_segment(header, cp), crlf=crlf)
    try:
        decode_frame(frame)
    except Hj212Error as exc:
        raise ValueError(f"the fields do not make a valid frame: {exc}") from exc
    return frame


def encode_readings(
    mn: str,
    cn: str,
    data_time: datetime,
    values: Mapping[str, float],
    flags: Mapping[str, str] | None = None,
    *,
    tz: tzinfo,
    st: str = "22",
    qn: str | None = None,
    pw: str = "123456",
    flag: int = 4,
    factor_codes: Mapping[str, str] | None = None,
    crlf: bool = True,
) -> bytes:
    """A data upload (CN 2011/2051/2061/2031) from reading names: the inverse of :func:`frame_to_readings`.

    Names map back to codes through ``factor_codes`` (name -> code; default: DEFAULT_FACTORS reversed);
    ``pm25_min`` becomes ``a34004-Min``; an unknown name is sent as its own code. ``data_time`` must be
    timezone-aware; it is written as local time in ``tz``. QN defaults to the data time with ``000`` ms.
    """
    if cn not in _PERIODS:
        raise ValueError(f"CN {cn} is not a data upload (2011, 2051, 2061, 2031)")
    _, main = _PERIODS[cn]
    if data_time.tzinfo is None:
        raise ValueError("data_time must be timezone-aware")
    local = data_time.astimezone(tz)
    codes = factor_codes if factor_codes is not None else {n: c for c, n in DEFAULT_FACTORS.items()}
    groups = _reading_groups(values, flags or {}, main, codes)
    data_group = [("DataTime", format_data_time(local))]
    return encode_frame(
        st=st, cn=cn, mn=mn, cp=[data_group, *groups], qn=qn or format_qn(local), pw=pw, flag=flag, crlf=crlf
    )


def answer_9014(frame: Frame, *, crlf: bool = True) -> bytes:
    """The data answer to an upload that asked for one (Flag bit A): ST=91, CN=9014, CP=&&&&.

    It carries the upload's QN, PW and MN (a field the upload lacked is left out) and Flag=4: version
    HJ 212-2017, no answer wanted back. This is the form quoted as the standard's example in public code
    (``QN=20160801085000001;ST=91;CN=9014;PW=123456;MN=…;Flag=4;CP=&&&&``); some projects send
    ``CP=&&QnRtn=1&&`` or another Flag, which domain.md §1.4 does not back.
    """
    return encode_frame(st="91", cn="9014", mn=frame.mn, qn=frame.qn, pw=frame.pw, flag=4, crlf=crlf)


def format_data_time(moment: datetime) -> str:
    """``YYYYMMDDhhmmss`` of the wall-clock fields of ``moment`` (convert it to local time first)."""
    m = moment
    return f"{m.year:04d}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}"


def format_qn(moment: datetime) -> str:
    """``YYYYMMDDhhmmsszzz`` of the wall-clock fields of ``moment``."""
    return f"{format_data_time(moment)}{moment.microsecond // 1000:03d}"


def _header(**fields: str | int | None) -> list[tuple[str, str | int | None]]:
    """Header fields in the standard's order (QN ST CN PW MN Flag PNUM PNO), from lower-case keywords."""
    return [(key, fields[key.lower()]) for key in _KNOWN_FIELDS]


def _segment(header: Sequence[tuple[str, str | int | None]], cp: Iterable[Iterable[tuple[str, str]]]) -> str:
    fields = [f"{_token(k)}={_token(str(v))}" for k, v in header if v is not None]
    groups = [",".join(f"{_token(k)}={_token(v)}" for k, v in group) for group in cp]
    return ";".join([*fields, f"CP=&&{';'.join(groups)}&&"])


def _token(text: str) -> str:
    if _RESERVED.intersection(text):
        raise ValueError(f"{text!r} contains one of ; , = &")
    return text


def _reading_groups(
    values: Mapping[str, float], flags: Mapping[str, str], main: str, codes: Mapping[str, str]
) -> list[list[tuple[str, str]]]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, value in values.items():
        code, suffix = _code_of(name, main, codes)
        groups.setdefault(code, []).append((f"{code}-{suffix}", _format_value(value)))
    for name, letter in flags.items():
        code = codes.get(name, name)
        groups.setdefault(code, []).append((f"{code}-Flag", letter))
    return list(groups.values())


def _code_of(name: str, main: str, codes: Mapping[str, str]) -> tuple[str, str]:
    if name in codes:
        return codes[name], main
    base, _, stat = name.rpartition("_")
    if base and stat in _STAT_SUFFIXES and _STAT_SUFFIXES[stat] != main:
        return codes.get(base, base), _STAT_SUFFIXES[stat]
    return name, main


def _format_value(value: float) -> str:
    """Positional decimal (no exponent, as devices send it) of the shortest repr: float() gives it back."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"value {value!r} is not finite")
    return format(Decimal(repr(number)), "f")


# ----------------------------------------------------------------------------------------- splitter


class FrameSplitter:
    """Cuts a TCP byte stream into frames. Pure: the caller feeds bytes, it returns what is complete.

    ``feed`` returns, in stream order, each frame whose length and CRC hold (bytes, as sent but without
    the trailing CR LF) and one :class:`Hj212Error` per stretch of bytes it had to throw away. The
    content of a frame is checked later by :func:`decode_frame`. Rules:

    - CR and LF between frames are skipped silently. Other bytes before a ``##`` are ``missing_header``.
    - After a rejection, everything up to the next header with a plausible length field is dropped
      silently: one bad stretch gives one rejection, however many chunks it arrives in.
    - A frame never holds ``##`` nor CR/LF after its header (HJ 212 segments use neither), so a ``##``
      before the declared end means the frame was cut (``truncated``) and a CR/LF there means the length
      lies (``length_mismatch``); the splitter resyncs right there instead of waiting for more bytes.
    - A length above :data:`MAX_SEGMENT` is refused at once, so at most one frame (~1 KiB) waits.
    - With ``lenient_length`` the variant whose length counts CRC + CR LF is framed too.
    """

    def __init__(self, *, lenient_length: bool = False) -> None:
        self._buf = bytearray()
        self._lenient = lenient_length
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes kept waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | Hj212Error]:
        """Add bytes; return the frames and rejections they complete, in stream order."""
        self._buf += data
        out: list[bytes | Hj212Error] = []
        pos = 0
        while True:
            new_pos, item = self._step(pos)
            if item is not None:
                out.append(item)
                self._discarding = isinstance(item, Hj212Error)
            elif new_pos == pos:
                break
            pos = new_pos
        del self._buf[:pos]
        return out

    def close(self) -> Hj212Error | None:
        """End of stream: a partial frame left over is reported as ``truncated``."""
        left = bytes(self._buf).strip(_CRLF)
        report = bool(left) and (left.startswith(b"##") or not self._discarding)
        self._buf.clear()
        self._discarding = False
        if not report:
            return None
        return Hj212Error("truncated", f"stream ended inside a frame: {len(left)} bytes {left[:40]!r}")

    def _step(self, pos: int) -> tuple[int, bytes | Hj212Error | None]:
        """(new position, item) from ``pos`` on; no item and no progress means more bytes are needed."""
        buf = self._buf
        while pos < len(buf) and buf[pos] in _CRLF:
            pos += 1
        start = buf.find(b"##", pos)
        if start == pos:
            return self._frame_at(pos)
        # No header here: bytes up to the next '##' (or all but a trailing '#') are outside a frame.
        end = start if start >= 0 else len(buf) - (1 if buf.endswith(b"#") else 0)
        if end <= pos or self._discarding:
            return max(pos, end), None
        junk = bytes(buf[pos:end])
        return end, Hj212Error("missing_header", f"{len(junk)} bytes outside a frame: {junk[:40]!r}")

    def _frame_at(self, pos: int) -> tuple[int, bytes | Hj212Error | None]:
        field = bytes(self._buf[pos + 2 : pos + 6])
        if field and not field.isdigit():
            return self._bad_header(pos, "bad_length_field", f"{field!r} is not 4 decimal digits")
        if len(field) < 4:
            return pos, None
        declared = int(field)
        if declared > MAX_SEGMENT + (6 if self._lenient else 0):
            return self._bad_header(pos, "segment_too_long", f"length field says {declared}")
        self._discarding = False
        end = pos + 6 + declared + 4
        cut = self._cut(pos, end)
        if cut is not None:
            return cut
        if len(self._buf) < end:
            return pos, None
        return end, self._checked(pos, end)

    def _bad_header(self, pos: int, reason: str, detail: str) -> tuple[int, Hj212Error | None]:
        # Skip one byte only: in '###0101…' the real header starts at the second '#'.
        return pos + 1, None if self._discarding else Hj212Error(reason, detail)

    def _cut(self, pos: int, end: int) -> tuple[int, bytes | Hj212Error | None] | None:
        """A ``##`` or CR/LF before the declared end: the frame ends early."""
        buf = self._buf
        stop = min(end, len(buf))
        header = buf.find(b"##", pos + 2, stop)
        newline = _find_newline(buf, pos + 6, stop if header < 0 else header)
        if newline >= 0:
            if self._lenient and newline == end - 6 and buf[newline] == _CRLF[0]:
                # The variant whose length counts CRC + CR LF: complete once the LF is in.
                if newline + 1 == len(buf):
                    return pos, None
                if buf[newline + 1] == _CRLF[1]:
                    return newline + 2, self._checked(pos, newline)
            detail = f"frame ends after {newline - pos} bytes, before its declared end"
            return newline, Hj212Error("length_mismatch", detail)
        if header >= 0:
            detail = f"next '##' after {header - pos} bytes, before the declared end"
            return header, Hj212Error("truncated", detail)
        return None

    def _checked(self, pos: int, end: int) -> bytes | Hj212Error:
        frame = bytes(self._buf[pos:end])
        try:
            _check_crc(frame[6:-4], frame[-4:].decode("latin-1"))
        except Hj212Error as exc:
            return exc
        return frame


def _find_newline(buf: bytearray, start: int, stop: int) -> int:
    hits = [i for i in (buf.find(b"\r", start, stop), buf.find(b"\n", start, stop)) if i >= 0]
    return min(hits, default=-1)
