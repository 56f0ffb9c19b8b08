"""Layer extraction against hostile tars (TESTPLAN 1-13).

Every hostile case extracts under ``outer/dest`` next to ``outer/victim`` (canary files) and ``outer/dest-evil``, and
checks afterwards that the inventory of ``outer/`` minus ``dest/`` (paths, modes, owners, contents, link targets) is
unchanged. The tests pass both as root (CI) and as an ordinary user.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from sandbox.errors import InvalidLayer, LayerTooLarge, SbxError, UnsafeLayer, WhiteoutUnsupported
from sandbox.runtime import nsjob
from sandbox.store.trees import remove_tree
from sandbox.store.unpack import UnpackStats, unpack_layer
from tests.fixtures.environment import unavailable

ROOT = os.geteuid() == 0


# --- building tars -------------------------------------------------------------------------------------------------


def _info(name: str, kind: bytes, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1_600_000_000
    info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def f(name: str, data: bytes = b"data", **fields):
    info = _info(name, tarfile.REGTYPE, **fields)
    info.size = len(data)
    return info, data


def d(name: str, **fields):
    return _info(name, tarfile.DIRTYPE, **fields), None


def sym(name: str, target: str, **fields):
    return _info(name, tarfile.SYMTYPE, linkname=target, **fields), None


def hard(name: str, target: str, **fields):
    return _info(name, tarfile.LNKTYPE, linkname=target, **fields), None


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, **fields):
    return _info(name, kind, devmajor=major, devminor=minor, **fields), None


def tar_of(*entries) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def unpack(dest: Path, *entries, **options) -> UnpackStats:
    return unpack_layer(tar_of(*entries), dest, **options)


# --- the inventory -------------------------------------------------------------------------------------------------


def inventory(outer: Path) -> dict[str, tuple]:
    seen: dict[str, tuple] = {}
    for top, dirs, files in os.walk(outer):
        if Path(top) == outer:
            dirs[:] = [name for name in dirs if name != "dest"]
        for name in dirs + files:
            path = Path(top, name)
            st = path.lstat()
            extra: object = None
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = path.read_bytes()
            seen[str(path.relative_to(outer))] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, extra)
    return seen


@pytest.fixture
def outer(tmp_path):
    outer = tmp_path / "outer"
    (outer / "dest").mkdir(parents=True)
    (outer / "victim").mkdir()
    (outer / "victim" / "f").write_bytes(b"canary")
    (outer / "victim" / "f").chmod(0o600)
    (outer / "victim" / "authorized_keys").write_bytes(b"ssh-ed25519 AAAA")
    (outer / "dest-evil").mkdir()
    (outer / "dest-evil" / "f").write_bytes(b"evil canary")
    before = inventory(outer)
    yield outer
    assert inventory(outer) == before, "something outside dest/ changed"


@pytest.fixture
def dest(outer):
    return outer / "dest"


# --- 1, 2: names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "/../x", "..", "a/../../x", "a/../b", "../victim/f"])
def test_dotdot_names_fail_cleanly(dest, name):
    with pytest.raises(UnsafeLayer) as caught:
        unpack(dest, f(name))
    assert repr(name) in str(caught.value)
    assert str(caught.value).startswith("unsafe layer: ")
    assert not (dest.parent / "x").exists()


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_dotdot_fails_for_every_kind(dest, kind):
    entry = {"file": f("../victim/f"), "dir": d("../victim/new"), "symlink": sym("../victim/f", "/etc")}[kind]
    with pytest.raises(UnsafeLayer):
        unpack(dest, entry)


def test_absolute_names_land_inside(dest):
    unpack(dest, f("/etc/passwd", b"root:x:0:0"), f("//x", b"x"))
    assert (dest / "etc" / "passwd").read_bytes() == b"root:x:0:0"
    assert (dest / "x").read_bytes() == b"x"


def test_control_characters_are_escaped_in_messages(dest):
    with pytest.raises(UnsafeLayer) as caught:
        unpack(dest, f("../\x1b[31mred"))
    assert "\x1b" not in str(caught.value)
    assert "\\x1b" in str(caught.value)


# --- 3, 4, 5: symlinks ---------------------------------------------------------------------------------------------


def test_write_through_relative_symlink_stays_inside(dest):
    unpack(dest, sym("link", "../victim"), f("link/file", b"pwned"), f("link/f", b"pwned"))
    assert (dest / "victim" / "file").read_bytes() == b"pwned"
    assert (dest / "victim" / "f").read_bytes() == b"pwned"
    assert os.readlink(dest / "link") == "../victim"


def test_two_hop_chain_stays_inside(dest):
    unpack(dest, d("a"), sym("a/up", ".."), sym("a/up/esc", "../victim"), f("a/up/esc/f", b"pwned"))
    assert (dest / "victim" / "f").read_bytes() == b"pwned"
    assert os.readlink(dest / "esc") == "../victim"


def test_dot_and_dotdot_symlinks_clamp_at_root(dest):
    unpack(dest, sym("cur", "."), sym("par", "cur/.."), f("par/f", b"inside"), f("par/par/par/g", b"deep"))
    assert (dest / "f").read_bytes() == b"inside"
    assert (dest / "g").read_bytes() == b"deep"


def test_absolute_symlink_to_host_path_resolves_inside(dest, outer):
    victim = str(outer / "victim")
    unpack(dest, sym("host", victim), f("host/f", b"pwned"), d("host/sub"), sym("host/s", "/x"))
    inside = dest / victim.lstrip("/")
    assert (inside / "f").read_bytes() == b"pwned"
    assert (inside / "sub").is_dir()
    assert os.readlink(inside / "s") == "/x"


def test_absolute_symlinks_are_legitimate(dest):
    unpack(dest, d("var"), d("run"), sym("var/run", "/run"), f("var/run/x", b"pid"), sym("localetc", "/etc"))
    assert (dest / "run" / "x").read_bytes() == b"pid"
    assert os.readlink(dest / "var" / "run") == "/run"
    assert os.readlink(dest / "localetc") == "/etc"


def test_symlink_loop_fails_cleanly(dest):
    with pytest.raises(UnsafeLayer, match="too many symlinks"):
        unpack(dest, sym("l1", "l2"), sym("l2", "l1"), f("l1/f"))


def test_cross_layer_symlinks_stay_inside(dest):
    unpack(dest, sym("x", "/home/user/.ssh"), sym("y", "../../../../tmp/v"), whiteout_format="copy")
    unpack(dest, f("x/authorized_keys", b"key"), f("y/f", b"v"), whiteout_format="copy")
    assert (dest / "home" / "user" / ".ssh" / "authorized_keys").read_bytes() == b"key"
    assert (dest / "tmp" / "v" / "f").read_bytes() == b"v"


def test_later_layer_replaces_symlink_with_directory(dest):
    unpack(dest, sym("x", "../victim"), whiteout_format="copy")
    unpack(dest, d("x"), f("x/f", b"mine"), whiteout_format="copy")
    assert (dest / "x").is_dir() and not (dest / "x").is_symlink()
    assert (dest / "x" / "f").read_bytes() == b"mine"


def test_file_replaces_symlink_without_following(dest):
    unpack(dest, sym("f", "../victim/f"), f("f", b"replaced"))
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"replaced"


# --- 6: hardlinks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["../victim/f", "/../victim/f", "../dest-evil/f", "a/../../victim/f"])
def test_escaping_hardlinks_fail_cleanly(dest, target):
    with pytest.raises(UnsafeLayer, match="hardlink target"):
        unpack(dest, hard("h", target))
    assert not (dest / "h").exists()


def test_hardlink_through_symlinked_parent_stays_inside(dest, outer):
    unpack(dest, sym("v", str(outer / "victim")), f(str(outer / "victim" / "f").lstrip("/"), b"inner"))
    unpack(dest, hard("h", "v/f"))
    assert (dest / "h").read_bytes() == b"inner"


def test_hardlink_to_missing_file_fails_cleanly(dest):
    with pytest.raises(InvalidLayer, match="missing"):
        unpack(dest, hard("h", "nothing/here"))


def test_hardlink_to_directory_is_refused(dest):
    with pytest.raises(UnsafeLayer):
        unpack(dest, d("dir"), hard("h", "dir"))


def test_hardlink_to_symlink_never_changes_outside_mode(dest, outer):
    outside = str(outer / "victim" / "f")
    unpack(
        dest,
        sym("s", outside),
        hard("h", "s", mode=0o777),
        sym("s2", "../victim/f"),
        hard("h2", "s2", mode=0o4777),
    )
    assert (dest / "h").is_symlink() and os.readlink(dest / "h") == outside
    assert os.lstat(dest / "h").st_ino == os.lstat(dest / "s").st_ino
    assert stat.S_IMODE((outer / "victim" / "f").stat().st_mode) == 0o600


def test_hardlink_shares_the_inode(dest):
    unpack(dest, f("a", b"same"), hard("b", "a"), hard("/c", "/a"))
    assert os.stat(dest / "a").st_ino == os.stat(dest / "b").st_ino == os.stat(dest / "c").st_ino


# --- 7: whiteouts --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".wh..", ".wh...", "etc/.wh..", ".wh.", "a/.wh."])
@pytest.mark.parametrize("whiteout_format", ["overlay", "copy"])
def test_invalid_whiteouts_fail_cleanly(dest, name, whiteout_format):
    with pytest.raises(UnsafeLayer, match="whiteout|leaves the root"):
        unpack(dest, d("etc"), f(name, b""), whiteout_format=whiteout_format)


def test_copy_opaque_directory_hides_lower_files(dest):
    unpack(dest, d("d"), f("d/lower"), d("d/sub"), f("d/sub/deep"), f("other"), whiteout_format="copy")
    unpack(dest, d("d"), f("d/.wh..wh..opq", b""), f("d/new", b"new"), d("d/sub"), whiteout_format="copy")
    assert sorted(os.listdir(dest / "d")) == ["new", "sub"]
    assert os.listdir(dest / "d" / "sub") == []
    assert (dest / "other").exists()


def test_copy_opaque_marker_after_new_entries_keeps_them(dest):
    unpack(dest, d("d"), f("d/lower"), whiteout_format="copy")
    unpack(dest, d("d"), f("d/new", b"new"), f("d/.wh..wh..opq", b""), whiteout_format="copy")
    assert os.listdir(dest / "d") == ["new"]


def test_copy_whiteout_of_link_removes_only_the_link(dest):
    unpack(dest, d("target"), f("target/keep"), sym("link", "target"), whiteout_format="copy")
    unpack(dest, f(".wh.link", b""), whiteout_format="copy")
    assert not os.path.lexists(dest / "link")
    assert (dest / "target" / "keep").exists()


def test_copy_whiteout_removes_a_whole_tree(dest):
    unpack(dest, d("t"), d("t/a", mode=0o000), f("t/a/f"), d("t/b"), whiteout_format="copy")
    unpack(dest, f(".wh.t", b""), f("a/.wh.missing", b""), whiteout_format="copy")
    assert not os.path.lexists(dest / "t")


def test_copy_whiteout_under_symlinked_parent_acts_inside(dest, outer):
    victim = str(outer / "victim")
    unpack(dest, sym("p", "../victim"), sym("q", victim), f("victim/f", b"inner"), whiteout_format="copy")
    unpack(dest, f("p/.wh.f", b""), f("q/.wh.f", b""), f("q/.wh.authorized_keys", b""), whiteout_format="copy")
    assert not (dest / "victim" / "f").exists()


def test_overlay_whiteout_is_a_0_0_character_device(dest):
    try:
        stats = unpack(dest, d("etc"), f("etc/.wh.gone", b""))
    except WhiteoutUnsupported as error:
        assert not ROOT, "root can always create whiteout devices"
        assert "overlay" in str(error) and error.hint
        unavailable("this kernel does not let an unprivileged user create whiteout devices")
    st = os.lstat(dest / "etc" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not os.path.lexists(dest / "etc" / ".wh.gone")
    assert stats.files == 2


def test_overlay_whiteout_under_symlinked_parent_acts_inside(dest, outer):
    try:
        unpack(dest, sym("q", str(outer / "victim")), f("q/.wh.f", b""))
    except WhiteoutUnsupported:
        unavailable("no unprivileged whiteout devices here")
    assert stat.S_ISCHR(os.lstat(dest / str(outer / "victim" / "f").lstrip("/")).st_mode)


def user_xattrs_supported(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def test_overlay_opaque_directory_sets_xattr(dest):
    if not user_xattrs_supported(dest):
        with pytest.raises(WhiteoutUnsupported):
            unpack(dest, d("d"), f("d/.wh..wh..opq", b""))
        return
    unpack(dest, d("d"), f("d/.wh..wh..opq", b""), f("d/new"))
    assert os.getxattr(dest / "d", "user.overlay.opaque") == b"y"
    assert os.listdir(dest / "d") == ["new"]


def test_overlay_tar_whiteout_device_is_a_whiteout_in_copy(dest):
    unpack(dest, f("gone"), whiteout_format="copy")
    unpack(dest, node("gone", tarfile.CHRTYPE, 0, 0), whiteout_format="copy")
    assert not os.path.lexists(dest / "gone")


# --- 8: devices and FIFOs ------------------------------------------------------------------------------------------


def test_devices_are_skipped_with_one_warning_and_fifos_made(dest):
    warnings: list[str] = []
    stats = unpack(
        dest,
        d("dev"),
        node("dev/null", tarfile.CHRTYPE, 1, 3),
        node("dev/sda", tarfile.BLKTYPE, 8, 0),
        node("dev/fifo", tarfile.FIFOTYPE, mode=0o640),
        warn=warnings.append,
    )
    assert len(warnings) == 1 and "dev/null" in warnings[0]
    assert stats.skipped_devices == 2
    assert not os.path.lexists(dest / "dev" / "null") and not os.path.lexists(dest / "dev" / "sda")
    st = os.lstat(dest / "dev" / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_absurd_device_numbers_fail_cleanly(dest, kind):
    with pytest.raises(UnsafeLayer, match="absurd"):
        unpack(dest, node("dev/x", kind, 2**20 + 1, 0))


# --- 9, 10, 11: metadata -------------------------------------------------------------------------------------------


def test_special_mode_bits_are_kept(dest):
    unpack(
        dest,
        f("bin/su", mode=0o4755),
        f("bin/wall", mode=0o2755),
        d("tmp", mode=0o1777),
        d("shared", mode=0o2775),
        d("locked", mode=0o000),
        f("readonly", mode=0o400),
    )
    assert stat.S_IMODE(os.lstat(dest / "bin" / "su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(dest / "bin" / "wall").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "shared").st_mode) == 0o2775
    assert stat.S_IMODE(os.lstat(dest / "locked").st_mode) == 0o000
    assert stat.S_IMODE(os.lstat(dest / "readonly").st_mode) == 0o400


def test_directory_mtimes_are_set_after_children(dest):
    unpack(dest, d("a", mtime=1000), d("a/b", mtime=2000), f("a/b/c", mtime=3000), sym("a/l", "b", mtime=4000))
    assert os.lstat(dest / "a").st_mtime == 1000
    assert os.lstat(dest / "a" / "b").st_mtime == 2000
    assert os.lstat(dest / "a" / "b" / "c").st_mtime == 3000
    assert os.lstat(dest / "a" / "l").st_mtime == 4000


def test_mode_000_directory_with_children_extracts(dest):
    unpack(dest, d("locked", mode=0o000), d("locked/sub", mode=0o000), f("locked/sub/f", b"x"))
    assert stat.S_IMODE(os.lstat(dest / "locked").st_mode) == 0o000
    remove_tree(dest / "locked")
    assert not os.path.lexists(dest / "locked")


FORBIDDEN_XATTRS = {
    "SCHILY.xattr.user.overlay.opaque": "y",
    "SCHILY.xattr.user.overlay.redirect": "/etc",
    "SCHILY.xattr.trusted.overlay.opaque": "y",
    "SCHILY.xattr.user.containers.override_stat": "0:0:0755",
    "SCHILY.xattr.user.fuseoverlayfs.override_stat": "0:0:0755",
    "SCHILY.xattr.security.selinux": "system_u:object_r:shadow_t:s0",
}


def test_forbidden_xattrs_are_never_applied(dest):
    if not user_xattrs_supported(dest):
        unavailable("the tmp file system has no user xattrs: point TMPDIR at one that has (ext4, xfs, tmpfs >= 6.6)")
    headers = {**FORBIDDEN_XATTRS, "SCHILY.xattr.user.mime_type": "text/plain"}
    file_info, data = f("file", b"x")
    file_info.pax_headers = dict(headers)
    dir_info, _ = d("dir")
    dir_info.pax_headers = dict(headers)
    unpack(dest, (file_info, data), (dir_info, None))
    for path in (dest / "file", dest / "dir"):
        names = set(os.listxattr(path))
        assert "user.mime_type" in names
        assert os.getxattr(path, "user.mime_type") == b"text/plain"
        forged = {key.removeprefix("SCHILY.xattr.") for key in FORBIDDEN_XATTRS} - {"security.selinux"}
        assert not names & forged


_PRODUCT_MAP = nsjob.owner_map(65536, 65536)  # the map a 65536-id subordinate range gives (ids 0..65535)


def mapped(uid: int, gid: int) -> tuple[int, int]:
    """The product's own range check; the chown itself only as root (a plain user may own files only as itself)."""
    _PRODUCT_MAP(uid, gid)
    return (uid, gid) if ROOT else (os.getuid(), os.getgid())


