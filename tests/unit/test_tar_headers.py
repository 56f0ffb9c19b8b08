"""Tar extended headers are bounded before they are read, and count toward the layer limit (TESTPLAN 61).

A hostile header claims far more than it holds; the stream here makes up the claimed bytes (zeros) as they are
read and counts them, so a reader that trusts the claim is seen reading them all.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from sandbox.errors import InvalidLayer, LayerTooLarge
from sandbox.store.tarheaders import MAX_EXTENDED_HEADER, BoundedTarInfo, HeaderTooLarge
from sandbox.store.unpack import unpack_layer

CLAIM = 16 * 1024 * 1024


class ZerosAfter(io.RawIOBase):
    """``head`` then zeros up to ``total`` bytes, made up as read; ``served`` counts what was read."""

    def __init__(self, head: bytes, total: int) -> None:
        self.head, self.total, self.served = head, total, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = min(len(buffer), self.total - self.served)
        chunk = (self.head[self.served : self.served + size]).ljust(size, b"\0")
        buffer[:size] = chunk
        self.served += size
        return size


def header(kind: bytes, size: int, name: str = "././@LongLink") -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT) if size < 8**11 else _big(info)


def _big(info: tarfile.TarInfo) -> bytes:
    info_size, info.size = info.size, 0
    block = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    block[124:136] = b"\x80" + info_size.to_bytes(11, "big")  # GNU base-256 size field
    block[148:156] = b"        "
    block[148:155] = f"{sum(block):06o}\0".encode()
    return bytes(block)


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                                  tarfile.XGLTYPE])
def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path, kind):
    stream = ZerosAfter(header(kind, CLAIM), CLAIM + 4096)
    with pytest.raises(InvalidLayer, match="over the limit"):
        unpack_layer(io.BufferedReader(stream), tmp_path)
    assert stream.served < 2 * MAX_EXTENDED_HEADER


def test_a_chain_of_extended_headers_is_bounded_in_total(tmp_path):
    part = 700 * 1024  # each under the limit, the two together over it
    first = header(tarfile.XHDTYPE, part)
    body = b"%d comment=%s\n" % (part, b"x" * (part - len(b"716800 comment=\n")))  # one record, `part` long
    assert len(body) == part and part % 512 == 0
    head = first + body + header(tarfile.XHDTYPE, part)
    stream = ZerosAfter(head, len(head) + part + 4096)
    with pytest.raises(HeaderTooLarge), tarfile.open(fileobj=io.BufferedReader(stream), mode="r|",
                                                     tarinfo=BoundedTarInfo) as tar:
        list(tar)


def test_headers_count_toward_the_layer_limit(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(40):  # 40 empty files, each behind ~64 KiB of PAX records
            info = tarfile.TarInfo(f"f{index}")
            info.pax_headers = {"comment": "x" * 65536}
            tar.addfile(info, io.BytesIO(b""))
    buffer.seek(0)
    (tmp_path / "small").mkdir()
    with pytest.raises(LayerTooLarge):
        unpack_layer(buffer, tmp_path / "small", max_bytes=1024 * 1024)
    buffer.seek(0)
    (tmp_path / "big").mkdir()
    assert unpack_layer(buffer, tmp_path / "big", max_bytes=16 * 1024 * 1024).files == 40


def test_ordinary_long_names_and_pax_records_still_work(tmp_path):
    buffer = io.BytesIO()
    name = "/".join(["d" * 200] * 10) + "/file"  # 2 KiB: a GNU long name or PAX path
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    buffer.seek(0)
    assert unpack_layer(buffer, tmp_path).files >= 1
    assert (tmp_path / name).read_bytes() == b"ok"


@pytest.mark.parametrize("size", [0, MAX_EXTENDED_HEADER])
def test_extended_headers_up_to_the_limit_itself_are_read(size):
    digits = len(str(size))
    record = b"%d comment=%s\n" % (size, b"x" * (size - digits - len(b" comment=\n"))) if size else b""
    assert len(record) == size
    member = tarfile.TarInfo("f")
    stream = header(tarfile.XHDTYPE, size) + record + b"\0" * (-size % 512) + member.tobuf(tarfile.USTAR_FORMAT)
    stream += b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r|", tarinfo=BoundedTarInfo) as tar:
        assert [info.name for info in tar] == ["f"]
