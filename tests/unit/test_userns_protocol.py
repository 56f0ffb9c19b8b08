"""sandbox.runtime.userns/nsjob/usermaps without a kernel: error re-raising, owner maps, id helpers, decompression."""

from __future__ import annotations

import errno
import gzip
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from sandbox import errors
from sandbox.errors import SbxError, UnsafeLayer
from sandbox.kernel import FakeKernel
from sandbox.runtime import nsjob, sync, usermaps, userns
from sandbox.runtime.idmap import IdMap, IdRange


def _through_the_job(error: BaseException) -> SbxError:
    """``error`` raised by an op in the job, as run_job raises it again: the job's ERROR line, rebuilt."""
    return sync.rebuild_error(sync.error_message(nsjob.job_error(error), None))


def test_reported_errors_come_back_as_their_class() -> None:
    error = _through_the_job(UnsafeLayer("unsafe layer: x", entry="a/b", uid=70000))
    assert type(error) is UnsafeLayer
    assert error.message == "unsafe layer: x"
    assert error.entry == "a/b"
    assert error.uid == 70000
    assert error.exit_code is None  # a job's error is no exit status


@pytest.mark.parametrize("name", ["ValueError", "Path", "nonsense", None])
def test_unknown_or_foreign_error_types_become_sbxerror(name: str | None) -> None:
    error = sync.rebuild_error({"class": name, "message": "boom", "hint": "do this"})
    assert type(error) is SbxError
    assert error.hint == "do this"


def test_hint_of_the_class_is_kept() -> None:
    error = _through_the_job(errors.NoSpace("no space left extracting entry 'x'"))
    assert type(error) is errors.NoSpace
    assert error.hint == errors.NoSpace.hint


def test_os_errors_are_reported_as_store_errors() -> None:
    error = _through_the_job(PermissionError(13, "Permission denied", "/x"))
    assert type(error) is errors.StoreError
    assert error.message == "permission denied: /x"
    assert error.errno == 13


def test_owner_map_passes_checks_and_squashes() -> None:
    mapped = nsjob.owner_map(65537, 65537)
    assert mapped(0, 0) == (0, 0)
    assert mapped(33, 65534) == (33, 65534)
    assert mapped(65536, 65536) == (65536, 65536)
    with pytest.raises(UnsafeLayer, match="uid 70000 .* /etc/subuid"):
        mapped(70000, 0)
    with pytest.raises(UnsafeLayer, match="gid 65537 .* /etc/subgid"):
        mapped(0, 65537)
    assert nsjob.owner_map(1, 1)(33, 70000) == (0, 0)
    assert nsjob.owner_map(None, None)(70000, 5) == (70000, 5)
    assert nsjob.owner_map(65537, 1)(33, 33) == (33, 0)


def test_unknown_op() -> None:
    with pytest.raises(SbxError, match="unknown namespace job 'format'"):
        nsjob.execute({"op": "format"}, FakeKernel())


