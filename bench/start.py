"""B1: start-up, ``sbx run --rm --network none IMG /bin/true`` with the image already in the store.

The image is a tiny busybox-static root (``/bin/busybox``, ``/bin/true`` and ``/bin/sh`` as links, the usual empty
mount points), packed once into a tar, ``sbx import``-ed, ``sbx save``-d to a docker-archive and ``podman load``-ed
from that archive, so both tools run the same bytes. Columns, each run as the bench user:

* ``sbx``: ``$SBX_BENCH_CMD run --rm --network none IMG /bin/true`` (default: the ``sbx`` script of
  ``pip install .`` in ``/var/tmp/sbx-test/bench-venv``), own ``XDG_*`` dirs;
* ``podman``: rootless ``podman --runtime runc --cgroup-manager cgroupfs run --rm --network none IMG /bin/true``
  (overlay storage, own --root/--runroot);
* ``bwrap``: ``bwrap --unshare-all --die-with-parent --ro-bind ROOT / --proc /proc --dev /dev /bin/true`` over the
  unpacked root the image was made from;
* ``python``, ``unshare``: the floor's two parts, ``python3 -I -S -c pass`` (sbx's interpreter) and
  ``unshare -Urnmpiuf true``; floor = sum of their medians.

Timing: one timer process runs as the bench user (started once through runuser, so runuser's own cost is in no
figure) and times each command with ``perf_counter`` around spawn + wait. 3 warm-ups + max(30, -n) iterations,
rotating order. One more untimed ``python -X importtime`` run of the sbx command records where its start-up goes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DIR,
    RESULTS_DIR,
    BenchError,
    Figure,
    User,
    columns_table,
    compare,
    drop_tree,
    exclusive,
    interpreter_of,
    log,
    machine_facts,
    ratios_line,
    run,
    sbx_cmd,
    tail,
    timed_column,
    version_of,
)

TITLE = "B1: sbx run --rm --network none IMG /bin/true vs rootless podman run vs bwrap, and the floor"
ORDER = 1  # place in `python -m bench` and its summary

WORK = BENCH_DIR / "work" / "start"
MIN_ITERATIONS = 30
MIN_WARMUP = 3
IMAGE_REF = "sbxbench/busybox:b1"
PODMAN_REF = "localhost/sbxbench/busybox:b1"
BUSYBOX = Path("/bin/busybox")
CMD_TIMEOUT = 60
COLUMNS = ("sbx", "podman", "bwrap", "python", "unshare")

# Runs as the bench user with the system python3: times each column's argv, rotating order, warm-ups first.
# Input (stdin): {"columns": {name: {"argv": [...], "env": {...}}}, "warmup": N, "iterations": N, "timeout": S}.
# Output (stdout): {"samples": {name: [secs...]}, "status": {name: "ok" | "failed: ..."}}.
TIMER_SOURCE = r'''
import json, subprocess, sys, time

plan = json.load(sys.stdin)
cols = plan["columns"]
names = list(cols)
samples = {n: [] for n in names}
status = {n: "ok" for n in names}
total = plan["warmup"] + plan["iterations"]
for it in range(total):
    k = it % len(names)
    for name in names[k:] + names[:k]:
        if status[name] != "ok":
            continue
        c = cols[name]
        t0 = time.perf_counter()
        try:
            cp = subprocess.run(c["argv"], env=c["env"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=plan["timeout"])
        except (OSError, subprocess.TimeoutExpired) as e:
            status[name] = f"failed: {e}"
            continue
        secs = time.perf_counter() - t0
        if cp.returncode != 0:
            err = cp.stderr.decode(errors="replace").strip().splitlines()[-4:]
            status[name] = f"failed: exit {cp.returncode}: " + " | ".join(err)
            continue
        if it >= plan["warmup"]:
            samples[name].append(secs)
    if it % 10 == 0:
        print(f"[bench] B1 iteration {it + 1}/{total}", file=sys.stderr, flush=True)
json.dump({"samples": samples, "status": status}, sys.stdout)
'''


def base_env(user: User, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment User.wrap gives, for commands the timer starts directly."""
    env = {
        "HOME": str(user.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def build_root(user: User) -> tuple[Path, Path]:
    """The busybox root (owned by the bench user, for bwrap) and a tar of it (root-owned entries, for sbx import)."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} missing: install busybox-static (scripts/bench-setup.sh)")
    root = WORK / "rootfs"
    drop_tree(root)
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in ("true", "sh"):
        (root / "bin" / name).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    tar = WORK / "busybox-rootfs.tar"
    run(["tar", "--owner=0", "--group=0", "--numeric-owner", "--sort=name", "--mtime=@0", "-C", str(root), "-cf",
         str(tar), "."], what="tar of the busybox root")
    run(["chown", "-R", f"{user.uid}:{user.gid}", str(root), str(tar)])
    return root, tar


class Sbx:
    def __init__(self, user: User) -> None:
        self.user = user
        self.cmd = sbx_cmd()
        self.work = WORK / "sbx"

    @property
    def env(self) -> dict[str, str]:
        return {
            "XDG_DATA_HOME": str(self.work / "data"),
            "XDG_CONFIG_HOME": str(self.work / "config"),
            "XDG_CACHE_HOME": str(self.work / "cache"),
            "XDG_RUNTIME_DIR": str(self.work / "run"),
            "SBX_CONFIG": str(self.work / "config.toml"),
            "TMPDIR": str(self.work / "tmp"),
        }

    def prepare(self, tar: Path, archive: Path) -> None:
        drop_tree(self.work)
        self.user.mkdir(self.work)
        for d, mode in (("data", 0o755), ("run", 0o700), ("cache", 0o755), ("tmp", 0o700), ("config", 0o755)):
            self.user.mkdir(self.work / d, mode)
        cfg = self.work / "config.toml"
        cfg.write_text("")
        os.chmod(cfg, 0o644)
        sh = lambda *a: self.user.wrap([*self.cmd, *a], self.env)  # noqa: E731
        run(sh("import", str(tar), IMAGE_REF), timeout=120, what="sbx import")
        run(sh("save", "-o", str(archive), IMAGE_REF), timeout=120, what="sbx save")

    def argv(self) -> list[str]:
        return [*self.cmd, "run", "--rm", "--network", "none", IMAGE_REF, "/bin/true"]

    def leftovers(self) -> str | None:
        """What sbx's --rm runs left in its container store: a directory per container (store.lock, the store's
        lock file, is no container)."""
        left = [p for p in self.work.joinpath("data").rglob("containers/*")
                if p.parent.name == "containers" and p.is_dir()]
        return " ".join(sorted(p.name for p in left)[:20]) or None

    def exec_trace(self) -> dict[str, Any]:
        """One extra run under `strace -f -e execve` (as root, so setuid newuidmap still works): what sbx executes
        and when, relative to the first exec. strace slows every process down (no --seccomp-bpf: its no_new_privs breaks
        setuid newuidmap); the offsets are a map, not a figure."""
        if not self.user.switches or shutil.which("strace") is None:
            return {"status": "skipped: needs root and strace"}
        out = WORK / "strace.txt"
        cp = run(["strace", "-f", "-s", "256", "-qq", "-ttt", "-e", "trace=execve",
                  "-e", "signal=none", "-o", str(out),
                  *self.user.wrap(self.argv(), self.env)], check=False, timeout=CMD_TIMEOUT)
        if cp.returncode != 0:
            return {"status": f"failed: exit {cp.returncode}: {tail(cp.stderr, 3)}"}
        pat = re.compile(r'^(\d+)\s+(\d+\.\d+)\s+execve\("([^"]*)", \[(.*?)\](?:, 0x[0-9a-f]+ /\* \d+ vars \*/)?\) = 0')
        execs, t_first, t_last = [], None, None
        for line in out.read_text().splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and re.fullmatch(r"\d+\.\d+", parts[1]):
                t_last = float(parts[1])
            m = pat.match(line)
            if not m:
                continue
            t = float(m.group(2))
            t_first = t if t_first is None else t_first
            args = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(4))
            execs.append({"at_ms": round((t - t_first) * 1000, 1), "pid": int(m.group(1)), "path": m.group(3),
                          "argv": shlex.join(args)[:160]})
        return {"status": "ok", "execs": execs[:60], "exec_count": len(execs),
                "span_ms": round(((t_last or 0) - (t_first or 0)) * 1000, 1),
                "note": "under strace (slower than the timed runs); at_ms is from the first exec (runuser)"}

    def version(self) -> str | None:
        cp = run(self.user.wrap([*self.cmd, "--version"], self.env), check=False, timeout=60)
        return (cp.stdout.strip().splitlines() or [None])[0] if cp.returncode == 0 else None

    def importtime(self) -> dict[str, Any]:
        """One extra run with -X importtime: the top 10 cumulative imports and the total."""
        python = interpreter_of(self.cmd)
        rest = self.cmd[1:] if python == self.cmd[0] else self.cmd  # python ARGS..., or python SCRIPT
        argv = [python, "-X", "importtime", *rest, *self.argv()[len(self.cmd):]]
        t0 = time.perf_counter()
        cp = run(self.user.wrap(argv, self.env), check=False, timeout=CMD_TIMEOUT)
        wall = time.perf_counter() - t0
        if cp.returncode != 0:
            return {"status": f"failed: exit {cp.returncode}: {tail(cp.stderr, 3)}"}
        return parse_importtime(cp.stderr, wall)


def parse_importtime(text: str, wall_s: float) -> dict[str, Any]:
    rows = []
    pat = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            self_ms, cum_ms = int(m.group(1)) / 1000, int(m.group(2)) / 1000
            rows.append({"module": m.group(4), "self_ms": self_ms, "cumulative_ms": cum_ms, "depth": depth})
    top_level = [r for r in rows if r["depth"] == 0]
    by_cum = sorted(rows, key=lambda r: -r["cumulative_ms"])[:10]
    by_self = sorted(rows, key=lambda r: -r["self_ms"])[:10]
    return {
        "status": "ok",
        "wall_ms_with_importtime": round(wall_s * 1000, 1),
        "modules": len(rows),
        "total_import_ms": round(sum(r["cumulative_ms"] for r in top_level), 1),
        "top10_cumulative": [{k: r[k] for k in ("module", "cumulative_ms", "self_ms", "depth")} for r in by_cum],
        "top10_top_level": [{k: r[k] for k in ("module", "cumulative_ms", "self_ms")}
                            for r in sorted(top_level, key=lambda r: -r["cumulative_ms"])[:10]],
        "top10_self": [{k: r[k] for k in ("module", "self_ms")} for r in by_self],
        "sandbox_modules": sorted(r["module"] for r in rows if r["module"].startswith("sandbox")),
        "note": "ms from python -X importtime (adds its own overhead); cumulative includes nested imports, so rows "
        "overlap; total_import_ms = sum of top-level cumulative",
    }


class Podman:
    def __init__(self, user: User) -> None:
        self.user = user
        self.work = WORK / "podman"

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": str(self.work / "xdg-run"), "TMPDIR": str(self.work / "tmp")}

    def base(self) -> list[str]:
        return ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--storage-driver", "overlay",
                "--root", str(self.work / "storage"), "--runroot", str(self.work / "runroot")]

    def prepare(self, archive: Path) -> None:
        if shutil.which("podman") is None:
            raise BenchError("podman is not installed")
        self.cleanup()
        self.user.mkdir(self.work)
        self.user.mkdir(self.work / "xdg-run", 0o700)
        self.user.mkdir(self.work / "tmp", 0o700)
        run(self.user.wrap([*self.base(), "load", "-q", "-i", str(archive)], self.env), timeout=120,
            what="podman load")
        ids = run(self.user.wrap([*self.base(), "images", "-q"], self.env), what="podman images").stdout.split()
        if not ids:
            raise BenchError("podman load left no image")
        run(self.user.wrap([*self.base(), "tag", ids[0], PODMAN_REF], self.env), what="podman tag")

    def argv(self) -> list[str]:
        return [*self.base(), "run", "--rm", "--network", "none", PODMAN_REF, "/bin/true"]

    def leftovers(self) -> str | None:
        cp = run(self.user.wrap([*self.base(), "ps", "-a", "-q"], self.env), check=False, timeout=60)
        return cp.stdout.strip() if cp.returncode == 0 else f"podman ps -a failed: {tail(cp.stderr, 2)}"

    def cleanup(self) -> None:
        pid_file = self.work / "xdg-run" / "libpod" / "tmp" / "pause.pid"
        try:
            pid = int(pid_file.read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("podman"):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        drop_tree(self.work)


def time_columns(user: User, columns: dict[str, dict[str, Any]], warmup: int, iterations: int,
                 what: str) -> dict[str, Any]:
    """B1's timer (TIMER_SOURCE, one process as the bench user) over {name: {"argv", "env"}}, rotating order:
    {"samples": {name: [seconds...]}, "status": {name: "ok" | "failed: ..."}}."""
    if not columns:
        return {"samples": {}, "status": {}}
    timer = WORK / "timer.py"
    timer.write_text(TIMER_SOURCE)
    os.chmod(timer, 0o644)
    plan = {"columns": columns, "warmup": warmup, "iterations": iterations, "timeout": CMD_TIMEOUT}
    log(f"{what}: {warmup} warm-up + {iterations} iterations of {', '.join(columns)} (rotating order)")
    cp = run(user.wrap(["/usr/bin/python3", "-I", "-S", str(timer)]), input=json.dumps(plan),
             timeout=CMD_TIMEOUT * 3 + (warmup + iterations) * len(columns) * 10, what=f"{what} timer")
    return json.loads(cp.stdout)


def overlay_from_b6() -> float | None:
    """Median ms of B6's overlay mount from bench/results/rootfs.json, if a B6 run left one (context only)."""
    try:
        data = json.loads((RESULTS_DIR / "rootfs.json").read_text())
        return data["drivers"]["overlay"]["median_ms"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def bench_start(iterations: int = 30, warmup: int = 3, only: list[str] | None = None) -> dict[str, Any]:
    with exclusive():
        return _bench_start(iterations, warmup, only)


def _bench_start(iterations: int, warmup: int, only: list[str] | None) -> dict[str, Any]:
    t_start = time.monotonic()
    user = User.resolve()
    iterations = max(MIN_ITERATIONS, iterations)
    warmup = max(MIN_WARMUP, warmup)
    want = [c for c in COLUMNS if not only or c in only]
    drop_tree(WORK)
    user.mkdir(WORK)
    root, tar = build_root(user)
    archive = WORK / "busybox-image.tar"
    status = {c: "ok" for c in want}
    argvs: dict[str, list[str]] = {}
    envs: dict[str, dict[str, str]] = {}

    # sbx always prepares: podman loads the archive sbx saves.
    sbx = Sbx(user)
    try:
        sbx.prepare(tar, archive)
        argvs["sbx"], envs["sbx"] = sbx.argv(), base_env(user, sbx.env)
    except BenchError as e:
        for c in ("sbx", "podman"):
            if c in status:
                status[c] = f"unavailable: sbx import/save: {e}"
        log(f"sbx: unavailable: {e}")
    podman = Podman(user)
    if "podman" in want and status["podman"] == "ok":
        try:
            podman.prepare(archive)
            argvs["podman"], envs["podman"] = podman.argv(), base_env(user, podman.env)
        except BenchError as e:
            status["podman"] = f"unavailable: {e}"
            log(f"podman: unavailable: {e}")
    if "bwrap" in want:
        if shutil.which("bwrap") is None:
            status["bwrap"] = "unavailable: bwrap not installed (apt-get install bubblewrap; scripts/bench-setup.sh)"
        else:
            argvs["bwrap"] = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", str(root), "/", "--proc",
                              "/proc", "--dev", "/dev", "/bin/true"]
    py = sbx.cmd[0] if os.path.basename(sbx.cmd[0]).startswith("python") else "python3"
    argvs["python"] = [py, "-I", "-S", "-c", "pass"]
    argvs["unshare"] = ["unshare", "-Urnmpiuf", "true"]
    for c in ("bwrap", "python", "unshare"):
        envs[c] = base_env(user)

    columns = {c: {"argv": argvs[c], "env": envs[c]} for c in want if status[c] == "ok"}
    out = time_columns(user, columns, warmup, iterations, "B1")
    samples: dict[str, list[float]] = out["samples"]
    for c, st in out["status"].items():
        status[c] = st
        if st != "ok":
            log(f"{c}: {st}")

    labels = {
        "sbx": "sbx run --rm --network none IMG /bin/true",
        "podman": "podman run --rm --network none IMG /bin/true (rootless, runc, cgroupfs, overlay)",
        "bwrap": "bwrap --unshare-all over the same unpacked root, /bin/true",
        "python": "python3 -I -S -c pass (sbx's interpreter): floor part 1",
        "unshare": "unshare -Urnmpiuf true: floor part 2",
    }
    tools = {c: timed_column(labels[c], argvs.get(c), status[c], samples.get(c, [])) for c in want}

    importtime: dict[str, Any] = {"status": "skipped"}
    exec_trace: dict[str, Any] = {"status": "skipped"}
    leftovers: dict[str, Any] = {}
    if status.get("sbx") == "ok" or ("sbx" not in want and "sbx" in argvs):
        importtime = sbx.importtime()
        leftovers["sbx"] = sbx.leftovers()
        exec_trace = sbx.exec_trace()
    if status.get("podman") == "ok":
        leftovers["podman"] = podman.leftovers()

    versions = {
        "sbx": sbx.version() if "sbx" in argvs else None,
        "sbx_command": shlex.join(sbx.cmd),
        "python": version_of([py, "--version"]),
        "podman": version_of(["podman", "--version"]),
        "runc": version_of(["runc", "--version"]),
        "bwrap": version_of(["bwrap", "--version"]),
        "unshare": version_of(["unshare", "--version"]),
        "busybox": (version_of([str(BUSYBOX), "--help"]) or "").strip() or None,
    }
    podman.cleanup()
    drop_tree(WORK)

    med = {c: e["median_s"] for c, e in tools.items() if "median_s" in e}
    ratios: dict[str, Any] = {}
    targets: dict[str, Any] = {"sbx <= 0.25 x podman": None, "sbx <= floor + 15 ms": None}
    floor: dict[str, Any] = {"definition": "median(python3 -I -S -c pass) + median(unshare -Urnmpiuf true)"}
    if "sbx" in med and "podman" in med:
        ratios["sbx/podman"] = round(med["sbx"] / med["podman"], 4)
        targets["sbx <= 0.25 x podman"] = ratios["sbx/podman"] <= 0.25
    if "sbx" in med and "bwrap" in med:
        ratios["sbx/bwrap"] = round(med["sbx"] / med["bwrap"], 2)
    if "python" in med and "unshare" in med:
        floor_s = med["python"] + med["unshare"]
        floor["median_ms"] = round(floor_s * 1000, 2)
        ov = overlay_from_b6()
        if ov is not None:
            floor["overlay_mount_ms_from_b6"] = ov
            floor["median_ms_with_b6_overlay"] = round(floor_s * 1000 + ov, 2)
        if "sbx" in med:
            ratios["sbx - floor (ms)"] = round((med["sbx"] - floor_s) * 1000, 2)
            ratios["sbx/floor"] = round(med["sbx"] / floor_s, 2)
            targets["sbx <= floor + 15 ms"] = ratios["sbx - floor (ms)"] <= 15
    return {
        "benchmark": "B1",
        "what": "sbx run --rm --network none IMG /bin/true, image already in the store",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "user": user.name,
        "image": {"ref": IMAGE_REF, "podman_ref": PODMAN_REF, "contents": "busybox-static, /bin/true -> busybox",
                  "rootfs_tar_bytes": tar.stat().st_size if tar.exists() else None},
        "protocol": {
            "warmup": warmup,
            "iterations": iterations,
            "order": "rotating",
            "timing": "perf_counter around spawn + wait in one timer process running as the bench user (runuser "
            "not counted); stdout to /dev/null, stderr piped",
            "p90": "linear interpolation between closest ranks",
        },
        "network_backend": "none",
        "storage_driver": {"sbx": "sbx default", "podman": "overlay", "bwrap": "ro bind of a plain directory"},
        "versions": versions,
        "tools": tools,
        "floor": floor,
        "ratios": ratios,
        "targets": targets,
        "sbx_importtime": importtime,
        "sbx_exec_trace": exec_trace,
        "leftover_containers": leftovers,
        "wall_s": round(time.monotonic() - t_start, 1),
    }


def render(result: dict[str, Any]) -> str:
    p = result["protocol"]
    lines = [f"B1 start: {p['warmup']} warm-up + {p['iterations']} iterations; rotating order"]
    lines.append(columns_table(result["tools"]))
    fl = result["floor"]
    if "median_ms" in fl:
        extra = f" (+ B6 overlay {fl['overlay_mount_ms_from_b6']} ms = {fl['median_ms_with_b6_overlay']} ms)" \
            if "overlay_mount_ms_from_b6" in fl else ""
        lines.append(f"floor: python + unshare = {fl['median_ms']} ms{extra}")
    lines.append(ratios_line(result["ratios"]))
    lines.append("targets: " + ", ".join(f"{k}: {v}" for k, v in result["targets"].items()))
    it = result["sbx_importtime"]
    if it.get("status") == "ok":
        lines.append(f"sbx imports: {it['modules']} modules, {it['total_import_ms']} ms (-X importtime); "
                     "top cumulative:")
        for r in it["top10_cumulative"]:
            lines.append(f"  {r['cumulative_ms']:8.1f} ms  {'  ' * r['depth']}{r['module']}")
    else:
        lines.append(f"sbx importtime: {it.get('status')}")
    tr = result.get("sbx_exec_trace", {})
    if tr.get("status") == "ok":
        lines.append(f"sbx execs (one run under strace, {tr['span_ms']} ms): "
                     + ", ".join(f"+{e['at_ms']} {os.path.basename(e['path'])}" for e in tr["execs"][:12]))
    left = {k: v for k, v in result["leftover_containers"].items() if v}
    if left:
        lines.append(f"NOTE: containers left after the --rm runs: {left}")
    lines.append(f"wall time {result.get('wall_s')} s")
    return "\n".join(lines)


measure = bench_start


def figures(result: dict[str, Any]) -> list[Figure]:
    """sbx beside its baselines, for the summary of `make bench`."""
    return compare("B1 run --rm true", result["tools"], "sbx", ["podman", "bwrap"])
