"""HJ 212-2017 codec: CRC, decoder, readings, encoder and stream splitter (ingest/hj212.py)."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ingest.errors import Hj212Error, Rejected
from ingest.hj212 import (
    DEFAULT_FACTORS,
    MAX_FRAME,
    MAX_SEGMENT,
    VENDOR_ALIASES,
    Frame,
    FrameSplitter,
    Hj212Readings,
    answer_9014,
    build_factor_map,
    build_frame,
    crc16,
    decode_frame,
    encode_frame,
    encode_readings,
    frame_to_readings,
    modbus_crc16,
    parse_segment,
    read_plain_upload,
    read_upload,
)

TZ = ZoneInfo("Asia/Shanghai")

# HJ 212-2017's own example (appendix C, quoted verbatim by many public parsers): `##0101…1C80`.
STANDARD_SEGMENT = (
    "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&"
)
STANDARD_FRAME = b"##0101" + STANDARD_SEGMENT.encode() + b"1C80\r\n"

# The C# test example of domain.md §1.3 (379 characters, CRC 5440).
CSHARP_SEGMENT = (
    "QN=20180427125809000;ST=22;CN=2011;PW=123456;MN=LXHB0CS0306310;Flag=5;CP=&&DataTime=20180427125809;"
    "a34004-Rtd=75600.000,a34004-Flag=N;a34002-Rtd=140600.000,a34002-Flag=N;"
    "a34001-Rtd=178000.000,a34001-Flag=N;a01001-Rtd=24.8,a01001-Flag=N;a01002-Rtd=46.8,a01002-Flag=N;"
    "a01006-Rtd=101.380,a01006-Flag=N;a01007-Rtd=0.0,a01007-Flag=N;a01008-Rtd=25,a01008-Flag=N;"
    "LA-Rtd=57.9,LA-Flag=N&&"
)
CSHARP_FRAME = b"##0379" + CSHARP_SEGMENT.encode() + b"5440\r\n"

MINUTE_SEGMENT = (
    "QN=20261127080100000;ST=22;CN=2051;PW=123456;MN=ST01;Flag=4;CP=&&DataTime=20261127080000;"
    "a34004-Avg=2.1,a34004-Min=1.8,a34004-Max=2.5,a34004-Cou=10.5,a34004-Flag=N;a21026-Avg=6,a21026-Flag=C"
    "&&"
)


def raw_frame(segment: str | bytes, *, crc: str | None = None, length: int | None = None, crlf: bool = True) -> bytes:
    """A frame built by hand, without the encoder's checks, so tests can break any part of it."""
    data = segment.encode("latin-1") if isinstance(segment, str) else segment
    crc_field = crc if crc is not None else f"{crc16(data):04X}"
    declared = len(data) if length is None else length
    frame = f"##{declared:04d}".encode() + data + crc_field.encode("latin-1")
    return frame + b"\r\n" if crlf else frame


def data_segment(cn: str = "2011", cp: str = "DataTime=20261127080000;a34004-Rtd=35.2,a34004-Flag=N") -> str:
    return f"QN=20261127080000000;ST=22;CN={cn};PW=123456;MN=ST01;Flag=4;CP=&&{cp}&&"


def readings_of(cp: str, cn: str = "2011", factor_map: dict[str, str] | None = None) -> Hj212Readings:
    frame = decode_frame(raw_frame(data_segment(cn, cp)))
    return frame_to_readings(frame, tz=TZ, factor_map=DEFAULT_FACTORS if factor_map is None else factor_map)


def reason_of(raw: bytes, *, lenient_length: bool = False) -> str:
    with pytest.raises(Hj212Error) as info:
        decode_frame(raw, lenient_length=lenient_length)
    return info.value.reason


def reading_reason(cp: str, cn: str = "2011") -> str:
    with pytest.raises(Hj212Error) as info:
        readings_of(cp, cn)
    return info.value.reason


def bitwise_hj212(data: bytes) -> int:
    """domain.md §1.3 verbatim: the reference the table-driven crc16 must equal."""
    reg = 0xFFFF
    for byte in data:
        reg = (reg >> 8) ^ byte
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


def bitwise_modbus(data: bytes) -> int:
    reg = 0xFFFF
    for byte in data:
        reg ^= byte
        for _ in range(8):
            lsb = reg & 1
            reg >>= 1
            if lsb:
                reg ^= 0xA001
    return reg


class TestCrc16:
    def test_standard_example(self) -> None:
        """The standard's example data segment (101 characters) gives 1C80."""
        assert len(STANDARD_SEGMENT) == 101
        assert crc16(STANDARD_SEGMENT.encode()) == 0x1C80

    def test_csharp_example(self) -> None:
        """The C# example data segment (379 characters) gives 5440."""
        assert len(CSHARP_SEGMENT) == 379
        assert crc16(CSHARP_SEGMENT.encode()) == 0x5440

    def test_modbus_differs(self) -> None:
        """The Modbus CRC16 of the same segments is different (0759, 83CC)."""
        assert modbus_crc16(STANDARD_SEGMENT.encode()) == 0x0759
        assert modbus_crc16(CSHARP_SEGMENT.encode()) == 0x83CC

    def test_empty_input(self) -> None:
        """No bytes leave the initial register 0xFFFF."""
        assert crc16(b"") == 0xFFFF == modbus_crc16(b"")

    @given(st.binary(max_size=2048))
    def test_table_equals_bitwise_reference(self, data: bytes) -> None:
        """The table-driven HJ 212 CRC equals domain.md's bitwise algorithm on any input."""
        assert crc16(data) == bitwise_hj212(data)

    @pytest.mark.parametrize("length", [*range(0, 40), MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1, MAX_FRAME + 2])
    def test_either_side_of_the_longest_frame(self, length: int) -> None:
        """Up to MAX_FRAME bytes the CRC is read off precomputed masks, beyond it byte by byte: both equal
        the reference, on random bytes and on bytes with every bit set (every mask bit counts)."""
        rng = random.Random(length)
        for data in (rng.randbytes(length), b"\xff" * length):
            assert crc16(data) == bitwise_hj212(data)

    @given(st.binary(max_size=2048))
    def test_modbus_table_equals_bitwise_reference(self, data: bytes) -> None:
        """The table-driven Modbus CRC equals the bitwise Modbus algorithm on any input."""
        assert modbus_crc16(data) == bitwise_modbus(data)


