"""Seccomp profiles in Docker's JSON schema: load, validate, and resolve the conditional rules.

The schema (moby's ``profiles/seccomp``, also Podman's and the OCI runtime spec's ``linux.seccomp``)::

    {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
     "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
     "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1,
                   "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                   "includes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["amd64"], "minKernel": "4.8"},
                   "excludes": {...}, "comment": "..."}]}

A rule applies (Docker's rule) when every capability in ``includes.caps`` is in the container's set, its arch
(Go's name: ``amd64``, ``arm64``) is in ``includes.arches``, and the kernel is at least ``includes.minKernel``;
and none of ``excludes`` holds: no capability of ``excludes.caps`` is in the set, the arch is not in
``excludes.arches``, the kernel is below ``excludes.minKernel``.

Anything this module does not understand is an :class:`InvalidSecurityProfile`, never a rule silently dropped:
a profile that fails to load must never leave a container unconfined by accident. Which syscall names exist is
libseccomp's knowledge, checked by :mod:`sandbox.security.compiler`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from sandbox.errors import InvalidSecurityProfile
from sandbox.security import capabilities
from sandbox.security.sources import PROFILE_LIMIT, read_limited
from sandbox.valueclass import valueclass

ACTIONS = (
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
)
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ")
ARCHES = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
)
# uname -m → (libseccomp's name for the native arch, Go's name that includes/excludes.arches use)
MACHINES = {"x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64")}
# the keys of the top level and of a rule that are known but change nothing for sbx
_IGNORED_TOP = ("comment", "flags", "listenerPath", "listenerMetadata")
_SYSCALL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_U64 = (1 << 64) - 1


@valueclass
class Conditions:
    caps: tuple[str, ...] = ()  # without CAP_, as in capabilities.NAMES
    arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


@valueclass
class Argument:
    index: int
    op: str
    value: int
    value_two: int = 0


@valueclass
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None = None
    args: tuple[Argument, ...] = ()
    includes: Conditions = Conditions()
    excludes: Conditions = Conditions()

    def applies(self, caps: int, arch: str, kernel: tuple[int, int]) -> bool:
        """Docker's rule (see the module docstring) for a container with capability mask ``caps``."""
        have = set(capabilities.names(caps))
        if self.excludes.arches and arch in self.excludes.arches:
            return False
        if any(cap in have for cap in self.excludes.caps):
            return False
        if self.excludes.min_kernel is not None and kernel >= self.excludes.min_kernel:
            return False
        if self.includes.arches and arch not in self.includes.arches:
            return False
        if not all(cap in have for cap in self.includes.caps):
            return False
        return not (self.includes.min_kernel is not None and kernel < self.includes.min_kernel)


@valueclass
class Profile:
    name: str
    digest: str  # sha256 of the file's bytes: the compiled filter's cache key starts with it
    default_action: str
    default_errno: int | None
    arch_map: dict[str, tuple[str, ...]]
    architectures: tuple[str, ...]
    rules: tuple[Rule, ...]
    no_new_privs: bool = False

    def arches_for(self, native: str) -> tuple[str, ...]:
        """The sub-architectures to add beside ``native``: archMap's entry for it, else ``architectures`` (the
        older schema) minus the native one."""
        if native in self.arch_map:
            return self.arch_map[native]
        return tuple(arch for arch in self.architectures if arch != native)

    def resolve(self, caps: int, arch: str, kernel: tuple[int, int]) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.applies(caps, arch, kernel))


