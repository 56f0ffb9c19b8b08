"""Seccomp profiles in Docker's schema: loading, validating, resolving conditions, compiling (TESTPLAN D 35-40).

The compiled filters are run by a BPF interpreter (tests/fixtures/seccomp_bpf.py), so each refusal is checked on the
program the kernel would load, without loading it."""

from __future__ import annotations

import json
import os

import pytest

from sandbox.errors import InvalidSecurityProfile
from sandbox.security import cache, capabilities, compiler, profile, sources
from tests.fixtures import seccomp_bpf as bpf

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers below are x86_64's")

NR = {"read": 0, "ioctl": 16, "socket": 41, "clone": 56, "ptrace": 101, "personality": 135, "mount": 165,
      "keyctl": 250, "unshare": 272, "setns": 308, "bpf": 321, "io_uring_setup": 425, "open_tree": 428,
      "clone3": 435, "statmount": 457, "kexec_load": 246, "open_by_handle_at": 304, "userfaultfd": 323, "chroot": 161}
I386 = {"read": 3, "mount": 21, "ptrace": 26, "ioctl": 54, "socketcall": 102, "keyctl": 288, "unshare": 310,
        "socket": 359}
DEFAULT_CAPS = capabilities.container_set()


@pytest.fixture(scope="module")
def default_program() -> bytes:
    return compiler.build(profile.load(sources.locate("default")), DEFAULT_CAPS).bpf


def decide(program: bytes, name: str, *args, arch=bpf.AUDIT_ARCH_X86_64, table=NR, x32=False) -> str:
    number = table[name] | (bpf.X32_SYSCALL_BIT if x32 else 0)
    return bpf.outcome(bpf.run(program, number, args, arch))


def test_default_refuses_docker_s_list_with_eperm(default_program):
    for name, args in [("keyctl", ()), ("mount", ()), ("unshare", (0x10000000,)), ("setns", ()), ("bpf", ()),
                       ("ptrace", ()), ("io_uring_setup", ()), ("open_tree", ()), ("open_by_handle_at", ()),
                       ("userfaultfd", ()), ("clone", (0x10000000 | 17,)), ("clone", (0x20000 | 17,))]:
        assert decide(default_program, name, *args) == "EPERM", name
    assert decide(default_program, "clone", 0x003D0F00) == "ALLOW"  # glibc's pthread_create flags
    assert decide(default_program, "read") == "ALLOW" and decide(default_program, "chroot") == "ALLOW"


def test_clone3_and_unknown_syscalls_get_enosys(default_program):
    assert decide(default_program, "clone3") == "ENOSYS"
    assert decide(default_program, "statmount") == "ENOSYS"
    assert bpf.outcome(bpf.run(default_program, 999)) == "ENOSYS"


def test_terminal_injection_is_refused_on_the_bits_the_kernel_reads(default_program):
    for request in (0x5412, 0x541C, 1 << 32 | 0x5412, 0xFFFFFFFF00005412):
        assert decide(default_program, "ioctl", 0, request) == "EPERM", hex(request)
    for request in (0x5401, 0x5413, 0x80045430, 0xFFFFFFFF80045430, 0x5411):  # TCGETS, TIOCGWINSZ, TIOCGPTN (musl)
        assert decide(default_program, "ioctl", 0, request) == "ALLOW", hex(request)


def test_socket_families_refused_even_with_high_bits(default_program):
    for family in (38, 40, 1 << 32 | 38, 1 << 63 | 40):
        assert decide(default_program, "socket", family) in ("EPERM", "ENOSYS"), hex(family)
    assert decide(default_program, "socket", 38) == "EPERM"
    for family in (1, 2, 10, 16, 17, 39, 41, 44):
        assert decide(default_program, "socket", family) == "ALLOW", family