class TestStandardExamples:
    def test_standard_frame_decodes(self) -> None:
        """The standard's `##0101…1C80` frame decodes into its fields."""
        frame = decode_frame(STANDARD_FRAME)
        assert (frame.qn, frame.st, frame.cn, frame.pw) == ("20160801085857223", "32", "1062", "100000")
        assert frame.mn == "010000A8900016F000169DC0"
        assert frame.flag == 5
        assert frame.get("RtdInterval") == "30"

    def test_csharp_frame_decodes_to_readings(self) -> None:
        """The C# example frame gives nine real-time values, all flagged N, at its DataTime in Beijing."""
        frame = decode_frame(CSHARP_FRAME)
        readings = frame_to_readings(frame, tz=TZ, factor_map=DEFAULT_FACTORS)
        assert readings.ts == datetime(2018, 4, 27, 12, 58, 9, tzinfo=TZ)
        assert readings.period == "rtd"
        assert readings.values["pm25"] == 75600.0
        assert readings.values["pressure"] == 101.38
        assert readings.values["wind_dir"] == 25.0
        assert readings.values["LA"] == 57.9
        assert len(readings.values) == 9
        assert set(readings.flags.values()) == {"N"}

    def test_encoder_reproduces_standard_frame(self) -> None:
        """Encoding the standard example's fields gives its frame byte for byte."""
        frame = encode_frame(
            qn="20160801085857223",
            st="32",
            cn="1062",
            pw="100000",
            mn="010000A8900016F000169DC0",
            flag=5,
            cp=[[("RtdInterval", "30")]],
        )
        assert frame == STANDARD_FRAME


class TestDecodeAccepts:
    def test_without_crlf(self) -> None:
        """A frame without the trailing CR LF decodes like one with it."""
        assert decode_frame(STANDARD_FRAME[:-2]) == decode_frame(STANDARD_FRAME)

    def test_lower_case_crc(self) -> None:
        """The CRC is compared case-insensitively (`1c80` is accepted)."""
        assert decode_frame(STANDARD_FRAME.replace(b"1C80", b"1c80")).cn == "1062"

    def test_2005_style_without_qn_and_flag(self) -> None:
        """A 2005-style segment without QN and Flag decodes; its version is 0 and it wants no answer."""
        frame = decode_frame(raw_frame("ST=22;CN=2061;PW=123456;MN=8888;CP=&&DataTime=20260101000000&&"))
        assert (frame.qn, frame.flag, frame.version, frame.needs_answer) == (None, None, 0, False)

    def test_without_pw(self) -> None:
        """PW is optional."""
        assert decode_frame(raw_frame("ST=22;CN=2011;MN=8888;CP=&&&&")).pw is None

    def test_lenient_length_variant(self) -> None:
        """In lenient mode a length that also counts CRC and CR LF (segment + 6) is accepted."""
        raw = raw_frame(STANDARD_SEGMENT, length=101 + 6)
        assert decode_frame(raw, lenient_length=True).qn == "20160801085857223"

    def test_empty_cp(self) -> None:
        """`CP=&&&&` is an empty data area."""
        assert decode_frame(raw_frame("ST=91;CN=9014;MN=A;CP=&&&&")).cp == ()

    def test_trailing_semicolon_in_cp(self) -> None:
        """An empty group (a `;` right before the closing `&&`) is skipped."""
        frame = decode_frame(raw_frame(data_segment(cp="DataTime=20260101000000;a34004-Rtd=1;")))
        assert len(frame.cp) == 2

    def test_items_keep_code_suffix_and_plain_keys(self) -> None:
        """CP items split into code and suffix at the last `-`; odd suffixes and plain keys stay as sent."""
        cp = "DataTime=20260101000000;PolId=w01018,w01018-SampleTime=20260101000000,w01018-Rtd=3"
        frame = decode_frame(raw_frame(data_segment(cp=cp)))
        items = list(frame.items())
        assert [(i.code, i.suffix) for i in items] == [
            ("DataTime", ""),
            ("PolId", ""),
            ("w01018", "SampleTime"),
            ("w01018", "Rtd"),
        ]
        assert frame.cp[1].get("PolId") == "w01018"

    def test_unknown_header_field_kept(self) -> None:
        """A header field the standard does not name is kept in `extra`."""
        frame = decode_frame(raw_frame("ST=22;CN=2011;MN=A;Vendor=x1;CP=&&&&"))
        assert frame.extra == (("Vendor", "x1"),)

    def test_split_packet_numbers(self) -> None:
        """PNUM and PNO are read as integers."""
        frame = decode_frame(raw_frame("ST=22;CN=2011;MN=A;Flag=6;PNUM=3;PNO=1;CP=&&&&"))
        assert (frame.is_split, frame.pnum, frame.pno) == (True, 3, 1)

    def test_maximum_segment(self) -> None:
        """A data segment of exactly 1024 characters is accepted."""
        head = "ST=22;CN=2011;MN=A;CP=&&x="
        segment = head + "9" * (MAX_SEGMENT - len(head) - 2) + "&&"
        assert decode_frame(raw_frame(segment)).get("x") is not None


