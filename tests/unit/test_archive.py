"""save / load / import: hostile archive members, round trips built in memory."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from sandbox.errors import DiffIDMismatch, DigestMismatch, InvalidArchive, SbxError
from sandbox.oci import mediatypes as mt
from sandbox.oci.imageconfig import ImageConfig
from sandbox.service.archive import ArchiveService
from sandbox.service.imagearchive import ImageArchive, member_name
from sandbox.service.images import ImageService


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(entries: list[tuple]) -> bytes:
    """entries: (name, bytes) for files, (name, "sym"|"lnk", target), (name, "dir")."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            if isinstance(entry[1], bytes):
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
                continue
            if entry[1] == "dir":
                info.type = tarfile.DIRTYPE
            else:
                info.type = tarfile.SYMTYPE if entry[1] == "sym" else tarfile.LNKTYPE
                info.linkname = entry[2]
            tar.addfile(info)
    return buffer.getvalue()


LAYER = tar_bytes([("bin", "dir"), ("bin/hello", b"#!/bin/sh\necho hi\n"), ("etc/motd", b"hello\n")])
LAYER_GZ = gzip.compress(LAYER, mtime=0)


def config_bytes(diff_ids: list[str]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()


def docker_archive(tmp_path: Path, *, layer: bytes = LAYER_GZ, legacy: bool = False, tags=("busybox:latest",)) -> Path:
    config = config_bytes([sha(LAYER)])
    chex = sha(config).split(":")[1]
    if legacy:  # as skopeo writes it: <diffid>.tar, <config>.json, <id>/layer.tar → ../<diffid>.tar
        lhex = sha(LAYER).split(":")[1]
        entries = [(f"{lhex}.tar", layer), (f"{chex}.json", config), ("abc", "dir")]
        entries.append(("abc/layer.tar", "sym", f"../{lhex}.tar"))
        paths = ["abc/layer.tar"]
        config_path = f"{chex}.json"
    else:
        lhex = sha(layer).split(":")[1]
        entries = [(f"blobs/sha256/{lhex}", layer), (f"blobs/sha256/{chex}", config)]
        paths = [f"blobs/sha256/{lhex}"]
        config_path = f"blobs/sha256/{chex}"
    manifest = [{"Config": config_path, "RepoTags": list(tags), "Layers": paths}]
    entries.append(("manifest.json", json.dumps(manifest).encode()))
    path = tmp_path / "image.tar"
    path.write_bytes(tar_bytes(entries))
    return path


@pytest.fixture
def service(config) -> ArchiveService:
    return ArchiveService(ImageService(config))


def store_files(service: ArchiveService) -> list[str]:
    root = service.store.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "blobs" in p.parts or
                  p.is_file() and "images" in p.parts)


# -- member names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/../../x", "..", "/abs", "/etc/passwd", "", "a\0b"])
def test_unsafe_member_names_are_refused(name):
    with pytest.raises(InvalidArchive):
        member_name(name)


def test_member_names_are_normalised():
    assert member_name("./a//b/") == "a/b"


@pytest.mark.parametrize(
    "entries",
    [
        [("../x", b"evil")],
        [("/abs", b"evil")],
        [("manifest.json", "sym", "/etc/passwd")],
        [("manifest.json", "sym", "../../etc/passwd")],
        [("a/link", "sym", "../../outside")],
        [("manifest.json", "lnk", "../etc/passwd")],
        [("x", b"1"), ("x", b"2")],
    ],
)
def test_hostile_archives_are_refused_on_open(tmp_path, entries):
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(entries))
    with pytest.raises(InvalidArchive):
        ImageArchive(path)


def test_symlink_where_a_file_is_expected_must_stay_inside(tmp_path, service):
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes([("dir", "dir"), ("manifest.json", "sym", "dir")]))
    with pytest.raises(InvalidArchive, match="not a regular file"):
        service.load(path)