def test_sub_architectures_are_filtered_too(default_program):
    assert decide(default_program, "mount", x32=True) == "EPERM"
    assert decide(default_program, "keyctl", x32=True) == "EPERM"
    i386 = bpf.AUDIT_ARCH_I386
    for name in ("mount", "keyctl", "unshare", "ptrace"):
        assert decide(default_program, name, arch=i386, table=I386) == "EPERM", name
    assert decide(default_program, "ioctl", 0, 0x5412, arch=i386, table=I386) == "EPERM"
    assert decide(default_program, "read", arch=i386, table=I386) == "ALLOW"
    # i386's socket() is multiplexed with socketcall() in libseccomp: the refusal must win the conflict there
    assert decide(default_program, "socket", 38, arch=i386, table=I386) != "ALLOW"
    assert bpf.outcome(bpf.run(default_program, I386["socketcall"], (1, 0), i386)) != "ALLOW"
    assert bpf.run(default_program, 0, (), 0x40000028) & 0xFFFF0000 != bpf.ALLOW  # an arch not in the filter


def test_sys_admin_allows_the_namespace_calls():
    admin = compiler.build(profile.load(sources.locate("default")), capabilities.container_set(add=("SYS_ADMIN",)))
    assert decide(admin.bpf, "mount") == "ALLOW" and decide(admin.bpf, "unshare", 0x10000000) == "ALLOW"
    assert decide(admin.bpf, "clone3") == "ALLOW" and decide(admin.bpf, "keyctl") == "EPERM"


def test_ci_profile_is_stricter_and_asks_for_no_new_privs():
    ci = profile.load(sources.locate("ci"))
    assert ci.no_new_privs
    program = compiler.build(ci, capabilities.container_set(add=("SYS_ADMIN", "SYS_PTRACE"))).bpf
    assert decide(program, "mount") == "EPERM" and decide(program, "ptrace") == "EPERM"
    assert decide(program, "socket", 2) == "ALLOW" and decide(program, "socket", 17) != "ALLOW"


DOCKER_SHAPED = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": None}],
    "syscalls": [
        {"names": ["read", "ioctl", "no_such_syscall_yet"], "action": "SCMP_ACT_ALLOW"},
        {"name": "chroot", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["ppc64le"]}},
    ],
}


def test_a_docker_profile_loads_unchanged_with_its_conditions():
    loaded = profile.parse(json.dumps(DOCKER_SHAPED).encode(), "docker")
    assert loaded.arches_for("SCMP_ARCH_X86_64") == ("SCMP_ARCH_X86", "SCMP_ARCH_X32")
    names = lambda caps, kernel=(6, 1): {n for rule in loaded.resolve(caps, "amd64", kernel)  # noqa: E731
                                         for n in rule.names}
    assert "chroot" in names(DEFAULT_CAPS) and "mount" not in names(DEFAULT_CAPS)
    assert "ptrace" in names(DEFAULT_CAPS) and "ptrace" not in names(DEFAULT_CAPS, (4, 4))
    assert "personality" not in names(DEFAULT_CAPS)
    admin = capabilities.container_set(add=("SYS_ADMIN",))
    assert {"mount"} <= names(admin) and "clone3" not in names(admin)
    compiled = compiler.build(loaded, DEFAULT_CAPS)
    assert decide(compiled.bpf, "clone3") == "ENOSYS" and decide(compiled.bpf, "mount") == "EPERM"
    assert decide(compiled.bpf, "clone", 17) == "ALLOW" and decide(compiled.bpf, "clone", 0x10000011) == "EPERM"
    assert any("no_such_syscall_yet" in item for item in compiled.skipped)


def test_podman_s_own_profile_loads_if_installed():
    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("containers-common is not installed")
    program = compiler.build(profile.load(path), DEFAULT_CAPS).bpf
    assert decide(program, "kexec_load") == "EPERM" and decide(program, "bpf") == "EPERM"
    assert decide(program, "read") == "ALLOW"


