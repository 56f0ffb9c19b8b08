"""The one layer decompressor: gzip (any number of members), zstd (any number of frames) or plain.

A layer blob is hostile input. Every layer sbx reads goes through :class:`Decompressor`: the diff_id check while a
blob is pulled, loaded or re-hashed (:mod:`sandbox.oci.layerdigest`, fed by push), the unpack job
(:func:`open_layer`, read by pull) and ``import`` of a compressed rootfs tar (:class:`LayerReader`).

- Output is bounded per step, so a decompression bomb costs CPU time but never memory: gzip is asked for at most
  64 KiB at a time; zstd's decompressobj has no output bound, and a zstd block expands at most ~32768:1 (a 4-byte
  RLE block gives 128 KiB), so it is fed 1 KiB at a time, bounding each step's output to ~32 MiB.
- Gzip streams may hold several members (pigz, some builders concatenate) and zero padding between them; zstd
  streams may hold several frames: both are followed to the end.
- A stream that stops inside a member or frame, holds none at all, or carries anything but members after one is an
  :class:`InvalidLayer`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from sandbox.errors import InvalidLayer

COMPRESSIONS = ("gzip", "zstd", "none")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_STEP = 1 << 16  # gzip output per step: cache-sized (unpacking read 48 MiB ~2x slower with 1 MiB steps)
_ZSTD_SLICE = 1 << 10
_READ = 1 << 16


def sniff(head: bytes) -> str:
    """The compression a stream's first bytes announce ("none" for anything else)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class Decompressor:
    """Push decompression: :meth:`feed` compressed chunks of any size, then :meth:`finish`; both yield output."""

    def __init__(self, compression: str) -> None:
        if compression not in COMPRESSIONS:
            raise InvalidLayer(f"unsupported layer compression {compression!r}")
        self.compression = compression
        self._members = 0  # gzip members / zstd frames completed
        self._started = False  # inside a member or frame
        self._gzip = self._new_gzip() if compression == "gzip" else None
        self._zstd = self._new_zstd() if compression == "zstd" else None

    @staticmethod
    def _new_gzip():
        import zlib

        return zlib.decompressobj(wbits=31)

    @staticmethod
    def _new_zstd():
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.compression == "none":
            if data:
                yield bytes(data)
        elif self._zstd is not None:
            yield from self._feed_zstd(data)
        else:
            yield from self._feed_gzip(data)

    def _feed_gzip(self, data: bytes) -> Iterator[bytes]:
        import zlib

        try:
            while data:
                if self._members and not self._started:
                    # between members; some writers pad the end with zero bytes (in any chunk)
                    if data[:1] == b"\0":
                        data = bytes(data).lstrip(b"\0")
                    if not data:
                        break
                self._started = True
                out = self._gzip.decompress(data, _STEP)
                if out:
                    yield out
                del out
                if self._gzip.eof:  # the next member, if any
                    data = self._gzip.unused_data
                    self._gzip = self._new_gzip()
                    self._started = False
                    self._members += 1
                else:
                    data = self._gzip.unconsumed_tail
        except zlib.error as exc:
            raise InvalidLayer(f"layer is not valid gzip: {exc}") from None

    def _feed_zstd(self, data: bytes) -> Iterator[bytes]:
        import zstandard

        view = memoryview(data)
        head = b""  # what followed the end of a frame within the last slice
        try:
            while head or view:
                if head:
                    piece, head = head, b""
                else:
                    piece, view = view[:_ZSTD_SLICE], view[_ZSTD_SLICE:]
                self._started = True
                out = self._zstd.decompress(piece)
                if out:
                    yield out
                del out  # a step's output is up to ~32 MiB: never hold two
                if self._zstd.eof:  # the next frame, if any
                    head = self._zstd.unused_data
                    self._zstd = self._new_zstd()
                    self._started = False
                    self._members += 1
        except zstandard.ZstdError as exc:
            raise InvalidLayer(f"layer is not valid zstd: {exc}") from None

    def finish(self) -> Iterator[bytes]:
        """The output still held back; a truncated or empty stream is an :class:`InvalidLayer`."""
        if self._gzip is not None and self._started:
            import zlib

            try:
                while pending := self._gzip.decompress(b"", _STEP):
                    yield pending
            except zlib.error as exc:
                raise InvalidLayer(f"layer is not valid gzip: {exc}") from None
            if not self._gzip.eof:
                raise InvalidLayer("layer is a truncated gzip stream")
            self._members += 1
            self._started = False
        if self._zstd is not None and self._started:
            raise InvalidLayer("layer is a truncated zstd stream")
        if self.compression != "none" and not self._members:
            raise InvalidLayer(f"layer is empty: no {self.compression} data")


class LayerReader(io.RawIOBase):
    """Pull decompression: the uncompressed stream of a compressed file object, read in bounded steps.

    With a ``name``, errors name the layer and carry it as ``path``; ``closefd`` closes the compressed file with
    this one.
    """

    def __init__(self, raw: BinaryIO, compression: str, *, name: str | None = None, closefd: bool = False) -> None:
        self._decompressor = Decompressor(compression)
        self._raw = raw
        self._name = name
        self._closefd = closefd
        self._output: Iterator[bytes] | None = None  # what the last fed chunk gives, produced step by step
        self._left = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._left:
            if self._output is not None:
                self._left = memoryview(self._next())
                continue
            if self._done:
                return 0
            data = self._raw.read(_READ)
            if data:
                self._output = self._decompressor.feed(data)
            else:
                self._done = True
                self._output = self._decompressor.finish()
        size = min(len(view), len(self._left))
        view[:size] = self._left[:size]
        self._left = self._left[size:] if size < len(self._left) else memoryview(b"")  # let a used step go
        return size

    def _next(self) -> bytes:
        try:
            return next(self._output)  # type: ignore[arg-type]
        except StopIteration:
            self._output = None
            return b""
        except InvalidLayer as exc:
            self._output = None
            if self._name is None:
                raise
            raise InvalidLayer(f"invalid layer {self._name}: {exc.message}", path=self._name) from None

    def close(self) -> None:
        if not self.closed and self._closefd:
            self._raw.close()
        super().close()


def open_layer(blob: Path, compression: str) -> BinaryIO:
    """A layer blob on disk, opened for reading its uncompressed tar stream."""
    if compression not in COMPRESSIONS:
        raise InvalidLayer(f"unsupported layer compression {compression!r}", path=str(blob))
    raw = open(blob, "rb")  # noqa: SIM115 - closed by the returned reader
    if compression == "none":
        return raw
    return io.BufferedReader(LayerReader(raw, compression, name=str(blob), closefd=True), _READ)  # type: ignore[return-value]
