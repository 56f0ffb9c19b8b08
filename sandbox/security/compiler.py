"""A resolved seccomp profile → a classic BPF program, compiled by libseccomp (through ``pyseccomp``).

The program is exported as bytes (``seccomp_export_bpf``) rather than loaded by libseccomp, so that:

- the container's process loads it with one seccomp(2) call (:meth:`sandbox.kernel.libc.Kernel.seccomp_filter`),
  after pivot_root, when neither libseccomp nor the policy files are reachable any more;
- it can be cached: building Docker's profile costs a few milliseconds plus ~20 ms to import pyseccomp and load
  libseccomp (B9), so the bytes are kept per (profile digest, capability set, machine, kernel) under the store,
  and a container start with a cached filter imports nothing of libseccomp.

Each architecture (the native one and the profile's archMap sub-architectures, e.g. x32 and i386 on x86_64) is
built as its own filter and merged, so that a rule libseccomp cannot express on one arch (socket() is multiplexed
through socketcall() on i386: its arguments are in memory, out of seccomp's reach) affects that arch alone. Such a
conflict keeps the refusal: refusing rules are added before allowing ones, and an allowing rule that conflicts is
left out, so the syscall falls to the refusal or the default action (fail closed, never open).

Syscall names libseccomp does not know (newer than libseccomp, or typos) are left out of an allowing rule when
the default action refuses (the syscall stays refused), and are an InvalidSecurityProfile in a refusing rule
(the refusal would silently not happen).
"""

from __future__ import annotations

import errno
import os

from sandbox.errors import InvalidSecurityProfile
from sandbox.security.profile import Profile, Rule, native_machine
from sandbox.security.sources import kernel_version
from sandbox.valueclass import valueclass

_REFUSING = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
             "SCMP_ACT_TRACE")


@valueclass
class Compiled:
    bpf: bytes  # struct sock_filter[] in the machine's byte order, 8 bytes per instruction
    skipped: tuple[str, ...] = ()  # "name (why)" for each rule left out, for `sbx policy check`