class TestDecodeRejects:
    def test_not_ascii(self) -> None:
        """A byte outside printable ASCII is `not_ascii`, and the detail names its offset."""
        raw = STANDARD_FRAME[:10] + b"\xff" + STANDARD_FRAME[11:]
        with pytest.raises(Hj212Error) as info:
            decode_frame(raw)
        assert info.value.reason == "not_ascii"
        assert "offset 10" in info.value.detail

    def test_not_ascii_control_character(self) -> None:
        """A lone LF inside the frame is not printable ASCII."""
        assert reason_of(STANDARD_FRAME[:-2] + b"\n") == "not_ascii"

    def test_missing_header(self) -> None:
        """A frame not starting with `##` is `missing_header`."""
        assert reason_of(STANDARD_FRAME[1:]) == "missing_header"

    def test_truncated_no_room_for_crc(self) -> None:
        """A frame too short to hold length and CRC is `truncated`."""
        assert reason_of(b"##0101QN") == "truncated"

    def test_truncated_shorter_than_length(self) -> None:
        """A frame cut before the length field's end is `truncated`."""
        assert reason_of(STANDARD_FRAME[:60]) == "truncated"

    def test_bad_length_field(self) -> None:
        """A length field that is not 4 decimal digits is `bad_length_field`."""
        assert reason_of(b"##01a1" + STANDARD_FRAME[6:]) == "bad_length_field"
        assert reason_of(b"##+101" + STANDARD_FRAME[6:]) == "bad_length_field"

    def test_length_mismatch(self) -> None:
        """A length field smaller than the data segment is `length_mismatch`."""
        assert reason_of(raw_frame(STANDARD_SEGMENT, length=100)) == "length_mismatch"

    def test_length_variant_rejected_in_strict_mode(self) -> None:
        """The length-counts-CRC-and-CRLF variant is `length_mismatch` unless lenient."""
        assert reason_of(raw_frame(STANDARD_SEGMENT, length=107)) == "length_mismatch"

    def test_bad_crc_field(self) -> None:
        """A CRC that is not 4 hex digits is `bad_crc_field`."""
        assert reason_of(raw_frame(STANDARD_SEGMENT, crc="1C8G")) == "bad_crc_field"

    def test_crc_modbus(self) -> None:
        """A frame carrying the Modbus CRC16 is `crc_modbus`, not a plain mismatch."""
        crc = f"{modbus_crc16(STANDARD_SEGMENT.encode()):04X}"
        assert reason_of(raw_frame(STANDARD_SEGMENT, crc=crc)) == "crc_modbus"

    def test_crc_mismatch(self) -> None:
        """A wrong CRC is `crc_mismatch`, and the detail says expected and received."""
        with pytest.raises(Hj212Error) as info:
            decode_frame(raw_frame(STANDARD_SEGMENT, crc="1C81"))
        assert info.value.reason == "crc_mismatch"
        assert "expected 1C80" in info.value.detail
        assert "got 1C81" in info.value.detail

    def test_segment_too_long(self) -> None:
        """A data segment over 1024 characters is `segment_too_long`."""
        segment = "ST=22;CN=2011;MN=A;CP=&&x=" + "9" * 1000 + "&&"
        assert reason_of(raw_frame(segment)) == "segment_too_long"

    @pytest.mark.parametrize(
        "segment",
        [
            "ST=22;CN;MN=A;CP=&&&&",  # a field without '='
            "ST=22;;CN=2011;MN=A;CP=&&&&",  # an empty field
            "ST=22;CN=2011;MN=A;CP=&&a=1",  # CP not closed by '&&'
            "ST=22;CN=2011;MN=A;CP=a=1&&",  # CP not opened by '&&'
            "ST=22;CN=2011;MN=A;CP=&&&",  # too short to be '&&&&'
            "ST=22;CN=2011;CN=2011;MN=A;CP=&&&&",  # a field twice
            "ST=22;CN=2011;MN=A;CP=&&DataTime=20260101000000;a34004-Rtd&&",  # an item without '='
            "ST=22;CN=2011;MN=A;CP=&&a=1,,b=2&&",  # an empty item
            "ST=22;CN=2011;MN=A;CP=&&=1&&",  # an item without a key
        ],
    )
    def test_malformed_segment(self, segment: str) -> None:
        """A segment whose fields or CP break the `key=value;…;CP=&&…&&` shape is `malformed_segment`."""
        assert reason_of(raw_frame(segment)) == "malformed_segment"

    @pytest.mark.parametrize(
        ("segment", "field"),
        [
            ("CN=2011;MN=A;CP=&&&&", "ST"),
            ("ST=22;MN=A;CP=&&&&", "CN"),
            ("ST=22;CN=2011;CP=&&&&", "MN"),
            ("ST=22;CN=2011;MN=A", "CP"),
        ],
    )
    def test_missing_field(self, segment: str, field: str) -> None:
        """ST, CN, MN and CP are required; a missing one is `missing_field` naming it."""
        with pytest.raises(Hj212Error) as info:
            decode_frame(raw_frame(segment))
        assert (info.value.reason, info.value.detail) == ("missing_field", field)

    @pytest.mark.parametrize(
        "fields",
        [
            "ST=2a;CN=2011;MN=A",
            "ST=222;CN=2011;MN=A",
            "ST=22;CN=20x1;MN=A",
            "ST=22;CN=201;MN=A",
            "ST=22;CN=2011;MN=A;Flag=x",
            "ST=22;CN=2011;MN=A;Flag=-1",
            "ST=22;CN=2011;MN=A;Flag=256",
            "QN=2016080108585722;ST=22;CN=2011;MN=A",
            "QN=2016080108585722a;ST=22;CN=2011;MN=A",
            "ST=22;CN=2011;MN=" + "M" * 25,
            "ST=22;CN=2011;MN=",
            "ST=22;CN=2011;MN=A;PNUM=x",
            "ST=22;CN=2011;MN=A;PNO=12345",
        ],
    )
    def test_bad_field(self, fields: str) -> None:
        """A field of the wrong shape (ST/CN digits, Flag integer, QN 17 digits, MN ≤ 24) is `bad_field`."""
        assert reason_of(raw_frame(fields + ";CP=&&&&")) == "bad_field"

    def test_crc_checked_before_segment(self) -> None:
        """Checks run in order: a bad CRC is reported before a malformed segment."""
        assert reason_of(raw_frame("garbage", crc="0000")) == "crc_mismatch"

    def test_is_a_rejection(self) -> None:
        """Hj212Error is a Rejected, so the pipeline dead-letters it like any refused message."""
        with pytest.raises(Rejected):
            decode_frame(b"nonsense")


class TestFrameFlag:
    @pytest.mark.parametrize(
        ("flag", "answer", "split", "version"),
        [
            (4, False, False, 1),
            (5, True, False, 1),
            (6, False, True, 1),
            (0, False, False, 0),
            (9, True, False, 2),
        ],
    )
    def test_flag_bits(self, flag: int, answer: bool, split: bool, version: int) -> None:
        """Flag bit 0 asks for an answer, bit 1 marks a split packet, bits 2-7 are the version (1 = 2017)."""
        frame = Frame(st="22", cn="2011", mn="A", cp=(), flag=flag)
        assert (frame.needs_answer, frame.is_split, frame.version) == (answer, split, version)

    def test_data_time_raw(self) -> None:
        """`data_time` is the raw DataTime string of CP, or None."""
        assert decode_frame(CSHARP_FRAME).data_time == "20180427125809"
        assert decode_frame(STANDARD_FRAME).data_time is None


