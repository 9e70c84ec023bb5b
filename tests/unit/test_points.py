"""Point: line protocol rendering and the JSON form used by the spool."""

from __future__ import annotations

import math

import pytest

from ingest.points import Point, check_name, escape_key, escape_measurement, format_field, spooled_lines

PLATE = "粤R·A1234"


def point(**overrides: object) -> Point:
    values: dict[str, object] = {
        "measurement": "air_quality",
        "tags": {"park": "demo", "station": "S1"},
        "fields": {"pm25": 35.2},
        "ts_ns": 1_795_810_000_000_000_000,
    }
    values.update(overrides)
    return Point(**values)  # type: ignore[arg-type]


class TestLine:
    def test_plain_point(self) -> None:
        """A plain point renders as measurement,tags fields timestamp, tags sorted by key."""
        p = point(tags={"station": "S1", "park": "demo"}, fields={"pm25": 35.2, "seq": 7})
        assert p.to_line() == "air_quality,park=demo,station=S1 pm25=35.2,seq=7i 1795810000000000000"

    def test_field_types(self) -> None:
        """Floats keep a decimal point, integers get an i, booleans are true/false, text is quoted."""
        p = point(fields={"f": 1.0, "i": 1, "b": True, "c": False, "s": "x"})
        assert p.to_line().split(" ")[1] == 'f=1.0,i=1i,b=true,c=false,s="x"'

    def test_point_without_tags(self) -> None:
        """A point without tags has no comma after the measurement."""
        assert point(tags={}).to_line() == "air_quality pm25=35.2 1795810000000000000"

    def test_empty_tag_value_is_left_out(self) -> None:
        """A tag whose value is empty is left out, as InfluxDB refuses it."""
        assert point(tags={"park": "demo", "gate": ""}).to_line().startswith("air_quality,park=demo ")

    def test_chinese_plate_needs_no_escaping(self) -> None:
        """Chinese text and the middle dot go as they are."""
        assert f"plate={PLATE} " in point(tags={"plate": PLATE}).to_line()
        assert f'plate="{PLATE}"' in point(fields={"plate": PLATE}).to_line()

    def test_point_without_fields_is_refused(self) -> None:
        """A point without fields cannot be written."""
        with pytest.raises(ValueError, match="no fields"):
            point(fields={}).to_line()


class TestEscaping:
    @pytest.mark.parametrize(
        ("text", "escaped"),
        [
            ("a b", r"a\ b"),
            ("a,b", r"a\,b"),
            ("a=b", r"a\=b"),
            ('a"b', 'a"b'),
            (r"C:\temp", r"C:\temp"),
            ("a\tb\rc", "a\tb\rc"),
        ],
    )
    def test_tag_keys_and_values(self, text: str, escaped: str) -> None:
        """In tags and field keys only comma, space and '=' get a backslash; the rest goes raw."""
        assert escape_key(text) == escaped

    def test_measurement_keeps_equals_sign(self) -> None:
        """A measurement escapes comma and space but not '='."""
        assert escape_measurement("a b,c=d") == r"a\ b\,c=d"

    @pytest.mark.parametrize(
        ("text", "rendered"),
        [('say "hi"', r'"say \"hi\""'), ("C:\\temp\\", r'"C:\\temp\\"'), ("a b,c=d", '"a b,c=d"')],
    )
    def test_string_fields(self, text: str, rendered: str) -> None:
        """In string fields double quotes and backslashes get a backslash."""
        assert format_field(text) == rendered

    def test_newline_in_string_field_is_raw(self) -> None:
        """A newline in a string field stays raw inside the quotes: InfluxDB reads it back exactly."""
        assert format_field("a\nb") == '"a\nb"'

    def test_newline_in_string_field_can_be_escaped(self) -> None:
        """With escape_newlines a newline in a string field becomes the two characters backslash n."""
        assert point(fields={"s": "a\nb"}).to_line(escape_newlines=True).split(" ")[1] == r's="a\nb"'

    @pytest.mark.parametrize("text", ["a\nb", "", "trailing\\", "a\\\\b", "a\\,b", "a\\ b", "a\\=b", 'a\\"b'])
    def test_what_line_protocol_cannot_carry(self, text: str) -> None:
        """Empty names, newlines and a backslash at the end or before \\ , space = " are refused."""
        with pytest.raises(ValueError):
            check_name(text)

    def test_tag_with_newline_names_the_tag(self) -> None:
        """A refused tag value names its tag in the message."""
        with pytest.raises(ValueError, match="tag 'plate'"):
            point(tags={"plate": "A\nB"}).to_line()

    def test_measurement_starting_with_hash_is_refused(self) -> None:
        """A measurement starting with '#' would make the line a comment, so it is refused."""
        with pytest.raises(ValueError, match="comment"):
            escape_measurement("#x")

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_float_is_refused(self, value: float) -> None:
        """NaN and infinities cannot be written."""
        with pytest.raises(ValueError, match="not finite"):
            format_field(value)

    @pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
    def test_integer_outside_int64_is_refused(self, value: int) -> None:
        """Integers outside int64 cannot be written."""
        with pytest.raises(ValueError, match="int64"):
            format_field(value)

    def test_int64_limits_are_accepted(self) -> None:
        """The int64 limits themselves are fine."""
        assert format_field(2**63 - 1) == f"{2**63 - 1}i"
        assert format_field(-(2**63)) == f"{-(2**63)}i"


