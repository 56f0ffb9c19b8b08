"""sandbox.runtime.command: argv, environment, env files and host names by Docker's rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import InvalidCommand, InvalidEnv, InvalidHostname, NoCommand
from sandbox.runtime.command import DEFAULT_PATH, build_args, merge_env, parse_env_file, parse_hostname

# -- build_args ---------------------------------------------------------------------------------------------------

EP = ("/docker-entrypoint.sh",)
CMD = ("nginx", "-g", "daemon off;")


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "flag", "args", "expected"),
    [
        (None, ("sh",), None, (), ("sh",)),
        (None, ("sh",), None, ("echo", "hi"), ("echo", "hi")),
        (EP, CMD, None, (), EP + CMD),
        (EP, CMD, None, ("bash",), EP + ("bash",)),
        (EP, None, None, (), EP),
        (EP, (), None, (), EP),
        # --entrypoint replaces the entrypoint as one word and drops the image CMD
        (EP, CMD, "/bin/sh -c", (), ("/bin/sh -c",)),
        (EP, CMD, "/bin/sh", ("-c", "id"), ("/bin/sh", "-c", "id")),
        (None, ("sh",), "env", (), ("env",)),
        # --entrypoint "" clears it; arguments then are the whole command
        (EP, CMD, "", ("id",), ("id",)),
        # an image ENTRYPOINT [""] counts as none
        (("",), ("sh",), None, (), ("sh",)),
    ],
)
def test_build_args(entrypoint, cmd, flag, args, expected) -> None:
    assert build_args(entrypoint, cmd, flag, args) == expected


@pytest.mark.parametrize(
    ("entrypoint", "cmd", "flag", "args"),
    [
        (None, None, None, ()),
        ((), (), None, ()),
        (None, ("sh",), "", ()),  # Docker: --entrypoint "" without arguments drops CMD too
        (EP, CMD, "", ()),
        (("",), None, None, ()),
    ],
)
def test_no_command(entrypoint, cmd, flag, args) -> None:
    with pytest.raises(NoCommand, match="^no command specified$"):
        build_args(entrypoint, cmd, flag, args)


def test_nul_in_argument_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="argument 1"):
        build_args(None, None, None, ("echo", "a\x00b"))
    with pytest.raises(InvalidCommand, match="argument 0"):
        build_args(("/bin/\x00sh",), None, None, ())


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.tuples(st.text(max_size=5))),
    st.one_of(st.none(), st.lists(st.text(max_size=5), max_size=3).map(tuple)),
    st.one_of(st.none(), st.text(max_size=5)),
    st.lists(st.text(max_size=5), max_size=3).map(tuple),
)
def test_build_args_properties(entrypoint, cmd, flag, args) -> None:
    try:
        result = build_args(entrypoint, cmd, flag, args)
    except (NoCommand, InvalidCommand):
        return
    assert result
    if args:
        assert result[-len(args) :] == args
    if flag is not None:
        assert result == ((flag,) if flag else ()) + args


# -- merge_env ----------------------------------------------------------------------------------------------------


def env(*, image=(), flags=(), files=(), host=None, hostname="box", home="/root") -> tuple[str, ...]:
    return merge_env(tuple(image), list(flags), list(files), host or {}, hostname=hostname, home=home)


def test_defaults() -> None:
    assert env() == (f"PATH={DEFAULT_PATH}", "HOSTNAME=box", "HOME=/root")


def test_image_path_replaces_default_in_place() -> None:
    assert env(image=["A=1", "PATH=/x"]) == ("PATH=/x", "HOSTNAME=box", "A=1", "HOME=/root")


def test_precedence_image_then_files_then_flags() -> None:
    result = env(image=["A=image", "B=image", "C=image"], files=["B=file", "C=file"], flags=["C=flag"])
    assert result[2:5] == ("A=image", "B=file", "C=flag")


def test_later_duplicates_override_in_first_position() -> None:
    result = env(flags=["A=1", "B=2", "A=3"])
    assert result[2:4] == ("A=3", "B=2")


def test_bare_name_reads_host_or_is_omitted() -> None:
    host = {"TOKEN": "s3cret", "EMPTY": ""}
    result = env(flags=["TOKEN", "MISSING", "EMPTY"], files=["TOKEN"], host=host)
    assert "TOKEN=s3cret" in result and "EMPTY=" in result
    assert not any(item.startswith("MISSING") for item in result)


def test_bare_name_that_host_lacks_keeps_the_image_value() -> None:
    assert "A=image" in env(image=["A=image"], flags=["A"])


def test_bare_name_in_image_env_is_ignored_never_read_from_host() -> None:
    result = env(image=["TOKEN"], host={"TOKEN": "s3cret"})
    assert not any("TOKEN" in item for item in result)


def test_value_keeps_equals_signs_and_spaces() -> None:
    assert "A= b=c " in env(flags=["A= b=c "])
    assert "A=" in env(flags=["A="])


def test_home_from_identity_only_when_absent() -> None:
    assert env(home="/home/ana")[-1] == "HOME=/home/ana"
    assert "HOME=/custom" in env(image=["HOME=/custom"], home="/home/ana")
    assert "HOME=/home/ana" not in env(image=["HOME=/custom"], home="/home/ana")
    assert "HOME=/flag" in env(flags=["HOME=/flag"], home="/home/ana")


def test_empty_home_adds_no_home() -> None:
    assert not any(item.startswith("HOME=") for item in env(home=""))


def test_hostname_can_be_overridden_like_docker() -> None:
    assert "HOSTNAME=mine" in env(flags=["HOSTNAME=mine"])
    assert "HOSTNAME=box" not in env(flags=["HOSTNAME=mine"])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"flags": ["=x"]}, "name is empty"),
        ({"flags": [""]}, "name is empty"),
        ({"files": ["=x"]}, "--env-file"),
        ({"image": ["=x"]}, "the image"),
        ({"flags": ["A=b\x00c"]}, "NUL"),
        ({"flags": ["A\x00=b"]}, "NUL"),
        ({"image": ["A=\x00"]}, "NUL"),
        ({"flags": ["A"], "host": {"A": "x\x00"}}, "host environment"),
        ({"home": "/h\x00"}, "passwd"),
        ({"hostname": "a\x00"}, "--hostname"),
    ],
)
def test_invalid_env_is_refused_cleanly(kwargs, fragment: str) -> None:
    with pytest.raises(InvalidEnv) as caught:
        env(**kwargs)
    assert fragment in str(caught.value)
    assert "\x00" not in str(caught.value) and "\n" not in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=6), st.lists(st.text(max_size=6), max_size=6))
def test_merge_env_properties(image: list[str], flags: list[str]) -> None:
    try:
        result = env(image=image, flags=flags, host={"X": "host"})
    except InvalidEnv:
        return
    names = [item.partition("=")[0] for item in result]
    assert len(names) == len(set(names))
    assert all(name and "=" in item for name, item in zip(names, result, strict=True))
    assert names[:2] == ["PATH", "HOSTNAME"]
    assert "HOME" in names


# -- parse_env_file -----------------------------------------------------------------------------------------------


def test_env_file_format() -> None:
    text = '\ufeff# comment\n\n   \n  # indented comment\nA=1\n  B = two words \nC\nD="quoted"\nE=x=y\nF=#not comment\n'
    assert parse_env_file(text, "app.env") == ["A=1", "B= two words ", "C", 'D="quoted"', "E=x=y", "F=#not comment"]


def test_env_file_crlf_and_no_final_newline() -> None:
    assert parse_env_file("A=1\r\nB=2", "f") == ["A=1", "B=2"]
    assert parse_env_file("A=1\r\r\n", "f") == ["A=1\r"]  # only the line terminator's CR goes


def test_env_file_empty() -> None:
    assert parse_env_file("", "f") == []
    assert parse_env_file("\n\n# x\n", "f") == []


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("A=1\nMY VAR=1\n", 2, "contains whitespace"),
        ("A B\n", 1, "contains whitespace"),
        ("OK=1\n\n=value\n", 3, "no variable name"),
        ("  =\n", 1, "no variable name"),
        ("A=1\nB=\x00\n", 2, "NUL"),
        ("A\tB=1\n", 1, "contains whitespace"),
    ],
)
def test_env_file_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(InvalidEnv) as caught:
        parse_env_file(text, "conf/app.env")
    message = str(caught.value)
    assert f'env file "conf/app.env" line {line}' in message
    assert fragment in message
    assert "\n" not in message


def test_env_file_entries_feed_merge_env() -> None:
    entries = parse_env_file("A=file\nTOKEN\nB=file\n", "f")
    result = merge_env((), ["B=flag"], entries, {"TOKEN": "t"}, hostname="h", home="/")
    assert result == (f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "A=file", "TOKEN=t", "B=flag", "HOME=/")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_env_file_only_raises_invalid_env(text: str) -> None:
    try:
        entries = parse_env_file(text, "f")
    except InvalidEnv:
        return
    for entry in entries:
        name = entry.partition("=")[0]
        assert name and not any(c.isspace() for c in name) and "\x00" not in entry


# -- parse_hostname -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "box",
        "a",
        "web-1",
        "1host",
        "123",
        "my.host.example",
        "A-B.c0",
        "x" * 63,
        ".".join(["a" * 63] * 3) + "." + "b" * 61,  # 253 characters
    ],
)
def test_valid_hostnames(text: str) -> None:
    assert parse_hostname(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-box",
        "box-",
        "a..b",
        ".a",
        "a.",
        "a_b",
        "a b",
        "héllo",
        "a\n",
        "x" * 64,
        ".".join(["a" * 63] * 4),  # 255 characters
        "a/b",
        "a\x00",
    ],
)
def test_invalid_hostnames(text: str) -> None:
    with pytest.raises(InvalidHostname) as caught:
        parse_hostname(text)
    assert "\n" not in str(caught.value)
    assert caught.value.hint


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parse_hostname_only_raises_invalid_hostname(text: str) -> None:
    try:
        assert parse_hostname(text) == text
    except InvalidHostname:
        return
    assert len(text) <= 253 and text.isascii()