class TestReadings:
    def test_minute_data_with_statistics(self) -> None:
        """CN 2051 gives `-Avg` under the name and Min/Max/Cou as `<name>_min` etc."""
        readings = frame_to_readings(decode_frame(raw_frame(MINUTE_SEGMENT)), tz=TZ, factor_map=DEFAULT_FACTORS)
        assert readings.period == "minute"
        assert readings.values == {
            "pm25": 2.1,
            "pm25_min": 1.8,
            "pm25_max": 2.5,
            "pm25_cou": 10.5,
            "so2": 6.0,
        }
        assert readings.flags == {"pm25": "N", "so2": "C"}
        assert readings.mn == "ST01"

    @pytest.mark.parametrize(("cn", "period"), [("2011", "rtd"), ("2051", "minute"), ("2061", "hour"), ("2031", "day")])
    def test_periods(self, cn: str, period: str) -> None:
        """CN 2011, 2051, 2061 and 2031 are the rtd, minute, hour and day periods."""
        suffix = "Rtd" if cn == "2011" else "Avg"
        readings = readings_of(f"DataTime=20260101000000;a21026-{suffix}=5", cn)
        assert readings.period == period
        assert readings.values == {"so2": 5.0}

    def test_day_data_min_max(self) -> None:
        """CN 2031 daily data keeps `-Min` and `-Max` next to `-Avg`."""
        readings = readings_of("DataTime=20260101000000;a05024-Avg=80,a05024-Min=10,a05024-Max=160", "2031")
        assert readings.values == {"o3": 80.0, "o3_min": 10.0, "o3_max": 160.0}

    def test_time_is_local_in_park_zone(self) -> None:
        """DataTime is read as local time in the given zone and comes out timezone-aware."""
        readings = readings_of("DataTime=20261127080000;a34004-Rtd=1")
        ts = readings.ts
        assert ts.utcoffset() == timedelta(hours=8)
        assert ts.astimezone(ZoneInfo("UTC")).hour == 0

    def test_unmapped_code_keeps_its_code(self) -> None:
        """A code absent from the factor map is kept under its code."""
        readings = readings_of("DataTime=20260101000000;x99999-Rtd=4,x99999-Flag=N")
        assert readings.values == {"x99999": 4.0}

    def test_vendor_alias_and_config_codes(self) -> None:
        """With vendor aliases switched on, `PM25` maps to pm25; configured codes extend the map."""
        cp = "DataTime=20260101000000;PM25-Rtd=12;925-Rtd=3"
        fmap = build_factor_map({"925": "benzene"}, vendor_aliases=True)
        assert readings_of(cp, factor_map=fmap).values == {"pm25": 12.0, "benzene": 3.0}

    def test_unknown_flag_letters_kept(self) -> None:
        """Flag letters outside the 2017 table are kept as sent."""
        readings = readings_of("DataTime=20260101000000;a34004-Rtd=1,a34004-Flag=]")
        assert readings.flags == {"pm25": "]"}

    def test_other_suffixes_and_plain_keys_left_out(self) -> None:
        """SampleTime, RS and plain keys such as PolId do not become values."""
        cp = "DataTime=20260101000000;PolId=a34004,a34004-SampleTime=20260101000000,a34004-Rtd=2,a34004-RS=1"
        assert readings_of(cp).values == {"pm25": 2.0}

    def test_unknown_cn(self) -> None:
        """A CN that is not a data upload is `unknown_cn`."""
        with pytest.raises(Hj212Error) as info:
            frame_to_readings(decode_frame(STANDARD_FRAME), tz=TZ, factor_map=DEFAULT_FACTORS)
        assert info.value.reason == "unknown_cn"

    def test_missing_datatime(self) -> None:
        """A data upload without DataTime is `missing_datatime`."""
        assert reading_reason("a34004-Rtd=1") == "missing_datatime"

    @pytest.mark.parametrize("text", ["2026010100000", "20261301000000", "20260230000000", "2026010100000x", ""])
    def test_bad_datatime(self, text: str) -> None:
        """A DataTime that is not a real YYYYMMDDhhmmss is `bad_datatime`."""
        assert reading_reason(f"DataTime={text};a34004-Rtd=1") == "bad_datatime"

    @pytest.mark.parametrize("value", ["abc", "nan", "inf", "-Infinity", "1e999", "", "1_000", " 1", "0x10"])
    def test_bad_value(self, value: str) -> None:
        """A value that is not a finite decimal number is `bad_value`, naming the item."""
        with pytest.raises(Hj212Error) as info:
            readings_of(f"DataTime=20260101000000;a34004-Rtd={value}")
        assert info.value.reason == "bad_value"
        assert "a34004-Rtd" in info.value.detail

    def test_empty_flag_is_bad_value(self) -> None:
        """An empty `-Flag` is `bad_value`."""
        assert reading_reason("DataTime=20260101000000;a34004-Rtd=1,a34004-Flag=") == "bad_value"

    def test_duplicate_value(self) -> None:
        """Two items giving the same reading (here PM25 and a34004) are `duplicate_value`, not overwritten."""
        fmap = build_factor_map(vendor_aliases=True)
        with pytest.raises(Hj212Error) as info:
            readings_of("DataTime=20260101000000;a34004-Rtd=1;PM25-Rtd=2", factor_map=fmap)
        assert info.value.reason == "duplicate_value"

    def test_no_values(self) -> None:
        """A data upload that carries no value at all is `no_values`."""
        assert reading_reason("DataTime=20260101000000;a34004-Flag=D") == "no_values"

    def test_accepted_number_shapes(self) -> None:
        """Signed, integer, leading-dot and exponent forms are numbers."""
        cp = "DataTime=20260101000000;a34004-Rtd=-1.5;a34002-Rtd=+7;a21026-Rtd=.5;a21004-Rtd=1e2"
        values = readings_of(cp).values
        assert values == {"pm25": -1.5, "pm10": 7.0, "so2": 0.5, "no2": 100.0}


class TestFactorTables:
    def test_contract_codes(self) -> None:
        """The codes named by contract §3 map to the reading names of contract §2."""
        expected = {
            "a34004": "pm25", "a34002": "pm10", "a21026": "so2", "a21004": "no2", "a21005": "co",
            "a05024": "o3", "a01001": "temp", "a01002": "rh", "a01006": "pressure",
            "a01007": "wind_speed", "a01008": "wind_dir", "a99054": "tvoc", "a21028": "h2s", "a21001": "nh3",
        }  # fmt: skip
        assert expected.items() <= DEFAULT_FACTORS.items()

    def test_names_unique(self) -> None:
        """No two default codes share a name, so names map back to one code."""
        assert len(set(DEFAULT_FACTORS.values())) == len(DEFAULT_FACTORS)

    def test_vendor_aliases_separate(self) -> None:
        """Vendor aliases are not in the default map; build_factor_map adds them only when asked."""
        assert not set(VENDOR_ALIASES) & set(DEFAULT_FACTORS)
        assert "PM25" not in build_factor_map()
        assert build_factor_map(vendor_aliases=True)["PM25"] == "pm25"

    def test_configuration_wins(self) -> None:
        """A configured code overrides the default and alias tables."""
        assert build_factor_map({"a34004": "pm2_5", "TEM": "t"}, vendor_aliases=True)["TEM"] == "t"
        assert build_factor_map({"a34004": "pm2_5"})["a34004"] == "pm2_5"


