"""save, load and import, run as the real `sbx` (as the unprivileged test user), checked against skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.test_images import blob_files, inspect, single_error_line, store_root


def skopeo(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def store_inventory(sbx) -> tuple[list[Path], str]:
    root = store_root(sbx)
    records = sorted(p for p in (root / "images").rglob("*") if p.is_file()) if (root / "images").exists() else []
    return blob_files(sbx) + records, sbx("images", "-q", "--no-trunc").stdout


def tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_save_rmi_load_round_trip(sbx, registry, fmt):
    expected = registry.images["library/busybox:latest"]
    sbx("pull", "-q", "busybox")
    before = inspect(sbx, "busybox")
    archive = sbx.root / "x.tar"
    sbx("save", "-o", archive, "--format", fmt, "busybox")
    sbx("rmi", "busybox")
    assert sbx("images", "-q").stdout == ""
    result = sbx("load", "-i", archive)
    assert result.stdout == "Loaded image: busybox:latest\n"
    after = inspect(sbx, "busybox")
    assert after["Id"] == before["Id"] == expected.config_digest
    assert after["RootFS"] == before["RootFS"]
    assert after["RepoTags"] == ["busybox:latest"]
    assert after["Config"] == before["Config"]
    assert not list(sbx.root.glob(".x.tar.*"))


def test_saved_docker_archive_is_read_by_skopeo(sbx, registry, tmp_path):
    expected = registry.images["library/busybox:latest"]
    sbx("pull", "-q", "busybox")
    archive = tmp_path / "busybox.tar"
    sbx("save", "-o", archive, "busybox")
    details = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    assert details["Layers"] == list(expected.diff_ids)
    assert "busybox:latest" in " ".join(details.get("RepoTags") or []) or details["Digest"]
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}").stdout)
    assert config["rootfs"]["diff_ids"] == list(expected.diff_ids)
    # skopeo can copy it out (it verifies every blob it reads) ...
    skopeo("copy", "--insecure-policy", f"docker-archive:{archive}", f"oci:{tmp_path / 'layout'}:busybox")
    # ... and the OCI archive is a layout skopeo reads too
    oci = tmp_path / "busybox-oci.tar"
    sbx("save", "--format", "oci-archive", "-o", oci, "busybox")
    details = json.loads(skopeo("inspect", f"oci-archive:{oci}:latest").stdout)
    assert details["Layers"] == list(expected.layer_digests)


def test_save_to_stdout_and_load_from_stdin(sbx, registry):
    sbx("pull", "-q", "busybox")
    image_id = inspect(sbx, "busybox")["Id"]
    saved = sbx("save", "busybox", input=b"")
    assert saved.stdout[:512].find(b"blobs") >= 0
    sbx("rmi", "busybox")
    result = sbx("load", input=saved.stdout)
    assert result.stdout == b"Loaded image: busybox:latest\n"
    assert inspect(sbx, "busybox")["Id"] == image_id


@pytest.mark.parametrize("kind", ["docker-archive", "oci-archive"])
def test_load_what_skopeo_wrote(sbx, registry, tmp_path, kind):
    expected = registry.images["busybox:latest"]
    archive = tmp_path / "skopeo.tar"
    skopeo(
        "copy", "--insecure-policy", "--src-tls-verify=false",
        f"docker://{registry.host}/busybox:latest", f"{kind}:{archive}:busybox:latest",
    )
    result = sbx("load", "-q", "-i", archive)
    assert result.stdout == "Loaded image: busybox:latest\n"
    details = inspect(sbx, "busybox")
    if kind == "docker-archive":
        assert details["Id"] == expected.config_digest
    # (converting to OCI, skopeo rewrites the config JSON, so the image id differs; the layers do not)
    assert details["RootFS"]["Layers"] == list(expected.diff_ids)


def test_import_rootfs_with_changes(sbx, tmp_path):
    rootfs = gzip.compress(tar_bytes([("bin/hello", b"#!/bin/sh\necho hi\n"), ("etc/motd", b"hi\n")]))
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(rootfs)
    result = sbx("import", "--change", 'CMD ["/bin/sh"]', "--change", "ENV A=1", "-m", "hello", path, "myrootfs:1")
    image_id = result.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    details = inspect(sbx, "myrootfs:1")
    assert details["Id"] == image_id
    assert details["Config"]["Cmd"] == ["/bin/sh"]
    assert details["Config"]["Env"] == ["A=1"]
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(rootfs)).hexdigest()
    assert details["RootFS"]["Layers"] == [diff_id]
    # from stdin, untagged
    again = sbx("image", "import", "-", input=rootfs)
    assert again.stdout.strip().startswith(b"sha256:")


def test_import_with_an_unsupported_change(sbx, tmp_path):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(tar_bytes([("etc/motd", b"hi\n")]))
    before = store_inventory(sbx)
    line = single_error_line(sbx("import", "-c", "RUN rm -rf /", path, "x", check=False))
    assert "unsupported --change instruction" in line
    assert store_inventory(sbx) == before


def test_import_refuses_escaping_names(sbx, tmp_path):
    path = tmp_path / "rootfs.tar"
    path.write_bytes(tar_bytes([("../../evil", b"x")]))
    before = store_inventory(sbx)
    line = single_error_line(sbx("import", path, "x", check=False))
    assert "leaves the root" in line
    assert store_inventory(sbx) == before


def test_hostile_archive_naming_a_path_outside(sbx, registry, tmp_path):
    sbx("pull", "-q", "busybox")
    before = store_inventory(sbx)
    manifest = [{"Config": "../../etc/passwd", "RepoTags": ["evil:latest"], "Layers": []}]
    path = tmp_path / "evil.tar"
    path.write_bytes(tar_bytes([("manifest.json", json.dumps(manifest).encode())]))
    line = single_error_line(sbx("load", "-i", path, check=False))
    assert "../../etc/passwd" in line
    assert store_inventory(sbx) == before


def test_hostile_archive_with_a_blob_that_does_not_match(sbx, registry, tmp_path):
    sbx("pull", "-q", "busybox")
    good = sbx.root / "good.tar"
    sbx("save", "-o", good, "busybox")
    sbx("rmi", "busybox")
    before = store_inventory(sbx)
    with tarfile.open(good) as source:
        manifest = json.loads(source.extractfile("manifest.json").read())
        layer = manifest[0]["Layers"][0]
        entries = []
        for info in source.getmembers():
            if info.isfile():
                data = source.extractfile(info).read()
                if info.name == layer:
                    data = data[:-1] + bytes([data[-1] ^ 1])  # one bit flipped
                entries.append((info.name, data))
    path = tmp_path / "bad.tar"
    path.write_bytes(tar_bytes(entries))
    line = single_error_line(sbx("load", "-i", path, check=False))
    assert "digest mismatch" in line
    assert store_inventory(sbx) == before


def test_save_refuses_a_terminal(sbx, registry):
    pexpect = pytest.importorskip("pexpect")
    sbx("pull", "-q", "busybox")
    child = pexpect.spawn(sbx.argv("save", "busybox")[0], sbx.argv("save", "busybox")[1:], env=sbx.env,
                          cwd=str(sbx.root), timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert b"cowardly refusing to save to a terminal" in child.before
