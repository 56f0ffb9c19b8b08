"""Digests are checked before they become a path or a URL (TESTPLAN 17, containers/image CVE-2024-3727)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.errors import InvalidDigest
from sandbox.oci.digest import Digest, is_digest

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2


def test_sha256_and_sha512_accepted():
    digest = Digest.parse(f"sha256:{HEX64}")
    assert (digest.algorithm, digest.hex) == ("sha256", HEX64)
    assert str(digest) == f"sha256:{HEX64}"
    assert digest.short == HEX64[:12]
    assert str(Digest.parse(f"sha512:{HEX128}")) == f"sha512:{HEX128}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        f"sha256{HEX64}",
        "sha256:../../x",
        "sha256:../../../../etc/passwd" + "0" * 35,
        f"sha256:{HEX64.upper()}",
        f"sha256:{HEX64[:-1]}A",
        f"sha256:{HEX64[:63]}",
        f"sha256:{HEX64}0",
        f"sha256:{HEX64}\n",
        f"sha256:{HEX64[:62]}/x",
        f" sha256:{HEX64}",
        f"SHA256:{HEX64}",
        f"sha512:{HEX64}",
        f"sha256:{HEX128}",
        "md5:" + "0" * 32,
        "sha1:" + "0" * 40,
        f"sha384:{HEX64}{HEX64[:32]}",
        f"sha256:{'０' * 64}",  # full-width digits are not hex
        f"sha256+b64:{HEX64}",
        f"sha256:{HEX64}:{HEX64}",
    ],
)
def test_rejected(text):
    with pytest.raises(InvalidDigest):
        Digest.parse(text)
    assert not is_digest(text)


@pytest.mark.parametrize("value", [None, 1, 1.5, True, b"sha256:" + HEX64.encode(), [f"sha256:{HEX64}"], {}])
def test_non_string_is_invalid_digest(value):
    with pytest.raises(InvalidDigest):
        Digest.parse(value)


def test_error_message_is_bounded():
    with pytest.raises(InvalidDigest) as info:
        Digest.parse("sha256:" + "x" * 100_000)
    assert len(str(info.value)) < 200
    with pytest.raises(InvalidDigest) as info:
        Digest.parse(list(range(100_000)))
    assert len(str(info.value)) < 200


def test_of_and_hasher():
    digest = Digest.of(b"hello")
    assert str(digest) == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    hasher = digest.hasher()
    hasher.update(b"hello")
    assert hasher.hexdigest() == digest.hex
    assert Digest.of(b"x", "sha512").hex == hashlib.sha512(b"x").hexdigest()
    assert Digest.parse(str(digest)) == digest


def test_is_digest():
    assert is_digest(f"sha256:{HEX64}")
    assert not is_digest("nginx:latest")


@given(st.text(max_size=140))
def test_parse_raises_only_invalid_digest(text):
    try:
        digest = Digest.parse(text)
    except InvalidDigest:
        return
    # what parses is safe as a path component and round-trips exactly
    assert str(digest) == text
    assert "/" not in text and ".." not in text
    assert digest.hex == digest.hex.lower()


@given(st.binary(min_size=0, max_size=64))
def test_of_parses_back(data):
    assert Digest.parse(str(Digest.of(data))) == Digest.of(data)


@given(st.binary(max_size=4096))
def test_the_small_data_sha256_is_hashlibs(data: bytes) -> None:
    """sha256_hex (CPython's built-in sha256, no OpenSSL import on a container's start) and Digest.of give the
    digest hashlib gives: a config's digest check on the start path stays the same check."""
    from sandbox.oci.digest import sha256_hex

    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    assert Digest.of(data) == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert Digest.of(data, "sha512") == Digest("sha512", hashlib.sha512(data).hexdigest())