class TestEncoder:
    def test_build_frame(self) -> None:
        """build_frame adds `##`, the 4-digit length, the upper-case CRC and CR LF."""
        assert build_frame(STANDARD_SEGMENT) == STANDARD_FRAME
        assert build_frame(STANDARD_SEGMENT, crlf=False) == STANDARD_FRAME[:-2]

    def test_crc_zero_padded(self) -> None:
        """A CRC below 0x1000 is written with 4 digits."""
        segment = "QN=20260101000000009;ST=22;CN=2011;MN=A;CP=&&&&"
        assert crc16(segment.encode()) < 0x1000
        assert build_frame(segment, crlf=False).endswith(b"0B40")

    @pytest.mark.parametrize("segment", ["ST=22\n", "ST=é", "x" * (MAX_SEGMENT + 1)])
    def test_build_frame_refuses(self, segment: str) -> None:
        """build_frame refuses non-printable or non-ASCII text and segments over 1024 characters."""
        with pytest.raises(ValueError):
            build_frame(segment)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"mn": "M" * 25},
            {"mn": "A;B"},
            {"cp": [[("a34004-Rtd", "1,2")]]},
            {"cp": [[("a=b", "1")]]},
            {"qn": "123"},
        ],
    )
    def test_encode_frame_refuses_invalid_fields(self, kwargs: dict[str, object]) -> None:
        """encode_frame raises ValueError rather than produce a frame the decoder would refuse or misread."""
        fields: dict[str, object] = {"st": "22", "cn": "2011", "mn": "A"} | kwargs
        with pytest.raises(ValueError):
            encode_frame(**fields)  # type: ignore[arg-type]

    def test_2005_style(self) -> None:
        """QN=None and Flag=None leave those fields out."""
        frame = encode_frame(st="22", cn="2061", mn="8888", flag=None, cp=[[("DataTime", "20260101000000")]])
        assert frame.startswith(b"##") and b"QN=" not in frame and b"Flag=" not in frame
        assert decode_frame(frame).flag is None

    def test_encode_readings_layout(self) -> None:
        """encode_readings writes DataTime first, then one group per factor with value, stats and flag."""
        moment = datetime(2026, 11, 27, 0, 0, tzinfo=ZoneInfo("UTC"))
        frame = encode_readings(
            "ST01",
            "2051",
            moment,
            {"pm25": 2.1, "pm25_max": 2.5},
            {"pm25": "N"},
            tz=TZ,
            qn="20261127080000123",
        )
        assert b"CP=&&DataTime=20261127080000;a34004-Avg=2.1,a34004-Max=2.5,a34004-Flag=N&&" in frame
        assert b"QN=20261127080000123;ST=22;CN=2051;PW=123456;MN=ST01;Flag=4;" in frame

    def test_values_written_without_exponent(self) -> None:
        """Values are written in positional notation, as devices send them."""
        moment = datetime(2026, 1, 1, tzinfo=TZ)
        frame = encode_readings("A", "2011", moment, {"co": 1e-7, "so2": 1e20}, tz=TZ)
        assert b"a21005-Rtd=0.0000001" in frame and b"a21026-Rtd=100000000000000000000" in frame

    def test_encode_readings_refuses(self) -> None:
        """A naive data time, a non-finite value or a non-upload CN is a ValueError."""
        with pytest.raises(ValueError):
            encode_readings("A", "2011", datetime(2026, 1, 1), {"co": 1.0}, tz=TZ)
        with pytest.raises(ValueError):
            encode_readings("A", "2011", datetime(2026, 1, 1, tzinfo=TZ), {"co": math.nan}, tz=TZ)
        with pytest.raises(ValueError):
            encode_readings("A", "1062", datetime(2026, 1, 1, tzinfo=TZ), {"co": 1.0}, tz=TZ)

    def test_answer_9014(self) -> None:
        """The data answer carries the upload's QN, PW and MN with ST=91, CN=9014, Flag=4 and empty CP."""
        upload = decode_frame(CSHARP_FRAME)
        answer = answer_9014(upload)
        expected = "QN=20180427125809000;ST=91;CN=9014;PW=123456;MN=LXHB0CS0306310;Flag=4;CP=&&&&"
        assert answer == build_frame(expected)
        assert not decode_frame(answer).needs_answer

    def test_frame_segment_round_trip(self) -> None:
        """A decoded frame re-encodes to the same segment."""
        for raw in (STANDARD_FRAME, CSHARP_FRAME, raw_frame(MINUTE_SEGMENT)):
            frame = decode_frame(raw)
            assert parse_segment(frame.segment()) == frame
        assert decode_frame(CSHARP_FRAME).segment() == CSHARP_SEGMENT


# ------------------------------------------------------------------------------------ strategies

NAMES = sorted(DEFAULT_FACTORS.values())
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
flag_letters = st.sampled_from(["N", "F", "M", "S", "D", "C", "T", "B", "P", "]", "["])
mn_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=24)
data_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=TZ)
)