def test_oversized_manifest_json(tmp_path, service):
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes([("manifest.json", b" " * (4 * 1024 * 1024 + 1))]))
    with pytest.raises(InvalidArchive, match="larger than"):
        service.load(path)


def test_manifest_naming_a_path_outside(tmp_path, service):
    manifest = [{"Config": "../../etc/passwd", "RepoTags": None, "Layers": []}]
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes([("manifest.json", json.dumps(manifest).encode())]))
    with pytest.raises(InvalidArchive, match="leaves the archive"):
        service.load(path)
    assert store_files(service) == []


# -- load ---------------------------------------------------------------------------------------------------------


def test_load_docker_archive(tmp_path, service):
    [loaded] = service.load(docker_archive(tmp_path))
    assert loaded.familiar_tags == ("busybox:latest",)
    record = loaded.record
    assert str(record.id) == sha(config_bytes([sha(LAYER)]))
    assert record.repo_tags == ("docker.io/library/busybox:latest",)
    assert [str(layer.diff_id) for layer in record.layers] == [sha(LAYER)]
    assert record.layers[0].media_type == mt.DOCKER_LAYER_GZIP
    assert service.store.read_blob(record.layers[0].digest) == LAYER_GZ


def test_load_legacy_layout_with_uncompressed_symlinked_layer(tmp_path, service):
    [loaded] = service.load(docker_archive(tmp_path, layer=LAYER, legacy=True))
    layer = loaded.record.layers[0]
    assert layer.media_type == "application/vnd.docker.image.rootfs.diff.tar"
    assert layer.digest == layer.diff_id
    assert service.store.read_blob(loaded.record.manifest_digest)


def test_untagged_image(tmp_path, service):
    [loaded] = service.load(docker_archive(tmp_path, tags=()))
    assert loaded.tags == () and loaded.record.repo_tags == ()


def test_blob_whose_bytes_do_not_match_its_name(tmp_path, service):
    config = config_bytes([sha(LAYER)])
    manifest = [{"Config": f"blobs/sha256/{'0' * 64}", "RepoTags": ["x:y"], "Layers": []}]
    path = tmp_path / "a.tar"
    entries = [(f"blobs/sha256/{'0' * 64}", config), ("manifest.json", json.dumps(manifest).encode())]
    path.write_bytes(tar_bytes(entries))
    with pytest.raises(DigestMismatch):
        service.load(path)
    assert store_files(service) == []


def test_layer_not_matching_the_config_diff_id(tmp_path, service):
    other = gzip.compress(tar_bytes([("evil", b"x")]))
    with pytest.raises(DiffIDMismatch):
        service.load(docker_archive(tmp_path, layer=other))
    assert store_files(service) == []


def test_round_trip_docker_and_oci(tmp_path, service, config):
    [first] = service.load(docker_archive(tmp_path))
    for fmt in ("docker-archive", "oci-archive"):
        out = tmp_path / f"{fmt}.tar"
        service.save(["busybox"], out, fmt=fmt)
        with tarfile.open(out) as tar:
            names = tar.getnames()
        assert ("manifest.json" in names) == (fmt == "docker-archive")
        assert "index.json" in names and "oci-layout" in names
        other = ArchiveService(ImageService(type(config)(data_root=tmp_path / fmt, runtime_root=tmp_path / "r",
                                                         config_root=tmp_path / "c")))
        [again] = other.load(out)
        assert again.record.id == first.record.id
        if fmt == "docker-archive":  # the very manifest comes back
            assert again.record.manifest_digest == first.record.manifest_digest
            assert again.record.layers == first.record.layers
        else:  # an OCI layout lists OCI manifests: same blobs, OCI media types
            assert again.record.manifest_media_type == mt.OCI_MANIFEST
            assert again.record.layers[0].media_type == mt.OCI_LAYER_GZIP
            assert [(x.digest, x.diff_id) for x in again.record.layers] == [
                (x.digest, x.diff_id) for x in first.record.layers
            ]
        assert again.familiar_tags == ("busybox:latest",)
    assert not list(tmp_path.glob(".*sbx-partial"))