class TestJson:
    def test_round_trip_keeps_types(self) -> None:
        """to_json/from_json gives the same point back: int stays int, float stays float, str, bool."""
        p = point(fields={"f": 1.0, "g": 2.5, "i": 3, "big": 2**62, "s": PLATE, "t": True, "u": False})
        back = Point.from_json(p.to_json())
        assert back == p
        assert [type(v) for v in back.fields.values()] == [float, float, int, int, str, bool, bool]

    def test_round_trip_of_hostile_text(self) -> None:
        """Quotes, backslashes, newlines and Chinese text survive the JSON form."""
        text = 'a "b"\\c\nd,e=f ' + PLATE
        p = point(tags={"plate": text}, fields={"note": text})
        assert Point.from_json(p.to_json()) == p

    def test_float_written_without_decimal_point_stays_float(self) -> None:
        """A float that JSON writes as 1e+16 comes back as a float."""
        p = point(fields={"f": 1e16})
        assert type(Point.from_json(p.to_json()).fields["f"]) is float

    def test_json_is_compact_utf8(self) -> None:
        """The JSON form keeps Chinese text as it is, without spaces."""
        assert PLATE in point(tags={"plate": PLATE}).to_json()
        assert " " not in point().to_json()


class TestSpoolForm:
    def test_bytes_round_trip_keeps_every_type(self) -> None:
        """The spool's binary form gives back the same point, int, float, str and bool kept apart."""
        from ingest.points import Point  # noqa: PLC0415

        point = Point("m", {"plate": "粤R·A1234"}, {"f": 1.0, "i": 1, "s": "1", "b": True}, 1_795_737_600_000_000_001)
        back = Point.from_bytes(point.to_bytes())
        assert back == point
        assert [type(v) for v in back.fields.values()] == [float, int, str, bool]

    def test_unknown_format_is_refused(self) -> None:
        """Bytes of another format are refused, not misread."""
        import pytest  # noqa: PLC0415

        from ingest.points import Point  # noqa: PLC0415

        with pytest.raises(ValueError, match="format"):
            Point.from_bytes(b"\x02junk")


class TestLinesFromTheSpoolsForm:
    """`spooled_lines` writes points as the spool holds them, for the drainer: the same text as `to_line`."""

    @pytest.mark.parametrize(
        "fields",
        [
            {"pm25": 35.2, "pm10": 40.0, "co": 0.6, "o3": 1e-7, "big": 1.5e300, "neg": -0.0},
            {"f": 1.0, "i": 1, "b": True, "s": 'say "hi"\\'},
            {"pm25": 35.2, "pm25_flag": "D"},
            {"pm25": 35.2, "so2": 1e-7, "mn": "010000A8900016F000169DC0"},  # an HJ 212 reading's fields
            {"a b": 1.0, "c,d": 2.0, "e=f": 3.0, "p%r": 4.0, "%d": 5.0, "%%": 6.0},
            {"huge": 1e308, "huger": 1e308},  # finite, though their sum is not
            {"i": 2**63 - 1},
        ],
    )
    def test_same_text_as_to_line(self, fields: dict[str, object]) -> None:
        """Floats, every other type, escaped keys, a '%' in a key, sums that overflow: text equal to
        to_line's."""
        points = [
            point(fields=fields),
            point(tags={"station": "S 1", "park": "a,b", "empty": "", "plate": PLATE}, fields=fields),
            point(measurement="m x", tags={}, fields=fields, ts_ns=-1),
        ]
        assert spooled_lines([p.to_bytes() for p in points]) == [p.to_line() for p in points]

    def test_newlines_in_text_as_asked(self) -> None:
        """A newline in a string field is kept raw or escaped, as to_line's `escape_newlines` says."""
        p = point(fields={"note": "a\nb"})
        assert spooled_lines([p.to_bytes()]) == [p.to_line()]
        assert spooled_lines([p.to_bytes()], escape_newlines=True) == [p.to_line(escape_newlines=True)]

    @pytest.mark.parametrize(
        ("fields", "error"),
        [
            ({"pm25": math.nan}, "not finite"),
            ({"pm25": 1.0, "pm10": math.inf}, "not finite"),
            ({"pm25": -math.inf}, "not finite"),
            ({"pm25": math.nan, "mn": "010000A8900016F000169DC0"}, "not finite"),  # beside text
            ({"mn": "x", "i": 2**63}, "outside int64"),
            ({}, "no fields"),
            ({"i": 2**63}, "outside int64"),
            ({"bad\nkey": 1.0}, "newline"),
        ],
    )
    def test_what_line_protocol_cannot_carry_is_refused(self, fields: dict[str, object], error: str) -> None:
        """A point line protocol cannot carry raises the ValueError to_line raises."""
        with pytest.raises(ValueError, match=error):
            spooled_lines([point().to_bytes(), point(fields=fields).to_bytes()])

    def test_unknown_format_is_refused(self) -> None:
        """Bytes of another format are refused, not misread."""
        with pytest.raises(ValueError, match="format"):
            spooled_lines([b"\x02junk"])