@st.composite
def reading_sets(draw: st.DrawFn) -> tuple[str, dict[str, float], dict[str, str]]:
    cn = draw(st.sampled_from(["2011", "2051", "2061", "2031"]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    values = {name: draw(finite) for name in names}
    if cn != "2011":
        for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            values[f"{name}_{draw(st.sampled_from(['min', 'max', 'cou']))}"] = draw(finite)
    flags = {name: draw(flag_letters) for name in draw(st.lists(st.sampled_from(NAMES), max_size=6, unique=True))}
    return cn, values, flags


def valid_frames() -> list[bytes]:
    return [STANDARD_FRAME, CSHARP_FRAME, raw_frame(MINUTE_SEGMENT), raw_frame(MINUTE_SEGMENT, crlf=False)]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "insert":
            data.insert(at, draw(st.integers(min_value=0, max_value=255)))
        elif data:
            del data[at]
    return bytes(data)


def segment_of(frame: bytes) -> bytes:
    return frame.removesuffix(b"\r\n")[6:-4]


def encoded_or_skipped(readings: tuple[str, dict[str, float], dict[str, str]], mn: str, at: datetime) -> bytes:
    """The upload encode_readings makes of drawn readings; the example is skipped when the segment would
    exceed 1024 characters (the encoder's ValueError)."""
    cn, values, flags = readings
    try:
        return encode_readings(mn, cn, at, values, flags, tz=TZ)
    except ValueError:
        assume(False)
        raise


class TestRoundTrip:
    @given(reading_sets(), mn_text, data_times)
    def test_readings_round_trip(
        self, readings: tuple[str, dict[str, float], dict[str, str]], mn: str, at: datetime
    ) -> None:
        """encode_readings then decode_frame and frame_to_readings give back values, flags, time and MN."""
        cn, values, flags = readings
        raw = encoded_or_skipped(readings, mn, at)
        result = frame_to_readings(decode_frame(raw), tz=TZ, factor_map=DEFAULT_FACTORS)
        assert (result.mn, result.cn, result.ts) == (mn, cn, at)
        assert result.values == values
        assert result.flags == flags

    @given(
        st.lists(
            st.lists(
                st.tuples(
                    st.text(alphabet="abcXYZ019-_.:", min_size=1, max_size=12),
                    st.text(alphabet="abcXYZ019-_.: +", max_size=12),
                ),
                min_size=1,
                max_size=4,
            ),
            max_size=8,
        ),
        mn_text,
        st.one_of(st.none(), st.integers(min_value=0, max_value=255)),
        st.booleans(),
    )
    def test_frame_round_trip(self, cp: list[list[tuple[str, str]]], mn: str, flag: int | None, crlf: bool) -> None:
        """encode_frame then decode_frame give back every CP item, MN and Flag."""
        raw = encode_frame(st="22", cn="2011", mn=mn, cp=cp, qn="20260101000000000", flag=flag, crlf=crlf)
        frame = decode_frame(raw)
        assert [[(i.key, i.value) for i in g.items] for g in frame.cp] == cp
        assert (frame.mn, frame.flag) == (mn, flag)


class TestFuzz:
    @settings(max_examples=300)
    @given(st.binary(max_size=1200), st.booleans())
    def test_random_bytes(self, raw: bytes, lenient: bool) -> None:
        """Random bytes never make decode_frame raise anything but Hj212Error."""
        with pytest.raises(Hj212Error):
            decode_frame(raw, lenient_length=lenient)

    @settings(max_examples=300)
    @given(mutated(st.sampled_from(valid_frames())), st.booleans())
    def test_mutated_frames(self, raw: bytes, lenient: bool) -> None:
        """Flipped, inserted or deleted bytes in a valid frame only ever raise Hj212Error."""
        try:
            frame = decode_frame(raw, lenient_length=lenient)
            frame_to_readings(frame, tz=TZ, factor_map=DEFAULT_FACTORS)
        except Hj212Error:
            pass

    @settings(max_examples=500)
    @given(mutated(st.sampled_from([segment_of(f) for f in valid_frames()])))
    def test_mutated_segments_with_valid_crc(self, segment: bytes) -> None:
        """A mutated segment with valid length and CRC reaches parser and readings; only Hj212Error comes out."""
        try:
            frame = decode_frame(raw_frame(segment))
            frame_to_readings(frame, tz=TZ, factor_map=build_factor_map(vendor_aliases=True))
        except Hj212Error:
            pass


def full_path(raw: bytes, lenient: bool, factor_map: dict[str, str]) -> Hj212Readings | None:
    """What the full decoder makes of a frame: its readings, None for another CN; Hj212Error propagates."""
    frame = decode_frame(raw, lenient_length=lenient)
    if frame.cn not in ("2011", "2051", "2061", "2031"):
        return None
    return frame_to_readings(frame, tz=TZ, factor_map=factor_map)


def assert_agrees(raw: bytes, *, lenient: bool = False, factor_map: dict[str, str] | None = None) -> None:
    """read_upload gives what the full path gives, or None; always None where the full path refuses."""
    factors = dict(DEFAULT_FACTORS) if factor_map is None else factor_map
    fast = read_upload(raw, tz=TZ, factor_map=factors, lenient_length=lenient)
    try:
        full = full_path(raw, lenient, factors)
    except Hj212Error:
        assert fast is None
        return
    assert fast is None or fast == full


TRICKY_SEGMENTS = [
    "QN=20261127080000000;ST=22;CN=2011;MN=ST01;CP=zz;CP=&&DataTime=20261127080000;a34004-Rtd=1&&",
    "CP=&&DataTime=20261127080000;a34004-Rtd=1&&;ST=22;CN=2011;MN=ST01;CP=&&a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;DataTime=2026112708000x;a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=2026112708000x;DataTime=20261127080000;a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;;CP=&&DataTime=20261127080000;a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=1;&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=1,,a34004-Flag=N&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=1,a34004-Rtd=2&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=1,PM25-Rtd=2&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=1_0&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=inf&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Rtd=1e999&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Flag=&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20261127080000;a34004-Flag=N&&",
    "ST=22;CN=2011;MN=ST01;CP=&&DataTime=20260230080000;a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;Flag=256;CP=&&DataTime=20261127080000;a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;MN=ST02;CP=&&DataTime=20261127080000;a34004-Rtd=1&&",
    "ST=22;CN=2011;CP=&&DataTime=20261127080000;a34004-Rtd=1&&",
    "ST=22;CN=2011;MN=ST01;X=;=Y;CP=&&DataTime=20261127080000;a34004-Rtd=1&&",
    "ST=22;CN=2051;MN=ST01;CP=&&DataTime=20261127080000;a34004-Avg=1,a34004-Rtd=2,a34004-SampleTime=x&&",
    "ST=22;CN=2011;MN=ST01;CP=&&&&",
    "ST=22;CN=2011;MN=ST01;CP=&&&",
]


class TestUploadFastPath:
    """read_upload, the decoder's one-pass path for data uploads, agrees with decode_frame + frame_to_readings."""

    def test_gives_the_readings_of_valid_uploads(self) -> None:
        """Every valid upload is read by the fast path itself, to the same readings."""
        for raw in (CSHARP_FRAME, raw_frame(MINUTE_SEGMENT), raw_frame(MINUTE_SEGMENT, crlf=False)):
            fast = read_upload(raw, tz=TZ, factor_map=DEFAULT_FACTORS)
            assert fast is not None
            assert fast == frame_to_readings(decode_frame(raw), tz=TZ, factor_map=DEFAULT_FACTORS)

    def test_uploads_in_the_plain_shape_are_read_in_one_match(self) -> None:
        """The shape stations send (header in the standard's order, DataTime first, then values and flags)
        is read by read_plain_upload, to what the full path reads; other shapes are left to the general way."""
        for raw in (CSHARP_FRAME, raw_frame(MINUTE_SEGMENT)):
            plain = read_plain_upload(segment_of(raw).decode(), tz=TZ, factor_map=DEFAULT_FACTORS)
            assert plain is not None
            assert plain == full_path(raw, False, dict(DEFAULT_FACTORS))
        for segment in (
            MINUTE_SEGMENT.replace("ST=22;CN=2051", "CN=2051;ST=22"),  # header out of order
            MINUTE_SEGMENT.replace("a21026-Avg=6", "a21026-Avg=6,a21026-SampleTime=20261127080000"),
            MINUTE_SEGMENT.replace("a21026-Avg=6", "a21026-Avg=6;"),  # an empty group
            MINUTE_SEGMENT.replace("Flag=4", "Flag=256"),
            MINUTE_SEGMENT.replace("a21026-Avg=6", "a21026-Avg=6e999"),
            MINUTE_SEGMENT.replace("a21026-Flag=C", "a21026-Flag=C,a21026-Flag=N"),
        ):
            assert read_plain_upload(segment, tz=TZ, factor_map=DEFAULT_FACTORS) is None
            assert_agrees(raw_frame(segment))

    def test_other_frames_are_left_to_the_full_decoder(self) -> None:
        """A frame that is no data upload (CN 1062 here) gives None."""
        assert read_upload(STANDARD_FRAME, tz=TZ, factor_map=DEFAULT_FACTORS) is None

    def test_lenient_length_variant(self) -> None:
        """The length variant that counts CRC and CR LF is read only in lenient mode, as by decode_frame."""
        raw = variant_frame(MINUTE_SEGMENT)
        assert read_upload(raw, tz=TZ, factor_map=DEFAULT_FACTORS) is None
        assert read_upload(raw, tz=TZ, factor_map=DEFAULT_FACTORS, lenient_length=True) is not None
        assert_agrees(raw, lenient=True)

    @pytest.mark.parametrize("segment", TRICKY_SEGMENTS)
    def test_tricky_segments(self, segment: str) -> None:
        """Segments at the edges of the grammar: CP twice or first, empty parts, duplicates, bad values."""
        assert_agrees(raw_frame(segment))
        assert_agrees(raw_frame(segment), factor_map=build_factor_map(vendor_aliases=True))

    @given(reading_sets(), mn_text, data_times)
    def test_encoded_readings(
        self, readings: tuple[str, dict[str, float], dict[str, str]], mn: str, at: datetime
    ) -> None:
        """Uploads from the encoder are read by the fast path, to what the full path reads."""
        raw = encoded_or_skipped(readings, mn, at)
        fast = read_upload(raw, tz=TZ, factor_map=DEFAULT_FACTORS)
        assert fast is not None and fast == full_path(raw, False, dict(DEFAULT_FACTORS))
        plain = read_plain_upload(segment_of(raw).decode(), tz=TZ, factor_map=DEFAULT_FACTORS)
        assert plain == fast  # the encoder writes the plain shape

    @settings(max_examples=300)
    @given(st.binary(max_size=1200), st.booleans())
    def test_random_bytes(self, raw: bytes, lenient: bool) -> None:
        assert read_upload(raw, tz=TZ, factor_map=DEFAULT_FACTORS, lenient_length=lenient) is None

    @settings(max_examples=500)
    @given(mutated(st.sampled_from(valid_frames())), st.booleans())
    def test_mutated_frames(self, raw: bytes, lenient: bool) -> None:
        assert_agrees(raw, lenient=lenient)

    @settings(max_examples=1500)
    @given(mutated(st.sampled_from([segment_of(f) for f in valid_frames()] + [s.encode() for s in TRICKY_SEGMENTS])))
    def test_mutated_segments_with_valid_crc(self, segment: bytes) -> None:
        """Mutations that keep length and CRC valid reach the parsers: both agree on each of them."""
        assert_agrees(raw_frame(segment))
        assert_agrees(raw_frame(segment), factor_map=build_factor_map(vendor_aliases=True))


# ------------------------------------------------------------------------------------- splitter


def feed_all(splitter: FrameSplitter, chunks: list[bytes]) -> list[bytes | Hj212Error]:
    out: list[bytes | Hj212Error] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
        assert splitter.pending < MAX_FRAME + 8
    return out


def frames_of(items: list[bytes | Hj212Error]) -> list[bytes]:
    return [item for item in items if isinstance(item, bytes)]


def reasons_of(items: list[bytes | Hj212Error]) -> list[str]:
    return [item.reason for item in items if isinstance(item, Hj212Error)]


def random_chunks(stream: bytes, data: st.DataObject) -> list[bytes]:
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def variant_frame(segment: str) -> bytes:
    """The wild variant whose length field counts CRC and CR LF too."""
    return raw_frame(segment, length=len(segment) + 6)


# Garbage that looks like the start of a frame: headers with bad or lying lengths, stray '#'.
NASTY = [
    b"#",
    b"##",
    b"##01",
    b"##0x12",
    b"##9999",
    b"##0050",
    b"##0003ab",
    b"##0004\r\n",
    b"###",
    b"##0101QN=",
]
garbage = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"#", b"")),
    st.sampled_from(NASTY),
)