def parse(raw: bytes, name: str) -> Profile:
    """The profile in ``raw`` (named ``name`` in errors); InvalidSecurityProfile names the first problem."""
    if len(raw) > PROFILE_LIMIT:
        raise _invalid(name, f"is larger than {PROFILE_LIMIT // (1024 * 1024)} MiB")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise _invalid(name, f"is not valid JSON ({str(error)[:80]})") from None
    if not isinstance(data, dict):
        raise _invalid(name, "must be a JSON object")
    # "noNewPrivileges" is sbx's one extension (Docker and Podman ignore unknown fields): ci.json asks for it
    # Podman's profiles (containers/common) also name the errno: "defaultErrno": "ENOSYS", a rule's "errno": "EPERM"
    known = ("defaultAction", "defaultErrnoRet", "defaultErrno", "archMap", "architectures", "syscalls",
             "noNewPrivileges", *_IGNORED_TOP)
    _only(data, known, name, "the profile")
    default_action = _action(data.get("defaultAction"), name, "defaultAction")
    default_errno = _errno_of(data, "defaultErrnoRet", "defaultErrno", name, "the profile")
    arch_map: dict[str, tuple[str, ...]] = {}
    for index, entry in enumerate(_list(data.get("archMap"), name, "archMap")):
        where = f"archMap[{index}]"
        if not isinstance(entry, dict):
            raise _invalid(name, f"{where} must be an object")
        _only(entry, ("architecture", "subArchitectures"), name, where)
        arch = _arch(entry.get("architecture"), name, f"{where}.architecture")
        subs = _list(entry.get("subArchitectures"), name, f"{where}.subArchitectures")
        arch_map[arch] = tuple(_arch(sub, name, f"{where}.subArchitectures") for sub in subs)
    architectures = tuple(_arch(arch, name, "architectures")
                          for arch in _list(data.get("architectures"), name, "architectures"))
    rules = tuple(_rule(entry, name, f"syscalls[{index}]")
                  for index, entry in enumerate(_list(data.get("syscalls"), name, "syscalls")))
    no_new_privs = data.get("noNewPrivileges", False)
    if not isinstance(no_new_privs, bool):
        raise _invalid(name, "noNewPrivileges must be true or false")
    return Profile(name, "sha256:" + hashlib.sha256(raw).hexdigest(), default_action, default_errno, arch_map,
                   architectures, rules, no_new_privs)


def load(path: str, name: str | None = None) -> Profile:
    """Read and parse the profile file at ``path``."""
    return parse(read_limited(path), name or path)


def native_machine() -> tuple[str, str]:
    """(libseccomp's arch name, Go's arch name) of this machine."""
    machine = os.uname().machine
    if machine not in MACHINES:
        raise InvalidSecurityProfile(f"seccomp profiles are not supported on {machine}",
                                     hint="run with --security-opt seccomp=unconfined")
    return MACHINES[machine]


# -- validation -----------------------------------------------------------------------------------------------------


def _invalid(name: str, reason: str) -> InvalidSecurityProfile:
    return InvalidSecurityProfile(f"invalid seccomp profile {name}: {reason}")


