"""The diff_id of a layer: the digest of its *uncompressed* tar stream, computed while the compressed bytes flow.

A :class:`DiffIDHasher` is fed the compressed blob in arbitrary chunks (the same chunks that are written to the
store, so a resumed download simply continues feeding) and decompresses them with the one layer decompressor
(:class:`sandbox.oci.decompress.Decompressor`: bounded output per step, every gzip member and zstd frame followed
to the end). A stream that stops inside a member or frame, or holds none at all, is an :class:`InvalidLayer`.
"""

from __future__ import annotations

import hashlib

from sandbox.oci.decompress import Decompressor
from sandbox.oci.digest import Digest


class DiffIDHasher:
    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.reset()

    def reset(self) -> None:
        self._decompressor = Decompressor(self.compression)
        self._hash = hashlib.sha256()
        self.uncompressed_size = 0

    def update(self, data: bytes) -> None:
        for out in self._decompressor.feed(data):
            self._emit(out)
            del out  # not held while the next step is decompressed

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self.uncompressed_size += len(data)

    def digest(self) -> Digest:
        """Finish the stream (a truncated one is an error) and return the diff_id."""
        for out in self._decompressor.finish():
            self._emit(out)
        return Digest("sha256", self._hash.hexdigest())