def test_save_unknown_image_writes_nothing(tmp_path, service):
    with pytest.raises(SbxError):
        service.save(["nothing"], tmp_path / "x.tar")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".x.tar", "x.tar"))]


def test_load_from_a_stream(tmp_path, service):
    data = docker_archive(tmp_path).read_bytes()
    [loaded] = service.load(io.BytesIO(data))
    assert loaded.familiar_tags == ("busybox:latest",)


def oci_archive(tmp_path: Path, *, layer_size: int | None = None, ref: str = "busybox:latest") -> Path:
    config = config_bytes([sha(LAYER)])
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": sha(LAYER_GZ), "size": layer_size or len(LAYER_GZ)}],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": ref}}
        ],
    }
    entries = [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", json.dumps(index).encode())]
    entries += [(f"blobs/sha256/{sha(data).split(':')[1]}", data) for data in (config, manifest, LAYER_GZ)]
    path = tmp_path / "oci.tar"
    path.write_bytes(tar_bytes(entries))
    return path


def test_load_oci_archive(tmp_path, service):
    [loaded] = service.load(oci_archive(tmp_path))
    assert loaded.familiar_tags == ("busybox:latest",)
    assert loaded.record.manifest_media_type == mt.OCI_MANIFEST
    [bare] = service.load(oci_archive(tmp_path, ref="latest"))  # a bare tag names no repository
    assert bare.tags == ()


def test_oci_archive_with_a_wrong_layer_size(tmp_path, service):
    from sandbox.errors import SizeMismatch

    with pytest.raises(SizeMismatch):
        service.load(oci_archive(tmp_path, layer_size=len(LAYER_GZ) + 1))
    assert store_files(service) == []


# -- import -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_import(tmp_path, service, compress):
    import zstandard

    data = {"none": LAYER, "gzip": LAYER_GZ, "zstd": zstandard.ZstdCompressor().compress(LAYER)}[compress]
    path = tmp_path / "rootfs.tar"
    path.write_bytes(data)
    record = service.import_rootfs(path, "example/rootfs:1", changes=['CMD ["/bin/sh"]', "ENV A=1"], label=str(path))
    config = ImageConfig.parse(service.store.read_blob(record.id))
    assert [str(d) for d in config.diff_ids] == [sha(LAYER)]
    assert config.cmd == ("/bin/sh",) and config.env == ("A=1",)
    assert record.repo_tags == ("docker.io/example/rootfs:1",)
    blob = service.store.read_blob(record.layers[0].digest)
    assert gzip.decompress(blob) == LAYER
    if compress == "gzip":
        assert blob == LAYER_GZ


@pytest.mark.parametrize("entries", [[("../x", b"evil")], [("a/../../x", b"e")], [("l", "lnk", "../victim")]])
def test_import_refuses_escaping_members(tmp_path, service, entries):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(gzip.compress(tar_bytes(entries)))
    with pytest.raises(InvalidArchive, match="leaves the root"):
        service.import_rootfs(path, "x")
    assert store_files(service) == []


def test_import_of_something_that_is_not_a_tar(tmp_path, service):
    path = tmp_path / "junk"
    path.write_bytes(b"hello, not a tar" * 100)
    with pytest.raises(InvalidArchive):
        service.import_rootfs(path)


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_import_refuses_a_truncated_compressed_rootfs(tmp_path, service, compress):
    import zstandard

    data = {"gzip": LAYER_GZ, "zstd": zstandard.ZstdCompressor().compress(LAYER)}[compress]
    path = tmp_path / "rootfs.tar"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArchive, match="not a valid rootfs tar archive"):
        service.import_rootfs(path, "x")
    assert store_files(service) == []