def _only(data: dict, known: tuple[str, ...], name: str, where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise _invalid(name, f"{where} has an unknown field {unknown[0][:60]!r}")


def _list(value: object, name: str, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(name, f"{where} must be a list")
    return value


def _action(value: object, name: str, where: str) -> str:
    if value == "SCMP_ACT_NOTIFY":
        raise _invalid(name, f"{where}: SCMP_ACT_NOTIFY needs a seccomp agent, which sbx does not run")
    if value not in ACTIONS:
        raise _invalid(name, f"{where} is not a known action: {str(value)[:60]!r}")
    return value


def _arch(value: object, name: str, where: str) -> str:
    if value not in ARCHES:
        raise _invalid(name, f"{where} names an unknown architecture {str(value)[:60]!r}")
    return value


def _errno(value: object, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4095:
        raise _invalid(name, f"{where} must be an errno number (0-4095)")
    return value


def _errno_of(data: dict, number_key: str, name_key: str, name: str, where: str) -> int | None:
    """The errno of ``number_key`` (Docker), else of ``name_key`` (Podman: "EPERM"); both must agree."""
    import errno as errno_codes

    number = _errno(data.get(number_key), name, f"{where}.{number_key}")
    spelled = data.get(name_key)
    if spelled is None:
        return number
    code = getattr(errno_codes, spelled, None) if isinstance(spelled, str) and spelled.startswith("E") else None
    if not isinstance(code, int):
        raise _invalid(name, f"{where}.{name_key} is not an errno name: {str(spelled)[:40]!r}")
    if number is not None and number != code:
        raise _invalid(name, f"{where}: {number_key} {number} and {name_key} {spelled} disagree")
    return code


def _number(value: object, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64:
        raise _invalid(name, f"{where} must be an unsigned 64-bit number")
    return value


def _conditions(value: object, name: str, where: str) -> Conditions:
    if value is None:
        return Conditions()
    if not isinstance(value, dict):
        raise _invalid(name, f"{where} must be an object")
    _only(value, ("caps", "arches", "minKernel"), name, where)
    caps = []
    for cap in _list(value.get("caps"), name, f"{where}.caps"):
        text = str(cap).upper()
        text = text[4:] if text.startswith("CAP_") else text
        if not isinstance(cap, str) or text not in capabilities.NUMBERS:
            raise _invalid(name, f"{where}.caps names an unknown capability {str(cap)[:60]!r}")
        caps.append(text)
    arches = _list(value.get("arches"), name, f"{where}.arches")
    if not all(isinstance(arch, str) and arch for arch in arches):
        raise _invalid(name, f"{where}.arches must be a list of names")
    min_kernel = value.get("minKernel")
    version = None
    if min_kernel is not None:
        match = re.fullmatch(r"(\d{1,4})\.(\d{1,4})(?:\.\d{1,6})?", str(min_kernel)) if isinstance(
            min_kernel, str) else None
        if match is None:
            raise _invalid(name, f"{where}.minKernel must be a version like \"4.8\"")
        version = (int(match.group(1)), int(match.group(2)))
    return Conditions(tuple(caps), tuple(arches), version)


def _rule(entry: object, name: str, where: str) -> Rule:
    if not isinstance(entry, dict):
        raise _invalid(name, f"{where} must be an object")
    _only(entry, ("names", "name", "action", "errnoRet", "errno", "args", "includes", "excludes", "comment"), name,
          where)
    names = _list(entry.get("names"), name, f"{where}.names")
    if entry.get("name") is not None:  # the schema before Docker 17.04: one name per rule
        names = [*names, entry["name"]]
    if not names:
        raise _invalid(name, f"{where} names no syscall")
    for syscall in names:
        if not isinstance(syscall, str) or not _SYSCALL_NAME.match(syscall):
            raise _invalid(name, f"{where} has an invalid syscall name {str(syscall)[:60]!r}")
    action = _action(entry.get("action"), name, f"{where}.action")
    errno = _errno_of(entry, "errnoRet", "errno", name, where)
    args = []
    for index, item in enumerate(_list(entry.get("args"), name, f"{where}.args")):
        here = f"{where}.args[{index}]"
        if not isinstance(item, dict):
            raise _invalid(name, f"{here} must be an object")
        _only(item, ("index", "value", "valueTwo", "op"), name, here)
        position = item.get("index")
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= 5:
            raise _invalid(name, f"{here}.index must be 0-5")
        op = item.get("op")
        if op not in OPERATORS:
            raise _invalid(name, f"{here}.op is not a known comparison: {str(op)[:60]!r}")
        args.append(Argument(position, op, _number(item.get("value", 0), name, f"{here}.value"),
                             _number(item.get("valueTwo", 0), name, f"{here}.valueTwo")))
    if len({arg.index for arg in args}) != len(args):
        raise _invalid(name, f"{where} compares one argument twice (libseccomp allows one comparison per argument)")
    return Rule(tuple(names), action, errno, tuple(args), _conditions(entry.get("includes"), name,
                f"{where}.includes"), _conditions(entry.get("excludes"), name, f"{where}.excludes"))
