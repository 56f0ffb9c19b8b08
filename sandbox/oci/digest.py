"""Content digests (`algorithm:hex`), validated before they ever become a path or a URL.

Only ``sha256`` (64 hex) and ``sha512`` (128 hex), lower-case, are accepted, as the OCI image spec registers.
Anything else — ``sha256:../../x``, upper-case hex, short hex, ``md5:`` — is an :class:`InvalidDigest`
(containers/image CVE-2024-3727 built paths from unchecked digests).
"""

from __future__ import annotations

import re

from sandbox.errors import InvalidDigest
from sandbox.valueclass import valueclass

_LENGTHS = {"sha256": 64, "sha512": 128}


def sha256_hex(data: bytes) -> str:
    """The sha256 of a few bytes (a cache key, a chain id) as hex, without importing hashlib: loading OpenSSL costs
    a container start ~2.5 ms (BENCHMARKS B1). CPython's own sha256 is hashlib's fallback and gives the same
    digest; hashlib stays for blobs (:meth:`Digest.of`, the pull and load paths), where OpenSSL's speed pays."""
    try:
        from _sha256 import sha256  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()
_HEX = re.compile(r"[0-9a-f]+")


@valueclass(slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: object) -> Digest:
        if not isinstance(text, str):
            raise InvalidDigest(f"invalid digest: expected a string, not {type(text).__name__}")
        algorithm, sep, hexpart = text.partition(":")
        length = _LENGTHS.get(algorithm)
        if not sep or length is None:
            raise InvalidDigest(f"invalid digest {text[:80]!r}: algorithm must be sha256 or sha512")
        if len(hexpart) != length or not _HEX.fullmatch(hexpart):
            raise InvalidDigest(f"invalid digest {text[:80]!r}: expected {length} lower-case hex digits")
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data`` held in memory (a config, a manifest, a record: kilobytes)."""
        if algorithm == "sha256":  # a start checks its image config's digest: no hashlib for that
            return cls(algorithm, sha256_hex(data))
        import hashlib  # here: reading records (ps, rm) parses digests, only pulls and loads compute them

        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self):
        import hashlib

        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The 12-hex id Docker shows."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def is_digest(text: str) -> bool:
    try:
        Digest.parse(text)
    except InvalidDigest:
        return False
    return True
