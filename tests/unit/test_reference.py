"""Image references normalised as Docker's distribution/reference does (ParseNormalizedNamed, FamiliarString)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sandbox.errors import InvalidReference
from sandbox.oci.digest import Digest
from sandbox.oci.reference import Reference, parse_repository

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("library/nginx", "docker.io", "library/nginx", "latest", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("docker.io/library/nginx:alpine", "docker.io", "library/nginx", "alpine", None),
        ("index.docker.io/x", "docker.io", "library/x", "latest", None),
        ("index.docker.io/user/x:1", "docker.io", "user/x", "1", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
        ("127.0.0.1:5000/a", "127.0.0.1:5000", "a", "latest", None),
        ("[::1]:5000/a:v", "[::1]:5000", "a", "v", None),
        ("ghcr.io/org/team/img:v1.0_rc-2", "ghcr.io", "org/team/img", "v1.0_rc-2", None),
        (f"host.io/a@{DIGEST}", "host.io", "a", None, DIGEST),
        (f"a:b@{DIGEST}", "docker.io", "library/a", "b", DIGEST),
        ("Host/x", "Host", "x", "latest", None),  # an upper-case first component is a host, as in Docker
        ("a__b/c--d.e_f:T_AG", "docker.io", "a__b/c--d.e_f", "T_AG", None),
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # no slash: the colon starts a tag
    ],
)
def test_normalisation_table(text, registry, repository, tag, digest):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag) == (registry, repository, tag)
    assert (str(ref.digest) if ref.digest else None) == digest


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("docker.io/library/nginx:1", "docker.io/library/nginx:1", "nginx:1"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        (f"host.io/a@{DIGEST}", f"host.io/a@{DIGEST}", f"host.io/a@{DIGEST}"),
        (f"a:b@{DIGEST}", f"docker.io/library/a:b@{DIGEST}", f"a:b@{DIGEST}"),
        # distribution's familiarizeName keeps library/ when more path follows; dropping it would name user "a"
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ],
)
def test_full_and_familiar_strings(text, full, familiar):
    ref = Reference.parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar
    assert Reference.parse(ref.familiar) == ref  # the familiar form names the same thing


def test_name_properties_and_reference():
    ref = Reference.parse("nginx:1.25")
    assert ref.name == "docker.io/library/nginx"
    assert ref.familiar_name == "nginx"
    assert ref.reference == "1.25"
    pinned = Reference.parse(f"nginx:1.25@{DIGEST}")
    assert pinned.reference == DIGEST  # the digest wins over the display-only tag
    assert isinstance(pinned.digest, Digest)


def test_with_tag_drops_digest():
    ref = Reference.parse(f"host.io/a@{DIGEST}").with_tag("v2")
    assert str(ref) == "host.io/a:v2"
    assert ref.digest is None


def test_no_default_tag():
    assert Reference.parse("nginx", default_tag=False).tag is None
    assert parse_repository("nginx") == Reference("docker.io", "library/nginx", None, None)
    assert parse_repository("localhost:5000/a").tag is None
    assert Reference.parse(f"nginx@{DIGEST}").tag is None  # a digest alone gets no tag


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Nginx",
        "library/Nginx",
        "docker.io/User/app",
        "localhost:5000/A",
        "nginx:",
        "nginx:-bad",
        "nginx:.bad",
        "nginx:a+b",
        "nginx:" + "t" * 129,
        "a//b",
        "a/",
        "/a",
        "host.io/",
        "-a",
        "a-",
        "a..b",
        "a___b",
        "nginx latest",
        "nginx:\x1b[31m",
        "nginx\n",
        "ngïnx",
        "nginx@",
        "nginx@sha256:abc",
        "nginx@md5:" + "0" * 32,
        f"nginx@sha256:{HEX.upper()}",
        f"nginx@{DIGEST}@{DIGEST}",
        "bad_host.io:5000/a",
        "host.io:port/a",
        "Host_x/y",
        "x" * 600,
    ],
)
def test_rejected(text):
    with pytest.raises(InvalidReference):
        Reference.parse(text)


def test_uppercase_repository_message():
    with pytest.raises(InvalidReference, match="must be lowercase"):
        Reference.parse("library/Nginx")


@pytest.mark.parametrize("value", [None, 5, b"nginx", ["nginx"]])
def test_non_string_rejected(value):
    with pytest.raises(InvalidReference):
        Reference.parse(value)


def test_name_length_limit_counts_normalised_name():
    # docker.io/library/ is 18 characters: the normalised name may be at most 255 (NameTotalLengthMax)
    Reference.parse("x" * (255 - 18))
    with pytest.raises(InvalidReference, match="255"):
        Reference.parse("x" * (256 - 18))
    Reference.parse("host.io/" + "y" * (255 - 8))
    with pytest.raises(InvalidReference, match="255"):
        Reference.parse("host.io/" + "y" * (256 - 8))


def test_tag_length_limit():
    assert Reference.parse("a:" + "t" * 128).tag == "t" * 128


def test_error_has_hint():
    with pytest.raises(InvalidReference) as info:
        Reference.parse("UPPER")
    assert info.value.hint and "NAME[:TAG]" in info.value.hint


@given(st.text(max_size=80))
def test_parse_raises_only_invalid_reference(text):
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return
    # whatever parses round-trips through both of its printed forms
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(ref.familiar) == ref


_alnum = st.text("az09", min_size=1, max_size=4)
_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "---"]), _alnum), max_size=3),
)
_tag = st.builds(lambda a, b: a + b, st.sampled_from("aZ9_"), st.text("aZ9_.-", max_size=20))


@given(
    st.sampled_from(["", "docker.io/", "ghcr.io/", "localhost:5000/", "[::1]/"]),
    st.lists(_component, min_size=1, max_size=3),
    st.one_of(st.none(), _tag),
)
def test_valid_names_parse(prefix, components, tag):
    assume(prefix or len(components) == 1 or "." not in components[0])  # else the first component is a host
    path = "/".join(components)
    ref = Reference.parse(prefix + path + (f":{tag}" if tag else ""))
    assert ref.registry == (prefix.rstrip("/") or "docker.io")
    assert ref.repository in (path, f"library/{path}")
    assert ref.tag == (tag or "latest")


@pytest.mark.parametrize("tag", ["v\u00e9", "\u0661\u0662", "caf\u00e9-1", "\uff11", "x\u00b2"])
def test_tags_with_non_ascii_letters_or_digits_are_refused(tag):
    # `\w` matches é, Arabic-Indic and full-width digits: Docker's tag grammar is [\w][\w.-]{0,127} over ASCII only
    with pytest.raises(InvalidReference):
        Reference.parse(f"busybox:{tag}")
