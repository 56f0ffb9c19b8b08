"""Shared helpers for the benchmarks: running commands (as the unprivileged bench user), timing, statistics, facts
about the machine, and the result table.

Everything here is standard library only: the harness runs with any Python 3.11 and never imports sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import pwd
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(os.environ.get("SBX_BENCH_DIR", "/var/tmp/sbx-bench"))
BENCH_USER = os.environ.get("SBX_BENCH_USER", "sbxtest")
RESULTS_DIR = Path(os.environ.get("SBX_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
# sbx installed as users install it (pip install ., not editable), world-readable: scripts/bench-install.sh
SBX_BENCH_VENV = f"{os.environ.get('SBX_TEST_ROOT') or '/var/tmp/sbx-test'}/bench-venv"
DEFAULT_SBX_VENV_PY = f"{SBX_BENCH_VENV}/bin/python"
DEFAULT_SBX = f"{SBX_BENCH_VENV}/bin/sbx"
INSTALL_HINT = ("run `make bench` (or, as root, scripts/bench-install.sh after "
                "SBX_INSTALL_ONLY=1 scripts/test-integration.sh)")


class BenchError(Exception):
    """A step of the harness failed; the message says what and why."""


def sbx_cmd() -> list[str]:
    """How the benchmarks start sbx: $SBX_BENCH_CMD (shell words), else the ``sbx`` console script of the bench's
    own install (:data:`DEFAULT_SBX`), as a user who ran ``pip install .`` starts it: no ``-m`` (runpy costs ~4 ms),
    no editable path, byte-compiled by pip (the bench user could not write a missing .pyc: every command would
    recompile sbx)."""
    env_cmd = os.environ.get("SBX_BENCH_CMD")
    if env_cmd:
        return shlex.split(env_cmd)
    if not Path(DEFAULT_SBX).exists():
        raise BenchError(f"sbx is not installed for the bench ({DEFAULT_SBX}); {INSTALL_HINT}, or set SBX_BENCH_CMD")
    return [DEFAULT_SBX]


def interpreter_of(cmd: list[str]) -> str:
    """The Python that runs ``cmd``: its first word when that is a python, else the script's ``#!`` interpreter."""
    if os.path.basename(cmd[0]).startswith("python"):
        return cmd[0]
    with open(cmd[0], "rb") as script:
        first = script.readline().decode(errors="replace")
    if not first.startswith("#!"):
        raise BenchError(f"{cmd[0]} is neither a python nor a python script")
    return first[2:].split()[0]


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class User:
    """Who the timed commands run as. As root we drop to BENCH_USER with runuser; otherwise we run as ourselves."""

    name: str
    uid: int
    gid: int
    home: Path

    @classmethod
    def resolve(cls) -> User:
        if is_root():
            try:
                pw = pwd.getpwnam(BENCH_USER)
            except KeyError as e:
                raise BenchError(f"user {BENCH_USER!r} does not exist; run scripts/bench-setup.sh as root") from e
        else:
            pw = pwd.getpwuid(os.geteuid())
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir))

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def wrap(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        """argv run as this user with a clean, explicit environment."""
        base = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
        }
        base.update(env or {})
        cmd = ["env", "-i", *[f"{k}={v}" for k, v in base.items()], *argv]
        if self.switches:
            cmd = ["runuser", "-u", self.name, "--", *cmd]
        return cmd

    def mkdir(self, path: Path, mode: int = 0o755) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
        if self.switches:
            os.chown(path, self.uid, self.gid)
        return path


