"""sandbox.runtime.userns against the real kernel, as an unprivileged user (TESTPLAN 11, 13).

Layers are built here with tarfile; no registry is needed. Expected host owners come from /etc/subuid and
/etc/subgid for the user running the tests, so the tests hold for any subordinate range of at least 65536 ids.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from sandbox.errors import SbxError, UnsafeLayer
from sandbox.runtime.idmap import default_idmap, subordinate_ranges
from sandbox.runtime.userns import run_job
from tests.fixtures.environment import in_ci, unavailable

# as root outside CI the suite only warns (conftest); in CI it refuses to run as root at all
pytestmark = pytest.mark.skipif(
    os.geteuid() == 0 and not in_ci(), reason="user namespaces are what a non-root user gets"
)

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _first_range(path: Path) -> tuple[int, int] | None:
    ranges = subordinate_ranges(_user(), os.getuid(), path)
    return ranges[0] if ranges else None


def _needs_ranges() -> None:
    missing = [program for program in ("newuidmap", "newgidmap") if shutil.which(program) is None]
    reason = None
    if missing:
        reason = f"{' and '.join(missing)} missing: install the uidmap package"
    elif _first_range(SUBUID) is None or _first_range(SUBGID) is None:
        reason = f"no subordinate range for {_user()} in /etc/subuid or /etc/subgid"
    elif _first_range(SUBUID)[1] < 65536 or _first_range(SUBGID)[1] < 65536:
        reason = "the subordinate ranges hold fewer than 65536 ids"
    if reason is not None:
        unavailable(reason)


def _layer(path: Path, entries: list[tuple[str, int, int, int, bytes | None]]) -> Path:
    """A gzip tar of (name, type, uid=gid, mode, data) entries; type is tarfile.DIRTYPE or REGTYPE."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, owner, mode, data in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.uid = info.gid = owner
            info.mode = mode
            info.mtime = 1_700_000_000
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data else None)
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


@pytest.fixture(autouse=True)
def _clean_up(tmp_path: Path):
    """Files owned by subordinate ids cannot be removed by pytest from outside: remove them from inside."""
    yield
    root = tmp_path / "root"
    if root.exists() and not (SUBUID.exists() and shutil.which("newuidmap")):
        return
    if root.exists():
        run_job({"op": "remove", "paths": [str(root)]}, default_idmap(), timeout=120)


def _unpack(blob: Path, dest: Path, idmap) -> dict:
    dest.mkdir(exist_ok=True)
    job = {
        "op": "unpack",
        "layers": [{"blob": str(blob), "compression": "gzip", "dest": str(dest), "whiteout_format": "overlay"}],
        "max_bytes": 1 << 30,
    }
    return run_job(job, idmap, timeout=120)


