"""Point: the store-neutral form of one row of a time series, and its line-protocol rendering."""

from __future__ import annotations

import functools
import json
import marshal
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

FieldValue = float | int | str | bool
_SPOOL_FORMAT = b"\x01"  # marshal version 4 of (measurement, tags, fields, ts_ns)
_SPOOL_FORMAT_BYTE = _SPOOL_FORMAT[0]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ns(at: datetime) -> int:
    """Nanoseconds since the epoch of a timezone-aware time, in integers only (a float timestamp
    loses the microseconds of present-day times); a naive time raises ValueError."""
    try:
        delta = at - _EPOCH
    except TypeError:
        raise ValueError(f"times must be timezone-aware, not {at!r}") from None
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(frozen=True, slots=True)
class Point:
    """One point: measurement, tags, fields and a timestamp in nanoseconds since the epoch (UTC).

    Field types are kept as given (float, int, str, bool): InfluxDB refuses a field whose type changes.
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ns: int

    def to_json(self) -> str:
        """Compact JSON for the spool; `from_json` gives the same point back, types included."""
        return json.dumps(
            [self.measurement, dict(self.tags), _encode_fields(self.fields), self.ts_ns],
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def to_bytes(self) -> bytes:
        """The spool's form: marshal keeps float, int, str and bool apart and is four times faster than
        JSON. Only for our own local spool (marshal must never read untrusted bytes)."""
        tags, fields = self.tags, self.fields  # marshal takes plain dicts only: other mappings are copied
        return _SPOOL_FORMAT + marshal.dumps((
            self.measurement,
            tags if type(tags) is dict else dict(tags),
            fields if type(fields) is dict else dict(fields),
            self.ts_ns,
        ))

    @classmethod
    def from_bytes(cls, data: bytes) -> Point:
        if not data or data[0] != _SPOOL_FORMAT_BYTE:
            raise ValueError(f"unknown spool point format {data[:1]!r}")
        return cls(*marshal.loads(data[1:]))  # (measurement, tags, fields, ts_ns)

    @classmethod
    def from_json(cls, text: str) -> Point:
        measurement, tags, fields, ts_ns = json.loads(text)
        return cls(measurement, tags, _decode_fields(fields), ts_ns)

    def to_line(self, *, escape_newlines: bool = False) -> str:
        """InfluxDB line protocol, escaped for every character a device may send.

        Tags with an empty value are left out (InfluxDB refuses them; the SQLite store keeps them as '').
        A newline in a string field is kept raw inside the quotes (InfluxDB reads it back exactly), or
        with `escape_newlines` written as the two characters \\n, for servers that split the body at every
        newline (VictoriaMetrics). Raises ValueError for what line protocol cannot carry (see
        `check_name`), a point without fields, a non-finite float or an integer outside int64.
        """
        fields = self.fields
        if not fields:
            raise ValueError(f"point of {self.measurement!r} has no fields")
        parts = []
        for key, value in fields.items():
            # A finite float is nearly every field: written inline (v - v is 0.0 only for finite floats);
            # the drain's profile had line protocol at a third of its CPU.
            if type(value) is float and value - value == 0.0:
                parts.append(_field_prefix(key) + repr(value))
            else:
                parts.append(_field_prefix(key) + format_field(value, escape_newlines=escape_newlines))
        return f"{_series(self.measurement, tuple(self.tags.items()))} {','.join(parts)} {self.ts_ns}"


def spooled_lines(spooled: Iterable[bytes], *, escape_newlines: bool = False) -> list[str]:
    """The line-protocol line of each point given in the spool's form (`Point.to_bytes`): the same text as
    ``Point.from_bytes(data).to_line(escape_newlines=...)``, and the same ValueError for what line protocol
    cannot carry.

    The drainer's read-ahead thread, which prepares InfluxDB's next batch, held the GIL for most of a
    recovery. A point whose fields are all finite floats (every reading) is written here from the
    unmarshalled tuple, with one ``%`` of a template made once per set of field keys, instead of building
    a Point and a Row and formatting each field apart: 77,670 instructions per point of the benchmark's
    spool to read and encode before, 63,130 after (callgrind; a third of what is left is unmarshalling).
    A point with fields of other types as well (an HJ 212 reading carries its `mn` as text) is written the
    same way from its values formatted one by one.
    """
    loads, template_of, floats = marshal.loads, _float_fields_template, _ONLY_FLOAT
    lines: list[str] = []
    append = lines.append
    for data in spooled:
        if not data or data[0] != _SPOOL_FORMAT_BYTE:
            raise ValueError(f"unknown spool point format {data[:1]!r}")
        measurement, tags, fields, ts_ns = loads(data[1:])
        values = tuple(fields.values())
        total = sum(values) if set(map(type, values)) == floats else math.nan
        if total - total == 0.0:  # only floats, and all finite: their sum is finite (or overflows to inf)
            template = template_of(tuple(fields))
            append(f"{_series(measurement, tuple(tags.items()))} {template % (*values, ts_ns)}")
        elif fields:  # other types too (an HJ 212 reading's `mn`, flags, gate events): each value formatted
            texts = [repr(v) if type(v) is float and v - v == 0.0 else format_field(v, escape_newlines=escape_newlines)
                     for v in values]
            template = _text_fields_template(tuple(fields))
            append(f"{_series(measurement, tuple(tags.items()))} {template % (*texts, ts_ns)}")
        else:
            append(Point(measurement, tags, fields, ts_ns).to_line(escape_newlines=escape_newlines))  # raises
    return lines


_ONLY_FLOAT = frozenset({float})


@functools.lru_cache(maxsize=1024)
def _float_fields_template(keys: tuple[str, ...]) -> str:
    """``k1=%r,k2=%r %d`` for these field keys, escaped (a '%' in a key doubled): repr is the float's text
    in `to_line` as well."""
    return ",".join(_field_prefix(key).replace("%", "%%") + "%r" for key in keys) + " %d"


@functools.lru_cache(maxsize=1024)
def _text_fields_template(keys: tuple[str, ...]) -> str:
    """``k1=%s,k2=%s %d`` for these field keys, escaped (a '%' in a key doubled), for values already in
    line protocol's text (`format_field`)."""
    return ",".join(_field_prefix(key).replace("%", "%%") + "%s" for key in keys) + " %d"


