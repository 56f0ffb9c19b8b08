"""sandbox.runtime.identity: --user parsing and Docker's resolution against the image's passwd/group text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import InvalidUser, SbxError
from sandbox.runtime.identity import MAX_ID, Identity, parse_user, resolve_identity, shown

PASSWD = """root:x:0:0:root:/root:/bin/ash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
nobody:x:65534:65534:nobody:/:/sbin/nologin
ana:x:1000:1000:Ana:/home/ana:/bin/sh
nohome:x:1001:1001:::/bin/sh
"""

GROUP = """root:x:0:root
bin:x:1:root,bin,daemon
daemon:x:2:root,bin,daemon
wheel:x:10:root,ana
audio:x:18:ana
ana:x:1000:
staff:x:50: ana , bob
"""


# -- parse_user ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("", None)),
        ("root", ("root", None)),
        ("1000", ("1000", None)),
        ("0", ("0", None)),
        ("007", ("007", None)),
        ("ana:wheel", ("ana", "wheel")),
        ("1000:1000", ("1000", "1000")),
        ("machine$", ("machine$", None)),
        ("_svc.user-1", ("_svc.user-1", None)),
        (".hidden", (".hidden", None)),
        (str(MAX_ID), (str(MAX_ID), None)),
        ("a" * 32, ("a" * 32, None)),
        ("0:" + str(MAX_ID), ("0", str(MAX_ID))),
    ],
)
def test_parse_user_accepts(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_user(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-1", 'invalid user "-1": ids must be between 0 and 2147483647'),
        ("2147483648", "ids must be between 0 and 2147483647"),
        ("4294967295", "ids must be between 0 and 2147483647"),
        ("9" * 5000, "ids must be between"),  # never int() on an unbounded string
        ("1000:-1", "ids must be between"),
        ("0:2147483648", "ids must be between"),
        (":1000", "must not be empty"),
        ("1000:", "must not be empty"),
        (":", "must not be empty"),
        ("a:b:c", "expected USER[:GROUP]"),
        ("-bad", "a name must match"),
        ("a b", "a name must match"),
        ("a$b", "a name must match"),
        ("a" * 33, "at most 32 characters"),
        ("ana\n", "a name must match"),
        ("ünï", "a name must match"),
        ("+1", "a name must match"),
        ("١٢", "a name must match"),  # Arabic-Indic digits are not ids
        ("root\x00", "a name must match"),
    ],
)
def test_parse_user_refuses(text: str, fragment: str) -> None:
    with pytest.raises(InvalidUser) as caught:
        parse_user(text)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message and "\x00" not in message
    assert caught.value.hint


def test_message_for_negative_id_is_exact() -> None:
    with pytest.raises(InvalidUser, match=r'^invalid user "-1": ids must be between 0 and 2147483647$'):
        parse_user("-1")


def test_parse_user_refuses_non_strings() -> None:
    with pytest.raises(InvalidUser):
        parse_user(1000)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_parse_user_only_ever_raises_invalid_user(text: str) -> None:
    try:
        user, group = parse_user(text)
    except InvalidUser as error:
        assert "\n" not in str(error)
        return
    assert ":" not in user
    assert group is None or ":" not in group
    for part in (user, group):
        if part is not None and part.isascii() and part.isdigit():
            assert 0 <= int(part) <= MAX_ID


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"-?[0-9]{1,40}(:-?[0-9]{1,40})?", fullmatch=True))
def test_numeric_users_in_range_or_refused(text: str) -> None:
    parts = text.split(":")
    in_range = all(not p.startswith("-") and int(p) <= MAX_ID for p in parts)
    if in_range:
        assert parse_user(text)[0] == parts[0]
    else:
        with pytest.raises(InvalidUser, match="ids must be between"):
            parse_user(text)


def test_shown_escapes_and_cuts() -> None:
    assert shown('a"b\\c') == '"a\\"b\\\\c"'
    assert shown("a\nb\x00\u2028\U000e0001") == '"a\\x0ab\\x00\\u2028\\U000e0001"'
    assert shown("x" * 100, limit=5) == '"xxxxx"…'


# -- resolve_identity ---------------------------------------------------------------------------------------------


def test_empty_user_is_root_from_passwd() -> None:
    assert resolve_identity("", PASSWD, GROUP) == Identity(0, 0, (1, 2, 10), "/root", "root")


def test_empty_user_without_files_is_plain_root() -> None:
    assert resolve_identity("", None, None) == Identity(0, 0, (), "/", None)
    assert resolve_identity("", "", "") == Identity(0, 0, (), "/", None)


def test_empty_user_takes_gid_of_uid_0_entry_whatever_its_name() -> None:
    assert resolve_identity("", "toor:x:0:5::/r00t:/bin/sh\n", None) == Identity(0, 5, (), "/r00t", "toor")


def test_name_lookup_with_supplementary_groups() -> None:
    # the primary gid is left out, duplicates removed, members trimmed
    assert resolve_identity("ana", PASSWD, GROUP) == Identity(1000, 1000, (10, 18, 50), "/home/ana", "ana")


def test_numeric_uid_in_passwd_gets_its_entry() -> None:
    assert resolve_identity("1000", PASSWD, GROUP) == Identity(1000, 1000, (10, 18, 50), "/home/ana", "ana")
    assert resolve_identity("0", PASSWD, GROUP).name == "root"


def test_numeric_uid_not_in_passwd_is_allowed() -> None:
    assert resolve_identity("4242", PASSWD, GROUP) == Identity(4242, 0, (), "/", None)
    assert resolve_identity("4242", None, None) == Identity(4242, 0, (), "/", None)
    assert resolve_identity(str(MAX_ID), None, None).uid == MAX_ID


def test_numeric_uid_with_numeric_gid() -> None:
    assert resolve_identity("4242:4343", PASSWD, GROUP) == Identity(4242, 4343, (), "/", None)


def test_unknown_name_is_refused() -> None:
    with pytest.raises(InvalidUser, match="^unable to find user ghost: no matching entries in passwd file$"):
        resolve_identity("ghost", PASSWD, GROUP)
    with pytest.raises(InvalidUser, match="unable to find user ana"):
        resolve_identity("ana", None, GROUP)


def test_out_of_range_user_never_becomes_root() -> None:
    for text in ("2147483648", "-1", "4294967296", "0:-1", "-0"):
        with pytest.raises(InvalidUser):
            resolve_identity(text, PASSWD, GROUP)


def test_group_by_name_and_by_number() -> None:
    # an explicit group replaces the primary gid and, as Docker, sets no supplementary groups
    assert resolve_identity("ana:wheel", PASSWD, GROUP) == Identity(1000, 10, (), "/home/ana", "ana")
    assert resolve_identity("ana:18", PASSWD, GROUP) == Identity(1000, 18, (), "/home/ana", "ana")
    assert resolve_identity("ana:777", PASSWD, GROUP) == Identity(1000, 777, (), "/home/ana", "ana")
    assert resolve_identity("ana:0", PASSWD, None).gid == 0


def test_unknown_group_name_is_refused() -> None:
    with pytest.raises(InvalidUser, match="^unable to find group nogroup: no matching entries in group file$"):
        resolve_identity("ana:nogroup", PASSWD, GROUP)
    with pytest.raises(InvalidUser, match="unable to find group wheel"):
        resolve_identity("ana:wheel", PASSWD, None)


def test_first_matching_entry_wins_by_name_or_uid() -> None:
    passwd = "first:x:7:7::/one:\nsecond:x:7:8::/two:\n7:x:9:9::/nine:\n"
    assert resolve_identity("7", passwd, None).home == "/one"
    assert resolve_identity("second", passwd, None).home == "/two"
    passwd = "7:x:9:9::/nine:\nfirst:x:7:7::/one:\n"
    assert resolve_identity("7", passwd, None).uid == 9  # Docker matches the name too, first in the file


def test_empty_home_becomes_root_dir() -> None:
    assert resolve_identity("nohome", PASSWD, GROUP).home == "/"
    assert resolve_identity("short", "short:x:5:5\n", None) == Identity(5, 5, (), "/", "short")


def test_malformed_lines_are_skipped() -> None:
    passwd = "\n".join(
        [
            "# ana:x:0:0::/root:",
            "+ana:x:0:0::/:",
            "-ana:x:0:0::/:",
            "ana:x:0",  # too few fields
            "ana:x:abc:0::/:",
            "ana:x:-5:0::/:",
            "ana:x:99999999999:0::/:",
            "ana:x:0:4294967296::/:",
            ":x:0:0::/:",
            "ana:x:0:0::/nul\x00:",
            "\x0bana\u2028:x:0:0::/:",
            "   ana:x:1000:1000::/home/ana:/bin/sh  \r",
            "ana:x:0:0::/late:",
        ]
    )
    assert resolve_identity("ana", passwd, None) == Identity(1000, 1000, (), "/home/ana", "ana")


def test_line_separators_other_than_newline_do_not_split() -> None:
    # str.splitlines would cut at \u2028 or \x1c and let a field smuggle a line in
    passwd = "x:x:5:5:gecos\u2028ana:x:0:0::/:\nana:x:1000:1000::/home/ana:\n"
    assert resolve_identity("ana", passwd, None).uid == 1000


def test_malformed_group_lines_are_skipped() -> None:
    group = "\n".join(
        [
            "#wheel:x:10:ana",
            "bad:x:notanumber:ana",
            "neg:x:-1:ana",
            "huge:x:3000000000:ana",
            "short:x",
            ":x:11:ana",
            "nul:x:12:ana\x00",
            "fine:x:13:ana",
            "nomembers:x:14",
            "again:x:13:ana",
        ]
    )
    assert resolve_identity("ana", PASSWD, group).groups == (13,)


def test_membership_is_by_exact_name() -> None:
    group = "g1:x:21:anastasia\ng2:x:22:an\ng3:x:23:x,ana,y\n"
    assert resolve_identity("ana", PASSWD, group).groups == (23,)


def test_numeric_user_without_entry_has_no_supplementary_groups() -> None:
    assert resolve_identity("4242", PASSWD, "g:x:5:4242\n").groups == ()


def test_too_many_groups_is_refused() -> None:
    group = "".join(f"g{n}:x:{n + 1}:ana\n" for n in range(65537 + 1))
    with pytest.raises(InvalidUser, match="more than 65536 groups"):
        resolve_identity("ana", PASSWD, group)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.sampled_from(["", "root", "ana", "1000", "ana:wheel", "5:6"]))
def test_hostile_files_raise_only_invalid_user(passwd: str, group: str, user: str) -> None:
    try:
        identity = resolve_identity(user, passwd, group)
    except InvalidUser:
        return
    except SbxError as error:  # pragma: no cover - the assertion says what went wrong
        raise AssertionError(f"unexpected {type(error).__name__}") from error
    assert 0 <= identity.uid <= MAX_ID and 0 <= identity.gid <= MAX_ID
    assert all(0 <= g <= MAX_ID for g in identity.groups)
    assert identity.gid not in identity.groups
    assert "\x00" not in identity.home and identity.home


_field = st.one_of(
    st.sampled_from(["", "0", "1000", "ana", "-1", "99999999999", "/home/ana", " 7 "]), st.text(max_size=8)
)
_line = st.lists(_field, min_size=0, max_size=8).map(":".join)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_line, max_size=12), st.lists(_line, max_size=12), st.sampled_from(["", "ana", "1000", "ana:0", "0:ana"])
)
def test_passwd_shaped_hostile_text_raises_only_invalid_user(passwd: list[str], group: list[str], user: str) -> None:
    try:
        identity = resolve_identity(user, "\n".join(passwd), "\n".join(group))
    except InvalidUser:
        return
    assert 0 <= identity.uid <= MAX_ID and 0 <= identity.gid <= MAX_ID
    assert identity.gid not in identity.groups