def test_owners_are_mapped_to_subordinate_ids(tmp_path: Path) -> None:
    _needs_ranges()
    uid_start = _first_range(SUBUID)[0]
    gid_start = _first_range(SUBGID)[0]
    blob = _layer(
        tmp_path / "layer.tar.gz",
        [
            ("etc", tarfile.DIRTYPE, 0, 0o755, None),
            ("etc/root-file", tarfile.REGTYPE, 0, 0o644, b"root\n"),
            ("var", tarfile.DIRTYPE, 33, 0o755, None),
            ("var/www", tarfile.REGTYPE, 33, 0o640, b"www\n"),
            ("nobody", tarfile.REGTYPE, 65534, 0o600, b"nobody\n"),
            ("su", tarfile.REGTYPE, 0, 0o4755, b"#!/bin/sh\n"),
            ("sgid", tarfile.REGTYPE, 33, 0o2755, b"#!/bin/sh\n"),
        ],
    )
    result = _unpack(blob, tmp_path / "root", default_idmap())
    assert result["layers"][0]["files"] == 7
    assert result["warnings"] == []
    root = tmp_path / "root"

    def owner(name: str) -> tuple[int, int]:
        st = os.lstat(root / name)
        return st.st_uid, st.st_gid

    assert owner("etc/root-file") == (os.getuid(), os.getgid())
    assert owner("var") == (uid_start + 32, gid_start + 32)
    assert owner("var/www") == (uid_start + 32, gid_start + 32)
    assert owner("nobody") == (uid_start + 65533, gid_start + 65533)
    # setuid/setgid bits survive the chown (they are set after it)
    assert stat.S_IMODE(os.lstat(root / "su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(root / "sgid").st_mode) == 0o2755
    assert owner("sgid") == (uid_start + 32, gid_start + 32)
    assert stat.S_IMODE(os.lstat(root / "var").st_mode) == 0o755


def test_owner_outside_the_map_is_refused(tmp_path: Path) -> None:
    _needs_ranges()
    blob = _layer(
        tmp_path / "layer.tar.gz",
        [("ok", tarfile.REGTYPE, 33, 0o644, b"x"), ("far/away", tarfile.REGTYPE, 70000, 0o644, b"x")],
    )
    with pytest.raises(UnsafeLayer) as caught:
        _unpack(blob, tmp_path / "root", default_idmap())
    assert "far/away" in str(caught.value)
    assert "/etc/subuid" in str(caught.value)
    assert caught.value.entry == "far/away"


def test_remove_runs_inside_the_namespace(tmp_path: Path) -> None:
    _needs_ranges()
    depth = 2000
    deep = "/".join(["d"] * depth)
    entries = [
        ("locked", tarfile.DIRTYPE, 33, 0o755, None),
        ("locked/inner", tarfile.DIRTYPE, 33, 0o755, None),
        ("locked/inner/file", tarfile.REGTYPE, 33, 0o644, b"x"),
    ]
    entries += [("/".join(["d"] * level), tarfile.DIRTYPE, 33, 0o755, None) for level in range(1, depth + 1)]
    entries += [(f"{deep}/leaf", tarfile.REGTYPE, 33, 0o644, b"leaf")]
    entries += [("locked", tarfile.DIRTYPE, 33, 0o000, None)]  # mode 000, applied last
    blob = _layer(tmp_path / "layer.tar.gz", entries)
    idmap = default_idmap()
    root = tmp_path / "root"
    _unpack(blob, root, idmap)
    assert stat.S_IMODE(os.lstat(root / "locked").st_mode) == 0o000
    # From outside, the subordinate owner's mode-000 directory and the deep tree cannot be removed.
    with pytest.raises(PermissionError):
        os.rmdir(root / "locked" / "inner")
    with pytest.raises(PermissionError):
        os.rmdir(root / "d" / "d")  # root/d belongs to the subordinate uid for 33: no write for us

    result = run_job({"op": "remove", "paths": [str(root / "locked"), str(root / "d")]}, idmap, timeout=120)
    assert result == {"removed": 2}
    assert sorted(os.listdir(root)) == []


def test_single_map_squashes_owners(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    idmap = default_idmap(subuid_path=empty, subgid_path=empty)
    assert idmap.single
    assert idmap.notice() is not None
    blob = _layer(
        tmp_path / "layer.tar.gz",
        [
            ("www", tarfile.REGTYPE, 33, 0o644, b"x"),
            ("far", tarfile.REGTYPE, 70000, 0o600, b"y"),
            ("dir", tarfile.DIRTYPE, 33, 0o000, None),
        ],
    )
    root = tmp_path / "root"
    _unpack(blob, root, idmap)
    for name in ("www", "far", "dir"):
        st = os.lstat(root / name)
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    run_job({"op": "remove", "paths": [str(root / "dir")]}, idmap, timeout=60)
    assert sorted(os.listdir(root)) == ["far", "www"]


def test_damaged_layer_is_a_clean_error(tmp_path: Path) -> None:
    blob = tmp_path / "bad.tar.gz"
    blob.write_bytes(gzip.compress(b"x" * 1000)[:-20])
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(SbxError) as caught:
        _unpack(blob, tmp_path / "root", default_idmap(subuid_path=empty, subgid_path=empty))
    assert type(caught.value).__name__ in ("InvalidLayer",)


def test_timeout_kills_the_job(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: none will
    empty = tmp_path / "empty"
    empty.write_text("")
    job = {
        "op": "unpack",
        "layers": [{"blob": str(fifo), "compression": "none", "dest": str(tmp_path), "whiteout_format": "copy"}],
    }
    with pytest.raises(SbxError, match="did not finish in 2 seconds"):
        run_job(job, default_idmap(subuid_path=empty, subgid_path=empty), timeout=2)


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlayfs"])
def test_rootfs_probe_in_a_mount_namespace(tmp_path: Path, driver: str) -> None:
    """Both overlay drivers work on these machines (kernel 6.x, fuse-overlayfs, /dev/fuse 0666)."""
    root = tmp_path / "root"
    root.mkdir()
    result = run_job({"op": "probe_rootfs", "driver": driver, "dir": str(root)}, default_idmap(),
                     mount_namespace=True, timeout=60)
    assert result == {"reason": None}
    assert not os.path.ismount(root / "merged")  # the mount stayed in the job's mount namespace