def _encode_fields(fields: Mapping[str, FieldValue]) -> dict[str, object]:
    # JSON keeps int and float apart only by the decimal point: mark ints so 1 stays an int and 1.0 a float.
    return {k: ({"i": v} if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in fields.items()}


def _decode_fields(fields: dict[str, object]) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = {}
    for k, v in fields.items():
        if isinstance(v, dict):
            out[k] = int(v["i"])
        elif isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
        else:
            out[k] = v  # type: ignore[assignment]
    return out


# Escaping as InfluxDB 1.6.7 and VictoriaMetrics read it (both checked with every character below):
# in names and tag values only comma and space (and, outside measurements, '=') are escaped with a
# backslash, any other backslash is literal, tabs and carriage returns stay raw. In string fields '"' and
# '\\' are escaped. InfluxDB 1.x reads `\\` in a tag as two backslashes, the v2 API as one: such text
# is refused (`check_name`) rather than stored differently by different servers.
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\"})
_STRING_ESCAPES_NEWLINE = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": r"\n"})
# A backslash before one of these (or at the end) reads as an escape, differently in 1.x and 2.x.
_AMBIGUOUS_BACKSLASH = re.compile(r'\\(?:[\\, ="]|$)')
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_name(text: str, what: str = "name") -> str:
    """Return `text` if line protocol can carry it as a measurement, key or tag value; else ValueError.

    It cannot carry an empty name, a newline, or a backslash that ends the text or stands before a
    backslash, comma, space, '=' or '"' (InfluxDB 1.x and 2.x read those differently).
    """
    if not text:
        raise ValueError(f"{what} is empty")
    if "\n" in text:
        raise ValueError(f"{what} {text!r} contains a newline, which line protocol cannot carry")
    if "\\" in text and _AMBIGUOUS_BACKSLASH.search(text):
        raise ValueError(
            f'{what} {text!r} has a backslash at its end or before one of \\ , space = ", '
            "which line protocol cannot carry unambiguously"
        )
    return text


# Names and tag values repeat from point to point: caching their escaped form doubles to_line's speed.
@functools.lru_cache(maxsize=4096)
def escape_measurement(name: str) -> str:
    """Escape a measurement name; ValueError if line protocol cannot carry it."""
    if name.startswith("#"):
        raise ValueError(f"measurement {name!r} starts with '#': InfluxDB would read the line as a comment")
    return check_name(name, "measurement").translate(_MEASUREMENT_ESCAPES)


@functools.lru_cache(maxsize=4096)
def escape_key(text: str, what: str = "key") -> str:
    """Escape a tag key, tag value or field key; ValueError if line protocol cannot carry it."""
    return check_name(text, what).translate(_KEY_ESCAPES)


@functools.lru_cache(maxsize=4096)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """The escaped measurement and tags (sorted by key, empty values left out) that begin a line."""
    parts = [escape_measurement(measurement)]
    for key, value in sorted(tags):
        if value:
            parts.append(f",{escape_key(key, 'tag key')}={escape_key(value, f'tag {key!r}')}")
    return "".join(parts)


@functools.lru_cache(maxsize=4096)
def _field_prefix(key: str) -> str:
    return escape_key(key, "field key") + "="


def format_field(value: FieldValue, *, escape_newlines: bool = False) -> str:
    """A field value in line protocol: 1.5, 3i, true, "text" (see `Point.to_line` for newlines)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer field value {value} is outside int64")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field value {value!r} is not finite")
        return repr(value)
    return '"' + value.translate(_STRING_ESCAPES_NEWLINE if escape_newlines else _STRING_ESCAPES) + '"'
