"""How the launcher makes the container's first process (runtime/launcher.py), driven through FakeKernel.

pid 1 is cloned straight into new user and pid namespaces (the monitor its real parent, no stage 1 beside it);
only ``--network container:ID``, which must join a sibling user namespace, forks a stage 1.
"""

from __future__ import annotations

import errno
import os
import socket
from types import SimpleNamespace

import pytest

from sandbox.errors import NamespaceError, SyncError
from sandbox.kernel import FakeKernel
from sandbox.kernel import constants as k
from sandbox.runtime import launcher
from sandbox.runtime.idmap import IdMap, IdRange
from sandbox.runtime.rootfs import RootfsPlan
from sandbox.runtime.spec import ContainerSpec, Process
from sandbox.runtime.sync import Channel, Kind
from sandbox.security.options import SecurityOptions

REST = k.CLONE_NEWNS | k.CLONE_NEWUTS | k.CLONE_NEWIPC | k.CLONE_NEWCGROUP


def make_spec(network: str = "none") -> ContainerSpec:
    single = IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),))
    return ContainerSpec(id="c" * 64, rootfs=RootfsPlan("copy", "/layers", ("a/diff",), copy="/ctr/rootfs"),
                         process=Process(args=("/bin/sh",), env=()), idmap=single, hostname="web",
                         network=network, security=SecurityOptions(seccomp="unconfined"))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_pid1_is_cloned_into_new_user_and_pid_namespaces():
    kernel = FakeKernel()
    assert launcher._create(kernel, joining=False) == kernel.clone_result
    assert [(call.op, call.args) for call in kernel.calls] == [("clone", (k.CLONE_NEWUSER | k.CLONE_NEWPID,))]


def test_joining_another_containers_user_namespace_forks_a_stage_1(monkeypatch):
    kernel = FakeKernel()
    monkeypatch.setattr(launcher.os, "fork", lambda: 777)
    assert launcher._create(kernel, joining=True) == 777
    assert kernel.calls == []  # a cloned child could not setns into a sibling user namespace


def test_a_refused_clone_is_a_namespace_error_and_leaks_no_socket(tmp_path):
    kernel = FakeKernel().fail("clone", errno.ENOSPC)
    container_dir = tmp_path / "containers" / ("c" * 64)
    container_dir.mkdir(parents=True)
    before = open_fds()
    with pytest.raises(NamespaceError) as caught:
        launcher.start(make_spec(), container_dir, kernel)
    assert caught.value.message == "cannot create a user namespace: clone: No space left on device"
    assert caught.value.hint
    assert open_fds() == before


@pytest.fixture
def child(monkeypatch):
    monkeypatch.setattr("sandbox.runtime.usermaps.become_root", lambda kernel, own_maps=None: None)
    reached = []
    monkeypatch.setattr(launcher, "_stage2", lambda *args: reached.append(args))
    parent, child_sock = socket.socketpair()
    channel = Channel(child_sock)
    yield SimpleNamespace(reached=reached, parent=Channel(parent), channel=channel)
    channel.close()
    parent.close()


def test_cloned_pid1_makes_the_other_namespaces_itself_then_goes_on_as_stage_2(child, monkeypatch):
    """Mount, UTS, IPC and network while the parent writes the maps (pid 1 holds the capabilities since its birth);
    the cgroup namespace once it is root, after GO: its root is the cgroup the parent placed it in meanwhile."""
    kernel = FakeKernel()
    steps = []
    monkeypatch.setattr(kernel, "unshare", lambda flags: steps.append(("unshare", flags)))
    monkeypatch.setattr("sandbox.runtime.usermaps.become_root", lambda *args: steps.append(("root",)))
    network = SimpleNamespace(needs_setup=True, setup=None)
    child.parent.send(Kind.GO, own_maps=None)
    child.parent.send(Kind.NETWORK)
    launcher._init(make_spec("slirp4netns"), None, kernel, child.channel, None, None, network)
    own = REST & ~k.CLONE_NEWCGROUP | k.CLONE_NEWNET
    assert steps == [("unshare", own), ("root",), ("unshare", k.CLONE_NEWCGROUP)]
    assert (k.PR_SET_PDEATHSIG, 9, 0, 0, 0) in [call.args for call in kernel.calls if call.op == "prctl"]
    assert [child.parent.recv(1)["type"] for _ in range(2)] == [Kind.READY, Kind.NETNS]  # no PID: the parent knows
    assert len(child.reached) == 1


def test_a_namespace_pid_1_could_not_make_while_its_maps_were_written_fails_it_after_go(child):
    """Raised at once, the failure would race the parent's GO (which would then meet a closed socket instead)."""
    kernel = FakeKernel().fail("unshare", errno.ENOSPC)
    child.parent.send(Kind.GO, own_maps=None)
    with pytest.raises(OSError, match="No space left"):
        launcher._init(make_spec(), None, kernel, child.channel, None, None, None)
    assert child.parent.recv(1)["type"] == Kind.READY
    with pytest.raises(SyncError, match="did not answer"):
        child.channel.expect(Kind.GO, 0.01)  # read already: the failure came after GO
    assert child.reached == []


def test_stage_1_joins_then_unshares_a_pid_namespace_too(child, monkeypatch):
    kernel = FakeKernel()
    entered = []
    network = SimpleNamespace(join=(5, 6), needs_setup=False, enter=entered.append)
    monkeypatch.setattr(launcher.os, "fork", lambda: 4321)
    monkeypatch.setattr(launcher.reap, "exit_code", lambda pid: 7 if pid == 4321 else -1)
    monkeypatch.setattr(launcher.signal, "signal", lambda *args: None)
    child.parent.send(Kind.GO, own_maps=None)
    assert launcher._stage1(make_spec("container:x"), None, kernel, child.channel, None, None, network) == 7
    assert entered == [kernel]
    assert [call.args for call in kernel.calls if call.op == "unshare"] == [(REST | k.CLONE_NEWPID,)]
    assert child.parent.recv(1)["type"] == Kind.READY
    assert child.parent.recv(1) == {"type": Kind.PID, "pid": 4321}
