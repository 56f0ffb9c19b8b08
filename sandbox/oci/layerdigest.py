"""The diff_id of a layer: the digest of its *uncompressed* tar stream, computed while the compressed bytes flow.

A :class:`DiffIDHasher` is fed the compressed blob in arbitrary chunks (the same chunks that are written to the
store, so a resumed download simply continues feeding) and decompresses with bounded output per step, so a
decompression bomb costs CPU time but never memory. Gzip streams may hold several members (pigz, some
builders concatenate); zstd streams may hold several frames: both are followed to the end. A stream that stops
inside a member or frame, or holds none at all, is an :class:`InvalidLayer`.
"""

from __future__ import annotations

import hashlib
import zlib

from sandbox.errors import InvalidLayer
from sandbox.oci.digest import Digest

_STEP = 1 << 20
# zstd's decompressobj has no output bound, and a zstd block expands at most ~32768:1 (a 4-byte RLE block gives
# 128 KiB), so feeding it 1 KiB at a time bounds each step's output to ~32 MiB.
_ZSTD_SLICE = 1 << 10


class DiffIDHasher:
    def __init__(self, compression: str) -> None:
        if compression not in ("gzip", "zstd", "none"):
            raise InvalidLayer(f"unsupported layer compression {compression!r}")
        self.compression = compression
        self.reset()

    def reset(self) -> None:
        self._hash = hashlib.sha256()
        self.uncompressed_size = 0
        self._gzip = zlib.decompressobj(wbits=31) if self.compression == "gzip" else None
        self._gzip_started = False
        self._members = 0  # gzip members / zstd frames completed
        self._zstd = self._new_zstd() if self.compression == "zstd" else None
        self._zstd_started = False

    @staticmethod
    def _new_zstd():
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def update(self, data: bytes) -> None:
        if self.compression == "none":
            self._emit(data)
        elif self._zstd is not None:
            self._update_zstd(data)
        else:
            self._update_gzip(data)

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self.uncompressed_size += len(data)

    def _update_gzip(self, data: bytes) -> None:
        try:
            while data:
                if self._members and not self._gzip_started:
                    # between members; some writers pad the end with zero bytes (in any chunk)
                    if data[:1] == b"\0":
                        data = bytes(data).lstrip(b"\0")
                    if not data:
                        break
                self._gzip_started = True
                self._emit(self._gzip.decompress(data, _STEP))
                if self._gzip.eof:
                    # the next member, if any
                    data = self._gzip.unused_data
                    self._gzip = zlib.decompressobj(wbits=31)
                    self._gzip_started = False
                    self._members += 1
                else:
                    data = self._gzip.unconsumed_tail
        except zlib.error as exc:
            raise InvalidLayer(f"layer is not valid gzip: {exc}") from None

    def _update_zstd(self, data: bytes) -> None:
        import zstandard

        view = memoryview(data)
        head = b""  # what followed the end of a frame within the last slice
        try:
            while head or view:
                if head:
                    piece, head = head, b""
                else:
                    piece, view = view[:_ZSTD_SLICE], view[_ZSTD_SLICE:]
                self._zstd_started = True
                self._emit(self._zstd.decompress(piece))
                if self._zstd.eof:  # the next frame, if any
                    head = self._zstd.unused_data
                    self._zstd = self._new_zstd()
                    self._zstd_started = False
                    self._members += 1
        except zstandard.ZstdError as exc:
            raise InvalidLayer(f"layer is not valid zstd: {exc}") from None

    def digest(self) -> Digest:
        """Finish the stream (a truncated one is an error) and return the diff_id."""
        if self._gzip is not None and self._gzip_started:
            try:
                while pending := self._gzip.decompress(b"", _STEP):
                    self._emit(pending)
            except zlib.error as exc:
                raise InvalidLayer(f"layer is not valid gzip: {exc}") from None
            if not self._gzip.eof:
                raise InvalidLayer("layer is a truncated gzip stream")
            self._members += 1
        if self._zstd is not None and self._zstd_started:
            raise InvalidLayer("layer is a truncated zstd stream")
        if self.compression != "none" and not self._members:
            raise InvalidLayer(f"layer is empty: no {self.compression} data")
        return Digest("sha256", self._hash.hexdigest())
