"""diff_ids computed while the compressed bytes stream in (TESTPLAN 12, 15)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import tarfile
import tracemalloc
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import InvalidLayer
from sandbox.oci.digest import Digest
from sandbox.oci.layerdigest import DiffIDHasher


def make_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TAR = make_tar({"etc/hostname": b"sbx\n", "bin/tool": os.urandom(70_000), "big/zeros": b"\0" * 300_000})
DIFF_ID = Digest.of(TAR)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def diff_id(blob: bytes, compression: str, chunks: list[int] | None = None) -> Digest:
    hasher = DiffIDHasher(compression)
    if chunks is None:
        hasher.update(blob)
    else:
        pos = 0
        for size in chunks:
            hasher.update(blob[pos : pos + size])
            pos += size
        hasher.update(blob[pos:])
    return hasher.digest()


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_one_shot(compression):
    hasher = DiffIDHasher(compression)
    hasher.update(compress(TAR, compression))
    assert hasher.digest() == DIFF_ID
    assert hasher.uncompressed_size == len(TAR)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("chunk", [1, 7, 511, 4096, 65_537])
def test_chunked_equals_one_shot(compression, chunk):
    blob = compress(TAR, compression)
    if chunk == 1:
        blob_chunks = [blob[i : i + 1] for i in range(min(len(blob), 3000))] + [blob[3000:]]
    else:
        blob_chunks = [blob[i : i + chunk] for i in range(0, len(blob), chunk)]
    hasher = DiffIDHasher(compression)
    for piece in blob_chunks:
        hasher.update(piece)
    assert hasher.digest() == DIFF_ID
    assert hasher.uncompressed_size == len(TAR)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["gzip", "zstd", "none"]), st.lists(st.integers(0, 20_000), max_size=12))
def test_any_chunking_equals_one_shot(compression, chunks):
    assert diff_id(compress(TAR, compression), compression, chunks) == DIFF_ID


def test_empty_updates_are_harmless():
    hasher = DiffIDHasher("gzip")
    blob = compress(TAR, "gzip")
    hasher.update(b"")
    hasher.update(blob[:10])
    hasher.update(b"")
    hasher.update(blob[10:])
    assert hasher.digest() == DIFF_ID


def test_gzip_multi_member():
    parts = [TAR[:1000], TAR[1000:200_000], TAR[200_000:]]
    blob = b"".join(gzip.compress(part, mtime=0) for part in parts)
    assert diff_id(blob, "gzip") == DIFF_ID
    assert diff_id(blob, "gzip", [5, 900, 333, 20_000, 1]) == DIFF_ID


def test_gzip_members_split_at_their_boundary():
    first, second = gzip.compress(TAR[:5000], mtime=0), gzip.compress(TAR[5000:], mtime=0)
    assert diff_id(first + second, "gzip", [len(first)]) == DIFF_ID
    assert diff_id(first + second, "gzip", [len(first) - 1, 1]) == DIFF_ID
    assert diff_id(first + second, "gzip", [len(first) + 1]) == DIFF_ID


def test_gzip_with_empty_members():
    empty = gzip.compress(b"", mtime=0)
    blob = empty + gzip.compress(TAR, mtime=0) + empty + empty
    assert diff_id(blob, "gzip") == DIFF_ID


@pytest.mark.parametrize("chunks", [None, [100], "at-end"])
def test_gzip_trailing_zero_padding(chunks):
    member = gzip.compress(TAR, mtime=0)
    blob = member + b"\0" * 1024
    if chunks == "at-end":
        chunks = [len(member), 10, 500]  # the padding arrives in chunks of its own
    assert diff_id(blob, "gzip", chunks) == DIFF_ID


def test_gzip_padding_then_another_member():
    first, second = gzip.compress(TAR[:5000], mtime=0), gzip.compress(TAR[5000:], mtime=0)
    blob = first + b"\0" * 100 + second
    assert diff_id(blob, "gzip") == DIFF_ID
    assert diff_id(blob, "gzip", [len(first), 50, 50]) == DIFF_ID


def test_gzip_level_and_raw_zlib_streams():
    assert diff_id(gzip.compress(TAR, compresslevel=1, mtime=0), "gzip") == DIFF_ID
    with pytest.raises(InvalidLayer):
        diff_id(zlib.compress(TAR), "gzip")  # a zlib (not gzip) header


def test_zstd_multi_frame():
    compressor = zstandard.ZstdCompressor(level=1)
    blob = compressor.compress(TAR[:7]) + compressor.compress(TAR[7:100_000]) + compressor.compress(TAR[100_000:])
    assert diff_id(blob, "zstd") == DIFF_ID
    assert diff_id(blob, "zstd", [3, 5000, 1, 1, 70_000]) == DIFF_ID


def test_zstd_without_content_size_and_with_checksum():
    compressor = zstandard.ZstdCompressor(level=5, write_content_size=False, write_checksum=True)
    chunks = compressor.compressobj()
    blob = chunks.compress(TAR) + chunks.flush()
    assert diff_id(blob, "zstd") == DIFF_ID
    assert diff_id(blob, "zstd", [1000] * 50) == DIFF_ID


def test_zstd_skippable_frame():
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    assert diff_id(skippable + compress(TAR, "zstd"), "zstd") == DIFF_ID


def test_none_is_the_plain_hash():
    assert diff_id(b"", "none") == Digest.of(b"")
    assert diff_id(b"not even a tar", "none", [3]) == Digest.of(b"not even a tar")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize("keep", [1, 10, 0.5, -8, -1])
def test_truncated_stream_is_invalid(compression, keep):
    blob = compress(TAR, compression)
    cut = blob[: int(len(blob) * keep)] if isinstance(keep, float) else blob[:keep]
    hasher = DiffIDHasher(compression)
    with pytest.raises(InvalidLayer):
        hasher.update(cut)
        hasher.digest()


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_truncated_second_member_is_invalid(compression):
    blob = compress(TAR[:100], compression) + compress(TAR[100:], compression)[:-5]
    with pytest.raises(InvalidLayer):
        diff_id(blob, compression)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_empty_blob_is_invalid(compression):
    with pytest.raises(InvalidLayer, match="empty"):
        DiffIDHasher(compression).digest()
    with pytest.raises(InvalidLayer, match="empty"):
        diff_id(b"", compression)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
@pytest.mark.parametrize(
    "blob",
    [b"garbage" * 100, TAR[:4096], b"\x1f\x8b" + b"\xff" * 100, b"(\xb5/\xfd" + b"\xff" * 100, bytes(range(256)) * 8],
)
def test_garbage_is_invalid(compression, blob):
    with pytest.raises(InvalidLayer):
        diff_id(blob, compression)


def test_gzip_corrupt_crc_is_invalid():
    blob = bytearray(compress(TAR, "gzip"))
    blob[-6] ^= 0xFF  # inside the CRC32 trailer
    with pytest.raises(InvalidLayer):
        diff_id(bytes(blob), "gzip")


def test_gzip_flipped_byte_in_the_body():
    blob = bytearray(compress(TAR, "gzip"))
    blob[len(blob) // 2] ^= 0x55
    with pytest.raises(InvalidLayer):
        diff_id(bytes(blob), "gzip")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_garbage_after_a_complete_member_is_invalid(compression):
    with pytest.raises(InvalidLayer):
        diff_id(compress(TAR, compression) + b"trailing junk", compression)


def test_unknown_compression():
    with pytest.raises(InvalidLayer):
        DiffIDHasher("bzip2")


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_reset_starts_over(compression):
    blob = compress(TAR, compression)
    hasher = DiffIDHasher(compression)
    hasher.update(blob[: len(blob) // 3])
    hasher.reset()
    assert hasher.uncompressed_size == 0
    hasher.update(blob)
    assert hasher.digest() == DIFF_ID


def _zeros_digest(size: int) -> Digest:
    expected = hashlib.sha256()
    zeros = b"\0" * (1 << 20)
    for _ in range(size >> 20):
        expected.update(zeros)
    return Digest("sha256", expected.hexdigest())


def _bomb_hash(compression: str, blob: bytes, size: int) -> None:
    expected = _zeros_digest(size)
    hasher = DiffIDHasher(compression)
    tracemalloc.start()
    try:
        for pos in range(0, len(blob), 1 << 20):  # the chunk size the store's re-hash path uses
            hasher.update(blob[pos : pos + (1 << 20)])
        digest = hasher.digest()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == expected
    assert hasher.uncompressed_size == size
    # the output never sits in memory whole: each step's output is bounded
    assert peak < 40 << 20, f"peak {peak} bytes"


def test_gzip_bomb_hashes_with_bounded_memory():
    size = 64 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    blob = b"".join(compressor.compress(zeros) for _ in range(size >> 20)) + compressor.flush()
    assert len(blob) < 100_000  # ~1000:1
    _bomb_hash("gzip", blob, size)


def test_zstd_bomb_hashes_with_bounded_memory():
    size = 128 << 20
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = b"\0" * (4 << 20)
    blob = b"".join(compressor.compress(zeros) for _ in range(size // len(zeros))) + compressor.flush()
    assert len(blob) < 20_000  # > 6000:1, all of it inside one update() call
    _bomb_hash("zstd", blob, size)


def test_random_member_layout():
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(TAR)), 20))
    parts = [TAR[a:b] for a, b in zip([0, *cuts], [*cuts, len(TAR)], strict=True)]
    blob = b"".join(gzip.compress(part, compresslevel=rng.randint(1, 9), mtime=0) for part in parts)
    assert diff_id(blob, "gzip", [rng.randint(1, 3000) for _ in range(100)]) == DIFF_ID
