"""The runtime dir and the sockets in it: another local user can neither pre-make nor swap them (TESTPLAN 59).

"Another user" is played by a uid that is not the owner: these checks compare owners, so asking on behalf of
``os.getuid() + 1`` is exactly what another user's pre-made directory looks like to us.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sandbox.config import choose_runtime_root, ensure_runtime_root, load_settings
from sandbox.errors import UnsafeRuntimeDir
from sandbox.monitor import attach

OTHER = os.getuid() + 1


def private(path: Path) -> Path:
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def test_a_sane_xdg_runtime_dir_is_used(tmp_path):
    assert choose_runtime_root(str(private(tmp_path / "run"))) == tmp_path / "run" / "sbx"


@pytest.mark.parametrize("how", ["missing", "relative", "0755", "symlink", "file", "other owner"])
def test_an_insane_xdg_runtime_dir_falls_back_to_tmp(tmp_path, how):
    run = tmp_path / "run"
    uid = None
    if how == "0755":
        private(run).chmod(0o755)
    elif how == "symlink":
        run.symlink_to(private(tmp_path / "elsewhere"))
    elif how == "file":
        run.write_text("")
    elif how == "other owner":
        private(run)
        uid = OTHER
    value = "run" if how == "relative" else str(run)
    expected_uid = os.getuid() if uid is None else uid
    assert choose_runtime_root(value, uid=uid, fallback_parent=str(tmp_path)) == tmp_path / f"sbx-{expected_uid}"


def test_load_settings_checks_xdg_runtime_dir(tmp_path):
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path / "missing")}
    assert load_settings(env).runtime_root == Path(f"/tmp/sbx-{os.getuid()}")


def test_a_missing_runtime_root_is_made_0700(tmp_path):
    old = os.umask(0)
    try:
        root = ensure_runtime_root(tmp_path / "sbx-1")
    finally:
        os.umask(old)
    assert root.lstat().st_mode & 0o7777 == 0o700


@pytest.mark.parametrize("how", ["0777", "0755", "symlink", "file", "other owner"])
def test_a_runtime_root_made_by_someone_else_is_refused(tmp_path, how):
    root = tmp_path / "sbx-1"
    uid = None
    if how in ("0777", "0755"):
        private(root).chmod(int(how, 8))
    elif how == "symlink":
        root.symlink_to(private(tmp_path / "attacker"))
    elif how == "file":
        root.write_text("")
    else:
        private(root)
        uid = OTHER
    with pytest.raises(UnsafeRuntimeDir) as caught:
        ensure_runtime_root(root, uid=uid)
    assert str(root) in caught.value.message and "XDG_RUNTIME_DIR" in caught.value.hint


def test_the_monitor_puts_no_socket_in_a_runtime_root_it_refuses(tmp_path):
    root = private(tmp_path / "sbx-1")
    root.chmod(0o777)
    with pytest.raises(UnsafeRuntimeDir):
        attach.listen(attach.socket_path(root, "ab" * 32))
    assert list(root.iterdir()) == []


def test_a_client_refuses_a_socket_another_user_serves(tmp_path):
    path = tmp_path / "attach.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(attach.AttachError, match="served by uid"):
            attach.connect(path, uid=OTHER)
        peer, _ = server.accept()
        with peer:
            peer.settimeout(5)
            assert peer.recv(1) == b""  # closed before a byte was sent
        attach.connect(path).close()  # our own is accepted
    finally:
        server.close()
