"""Docker's output forms: tabwriter tables, go-units sizes and durations, terminal escaping (TESTPLAN 24)."""

from __future__ import annotations

import calendar
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.cli import render
from sandbox.cli.render import (
    docker_time,
    escape,
    human_duration,
    human_size,
    json_line,
    parse_time,
    since,
    table,
    truncate,
)

MINUTE, HOUR, DAY = 60, 3600, 86400

# --- tables ------------------------------------------------------------------------------------------------------


def test_images_table_exact():
    # Go tabwriter(minwidth 10, tabwidth 1, padding 3): each column but the last is max(10, widest + 3) wide.
    #   REPOSITORY: widest 18 -> 21;  TAG: widest 6 -> 9 -> minwidth 10;  IMAGE ID: 12 -> 15;  CREATED: 18 -> 21
    rows = [
        ["nginx", "latest", "0123456789ab", "2 weeks ago", "187MB"],
        ["localhost:5000/a/b", "t", "fedcba987654", "About a minute ago", "5.59MB"],
    ]
    expected = (
        "REPOSITORY           TAG       IMAGE ID       CREATED              SIZE\n"
        "nginx                latest    0123456789ab   2 weeks ago          187MB\n"
        "localhost:5000/a/b   t         fedcba987654   About a minute ago   5.59MB"
    )
    assert table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows) == expected


def test_short_columns_take_minwidth():
    assert table(["A", "B", "C"], [["x", "", "z"]]) == "A         B         C\nx                   z"


def test_header_alone_and_single_column():
    assert table(["NAME", "DESCRIPTION"], []) == "NAME      DESCRIPTION"
    assert table(["ID"], [["abc"], ["defghijklmnop"]]) == "ID\nabc\ndefghijklmnop"


def test_last_column_is_never_padded():
    text = table(["A", "LAST"], [["1", "x" * 40], ["2", "y"]])
    assert text.splitlines()[2] == "2         y"


def test_width_exactly_at_minwidth_boundary():
    # widest 7 + 3 = 10 = minwidth; widest 8 + 3 = 11 > minwidth
    assert table(["H", "Z"], [["1234567", "z"]]).splitlines()[1] == "1234567   z"
    assert table(["H", "Z"], [["12345678", "z"]]).splitlines()[1] == "12345678   z"


def test_cells_are_escaped_and_measured_escaped():
    text = table(["NAME", "DESCRIPTION"], [["evil\x1b[2J", "a\u202eb"]])
    assert "\x1b" not in text and "\u202e" not in text
    line = text.splitlines()[1]
    assert line == "evil\\x1b[2J   a\\u202eb"


def test_cells_are_stringified():
    assert table(["A", "B"], [[1, 2.5]]) == "A         B\n1         2.5"


def test_non_ascii_counts_code_points_like_go_runes():
    assert table(["NAME", "X"], [["café", "y"]]).splitlines()[1] == "café      y"


@given(
    st.lists(
        st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=15), min_size=3, max_size=3),
        max_size=6,
    )
)
def test_columns_line_up(rows):
    headers = ["ONE", "TWO", "THREE"]
    lines = table(headers, rows).split("\n")
    assert len(lines) == len(rows) + 1
    width0 = max(10, max(len(r[0]) for r in [headers, *rows]) + 3)
    width1 = max(10, max(len(r[1]) for r in [headers, *rows]) + 3)
    for line, cells in zip(lines, [headers, *rows], strict=True):
        assert line[:width0].rstrip(" ") == cells[0].rstrip(" ")
        assert line[width0 : width0 + width1].rstrip(" ") == cells[1].rstrip(" ")
        assert line[width0 + width1 :] == cells[2]


# --- sizes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (999, "999B"),
        (1000, "1kB"),
        (1234, "1.23kB"),
        (1235, "1.24kB"),
        (12_345, "12.3kB"),
        (999_499, "999kB"),
        (999_500, "1e+03kB"),  # go-units prints %.3g, which switches to an exponent here too
        (1_000_000, "1MB"),
        (5_590_000, "5.59MB"),
        (5_594_999, "5.59MB"),
        (123_456_789, "123MB"),
        (187_000_000, "187MB"),
        (1_500_000_000, "1.5GB"),
        (2 * 10**12, "2TB"),
        (10**15, "1PB"),
        (10**24, "1YB"),
        (10**27, "1e+03YB"),
    ],
)
def test_human_size(size, text):
    assert human_size(size) == text


def test_human_size_precision():
    assert human_size(5_594_999, 4) == "5.595MB"
    assert human_size(1234, 2) == "1.2kB"


@given(st.integers(min_value=0, max_value=10**20))
def test_human_size_form(size):
    text = human_size(size)
    number, unit = text.rstrip("BkMGTPEZY"), text[len(text.rstrip("BkMGTPEZY")) :]
    assert unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    assert float(number) < 1000.5
    assert len(number.replace(".", "")) <= 3 or "e" in number


