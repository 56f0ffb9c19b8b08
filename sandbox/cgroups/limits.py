"""Resource limits as data: Docker's flags parsed into :class:`Resources`, the cgroup v2 writes they become, and
the decision (:func:`decide`) of what enforces each one on this machine, kept in the spec as :class:`Limits`.

cgroup v2 values follow runc and crun: ``--cpus`` is ``cpu.max`` over a 100 ms period, ``--cpu-shares`` (cgroup
v1's 2..262144) maps onto ``cpu.weight`` (1..10000) as ``1 + (shares - 2) * 9999 / 262142``, ``--blkio-weight``
(10..1000) onto ``io.weight`` as ``1 + (weight - 10) * 9999 / 990`` (or ``io.bfq.weight`` as it is, where the
scheduler is BFQ), ``--memory-swap`` (memory plus swap, Docker's way) onto ``memory.swap.max`` as the difference,
``--memory-reservation`` onto ``memory.low``.

Without a delegated controller an rlimit stands in where one can: ``--memory`` → ``RLIMIT_DATA`` (per process:
brk and private writable mappings, so one big allocation fails), ``--pids-limit`` → ``RLIMIT_NPROC`` (counted per
user inside the container's own user namespace), ``--cpuset-cpus`` → ``sched_setaffinity``. The rest cannot be
stood in for: :func:`decide` refuses them unless best-effort.
"""

from __future__ import annotations

from sandbox.errors import InvalidRunOption, LimitUnavailable
from sandbox.valueclass import asdict, fields, valueclass

CPU_PERIOD = 100_000  # microseconds, Docker's and runc's default
MIN_MEMORY = 6 * 1024 * 1024  # Docker: "Minimum memory limit allowed is 6MB"
MODES = ("strict", "best-effort")

# Resources field -> (the flag, the cgroup v2 controller that enforces it)
FLAGS = {
    "memory": ("--memory", "memory"),
    "memory_swap": ("--memory-swap", "memory"),
    "memory_reservation": ("--memory-reservation", "memory"),
    "nano_cpus": ("--cpus", "cpu"),
    "cpu_shares": ("--cpu-shares", "cpu"),
    "cpu_weight": ("--cpu-weight", "cpu"),
    "cpuset_cpus": ("--cpuset-cpus", "cpuset"),
    "pids_limit": ("--pids-limit", "pids"),
    "blkio_weight": ("--blkio-weight", "io"),
}
# what stands in for a flag without its controller
FALLBACKS = {"memory": "RLIMIT_DATA", "pids_limit": "RLIMIT_NPROC", "cpuset_cpus": "sched_setaffinity"}
CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


