"""The pull path's own checks of a downloaded layer (TESTPLAN 15): size, digest of the compressed bytes and the
config's diff_id of the uncompressed stream, made while the bytes stream in, before anything is committed. The
store checks again later; these tests hold the first line without it."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading

import pytest

from sandbox.errors import DiffIDMismatch, DigestMismatch, SizeMismatch
from sandbox.oci import mediatypes
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import Descriptor
from sandbox.service.images import PullEvents, _VerifyingWriter


class Ingest:
    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def written(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        self.data += data

    def reset(self) -> None:
        self.data.clear()


def layer_bytes(content: bytes) -> tuple[bytes, bytes]:
    """(gzip blob, uncompressed tar) of a one-file layer."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("file")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = buffer.getvalue()
    return gzip.compress(tar_bytes, mtime=0), tar_bytes


def writer_for(blob: bytes) -> _VerifyingWriter:
    descriptor = Descriptor(mediatypes.OCI_LAYER_GZIP, Digest.of(blob), len(blob))
    return _VerifyingWriter(Ingest(), descriptor, PullEvents(), threading.Event())


def feed(writer: _VerifyingWriter, data: bytes) -> None:
    for start in range(0, len(data), 1000):
        writer.write(data[start : start + 1000])


def test_the_right_bytes_pass():
    blob, tar_bytes = layer_bytes(b"hello")
    writer = writer_for(blob)
    feed(writer, blob)
    writer.verify(Digest.of(tar_bytes))


def test_bytes_that_do_not_hash_to_the_layer_digest_are_a_digest_mismatch():
    blob, tar_bytes = layer_bytes(b"hello")
    other = blob[:-8] + bytes(8)  # served in place of the layer: same size, the gzip trailer zeroed
    writer = writer_for(blob)
    feed(writer, other)
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        writer.verify(Digest.of(tar_bytes))


def test_a_layer_that_does_not_match_the_configs_diff_id_is_refused():
    blob, _ = layer_bytes(b"hello")
    writer = writer_for(blob)
    feed(writer, blob)
    with pytest.raises(DiffIDMismatch, match="diff_id mismatch"):
        writer.verify(Digest.of(b"the uncompressed bytes the config promised"))


def test_more_bytes_than_the_descriptor_says_stop_at_once_and_fewer_fail_the_check():
    blob, tar_bytes = layer_bytes(b"hello")
    writer = writer_for(blob)
    with pytest.raises(SizeMismatch):
        feed(writer, blob + b"x")
    short = writer_for(blob)
    feed(short, blob[:-1])
    with pytest.raises(SizeMismatch):
        short.verify(Digest.of(tar_bytes))