def test_owner_outside_mapped_range_fails_naming_the_file(dest):
    with pytest.raises(UnsafeLayer) as caught:
        unpack(dest, f("ok", uid=1000, gid=1000), f("etc/shadow", uid=70000, gid=0), owner_map=mapped)
    assert "'etc/shadow'" in str(caught.value) and "70000" in str(caught.value)
    assert "/etc/subuid" in f"{caught.value} {caught.value.hint}"
    assert caught.value.entry == "etc/shadow"


def test_owners_are_numeric_never_names(dest):
    calls: list[tuple[int, int]] = []

    def record(uid: int, gid: int) -> tuple[int, int]:
        calls.append((uid, gid))
        return mapped(uid, gid)

    unpack(
        dest,
        f("file", uid=1234, gid=2345, uname="root", gname="root"),
        d("dir", uid=33, gid=33, uname="nobody", gname="nogroup"),
        sym("link", "file", uid=1234, gid=2345, uname="root"),
        owner_map=record,
    )
    assert calls == [(1234, 2345), (33, 33), (1234, 2345)]
    if ROOT:
        assert (os.lstat(dest / "file").st_uid, os.lstat(dest / "file").st_gid) == (1234, 2345)
        assert os.lstat(dest / "dir").st_uid == 33
        assert os.lstat(dest / "link").st_uid == 1234