class TestFrameSplitter:
    def test_byte_by_byte(self) -> None:
        """A frame fed one byte at a time comes out once, complete, without CR LF."""
        splitter = FrameSplitter()
        out = feed_all(splitter, [bytes([b]) for b in STANDARD_FRAME])
        assert out == [STANDARD_FRAME[:-2]]
        assert splitter.pending == 0

    def test_several_frames_in_one_chunk(self) -> None:
        """Several frames in one chunk, with and without CR LF, come out in order."""
        chunk = STANDARD_FRAME + CSHARP_FRAME[:-2] + STANDARD_FRAME[:-2]
        assert FrameSplitter().feed(chunk) == [STANDARD_FRAME[:-2], CSHARP_FRAME[:-2], STANDARD_FRAME[:-2]]

    def test_garbage_between_frames(self) -> None:
        """Bytes between frames are one `missing_header` rejection, and the next frame still comes out."""
        out = FrameSplitter().feed(STANDARD_FRAME + b"noise\x00\xff" + CSHARP_FRAME)
        assert out[0] == STANDARD_FRAME[:-2]
        assert reasons_of(out) == ["missing_header"]
        assert frames_of(out) == [STANDARD_FRAME[:-2], CSHARP_FRAME[:-2]]

    def test_length_longer_than_frame(self) -> None:
        """A length field that overshoots into the next frame is `truncated`; the next frame is kept."""
        liar = raw_frame(STANDARD_SEGMENT, length=300, crlf=False)
        out = FrameSplitter().feed(liar + CSHARP_FRAME)
        assert reasons_of(out) == ["truncated"]
        assert frames_of(out) == [CSHARP_FRAME[:-2]]

    def test_length_lies_before_crlf(self) -> None:
        """A CR LF before the declared end is `length_mismatch`, found without waiting for more bytes."""
        splitter = FrameSplitter()
        out = splitter.feed(raw_frame(STANDARD_SEGMENT, length=900))
        assert reasons_of(out) == ["length_mismatch"]
        assert splitter.pending == 0

    def test_length_too_large_is_refused_at_once(self) -> None:
        """A length over 1024 is `segment_too_long` at once; its bytes are dropped up to the next `##`."""
        splitter = FrameSplitter()
        out = feed_all(splitter, [b"##5000", b"x" * 3000, STANDARD_FRAME])
        assert reasons_of(out) == ["segment_too_long"]
        assert frames_of(out) == [STANDARD_FRAME[:-2]]

    def test_never_buffers_more_than_a_frame(self) -> None:
        """However long a plausible length keeps it waiting, pending stays under one maximum frame."""
        splitter = FrameSplitter()
        out = feed_all(splitter, [b"##1024"] + [b"a" * 100] * 30)
        assert reasons_of(out) == ["crc_mismatch"]
        assert splitter.pending < MAX_FRAME

    def test_one_rejection_per_bad_stretch(self) -> None:
        """Garbage arriving over many chunks is one `missing_header` rejection, not one per chunk."""
        splitter = FrameSplitter()
        out = feed_all(splitter, [b"noise " * 10] * 20 + [STANDARD_FRAME])
        assert out == [out[0], STANDARD_FRAME[:-2]]
        assert reasons_of(out) == ["missing_header"]

    def test_bad_length_field(self) -> None:
        """A header whose length is not digits is `bad_length_field`; a `###` still finds its frame."""
        out = FrameSplitter().feed(b"##ab" + b"#" + STANDARD_FRAME)
        assert reasons_of(out) == ["bad_length_field"]
        assert frames_of(out) == [STANDARD_FRAME[:-2]]

    def test_crc_errors(self) -> None:
        """A complete frame with a Modbus CRC is `crc_modbus`, with a wrong one `crc_mismatch`."""
        modbus = raw_frame(STANDARD_SEGMENT, crc=f"{modbus_crc16(STANDARD_SEGMENT.encode()):04X}")
        out = FrameSplitter().feed(modbus + raw_frame(STANDARD_SEGMENT, crc="0000") + STANDARD_FRAME)
        assert reasons_of(out) == ["crc_modbus", "crc_mismatch"]
        assert frames_of(out) == [STANDARD_FRAME[:-2]]

    def test_lenient_variant(self) -> None:
        """In lenient mode the length-counts-CRC-and-CRLF variant is framed, even split between CR and LF."""
        variant = variant_frame(STANDARD_SEGMENT)
        splitter = FrameSplitter(lenient_length=True)
        out = feed_all(splitter, [variant[:-1], variant[-1:], STANDARD_FRAME])
        assert out == [variant[:-2], STANDARD_FRAME[:-2]]
        assert decode_frame(variant[:-2], lenient_length=True) == decode_frame(STANDARD_FRAME)

    def test_lenient_variant_strict_mode(self) -> None:
        """In strict mode that variant is `length_mismatch`."""
        out = FrameSplitter().feed(variant_frame(STANDARD_SEGMENT) + STANDARD_FRAME)
        assert reasons_of(out) == ["length_mismatch"]
        assert frames_of(out) == [STANDARD_FRAME[:-2]]

    def test_close_reports_partial_frame(self) -> None:
        """close() reports a partial frame left in the buffer as `truncated` and empties it."""
        splitter = FrameSplitter()
        assert splitter.feed(STANDARD_FRAME[:50]) == []
        assert splitter.pending == 50
        error = splitter.close()
        assert error is not None and error.reason == "truncated"
        assert splitter.pending == 0

    def test_close_after_complete_frames(self) -> None:
        """close() after complete frames (and a trailing CR LF) reports nothing."""
        splitter = FrameSplitter()
        splitter.feed(STANDARD_FRAME + b"\r\n")
        assert splitter.close() is None

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(st.tuples(garbage, st.sampled_from(valid_frames())), max_size=8),
        garbage,
        st.data(),
    )
    def test_random_stream(self, pairs: list[tuple[bytes, bytes]], tail: bytes, data: st.DataObject) -> None:
        """Valid frames mixed with garbage and cut at random points come out exactly, in order."""
        stream = b"".join(g + f for g, f in pairs) + tail
        splitter = FrameSplitter()
        out = feed_all(splitter, random_chunks(stream, data))
        assert frames_of(out) == [f.removesuffix(b"\r\n") for _, f in pairs]
        splitter.close()
        assert splitter.pending == 0

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(st.tuples(garbage, st.sampled_from([*valid_frames(), variant_frame(MINUTE_SEGMENT)])), max_size=6),
        st.data(),
    )
    def test_random_stream_lenient(self, pairs: list[tuple[bytes, bytes]], data: st.DataObject) -> None:
        """In lenient mode, standard and length-variant frames amid garbage come out exactly, in order."""
        stream = b"".join(g + f for g, f in pairs)
        out = feed_all(FrameSplitter(lenient_length=True), random_chunks(stream, data))
        assert frames_of(out) == [f.removesuffix(b"\r\n") for _, f in pairs]

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated(st.sampled_from([STANDARD_FRAME + CSHARP_FRAME + STANDARD_FRAME[:-2] * 3])), st.data())
    def test_mutated_stream(self, stream: bytes, data: st.DataObject) -> None:
        """A damaged stream never makes feed raise; every frame it yields has a valid CRC."""
        splitter = FrameSplitter()
        for item in feed_all(splitter, random_chunks(stream, data)):
            if isinstance(item, bytes):
                assert crc16(item[6:-4]) == int(item[-4:], 16)
        splitter.close()