def run(
    argv: list[str], *, check: bool = True, timeout: float | None = 600, what: str | None = None, **kw: Any
) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; on failure raise BenchError naming `what` (default: the command line)
    with the tail of its output."""
    what = what or shlex.join(argv)
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError as e:
        raise BenchError(f"{argv[0]}: not installed") from e
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: timed out after {timeout}s") from e
    if check and cp.returncode != 0:
        raise BenchError(f"{what} exited {cp.returncode}: {tail(cp.stderr or cp.stdout)}")
    return cp


def tail(text: str, lines: int = 6) -> str:
    out = "\n".join(line for line in (text or "").strip().splitlines()[-lines:])
    return out or "(no output)"


def timed(argv: list[str], timeout: float = 600, what: str | None = None) -> float:
    """Wall-clock seconds of one command; raises BenchError if it fails."""
    t0 = time.perf_counter()
    run(argv, timeout=timeout, what=what)
    return time.perf_counter() - t0


@contextlib.contextmanager
def exclusive(name: str = "bench", wait_s: float = 1800) -> Iterator[None]:
    """One benchmark run at a time per BENCH_DIR (they share the registry, the image and the scratch stores).
    A second run waits for the first, up to wait_s."""
    try:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create {BENCH_DIR}: {e}; run as root or set SBX_BENCH_DIR") from e
    if not os.access(BENCH_DIR, os.W_OK):
        raise BenchError(
            f"{BENCH_DIR} is not writable by uid {os.geteuid()}: run the benchmarks as root (they drop to "
            f"{BENCH_USER} for every timed command) or point SBX_BENCH_DIR at a directory of your own"
        )
    path = BENCH_DIR / f".{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another benchmark run holds {path}; waiting for it (up to {wait_s:.0f} s)")
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BenchError(f"another benchmark run still holds {path} after {wait_s:.0f} s") from None
                    time.sleep(1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def drop_tree(path: Path) -> None:
    """rm -rf, also for trees holding files owned by subordinate ids (we are root, or they are ours)."""
    if not path.exists() and not path.is_symlink():
        return
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        # Rootless stores can hold read-only dirs owned by mapped ids; let rm try, it reports what is left.
        run(["rm", "-rf", "--one-file-system", str(path)])


def sync() -> None:
    os.sync()


# -- statistics -------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_s": round(percentile(values, 50), 4),
        "p90_s": round(percentile(values, 90), 4),
        "min_s": round(min(values), 4),
        "max_s": round(max(values), 4),
    }


def rotations(names: list[str], count: int) -> list[list[str]]:
    """ABC, BCA, CAB, ABC, ... - one order per iteration."""
    n = len(names)
    return [names[i % n :] + names[: i % n] if n else [] for i in range(count)]


# -- machine facts ----------------------------------------------------------------------------------------------


def cgroup_mode() -> str:
    try:
        fstype = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        return "unknown"
    if fstype == "cgroup2fs":
        return "v2 (unified)"
    if Path("/sys/fs/cgroup/unified").is_dir():
        return "hybrid (v1 controllers + v2 at /sys/fs/cgroup/unified)"
    return "v1 (legacy)"


def fs_type(path: Path) -> str:
    p = path
    while not p.exists():
        p = p.parent
    try:
        cp = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(p)], capture_output=True, text=True)
        if cp.returncode == 0 and cp.stdout.strip():
            return " on ".join(cp.stdout.split())
    except FileNotFoundError:
        pass
    cp = subprocess.run(["stat", "-fc", "%T", str(p)], capture_output=True, text=True)
    return cp.stdout.strip() or "unknown"


def tree_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes of regular files, number of entries) under path, not following links."""
    total = count = 0
    for root, dirs, files in os.walk(path):
        count += len(dirs) + len(files)
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total, count