def build(profile: Profile, caps: int, machine: str | None = None, kernel: tuple[int, int] | None = None
          ) -> Compiled:
    """Compile ``profile`` for a container whose capability mask is ``caps`` (InvalidSecurityProfile if it
    cannot be)."""
    import pyseccomp

    native, goarch = native_machine() if machine is None else machine_names(machine)
    kernel = kernel or kernel_version()
    rules = profile.resolve(caps, goarch, kernel)
    ordered = [rule for rule in rules if rule.action in _REFUSING] + [
        rule for rule in rules if rule.action not in _REFUSING]
    default = _action_code(pyseccomp, profile.default_action, profile.default_errno)
    skipped: list[str] = []
    merged = None
    for arch in (native, *profile.arches_for(native)):
        arch_filter = pyseccomp.SyscallFilter(default)
        # a binary tree of syscall numbers rather than libseccomp's linear chain: 10-20 BPF instructions run per
        # ordinary syscall instead of up to ~250 (ioctl: 100 instead of 760), at ~20% more instructions in all
        arch_filter.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)
        if arch != native:
            try:
                arch_filter.add_arch(getattr(pyseccomp.Arch, arch[len("SCMP_ARCH_"):]))
            except OSError as error:
                raise _invalid(profile, f"libseccomp cannot add {arch} beside {native}: {error.strerror}") from None
            arch_filter.remove_arch(pyseccomp.Arch.NATIVE)
        for rule in ordered:
            _add_rule(pyseccomp, arch_filter, rule, profile, arch, skipped)
        if merged is None:
            merged = arch_filter
        else:
            merged.merge(arch_filter)
    fd = os.memfd_create("sbx-seccomp", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as handle:
            merged.export_bpf(handle)
        size = os.lseek(fd, 0, os.SEEK_CUR)
        bpf = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    return Compiled(bpf, tuple(dict.fromkeys(skipped)))


def machine_names(machine: str) -> tuple[str, str]:
    from sandbox.security.profile import MACHINES

    return MACHINES[machine]


def _add_rule(pyseccomp, arch_filter, rule: Rule, profile: Profile, arch: str, skipped: list[str]) -> None:
    action = _action_code(pyseccomp, rule.action, rule.errno)
    # a rule that does what the default does changes nothing (libseccomp refuses it with EACCES)
    same_as_default = action == _action_code(pyseccomp, profile.default_action, profile.default_errno)
    refusing = rule.action in _REFUSING
    default_refuses = profile.default_action in _REFUSING
    args = [pyseccomp.Arg(arg.index, getattr(pyseccomp, arg.op[len("SCMP_CMP_"):]), arg.value, arg.value_two)
            for arg in rule.args]
    for name in rule.names:
        number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
        if number == -1:  # __NR_SCMP_ERROR: libseccomp knows no such syscall on any arch
            if refusing or not default_refuses:
                raise _invalid(profile, f"unknown syscall {name!r} (libseccomp does not know it, so this rule "
                                        "could not be enforced)")
            skipped.append(f"{name} (unknown to libseccomp: stays refused)")
            continue
        if same_as_default:
            continue
        try:
            arch_filter.add_rule(action, number, *args)
        except OSError as error:
            if error.errno == errno.EEXIST:  # refusals went first: the one already there wins
                skipped.append(f"{name} on {arch} (conflicts with a refusal there: stays refused)")
                continue
            raise _invalid(profile, f"libseccomp refused the rule for {name!r} on {arch}: "
                                    f"{error.strerror}") from None


def _action_code(pyseccomp, action: str, errno_ret: int | None) -> int:
    if action == "SCMP_ACT_ALLOW":
        return pyseccomp.ALLOW
    if action == "SCMP_ACT_ERRNO":
        return pyseccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
    if action == "SCMP_ACT_TRACE":
        return pyseccomp.TRACE(errno.EPERM if errno_ret is None else errno_ret)
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return pyseccomp.KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return pyseccomp.KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return pyseccomp.TRAP
    return pyseccomp.LOG


def _invalid(profile: Profile, reason: str) -> InvalidSecurityProfile:
    return InvalidSecurityProfile(f"invalid seccomp profile {profile.name}: {reason}")


@valueclass
class Summary:
    """What a profile does for one capability set on this machine (`sbx policy check`)."""

    default: str  # "SCMP_ACT_ERRNO (ENOSYS)"
    arches: tuple[str, ...]
    allowed: tuple[str, ...]  # unconditionally
    conditional: tuple[str, ...]  # "ioctl (allowed when ...)" : syscalls whose outcome depends on arguments
    refused: tuple[str, ...]  # "mount (EPERM)"
    skipped: tuple[str, ...]
    instructions: int


def summarize(profile: Profile, caps: int) -> Summary:
    """The profile resolved for capability mask ``caps`` on this machine, compiled (so an invalid one raises)."""
    native, goarch = native_machine()
    compiled = build(profile, caps)
    allowed, conditional, refused = {}, {}, {}
    for rule in profile.resolve(caps, goarch, kernel_version()):
        outcome = _describe_action(rule.action, rule.errno)
        for name in rule.names:
            if rule.args:
                conditional.setdefault(name, set()).add(outcome)
            elif rule.action == "SCMP_ACT_ALLOW":
                allowed[name] = outcome
            else:
                refused[name] = outcome
    return Summary(
        default=_describe_action(profile.default_action, profile.default_errno),
        arches=(native, *profile.arches_for(native)),
        allowed=tuple(sorted(allowed)),
        conditional=tuple(f"{name} ({' or '.join(sorted(outcomes))}, by argument)"
                          for name, outcomes in sorted(conditional.items()) if name not in allowed),
        refused=tuple(f"{name} ({outcome})" for name, outcome in sorted(refused.items()) if name not in allowed),
        skipped=compiled.skipped,
        instructions=len(compiled.bpf) // 8,
    )


def _describe_action(action: str, errno_ret: int | None) -> str:
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        code = errno.EPERM if errno_ret is None else errno_ret
        return f"{action[len('SCMP_ACT_'):]} {errno.errorcode.get(code, code)}"
    return action[len("SCMP_ACT_"):]