@pytest.mark.parametrize(("text", "reason"), [
    ('{"defaultAction": "SCMP_ACT_ERRNO", ', "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "not a known action"),
    ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "seccomp agent"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_Z80"}]}', "unknown architecture"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": -1}', "errno number"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "sycalls": []}', "unknown field 'sycalls'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",'
     ' "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "index must be 0-5"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",'
     ' "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}', "not a known comparison"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",'
     ' "includes": {"caps": ["CAP_WIZARD"]}}]}', "unknown capability"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",'
     ' "includes": {"minKernel": "four"}}]}', "minKernel"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["../read"], "action": "SCMP_ACT_ERRNO"}]}',
     "invalid syscall name"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}', "no syscall"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "defaultErrno": "ENOSYS"}', "disagree"),
])
def test_invalid_profiles_are_refused(text, reason):
    with pytest.raises(InvalidSecurityProfile) as caught:
        profile.parse(text.encode(), "p.json")
    assert reason in caught.value.message and caught.value.message.startswith("invalid seccomp profile p.json")


def test_an_unknown_syscall_in_a_refusing_rule_fails_the_compile():
    for default in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO"):
        loaded = profile.parse(json.dumps({"defaultAction": default, "syscalls": [
            {"names": ["mountt"], "action": "SCMP_ACT_ERRNO"}]}).encode(), "typo.json")
        with pytest.raises(InvalidSecurityProfile, match="unknown syscall 'mountt'"):
            compiler.build(loaded, DEFAULT_CAPS)
    allow_default = profile.parse(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mountt"], "action": "SCMP_ACT_ALLOW"}]}).encode(), "typo.json")
    with pytest.raises(InvalidSecurityProfile):  # allowed by a default that allows: a typo, not a new syscall
        compiler.build(allow_default, DEFAULT_CAPS)


def test_compiled_filters_are_cached_per_profile_bytes_and_caps(tmp_path, monkeypatch):
    raw = json.dumps({**DOCKER_SHAPED, "noNewPrivileges": True}).encode()
    first, no_new_privs = cache.compile_cached(raw, "docker", DEFAULT_CAPS, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1 and len(first) % 8 == 0 and no_new_privs

    def no_build(*_args, **_kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(compiler, "build", no_build)
    assert cache.compile_cached(raw, "docker", DEFAULT_CAPS, tmp_path) == (first, True)
    with pytest.raises(AssertionError):  # other caps, other filter
        cache.compile_cached(raw, "docker", capabilities.container_set(add=("SYS_ADMIN",)), tmp_path)
    with pytest.raises(AssertionError):  # other bytes, other filter
        cache.compile_cached(raw + b" ", "docker", DEFAULT_CAPS, tmp_path)
    (next(tmp_path.iterdir())).write_bytes(b"1" + first[:5])  # a torn entry is never used
    with pytest.raises(AssertionError):
        cache.compile_cached(raw, "docker", DEFAULT_CAPS, tmp_path)


def test_capability_sets_follow_docker_s_rules():
    assert capabilities.names(capabilities.container_set()) == tuple(
        name for name in capabilities.NAMES if name in capabilities.DOCKER_DEFAULT)
    assert capabilities.container_set(drop=("ALL",), add=("NET_RAW",)) == 1 << capabilities.NUMBERS["NET_RAW"]
    assert capabilities.container_set(add=("cap_sys_admin",)) >> 21 & 1
    assert capabilities.container_set(privileged=True) == capabilities.ALL
    with pytest.raises(Exception, match="unknown capability"):
        capabilities.container_set(add=("WIZARD",))


def test_a_refusal_wins_a_sub_architecture_conflict_whatever_the_rule_order():
    allow_first = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                   "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
                   "syscalls": [
                       {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 0xFFFFFFFFFFFFFFE0, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                       {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_GT"}]},
                       {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                        "args": [{"index": 0, "value": 0xFFFFFFFF, "valueTwo": 38, "op": "SCMP_CMP_MASKED_EQ"}]}]}
    compiled = compiler.build(profile.parse(json.dumps(allow_first).encode(), "p"), DEFAULT_CAPS)
    assert decide(compiled.bpf, "socket", 38) == "EPERM" and decide(compiled.bpf, "socket", 2) == "ALLOW"
    # socketcall(SYS_SOCKET, args in memory) cannot be filtered by family: it must stay refused, not allowed
    assert bpf.outcome(bpf.run(compiled.bpf, I386["socketcall"], (1, 0), bpf.AUDIT_ARCH_I386)) != "ALLOW"
    assert any("SCMP_ARCH_X86" in item for item in compiled.skipped)