def version_of(argv: list[str]) -> str | None:
    """First line of `tool --version`, or None if the tool is missing or fails."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return None
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if cp.returncode != 0:
        return None
    out = (cp.stdout or cp.stderr).strip().splitlines()
    return out[0] if out else None


def machine_facts() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    os_release = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                os_release[k] = v.strip('"')
    except OSError:
        pass
    return {
        "kernel": platform.release(),
        "os": os_release.get("PRETTY_NAME", "unknown"),
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "cgroup_mode": cgroup_mode(),
        "python": platform.python_version(),
        "bench_dir": str(BENCH_DIR),
        "bench_dir_fs": fs_type(BENCH_DIR),
    }


# -- output -----------------------------------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(["-" if c is None else str(c) for c in cells])

    def render(self) -> str:
        widths = [
            max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h) for i, h in enumerate(self.headers)
        ]
        line = "  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True))
        out = [line, "  ".join("-" * w for w in widths)]
        for r in self.rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        return "\n".join(out)


def timed_column(label: str, argv: list[str] | None, status: str, samples: list[float]) -> dict[str, Any]:
    """One column of a result: what ran, its status and, when it has samples (seconds), summary() of them with the
    median and p90 in ms too (what columns_table shows and compare() reads)."""
    entry: dict[str, Any] = {"label": label, "status": status, "command": shlex.join(argv) if argv else None}
    if samples:
        entry.update(summary(samples))
        entry["median_ms"] = round(entry["median_s"] * 1000, 2)
        entry["p90_ms"] = round(entry["p90_s"] * 1000, 2)
        entry["samples_s"] = [round(x, 5) for x in samples]
    return entry


def columns_table(columns: dict[str, dict[str, Any]], header: str = "tool") -> str:
    """Median, p90 and status of each timed_column()."""
    table = Table([header, "median ms", "p90 ms", "status"])
    for name, entry in columns.items():
        table.add(name, entry.get("median_ms"), entry.get("p90_ms"), tail(entry["status"], 1)[:100])
    return table.render()


def ratios_line(ratios: dict[str, Any]) -> str:
    return "ratios: " + (", ".join(f"{k} = {v}" for k, v in ratios.items()) or "none")


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def report(name: str, result: dict[str, Any], render: Any) -> Path:
    """Write bench/results/<name>.json and print the benchmark's own table (every module ends this way)."""
    path = write_json(name, result)
    print(render(result))
    print(f"wrote {path}")
    return path


# -- the summary: sbx beside each baseline --------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One side-by-side comparison of medians from one run: ``ratio`` = sbx / baseline (below 1: sbx is faster)."""

    figure: str  # e.g. "B1 run --rm true"
    sbx: str  # the sbx column's name in its benchmark
    baseline: str  # the baseline column's name
    sbx_s: float
    baseline_s: float

    @property
    def ratio(self) -> float:
        return self.sbx_s / self.baseline_s

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.figure, "sbx": self.sbx, "baseline": self.baseline, "sbx_median_s": self.sbx_s,
                "baseline_median_s": self.baseline_s, "ratio": round(self.ratio, 3)}


def compare(figure: str, columns: dict[str, Any], sbx: str, baselines: list[str]) -> list[Figure]:
    """A Figure for each baseline column with a median beside the sbx column's (failed or absent ones are left out)."""
    mine = columns.get(sbx) or {}
    if not mine.get("median_s"):
        return []
    found = []
    for name in baselines:
        other = columns.get(name) or {}
        if other.get("median_s"):
            found.append(Figure(figure, sbx, name, mine["median_s"], other["median_s"]))
    return found


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio_text(ratio: float) -> str:
    """Two decimals, or two significant digits below 0.1 (a mount against a whole `podman create`)."""
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"


def figures_table(figures: list[Figure]) -> str:
    table = Table(["figure", "sbx", "median", "baseline", "median", "sbx/baseline"])
    for f in figures:
        table.add(f.figure, f.sbx, _duration(f.sbx_s), f.baseline, _duration(f.baseline_s), ratio_text(f.ratio))
    return table.render()


def tool_versions() -> dict[str, str | None]:
    return {
        "podman": version_of(["podman", "--version"]),
        "runc": version_of(["runc", "--version"]),
        "bwrap": version_of(["bwrap", "--version"]),
        "slirp4netns": version_of(["slirp4netns", "--version"]),
        "fuse-overlayfs": version_of(["fuse-overlayfs", "--version"]),
    }
