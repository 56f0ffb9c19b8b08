"""The one layer decompressor (sandbox.oci.decompress): followed members and frames, bounded reads, refusals."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest

from sandbox.errors import InvalidLayer
from sandbox.oci.decompress import LayerReader, open_layer, sniff


def test_gzip_reader_follows_members(tmp_path: Path) -> None:
    data = [b"first member " * 10000, b"", b"third"]
    blob = tmp_path / "blob"
    blob.write_bytes(b"".join(gzip.compress(part) for part in data))
    with open_layer(blob, "gzip") as stream:
        assert stream.read() == b"".join(data)


@pytest.mark.parametrize("cut", [1, 10, 30])
def test_gzip_reader_refuses_truncated_streams(tmp_path: Path, cut: int) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(b"payload " * 1000)[:-cut])
    with pytest.raises(InvalidLayer), open_layer(blob, "gzip") as stream:
        stream.read()


def test_gzip_reader_refuses_garbage(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"not gzip at all")
    with pytest.raises(InvalidLayer), open_layer(blob, "gzip") as stream:
        stream.read()


def test_gzip_reader_bounds_each_read(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    compressor = zlib.compressobj(wbits=31)
    blob.write_bytes(compressor.compress(b"\0" * (64 << 20)) + compressor.flush())
    with open_layer(blob, "gzip") as stream:
        assert len(stream.read(4096)) == 4096


def test_zstd_reader_follows_frames(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    blob = tmp_path / "blob"
    compressor = zstandard.ZstdCompressor()
    blob.write_bytes(compressor.compress(b"one ") + compressor.compress(b"two"))
    with open_layer(blob, "zstd") as stream:
        assert stream.read() == b"one two"


def test_unknown_compression(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"")
    with pytest.raises(InvalidLayer, match="unsupported layer compression"):
        open_layer(blob, "lz4")


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_reader_refuses_a_truncated_last_member(tmp_path: Path, compression: str) -> None:
    zstandard = pytest.importorskip("zstandard")
    compress = gzip.compress if compression == "gzip" else zstandard.ZstdCompressor().compress
    blob = tmp_path / "blob"
    blob.write_bytes(compress(b"whole ") + compress(b"cut " * 1000)[:-4])
    with pytest.raises(InvalidLayer, match=f"invalid layer {blob}: layer is"), open_layer(blob, compression) as stream:
        stream.read()


def test_reader_allows_zero_padding_after_a_member(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(b"padded") + b"\0" * 1000)
    with open_layer(blob, "gzip") as stream:
        assert stream.read() == b"padded"


def test_reader_does_not_close_a_borrowed_file(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(b"data"))
    with open(blob, "rb") as raw:
        with LayerReader(raw, "gzip", name="x") as reader:
            assert reader.read() == b"data"
        assert not raw.closed


def test_sniff() -> None:
    assert sniff(gzip.compress(b"")) == "gzip"
    assert sniff(b"\x28\xb5\x2f\xfd....") == "zstd"
    assert sniff(b"ustar") == sniff(b"") == "none"