@valueclass
class Ulimit:
    """One ``--ulimit name=soft[:hard]``; -1 is unlimited."""

    name: str
    soft: int
    hard: int

    def __str__(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"


@valueclass
class Resources:
    """What the user asked for, in Docker's HostConfig units; 0 (or "") is unset."""

    memory: int = 0  # bytes
    memory_swap: int = 0  # memory plus swap, bytes; -1 unlimited
    memory_reservation: int = 0  # bytes
    nano_cpus: int = 0  # 1e9 per CPU
    cpu_shares: int = 0
    cpu_weight: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0  # <= 0: unlimited
    blkio_weight: int = 0
    ulimits: tuple[Ulimit, ...] = ()

    def requested(self) -> list[str]:
        """The fields of :data:`FLAGS` that ask for something (a -1 swap or pids limit asks for no limit, and a swap
        of twice the memory is Docker's default, not a request)."""
        implied = self.memory_swap == 2 * self.memory
        return [name for name in FLAGS if _asks(name, getattr(self, name)) and not (name == "memory_swap" and implied)]

    def to_json(self) -> dict:
        data = asdict(self)
        data["ulimits"] = [[item.name, item.soft, item.hard] for item in self.ulimits]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Resources:
        """The resources :meth:`to_json` gave; ValueError (or TypeError) names a field of the wrong type."""
        values = {}
        for item in fields(cls):
            if item.name in data and item.name != "ulimits":
                value, expected = data[item.name], str if item.name == "cpuset_cpus" else int
                if not isinstance(value, expected) or isinstance(value, bool):
                    raise ValueError(f"resources field {item.name!r} must be of type {expected.__name__}")
                values[item.name] = value
        values["ulimits"] = tuple(Ulimit(str(n), int(s), int(h)) for n, s, h in data.get("ulimits", []))
        return cls(**values)


def _asks(name: str, value: object) -> bool:
    if name in ("memory_swap", "pids_limit"):
        return isinstance(value, int) and value > 0
    return bool(value)


@valueclass
class CgroupWrite:
    """One control file written in the container's cgroup before its pid 1 exists; where ``file`` is missing
    (``io.weight`` without blk-iocost) ``alternative`` is written instead."""

    controller: str
    file: str
    value: str
    alternative: tuple[str, str] | None = None


@valueclass
class Limits:
    """The create-time decision, kept in the spec: the request, the cgroup controllers the container's cgroup must
    have, and what pid 1 sets before exec (``--ulimit`` and the rlimit fallbacks, the cpu affinity)."""

    resources: Resources = Resources()
    controllers: tuple[str, ...] = ()
    rlimits: tuple[Ulimit, ...] = ()
    cpus: tuple[int, ...] = ()
    mode: str = "strict"
    cgroup_parent: str | None = None  # the configured delegated cgroup (else found from sbx's own)
    note: str | None = None  # the warning shown once, at create

    def cgroup_writes(self) -> list[CgroupWrite]:
        return [write for write in cgroup_writes(self.resources) if write.controller in self.controllers]

    def to_json(self) -> dict:
        return {
            "resources": self.resources.to_json(),
            "controllers": list(self.controllers),
            "rlimits": [[item.name, item.soft, item.hard] for item in self.rlimits],
            "cpus": list(self.cpus),
            "mode": self.mode,
            "cgroup_parent": self.cgroup_parent,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: object) -> Limits:
        """The limits :meth:`to_json` gave (ValueError names what is wrong)."""
        if not isinstance(data, dict):
            raise ValueError("limits must be a JSON object")
        try:
            return cls(
                resources=Resources.from_json(data["resources"]),
                controllers=tuple(str(c) for c in data["controllers"] if c in CONTROLLERS),
                rlimits=tuple(Ulimit(str(n), int(s), int(h)) for n, s, h in data["rlimits"]),
                cpus=tuple(int(cpu) for cpu in data["cpus"]),
                mode=str(data["mode"]),
                cgroup_parent=data.get("cgroup_parent"),
                note=data.get("note"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"limits are damaged: {error}") from None


def host_config(data: dict) -> dict:
    """Docker's HostConfig fields for the Resources JSON ``data`` (`inspect`); PidsLimit and Ulimits are null unset."""
    try:
        resources = Resources.from_json(data) if data else Resources()
    except (TypeError, ValueError):  # a damaged record: `start` says so; inspect shows what it can
        resources = Resources()
    return {
        "Memory": resources.memory,
        "MemorySwap": resources.memory_swap,
        "MemoryReservation": resources.memory_reservation,
        "NanoCpus": resources.nano_cpus,
        "CpuShares": resources.cpu_shares,
        "CpuWeight": resources.cpu_weight,
        "CpusetCpus": resources.cpuset_cpus,
        "PidsLimit": resources.pids_limit if resources.pids_limit > 0 else None,
        "BlkioWeight": resources.blkio_weight,
        "Ulimits": [{"Name": item.name, "Soft": item.soft, "Hard": item.hard} for item in resources.ulimits] or None,
    }


# -- parsing Docker's flags ------------------------------------------------------------------------------------------


def parse_resources(flags: dict, online_cpus: frozenset[int]) -> Resources:
    """Docker's flags (the CLI's raw values; None or "" when not given) as :class:`Resources`, checked as Docker
    checks them. ``online_cpus``: the CPUs this process may run on (``--cpus`` and ``--cpuset-cpus`` are bounded
    by them)."""
    memory = parse_bytes(flags.get("memory"), "--memory")
    if memory and memory < MIN_MEMORY:
        raise InvalidRunOption("minimum memory limit allowed is 6MB", hint="give --memory 6m or more")
    swap_text = flags.get("memory_swap")
    memory_swap = -1 if str(swap_text).strip() == "-1" else parse_bytes(swap_text, "--memory-swap")
    if memory_swap > 0 and not memory:
        raise InvalidRunOption("you should always set the memory limit when using memoryswap limit",
                               hint="give --memory too")
    if memory_swap > 0 and memory_swap < memory:
        raise InvalidRunOption("minimum memoryswap limit should be larger than memory limit",
                               hint="--memory-swap counts memory plus swap; give -1 for unlimited swap")
    if memory and not memory_swap:
        memory_swap = 2 * memory  # Docker's default: as much swap as memory
    reservation = parse_bytes(flags.get("memory_reservation"), "--memory-reservation")
    if memory and reservation > memory:
        raise InvalidRunOption("minimum memory limit can not be less than memory reservation limit",
                               hint="give a --memory-reservation below --memory")
    nano_cpus = parse_cpus(flags.get("cpus"), len(online_cpus))
    shares = _int(flags.get("cpu_shares"), "--cpu-shares")
    if shares and not 2 <= shares <= 262144:
        raise InvalidRunOption(f"invalid --cpu-shares {shares}", hint="give a value from 2 to 262144 (default 1024)")
    weight = _int(flags.get("cpu_weight"), "--cpu-weight")
    if weight and not 1 <= weight <= 10000:
        raise InvalidRunOption(f"invalid --cpu-weight {weight}", hint="give a value from 1 to 10000 (default 100)")
    if shares and weight:
        raise InvalidRunOption("--cpu-shares and --cpu-weight both set the cpu weight", hint="give one of them")
    cpuset = (flags.get("cpuset_cpus") or "").strip()
    if cpuset:
        missing = sorted(parse_cpu_list(cpuset) - online_cpus)
        if missing:
            raise InvalidRunOption(f"requested CPUs are not available - requested {cpuset}, available: "
                                   f"{format_cpu_list(online_cpus)}", hint="give CPUs from the available list")
    blkio = _int(flags.get("blkio_weight"), "--blkio-weight")
    if blkio and not 10 <= blkio <= 1000:
        raise InvalidRunOption("range of blkio weight is from 10 to 1000", hint="give --blkio-weight 10 to 1000")
    pids = _int(flags.get("pids_limit"), "--pids-limit")
    ulimits = {}
    for text in flags.get("ulimit") or ():
        item = parse_ulimit(text)
        ulimits[item.name] = item
    return Resources(memory=memory, memory_swap=memory_swap, memory_reservation=reservation, nano_cpus=nano_cpus,
                     cpu_shares=shares, cpu_weight=weight, cpuset_cpus=cpuset, pids_limit=pids, blkio_weight=blkio,
                     ulimits=tuple(ulimits.values()))


def parse_bytes(text: object, flag: str) -> int:
    """Docker's RAMInBytes: ``512m``, ``1g``, ``1.5G``, ``1024`` (bytes); powers of 1024."""
    if text is None or str(text).strip() == "":
        return 0
    number = str(text).strip().lower()
    for suffix in ("ib", "b"):
        if number.endswith(suffix) and len(number) > len(suffix):
            number = number.removesuffix(suffix)
            break
    unit = number[-1] if number and number[-1] in _UNITS else ""
    digits = number[: len(number) - len(unit)].strip()
    whole, _, fraction = digits.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or (unit == "" and number != digits):
        raise InvalidRunOption(f"invalid size for {flag}: {str(text)[:40]!r}", hint="give a size like 512m or 2g")
    return int(float(digits) * _UNITS[unit])


def parse_cpus(text: object, online: int) -> int:
    if text is None or str(text).strip() == "":
        return 0
    try:
        value = float(str(text))
    except ValueError:
        raise InvalidRunOption(f"invalid value for --cpus: {str(text)[:40]!r}", hint="give a number like 1.5") from None
    nano = round(value * 1e9) if 0.01 <= value <= online else 0  # NaN and infinity too
    if not 10_000_000 <= nano <= online * 1_000_000_000:
        raise InvalidRunOption(
            f"range of CPUs is from 0.01 to {online}.00, as there are only {online} CPUs available",
            hint="give a smaller --cpus",
        )
    return nano


def parse_cpu_list(text: str) -> frozenset[int]:
    """A cpuset list (``0-3,5``) as its CPUs."""
    cpus = set()
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise InvalidRunOption(f"invalid value {text[:40]!r} for cpuset cpus", hint="give a list like 0-3,5")
        low, high = int(first), int(last or first)
        if high < low or high >= 8192:
            raise InvalidRunOption(f"invalid range {part!r} in cpuset cpus", hint="give a list like 0-3,5")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int]) -> str:
    ranges, ordered = [], sorted(cpus)
    for cpu in ordered:
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def parse_ulimit(text: str) -> Ulimit:
    """Docker's ``--ulimit name=soft[:hard]`` (hard defaults to soft; -1 is unlimited)."""
    from sandbox.kernel.constants import RLIMITS

    name, sep, values = str(text).partition("=")
    name = name.strip().lower()
    if not sep or name not in RLIMITS:
        raise InvalidRunOption(f"invalid ulimit argument: {str(text)[:60]!r}",
                               hint=f"use name=soft[:hard] with a name of {', '.join(RLIMITS)}")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise InvalidRunOption(f"invalid ulimit value: {str(text)[:60]!r}", hint="give whole numbers") from None
    if soft < -1 or hard < -1:
        raise InvalidRunOption(f"invalid ulimit value: {str(text)[:60]!r}", hint="give -1 for unlimited")
    if hard != -1 and (soft == -1 or soft > hard):
        raise InvalidRunOption(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return Ulimit(name, soft, hard)


def _int(value: object, flag: str) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidRunOption(f"invalid value for {flag}: {str(value)[:40]!r}", hint="give a whole number") from None


# -- the cgroup v2 files ---------------------------------------------------------------------------------------------


def cgroup_writes(resources: Resources) -> list[CgroupWrite]:
    """The control files and values for ``resources``, in the order runc writes them."""
    writes = []
    if resources.memory:
        writes.append(CgroupWrite("memory", "memory.max", str(resources.memory)))
    if resources.memory_swap == -1:
        writes.append(CgroupWrite("memory", "memory.swap.max", "max"))
    elif resources.memory_swap > 0 and resources.memory:
        writes.append(CgroupWrite("memory", "memory.swap.max", str(resources.memory_swap - resources.memory)))
    if resources.memory_reservation:
        writes.append(CgroupWrite("memory", "memory.low", str(resources.memory_reservation)))
    if resources.nano_cpus:
        quota = max(1000, resources.nano_cpus * CPU_PERIOD // 1_000_000_000)
        writes.append(CgroupWrite("cpu", "cpu.max", f"{quota} {CPU_PERIOD}"))
    weight = resources.cpu_weight or (1 + (resources.cpu_shares - 2) * 9999 // 262142 if resources.cpu_shares else 0)
    if weight:
        writes.append(CgroupWrite("cpu", "cpu.weight", str(weight)))
    if resources.cpuset_cpus:
        writes.append(CgroupWrite("cpuset", "cpuset.cpus", resources.cpuset_cpus))
    if resources.pids_limit > 0:
        writes.append(CgroupWrite("pids", "pids.max", str(resources.pids_limit)))
    if resources.blkio_weight:
        io_weight = 1 + (resources.blkio_weight - 10) * 9999 // 990
        writes.append(CgroupWrite("io", "io.bfq.weight", str(resources.blkio_weight),
                                  alternative=("io.weight", f"default {io_weight}")))
    return writes


# -- what enforces what, here ----------------------------------------------------------------------------------------


def decide(resources: Resources, delegation, *, mode: str = "strict", cgroup_parent: str | None = None) -> Limits:
    """Choose, per flag, the cgroup controller (when ``delegation`` has it) or the rlimit standing in for it;
    refuse (:class:`LimitUnavailable`) a flag nothing enforces unless ``mode`` is best-effort. ``delegation`` is a
    :class:`sandbox.cgroups.delegation.Delegation`. The warning for what is not a cgroup limit is ``note``."""
    if mode not in MODES:
        raise InvalidRunOption(f"invalid --limits {mode!r}", hint="use strict or best-effort")
    controllers, fallbacks, unenforced = set(), [], []
    for name in resources.requested():
        flag, controller = FLAGS[name]
        if controller in delegation.controllers:
            controllers.add(controller)
        elif name in FALLBACKS:
            fallbacks.append(name)
        else:
            unenforced.append(flag)
    if unenforced and mode != "best-effort":
        missing = sorted({FLAGS[name][1] for name in resources.requested()} - set(delegation.controllers))
        raise LimitUnavailable(
            f"cannot enforce {', '.join(unenforced)}: no cgroup v2 {'/'.join(missing)} controller is delegated to you"
            f" ({delegation.reason})",
            hint=f"{delegation.fix}; or run with --limits=best-effort (or limits = \"best-effort\" in the config) "
                 "to go on without",
        )
    rlimits = list(resources.ulimits)
    cpus: tuple[int, ...] = ()
    said = []
    for name in fallbacks:
        if name == "memory":
            rlimits.append(Ulimit("data", resources.memory, resources.memory))
            said.append("--memory as RLIMIT_DATA per process")
        elif name == "pids_limit":
            rlimits.append(Ulimit("nproc", resources.pids_limit, resources.pids_limit))
            said.append("--pids-limit as RLIMIT_NPROC")
        elif name == "cpuset_cpus":
            cpus = tuple(sorted(parse_cpu_list(resources.cpuset_cpus)))
            said.append("--cpuset-cpus as the cpu affinity")
    note = None
    if fallbacks or unenforced:
        parts = []
        if said:
            parts.append("enforcing " + ", ".join(said))
        if unenforced:
            parts.append("NOT enforcing " + ", ".join(unenforced))
        missing = sorted({FLAGS[name][1] for name in resources.requested()} - controllers)
        note = (f"WARNING: no cgroup v2 {'/'.join(missing)} controller is delegated to you ({delegation.reason}): "
                f"{'; '.join(parts)}. To get cgroup limits: {delegation.fix}")
    return Limits(resources=resources, controllers=tuple(sorted(controllers)), rlimits=tuple(rlimits), cpus=cpus,
                  mode=mode, cgroup_parent=cgroup_parent, note=note)


def apply_in_process(kernel, limits: Limits, exit_code: int = 125) -> None:
    """In the container's pid 1 or an exec'ed command, just before exec: the rlimits (``--ulimit``, the fallbacks),
    then the affinity. A refused rlimit (raising a hard limit needs CAP_SYS_RESOURCE in the host's namespace) is a
    start error, with ``exit_code``."""
    from sandbox.errors import ContainerStartError
    from sandbox.kernel.constants import RLIM_INFINITY, RLIMITS

    for item in limits.rlimits:
        soft = RLIM_INFINITY if item.soft == -1 else item.soft
        hard = RLIM_INFINITY if item.hard == -1 else item.hard
        try:
            kernel.setrlimit(RLIMITS[item.name], soft, hard)
        except OSError as error:
            raise ContainerStartError(
                f"cannot set ulimit {item}: {error.strerror or error}", exit_code=exit_code,
                hint="a hard limit above your own cannot be granted without privileges (see ulimit -H -a)",
            ) from None
    if limits.cpus:
        try:
            kernel.sched_setaffinity(0, frozenset(limits.cpus))
        except OSError as error:
            raise ContainerStartError(f"cannot set the cpu affinity to {limits.resources.cpuset_cpus}: "
                                      f"{error.strerror or error}", exit_code=exit_code) from None