def test_default_owner_is_kept_as_root_and_skipped_otherwise(dest):
    unpack(dest, f("file", uid=1234, gid=2345, uname="root", gname="root", mode=0o4755))
    st = os.lstat(dest / "file")
    assert (st.st_uid, st.st_gid) == ((1234, 2345) if ROOT else (os.getuid(), os.getgid()))
    assert stat.S_IMODE(st.st_mode) == 0o4755


# --- 12: bombs -----------------------------------------------------------------------------------------------------


class ZeroTar(io.RawIOBase):
    """A tar stream of one file of ``size`` zero bytes, produced on the fly."""

    def __init__(self, size: int) -> None:
        info = tarfile.TarInfo("zeros")
        info.size = size
        self.header = info.tobuf(format=tarfile.PAX_FORMAT)
        self.total = len(self.header) + size + (-size % 512) + 1024
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.total - self.position)
        view = memoryview(buffer)[:count]
        header_part = max(0, min(count, len(self.header) - self.position))
        view[:header_part] = self.header[self.position : self.position + header_part]
        view[header_part:count] = bytes(count - header_part)
        self.position += count
        return count


def test_bomb_fails_at_the_limit_and_is_cleaned(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    bomb = ZeroTar(2**30)
    with pytest.raises(LayerTooLarge) as caught:
        unpack_layer(io.BufferedReader(bomb), dest, max_bytes=10 * 2**20)
    assert "'zeros'" in str(caught.value)
    assert (dest / "zeros").stat().st_size <= 10 * 2**20
    # it stopped reading at the limit (give or take a read buffer), not at the end of the 1 GiB stream; removing
    # what it left is the store's job (tests/integration/test_pull_hostile.py checks no layer dir remains)
    assert bomb.position <= 12 * 2**20


def test_damaged_tar_fails_cleanly(dest):
    data = tar_of(f("a", b"x" * 5000)).getvalue()[:1500]
    with pytest.raises(InvalidLayer, match="damaged"):
        unpack_layer(io.BytesIO(data), dest)
    with pytest.raises(InvalidLayer):
        unpack_layer(io.BytesIO(b"not a tar at all" * 64), dest)


def test_stats_count_entries_and_bytes(dest):
    stats = unpack(dest, d("a"), f("a/b", b"12345"), f("c", b"678"), sym("l", "c"), hard("h", "c"))
    assert stats == UnpackStats(files=5, bytes=8, skipped_devices=0)


# --- 13: size of trees ---------------------------------------------------------------------------------------------


def test_deep_tree_extracts_and_is_removed(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    depth = 5000
    entries = []
    path = ""
    for _ in range(depth):
        path = f"{path}d/" if path else "d/"
        entries.append(d(path.rstrip("/")))
    entries.append(f(path + "leaf", b"bottom"))
    entries.append(f("top", b"top"))
    stats = unpack(dest, *entries)
    assert stats.files == depth + 2
    fd = os.open(dest, os.O_RDONLY)
    try:
        for _ in range(depth):
            child = os.open("d", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        assert os.stat("leaf", dir_fd=fd).st_size == 6
    finally:
        os.close(fd)
    remove_tree(dest)
    assert not dest.exists()


def test_many_files_extract_and_are_removed(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    entries = [d("many")] + [f(f"many/{index % 20}/{index}", b"") for index in range(20_000)]
    stats = unpack(dest, *entries, whiteout_format="copy")
    assert stats.files == 20_001
    assert sum(len(os.listdir(dest / "many" / str(bucket))) for bucket in range(20)) == 20_000
    remove_tree(dest)
    assert not dest.exists()


def test_remove_tree_handles_mode_000_and_symlinks(tmp_path, outer):
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_bytes(b"x")
    (top / "link").symlink_to(outer / "victim")
    (top / "a" / "b").chmod(0o000)
    (top / "a").chmod(0o000)
    remove_tree(top)
    assert not os.path.lexists(top)
    remove_tree(top)  # a missing path is fine
    single = tmp_path / "single"
    single.symlink_to(outer / "victim")
    remove_tree(single)
    assert not os.path.lexists(single)


# --- errors --------------------------------------------------------------------------------------------------------


def test_every_failure_is_one_lowercase_line(dest):
    with pytest.raises(SbxError) as caught:
        unpack(dest, f("a/../../x"))
    message = str(caught.value)
    assert "\n" not in message and message == message.lower() and not message.endswith(".")


def test_parent_that_is_a_file_fails_cleanly(dest):
    with pytest.raises(InvalidLayer, match="not a directory"):
        unpack(dest, f("a"), f("a/b"))


def test_unknown_whiteout_format_is_a_programming_error(dest):
    with pytest.raises(ValueError):
        unpack(dest, f("a"), whiteout_format="aufs")


def test_missing_root_fails_cleanly(tmp_path):
    from sandbox.errors import StoreError

    with pytest.raises(StoreError) as caught:
        unpack(tmp_path / "nowhere", f("a"))
    assert caught.value.fields.get("path") == str(tmp_path / "nowhere")


def test_enospc_names_the_entry(dest, monkeypatch):
    from sandbox.errors import NoSpace

    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    try:
        with pytest.raises(NoSpace, match="'big'"):
            unpack(dest, f("big", b"x" * 10))
    finally:
        monkeypatch.setattr(os, "write", real_write)


def test_remove_tree_of_missing_parent_is_fine(tmp_path):
    remove_tree(tmp_path / "no" / "such" / "thing")


def test_other_aufs_metadata_is_ignored(dest):
    stats = unpack(dest, f(".wh..wh.plnk/1234.5678", b""), f(".wh..wh.aufs", b""), whiteout_format="copy")
    assert stats.files == 0 and os.listdir(dest) == []


def _remove_when_told(path, go, results):
    go.wait(10)
    try:
        remove_tree(path)
        results.put("ok")
    except SbxError as error:
        results.put(str(error))


def test_remove_tree_run_by_several_processes_at_once_succeeds_in_each(tmp_path):
    """Parallel rmi and prune may collect the same retired layer: each remover must finish without an error when
    another one took entries away under it (TESTPLAN 54)."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    top = tmp_path / "retired"
    for i in range(40):
        directory = top / f"d{i}" / "inner"
        directory.mkdir(parents=True)
        for j in range(40):
            (directory / f"f{j}").write_bytes(b"")
    go, results = fork.Event(), fork.Queue()
    workers = [fork.Process(target=_remove_when_told, args=(top, go, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    go.set()
    for worker in workers:
        worker.join(30)
    assert sorted(results.get(timeout=5) for _ in workers) == ["ok"] * 4
    assert not top.exists()


def test_a_path_through_a_lower_layers_symlink_is_followed_in_the_overlay_format(tmp_path):
    """TESTPLAN 65: layer 2's `a/file` over layer 1's `a -> /etc` is `etc/file` (containerd, and the copy driver),
    never a new directory `a` that shadows the link; a whiteout through the link hides the lower file."""
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    lower.mkdir()
    upper.mkdir()
    unpack_layer(tar_of(d("etc", mode=0o711), f("etc/keep"), f("etc/gone"), sym("a", "/etc"), d("opaque"),
                        f("opaque/x"), sym("opaque/link", "/etc")), lower)
    unpack_layer(tar_of(f("a/file", b"through"), f("a/.wh.gone", b""), f("new/dir/f")), upper, lowers=[lower])
    assert not (upper / "a").exists() and (upper / "etc" / "file").read_bytes() == b"through"
    assert stat.S_IMODE((upper / "etc").stat().st_mode) == 0o711  # the lower directory's mode, as a copy-up keeps
    assert stat.S_ISCHR((upper / "etc" / "gone").lstat().st_mode)  # the whiteout, in the right place
    assert (upper / "new" / "dir" / "f").exists()


def test_a_lower_symlink_under_an_opaque_or_whited_out_directory_is_not_followed(tmp_path):
    base, middle, upper = tmp_path / "l1", tmp_path / "l2", tmp_path / "l3"
    for path in (base, middle, upper):
        path.mkdir()
    unpack_layer(tar_of(d("o"), sym("o/link", "/etc"), sym("w", "/etc")), base)
    unpack_layer(tar_of(d("o"), f("o/.wh..wh..opq", b""), f(".wh.w", b"")), middle, lowers=[base])
    unpack_layer(tar_of(f("o/link/f"), f("w/f")), upper, lowers=[middle, base])
    assert (upper / "o" / "link" / "f").is_file() and (upper / "w" / "f").is_file()
    assert not (upper / "etc").exists()