def test_unpack_op_in_process(tmp_path: Path) -> None:
    """The op as it runs inside the namespace; owners kept (None) and the test's own, so no privilege is needed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("file")
        info.size, info.uid, info.gid = 2, os.getuid(), os.getgid()
        tar.addfile(info, io.BytesIO(b"hi"))
    blob = tmp_path / "layer.tar.gz"
    blob.write_bytes(gzip.compress(buffer.getvalue()))
    dest = tmp_path / "dest"
    dest.mkdir()
    layer = {"blob": str(blob), "compression": "gzip", "dest": str(dest), "whiteout_format": "overlay"}
    job = {"op": "unpack", "layers": [layer], "container_uids": None, "container_gids": None}
    result = nsjob.execute(job, FakeKernel())
    assert result == {"layers": [{"files": 1, "bytes": 2, "skipped_devices": 0}], "warnings": []}
    assert (dest / "file").read_bytes() == b"hi"
    assert (dest / "file").stat().st_uid == os.getuid()
    assert nsjob.execute({"op": "remove", "paths": [str(dest)]}, FakeKernel()) == {"removed": 1}
    assert not dest.exists()


def test_missing_helper_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a directory without the helpers
    with pytest.raises(errors.NamespaceError, match="newuidmap not found") as caught:
        usermaps.find_helper("newuidmap")
    assert "uidmap" in caught.value.hint


def test_root_runs_the_job_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userns.os, "geteuid", lambda: 0)
    import subprocess

    monkeypatch.setattr(subprocess, "Popen", None)  # no child may be started
    victim = tmp_path / "tree"
    (victim / "a" / "b").mkdir(parents=True)
    idmap = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    assert userns.run_job({"op": "remove", "paths": [victim]}, idmap) == {"removed": 1}
    assert not victim.exists()


def _helper(tmp_path: Path, name: str, body: str) -> str:
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def test_both_id_helpers_run_and_their_arguments_are_the_ranges(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    helpers = {name: _helper(tmp_path, name, f'echo "{name} $*" >> {log}') for name in ("newuidmap", "newgidmap")}
    idmap = IdMap((IdRange(0, 1000, 1), IdRange(1, 200000, 65536)), (IdRange(0, 1000, 1),))
    usermaps.write_maps(4242, idmap, helpers, None)
    assert sorted(log.read_text().splitlines()) == [
        "newgidmap 4242 0 1000 1", "newuidmap 4242 0 1000 1 1 200000 65536",
    ]


def test_meanwhile_runs_while_the_id_helpers_run(tmp_path: Path) -> None:
    """The cgroup placement is done while newuidmap/newgidmap run, not after (BENCHMARKS B1): here each helper waits
    for the file ``meanwhile`` makes, so a ``meanwhile`` called only after the helpers ended would time them out."""
    marker = tmp_path / "placed"
    wait = f"n=0; while [ ! -e {marker} ] && [ $n -lt 200 ]; do sleep 0.01; n=$((n+1)); done; test -e {marker}"
    helpers = {name: _helper(tmp_path, name, wait) for name in ("newuidmap", "newgidmap")}
    idmap = IdMap((IdRange(0, 1000, 1), IdRange(1, 200000, 65536)), (IdRange(0, 1000, 1),))
    assert usermaps.map_ids(4242, idmap, helpers, time.monotonic() + 10, meanwhile=marker.touch) is None
    assert marker.exists()
    single = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    called = []
    assert usermaps.map_ids(4242, single, {}, meanwhile=lambda: called.append(1)) == {"uid": 1000, "gid": 1000}
    assert called == [1]


def test_a_failing_id_helper_is_named_with_its_message(tmp_path: Path) -> None:
    helpers = {
        "newuidmap": _helper(tmp_path, "newuidmap", "exit 0"),
        "newgidmap": _helper(tmp_path, "newgidmap", "echo 'write to gid_map failed' >&2; exit 1"),
    }
    idmap = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    with pytest.raises(errors.NamespaceError, match="newgidmap failed .exit 1.: write to gid_map failed") as caught:
        usermaps.write_maps(4242, idmap, helpers, None)
    assert "/etc/subgid" in caught.value.hint


def test_a_hanging_id_helper_times_out_and_is_killed(tmp_path: Path) -> None:
    helpers = {
        "newuidmap": _helper(tmp_path, "newuidmap", "exec sleep 30"),
        "newgidmap": _helper(tmp_path, "newgidmap", "exit 0"),
    }
    idmap = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    with pytest.raises(errors.NamespaceError, match="newuidmap did not finish in time"):
        usermaps.write_maps(4242, idmap, helpers, time.monotonic() + 0.5)


def test_the_id_helpers_inherit_no_descriptor_but_stdio(tmp_path: Path) -> None:
    """newuidmap/newgidmap are setuid root: they get stdin, stdout, stderr and nothing else of the monitor's, even a
    descriptor left inheritable (as subprocess's close_fds did)."""
    log = tmp_path / "fds"
    helpers = {name: _helper(tmp_path, name, f"ls /proc/self/fd > {log}.{name}") for name in ("newuidmap", "newgidmap")}
    leaked_r, leaked_w = os.pipe()
    os.set_inheritable(leaked_w, True)
    try:
        idmap = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
        usermaps.write_maps(4242, idmap, helpers, None)
    finally:
        os.close(leaked_r)
        os.close(leaked_w)
    for name in helpers:
        fds = {int(fd) for fd in Path(f"{log}.{name}").read_text().split()}
        assert leaked_w > 3 and fds <= {0, 1, 2, 3}  # 3: the directory ls itself reads


def test_mapping_ids_imports_neither_subprocess_nor_shutil(tmp_path: Path) -> None:
    """The monitor maps ids on every start: subprocess and shutil (with the compressors it imports) would cost each
    start their import (BENCHMARKS B1)."""
    import subprocess
    import sys

    helpers = {name: _helper(tmp_path, name, "exit 0") for name in ("newuidmap", "newgidmap")}
    code = ("import sys\n"
            "from sandbox.runtime import usermaps\n"
            "from sandbox.runtime.idmap import IdMap, IdRange\n"
            "helpers = {name: usermaps.find_helper(name) for name in ('newuidmap', 'newgidmap')}\n"
            "usermaps.write_maps(1, IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),)), helpers, None)\n"
            "print(sorted(m for m in ('subprocess', 'shutil') if m in sys.modules))")
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                            cwd=Path(__file__).resolve().parents[2])
    assert helpers and result.stdout.strip() == "[]", result.stderr


def test_becoming_root_goes_through_the_kernel_gid_before_groups_before_uid() -> None:
    kernel = FakeKernel()
    usermaps.become_root(kernel)
    assert [(call.op, call.args) for call in kernel.calls] == [
        ("setresgid", (0, 0, 0)), ("setgroups", ((),)), ("setresuid", (0, 0, 0))]


def test_becoming_root_with_setgroups_denied_still_switches_the_uid() -> None:
    kernel = FakeKernel().fail("setgroups", errno.EPERM)  # a single map denies setgroups: nothing to drop
    usermaps.become_root(kernel)
    assert kernel.ops() == ["setresgid", "setgroups", "setresuid"]
    with pytest.raises(OSError):
        usermaps.become_root(FakeKernel().fail("setresuid", errno.EPERM))
