"""A hostile container's root against sbx's capabilities and seccomp policy (TESTPLAN C 29-30, D 35-41, I 56).

The probe (tests/fixtures/seccomp_probe.c) is compiled static with the machine's gcc, put in an image with busybox,
and pushed to the test registry; it prints one "name ERRNO" line per syscall it tries. Each refusal is checked
twice: refused under the default policy, and not refused (a different errno, or success) by the same probe run
with seccomp=unconfined and CAP_SYS_ADMIN, so the refusal is the policy's doing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures import imagebuild

PROBE_SOURCE = Path(__file__).resolve().parents[1] / "fixtures" / "seccomp_probe.c"
DOCKER_DEFAULT_CAPS = 0xA80425FB  # CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE ...
CAP_SYS_ADMIN = 1 << 21

# refused by the default policy with EPERM, and allowed (another outcome) without it
EPERM_BY_POLICY = (
    "keyctl", "add_key", "request_key", "userfaultfd", "perf_event_open", "mount", "umount2", "pivot_root",
    "open_tree", "move_mount", "fsopen", "setns", "unshare_NEWUSER", "clone_NEWUSER", "io_uring_setup",
    "socket_AF_ALG", "socket_AF_ALG_high", "ptrace", "ioctl_TIOCSTI", "ioctl_TIOCSTI_high", "ioctl_TIOCLINUX",
    "x32_mount", "x32_keyctl", "i386_mount", "i386_keyctl", "i386_unshare", "i386_ptrace", "i386_ioctl_TIOCSTI",
)
# refused with EPERM whichever outcome the kernel itself would give (it may lack the call, or check a capability
# of the initial namespace first)
EPERM_ALWAYS = ("bpf", "kexec_load", "init_module", "open_by_handle_at", "socket_AF_VSOCK")
ENOSYS_BY_POLICY = ("clone3", "statmount", "personality_READ_IMPLIES_EXEC")


@pytest.fixture(scope="module")
def probe_image(registry, tmp_path_factory) -> str:
    gcc = shutil.which("gcc")
    if os.uname().machine != "x86_64" or gcc is None or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        pytest.skip("needs gcc and a static libc (Debian: gcc libc6-dev) on x86_64")
    binary = tmp_path_factory.mktemp("probe") / "probe"
    subprocess.run([gcc, "-static", "-O1", "-o", str(binary), str(PROBE_SOURCE)], check=True, capture_output=True)
    base = imagebuild.build_layer(imagebuild.busybox_entries(), "gzip", "docker")
    layer = imagebuild.build_layer([("probe", imagebuild.File(binary.read_bytes(), mode=0o755))], "gzip", "docker")
    image = imagebuild.build_image("seccomp-probe", [base, layer], style="docker", cmd=["/probe"])
    client = registry.session(None)
    for repo in ("seccomp-probe", "library/seccomp-probe"):
        record = imagebuild.push_built(client, repo, "latest", image)
        registry.images[record.reference] = record
    return "seccomp-probe"


@pytest.fixture
def probe(sbx, probe_image):
    sbx("pull", "-q", probe_image)
    return sbx


def run(sbx, *args, check=True):
    return sbx("run", "--rm", *args, check=check)


def outcomes(text: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def status(text: str) -> dict[str, str]:
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def test_default_policy_refuses_and_only_the_policy_does(probe):
    confined = outcomes(run(probe, "seccomp-probe", "/probe").stdout)
    assert confined["read"] == "EBADF" and confined["ioctl_TCGETS"] == "EBADF" and confined["i386_read"] == "EBADF"
    for name in (*EPERM_BY_POLICY, *EPERM_ALWAYS):
        assert confined[name] == "EPERM", name
    for name in ENOSYS_BY_POLICY:
        assert confined[name] == "ENOSYS", name
    free = outcomes(run(probe, "--security-opt", "seccomp=unconfined", "--cap-add", "SYS_ADMIN", "seccomp-probe",
                        "/probe").stdout)
    for name in (*EPERM_BY_POLICY, *ENOSYS_BY_POLICY):
        if name.startswith("x32_"):  # a kernel without CONFIG_X86_X32_ABI answers ENOSYS itself
            assert free[name] in ("ENOSYS", "EFAULT", "EOPNOTSUPP"), name
        else:
            assert free[name] not in ("EPERM", "ENOSYS"), (name, free[name])


def test_proc_status_of_pid1_and_exec(probe):
    default = status(run(probe, "seccomp-probe", "cat", "/proc/1/status").stdout)
    assert default["Seccomp"] == "2"
    assert int(default["CapEff"], 16) == int(default["CapPrm"], 16) == DOCKER_DEFAULT_CAPS
    assert int(default["CapBnd"], 16) == DOCKER_DEFAULT_CAPS
    assert int(default["CapInh"], 16) == 0 and int(default["CapAmb"], 16) == 0
    assert default["NoNewPrivs"] == "0"  # setuid programs in the image keep working, as in Docker
    asked = status(run(probe, "--security-opt", "no-new-privileges", "seccomp-probe", "cat", "/proc/1/status").stdout)
    assert asked["NoNewPrivs"] == "1" and asked["Seccomp"] == "2"
    user = status(run(probe, "-u", "1000", "seccomp-probe", "cat", "/proc/1/status").stdout)
    assert user["Seccomp"] == "2" and int(user["CapEff"], 16) == 0 and int(user["CapPrm"], 16) == 0
    assert user["NoNewPrivs"] == "0"
    unconfined = status(run(probe, "--security-opt", "seccomp=unconfined", "seccomp-probe", "cat",
                            "/proc/1/status").stdout)
    assert unconfined["Seccomp"] == "0"
    added = status(run(probe, "--cap-add", "SYS_ADMIN", "--cap-drop", "NET_RAW", "seccomp-probe", "cat",
                       "/proc/1/status").stdout)
    assert int(added["CapEff"], 16) == (DOCKER_DEFAULT_CAPS | CAP_SYS_ADMIN) & ~(1 << 13)
    # start rebuilds the container from its stored spec: the same options apply
    probe("create", "--name", "made", "--security-opt", "no-new-privileges", "--cap-drop", "ALL", "seccomp-probe",
          "cat", "/proc/1/status")
    probe("start", "made")
    probe("wait", "made")
    started = status(probe("logs", "made").stdout)
    assert started["Seccomp"] == "2" and started["NoNewPrivs"] == "1" and int(started["CapBnd"], 16) == 0
    probe("rm", "made")
    # exec gets the container's own caps, profile and no_new_privs
    probe("run", "-d", "--name", "box", "--security-opt", "no-new-privileges", "seccomp-probe", "sleep", "60")
    host_config = json.loads(probe("inspect", "box").stdout)[0]["HostConfig"]
    assert host_config["SecurityOpt"] == ["no-new-privileges"] and host_config["Privileged"] is False
    execed = status(probe("exec", "box", "cat", "/proc/self/status").stdout)
    assert execed["Seccomp"] == "2" and execed["NoNewPrivs"] == "1"
    assert int(execed["CapEff"], 16) == DOCKER_DEFAULT_CAPS == int(execed["CapBnd"], 16)
    assert int(execed["CapInh"], 16) == 0 and int(execed["CapAmb"], 16) == 0
    assert outcomes(probe("exec", "box", "/probe").stdout)["mount"] == "EPERM"
    probe("rm", "-f", "box")


def test_nested_user_namespace_is_refused(probe):
    nested = run(probe, "seccomp-probe", "unshare", "-Ur", "true", check=False)
    assert nested.returncode != 0


SCRIPT = """
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name ok"; else echo "$name refused"; fi; }
try remount_volume mount -o remount,rw,bind /data
try write_volume sh -c 'echo changed > /data/file'
try remount_root mount -o remount,rw,bind /
try write_root touch /newfile
try unmount_mask umount /proc/kcore
try unmount_mask_lazy umount -l /proc/kcore
try unmount_proc_sys umount /proc/sys
try mount_proc mount -t proc proc /tmp
"""


def test_read_only_mounts_and_masks_stay(probe, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "file").write_text("host\n")
    result = outcomes(run(probe, "--read-only", "--tmpfs", "/tmp", "-v", f"{volume}:/data:ro", "seccomp-probe",
                          "sh", "-c", SCRIPT).stdout)
    assert result == {name: "refused" for name in ("remount_volume", "write_volume", "remount_root", "write_root",
                                                   "unmount_mask", "unmount_mask_lazy", "unmount_proc_sys",
                                                   "mount_proc")}
    assert (volume / "file").read_text() == "host\n"


def test_an_invalid_profile_fails_cleanly_and_creates_nothing(probe, tmp_path):
    for text in ('{"defaultAction": "SCMP_ACT_ERRNO", ', '{"defaultAction": "SCMP_ACT_NOPE"}',
                 '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mountt"], "action": "SCMP_ACT_ERRNO"}]}',
                 '{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_Z80"}]}'):
        path = tmp_path / "profile.json"
        path.write_text(text)
        failed = run(probe, "--security-opt", f"seccomp={path}", "seccomp-probe", "true", check=False)
        assert failed.returncode == 125 and "Traceback" not in failed.stderr
        assert failed.stderr.startswith("sbx: invalid seccomp profile") and len(failed.stderr.splitlines()) == 1
    assert probe("ps", "-aq").stdout == ""
