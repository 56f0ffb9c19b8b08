"""Docker's detach keys: the ``--detach-keys`` format, and the matcher that watches typed bytes for the sequence.

A comma-separated list of ``ctrl-X`` names and single printable characters, Ctrl-p Ctrl-q by default, ``""`` to
turn detaching off. While typed bytes could still be the start of the sequence they are held back; a byte that
breaks the match releases the held bytes together with itself (Ctrl-p followed by any other key passes both
through); a completed sequence is swallowed. Apart from the terminal code (:mod:`sandbox.runtime.console`), so
that `sbx run` checks the flag before it makes the container without importing the terminal modules.
"""

from __future__ import annotations

from sandbox.errors import InvalidDetachKeys

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"

_CTRL_SPECIAL = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """Docker's ``--detach-keys`` format to the byte sequence; ``""`` gives ``b""`` (detaching disabled).

    >>> parse_detach_keys("ctrl-p,ctrl-q")
    b'\\x10\\x11'
    """
    if text == "":
        return b""
    codes = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            if not (0x20 <= ord(key) < 0x7F):
                raise InvalidDetachKeys(f"invalid detach keys {text!r}: {key!r} is not a printable character")
            codes.append(ord(key))
            continue
        lower = key.lower()
        if len(lower) == 6 and lower.startswith("ctrl-"):
            char = lower[5]
            if "a" <= char <= "z":
                codes.append(ord(char) - ord("a") + 1)
                continue
            if char in _CTRL_SPECIAL:
                codes.append(_CTRL_SPECIAL[char])
                continue
        shown = key if key else "an empty key"
        raise InvalidDetachKeys(f"invalid detach keys {text!r}: unknown key {shown!r}")
    return bytes(codes)


class DetachMatcher:
    """Watches the bytes typed on the way to the container for the detach sequence.

    :meth:`feed` returns the bytes to pass through now and whether the sequence completed. Bytes that could still
    be the start of the sequence are held back, across calls; when a byte breaks the match the held bytes and that
    byte are released together, except for any tail that again starts the sequence (so Ctrl-p Ctrl-p Ctrl-q passes
    one Ctrl-p and then detaches). The completed sequence is swallowed, and bytes after it in the same chunk are
    dropped: the caller stops forwarding. Empty ``keys`` never detach.
    """

    def __init__(self, keys: bytes) -> None:
        self.keys = bytes(keys)
        self._held = b""

    @property
    def pending(self) -> bytes:
        """The bytes held back because they match the start of the sequence."""
        return self._held

    def flush(self) -> bytes:
        """Release the held bytes (at end of input, when the sequence can no longer complete)."""
        held, self._held = self._held, b""
        return held

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        keys = self.keys
        if not keys:
            return bytes(data), False
        data = bytes(data)
        out = bytearray()
        held = self._held
        first = keys[0]
        i = 0
        n = len(data)
        while i < n:
            if not held:
                j = data.find(first, i)
                if j < 0:
                    out += data[i:]
                    break
                out += data[i:j]
                i = j
            candidate = held + data[i : i + 1]
            i += 1
            if keys.startswith(candidate):
                if len(candidate) == len(keys):
                    self._held = b""
                    return bytes(out), True
                held = candidate
                continue
            keep = _restart_length(candidate, keys)
            out += candidate[: len(candidate) - keep]
            held = candidate[len(candidate) - keep :]
        self._held = held
        return bytes(out), False


def _restart_length(candidate: bytes, keys: bytes) -> int:
    """Length of the longest proper suffix of ``candidate`` that is a prefix of ``keys``."""
    for length in range(min(len(candidate) - 1, len(keys) - 1), 0, -1):
        if candidate.endswith(keys[:length]):
            return length
    return 0