# --- durations ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "Less than a second"),
        (0, "Less than a second"),
        (0.5, "Less than a second"),
        (0.999, "Less than a second"),
        (1, "1 second"),
        (1.9, "1 second"),
        (2, "2 seconds"),
        (59, "59 seconds"),
        (59.99, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (1.4 * HOUR, "About an hour"),
        (1.5 * HOUR, "2 hours"),
        (2.5 * HOUR, "3 hours"),  # go-units rounds half up: int(h + 0.5), not to even
        (4.5 * HOUR, "5 hours"),
        (47 * HOUR, "47 hours"),
        (47.4 * HOUR, "47 hours"),
        (47.5 * HOUR, "2 days"),
        (48 * HOUR, "2 days"),
        (13 * DAY, "13 days"),
        (14 * DAY - HOUR, "13 days"),
        (14 * DAY, "2 weeks"),
        (8 * 7 * DAY, "8 weeks"),
        (59 * DAY, "8 weeks"),
        (60 * DAY, "2 months"),
        (365 * DAY, "12 months"),
        (729 * DAY, "24 months"),
        (730 * DAY, "2 years"),
        (3 * 365 * DAY + 100, "3 years"),
    ],
)
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e11, allow_nan=False))
def test_human_duration_never_fails(seconds):
    text = human_duration(seconds)
    assert text[0].isupper() or text[0].isdigit()


def test_since():
    assert since(1000.0, now=1090.0) == "About a minute ago"
    assert since(1000.0, now=1000.0) == "Less than a second ago"
    assert since(2000.0, now=1000.0) == "Less than a second ago"  # clock skew never shows negative
    assert since(None) == "N/A"


def test_since_defaults_to_now(monkeypatch):
    monkeypatch.setattr(render.time, "time", lambda: 10_000.0)
    assert since(10_000.0 - 3 * MINUTE) == "3 minutes ago"


def test_docker_time():
    assert docker_time(0) == "1970-01-01 00:00:00 +0000 UTC"
    assert docker_time(1704164645.9) == "2024-01-02 03:04:05 +0000 UTC"
    assert docker_time(None) == ""


# --- escaping (TESTPLAN 24) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("progress\rOVERWRITE", "progress\\x0dOVERWRITE"),
        ("abc\u202eexe.txt", "abc\\u202eexe.txt"),
        ("line\nbreak\ttab", "line\\x0abreak\\x09tab"),
        ("bell\x07nul\x00del\x7f", "bell\\x07nul\\x00del\\x7f"),
        ("csi\x9b2J", "csi\\x9b2J"),
        ("osc\x1b]0;title\x07", "osc\\x1b]0;title\\x07"),
        ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("plain text, café, 日本語, emoji 🐳", "plain text, café, 日本語, emoji 🐳"),
        ("", ""),
    ],
)
def test_escape(text, escaped):
    assert escape(text) == escaped


_DANGEROUS = {"\u2028", "\u2029"} | {chr(c) for c in range(0x202A, 0x202F)} | {chr(c) for c in range(0x2066, 0x206A)}


@given(st.text())
def test_escape_leaves_no_control_characters(text):
    escaped = escape(text)
    assert not any(unicodedata.category(c) == "Cc" or c in _DANGEROUS for c in escaped)
    assert len(escaped) >= len(text)


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf"))))
def test_escape_keeps_printable_text(text):
    assert escape(text) == text


# --- time stamps -------------------------------------------------------------------------------------------------

T0 = calendar.timegm((2024, 1, 2, 3, 4, 5))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", T0),
        ("2024-01-02T03:04:05.5Z", T0 + 0.5),
        ("2024-01-02T03:04:05.123456789Z", T0 + 0.123456),  # nanoseconds: cut to microseconds
        ("2024-01-02T03:04:05.000000001Z", T0),
        ("2024-01-02T05:04:05+02:00", T0),
        ("2024-01-01T22:04:05-05:00", T0),
        ("2024-01-02T08:34:05.25+05:30", T0 + 0.25),
        ("2024-01-02T03:04:05.999999999-00:00", T0 + 0.999999),
        ("  2024-01-02T03:04:05Z\n", T0),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "yesterday",
        "2024-01-02",
        "2024-01-02T03:04:05",  # no zone
        "2024-01-02 03:04:05Z",
        "2024-13-02T03:04:05Z",
        "2024-02-30T03:04:05Z",
        "2024-01-02T25:04:05Z",
        "2024-01-02T03:04:05.Z",
        "2024-01-02T03:04:05+2:00",
        "2024-01-02T03:04:05+25:00",
        "2024-01-02T03:04:05Zjunk",
    ],
)
def test_parse_time_rejects(text):
    assert parse_time(text) is None


@given(st.text(max_size=40))
def test_parse_time_never_raises(text):
    result = parse_time(text)
    assert result is None or isinstance(result, float)


@given(st.datetimes(timezones=st.just(None)), st.integers(min_value=0, max_value=999_999_999))
def test_parse_time_matches_calendar(moment, nanos):
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
    if moment.year < 1000:  # strftime does not pad years on every platform
        text = f"{moment.year:04d}" + text[text.index("-") :]
    expected = calendar.timegm(moment.timetuple()) + nanos // 1000 / 1e6
    assert parse_time(text) == pytest.approx(expected, abs=1e-6)


# --- truncation and json -------------------------------------------------------------------------------------------


def test_truncate():
    assert truncate("a" * 45, 45) == "a" * 45
    assert truncate("a" * 46, 45) == "a" * 44 + "…"
    assert len(truncate("b" * 100, 20)) == 20
    assert truncate("short", 45) == "short"
    assert truncate("two\nlines", 45) == "two lines"
    assert truncate("Official build of Nginx.\n\nFast and small", 20) == "Official build of N…"
    assert truncate("", 10) == ""


def test_json_line():
    assert json_line({"b": 1, "a": [1, "x"]}) == '{"a":[1,"x"],"b":1}'


def test_out_and_err(capsys):
    render.out("hello")
    render.out()
    render.err("sbx: broken")
    captured = capsys.readouterr()
    assert captured.out == "hello\n\n"
    assert captured.err == "sbx: broken\n"
