"""B2, B3, B10, B11, B12: the container life cycle, sbx against rootless podman, side by side in one run.

Both tools run the same busybox-static image (``sbx import``-ed, ``sbx save``-d, ``podman load``-ed from those bytes),
as the bench user, with ``--network none`` everywhere (so no network helper is in any figure). Podman is rootless
``--runtime runc --cgroup-manager cgroupfs --storage-driver overlay`` with its own --root/--runroot, as in B1.

* B2  ``exec CTR true`` into a running ``sleep 300`` container: sbx, podman, and ``nsenter -t PID -U -m -u -i -n -p
  -C true`` into sbx's container (the floor; ``-a`` fails on the host's time namespace).
* B3  ``ps -a`` with 100 running ``sleep 300`` containers per tool (made with ``run -d``, kept running), and
  ``--version`` against the bare Python start (``python3 -I -S -c pass``, sbx's interpreter), and ``images`` with 50
  images per tool (the busybox one and 49 ``import``-ed one-file tars, each its own image).
* B10 per running container (the same 100): VmRSS (and Pss) of every helper process, i.e. each ancestor of the
  container's process that belongs to that container alone (sbx's monitor; podman's conmon), plus shared helpers
  (podman's pause process, any common ancestor) divided by the number of containers.
* B11 ``rm`` of a stopped container (a fresh one per iteration, made untimed with ``run -d --name N IMG true`` +
  ``wait N``), and a leak check after 20 ``run -d`` / ``rm -f`` cycles: processes still holding the bench's
  directories, container directories, ``ps -a`` entries, host mounts under the bench's directory.
* B12 50 ``run -d IMG sleep 30`` started at once per tool (one thread per command in the timer): all start, and
  p99 <= 3 x median of the per-command latency.

Timing: one timer process (system python3, started once through runuser per phase) times spawn + wait of each
command with perf_counter; warm-ups first, rotating order (ABC, BCA, CAB).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BENCH_DIR,
    BenchError,
    Figure,
    Table,
    User,
    compare,
    drop_tree,
    exclusive,
    interpreter_of,
    log,
    machine_facts,
    percentile,
    run,
    tail,
    timed_column,
    version_of,
)
from bench.start import BUSYBOX, IMAGE_REF, PODMAN_REF, Podman, Sbx, base_env

TITLE = "B2 exec, B3 ps -a/--version, B10 helper memory, B11 rm + leaks, B12 50 parallel run -d vs podman"
ORDER = 20  # place in `python -m bench` and its summary

WORK = BENCH_DIR / "work" / "lifecycle"
CMD_TIMEOUT = 60
N_PS = 100
N_IMAGES = 50
N_PARALLEL = 50
N_LEAK = 20
PREFIX = "lcb"
MIN_ITERATIONS = 30
MIN_WARMUP = 3

# Runs as the bench user with the system python3.
# mode "timed": {"columns": {name: {"argv", "env", "setup": [argv...]}}, "warmup", "iterations", "timeout"}; "{i}"
#   in argv/setup is replaced by the iteration number; setup steps run untimed before the timed command.
#   Output: {"samples": {name: [s...]}, "status": {name: "ok" | "failed: ..."}}.
# mode "parallel": {"jobs": [{"argv", "env"}], "concurrency", "timeout"}: one thread per job, at most
#   `concurrency` at once. Output: {"results": [{"s", "status"}], "wall_s"}.
TIMER_SOURCE = r'''
import json, subprocess, sys, threading, time

plan = json.load(sys.stdin)


def call(argv, env, timeout):
    t0 = time.perf_counter()
    try:
        cp = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return time.perf_counter() - t0, f"failed: {e}"
    secs = time.perf_counter() - t0
    if cp.returncode != 0:
        err = cp.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return secs, f"failed: exit {cp.returncode}: " + " | ".join(err)
    return secs, "ok"


def sub(argv, i):
    return [a.replace("{i}", str(i)) for a in argv]


if plan["mode"] == "timed":
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
            for step in c.get("setup", []):
                _, st = call(sub(step, it), c["env"], plan["timeout"])
                if st != "ok":
                    status[name] = "setup " + st
                    break
            if status[name] != "ok":
                continue
            secs, st = call(sub(c["argv"], it), c["env"], plan["timeout"])
            if st != "ok":
                status[name] = st
                continue
            if it >= plan["warmup"]:
                samples[name].append(secs)
        if it % 10 == 0:
            print(f"[bench] {plan.get('label', 'timer')} iteration {it + 1}/{total}", file=sys.stderr, flush=True)
    json.dump({"samples": samples, "status": status}, sys.stdout)
else:
    jobs = plan["jobs"]
    sem = threading.Semaphore(plan["concurrency"])
    results = [None] * len(jobs)

    def work(k):
        with sem:
            secs, st = call(jobs[k]["argv"], jobs[k]["env"], plan["timeout"])
        results[k] = {"s": secs, "status": st}

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"results": results, "wall_s": time.perf_counter() - t0}, sys.stdout)
'''


def build_root(user: User) -> Path:
    """A busybox-static root with true, sh and sleep; returns a tar of it (root-owned entries, for sbx import)."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} missing: install busybox-static (scripts/bench-setup.sh)")
    root = WORK / "rootfs"
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in ("true", "sh", "sleep"):
        (root / "bin" / name).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    tar = WORK / "busybox-rootfs.tar"
    run(["tar", "--owner=0", "--group=0", "--numeric-owner", "--sort=name", "--mtime=@0", "-C", str(root), "-cf",
         str(tar), "."], what="tar of the busybox root")
    run(["chown", "-R", f"{user.uid}:{user.gid}", str(root), str(tar)])
    return tar


class LabSbx(Sbx):
    """sbx with a short XDG_RUNTIME_DIR: its per-container attach socket lives there, and a path under
    $SBX_BENCH_DIR/work/lifecycle/... is longer than an AF_UNIX address allows (108 bytes)."""

    def __init__(self, user: User) -> None:
        super().__init__(user)
        self.work = WORK / "sbx"
        self.run_dir = Path(f"/tmp/{PREFIX}-run.{user.uid}")

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "XDG_RUNTIME_DIR": str(self.run_dir)}

    def prepare(self, tar: Path, archive: Path) -> None:
        drop_tree(self.run_dir)
        self.user.mkdir(self.run_dir, 0o700)
        super().prepare(tar, archive)


class Lab:
    """Both tools prepared with the same image, plus the timer."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.sbx = LabSbx(user)
        self.podman = Podman(user)
        self.podman.work = WORK / "podman"
        self.status = {"sbx": "ok", "podman": "ok"}
        self.timer = WORK / "timer.py"

    # -- commands -----------------------------------------------------------------------------------------------

    def cmd(self, tool: str, *args: str) -> list[str]:
        return [*(self.sbx.cmd if tool == "sbx" else self.podman.base()), *args]

    def ref(self, tool: str) -> str:
        return IMAGE_REF if tool == "sbx" else PODMAN_REF

    def env(self, tool: str | None = None) -> dict[str, str]:
        extra = self.sbx.env if tool == "sbx" else self.podman.env if tool == "podman" else None
        return base_env(self.user, extra)

    def rm_force(self, tool: str, *names: str) -> list[str]:
        # podman's rm -f stops with a 10 s grace period and sleep as PID 1 ignores SIGTERM: -t 0.
        return self.cmd(tool, "rm", "-f", *names) if tool == "sbx" else self.cmd(tool, "rm", "-f", "-t", "0", *names)

    def call(self, tool: str, *args: str, check: bool = True, timeout: float = 120) -> str:
        cp = run(self.user.wrap(self.cmd(tool, *args), self.env(tool) | {"HOME": str(self.user.home)}),
                 check=check, timeout=timeout, what=f"{tool} {' '.join(args[:3])}")
        return cp.stdout

    def ok(self, tool: str) -> bool:
        return self.status.get(tool) == "ok"

    def tools(self) -> list[str]:
        return [t for t in ("sbx", "podman") if self.ok(t)]

    # -- set-up and clean-up --------------------------------------------------------------------------------------

    def prepare(self) -> None:
        drop_tree(WORK)
        self.user.mkdir(WORK)
        tar = build_root(self.user)
        archive = WORK / "busybox-image.tar"
        try:
            self.sbx.prepare(tar, archive)
        except BenchError as e:
            self.status = {"sbx": f"unavailable: {e}", "podman": f"unavailable: sbx import/save failed: {e}"}
            log(f"sbx: unavailable: {e}")
            return
        try:
            self.podman.prepare(archive)
        except BenchError as e:
            self.status["podman"] = f"unavailable: {e}"
            log(f"podman: unavailable: {e}")
        self.timer.write_text(TIMER_SOURCE)
        os.chmod(self.timer, 0o644)

    def names(self, tool: str) -> list[str]:
        out = self.call(tool, "ps", "-a", "-q", check=False)
        return out.split()

    def remove_all(self) -> dict[str, str]:
        """rm -f everything in each tool's store (the stores are the bench's own); what is left, per tool."""
        left = {}
        for tool in ("sbx", "podman"):
            if tool == "podman" and not self.podman.work.joinpath("storage").exists():
                continue
            if tool == "sbx" and not self.sbx.work.joinpath("data").exists():
                continue
            ids = self.names(tool)
            if ids:
                run(self.user.wrap(self.rm_force(tool, *ids), self.env(tool)), check=False, timeout=300)
            rest = self.names(tool)
            if rest:
                left[tool] = " ".join(rest[:20])
        return left

    def cleanup(self) -> None:
        try:
            self.remove_all()
        except BenchError as e:
            log(f"clean-up: {e}")
        self.podman.cleanup()
        drop_tree(WORK)
        drop_tree(self.sbx.run_dir)

    # -- the timer ---------------------------------------------------------------------------------------------

    def timed(self, label: str, columns: dict[str, dict[str, Any]], warmup: int, iterations: int) -> dict[str, Any]:
        plan = {"mode": "timed", "label": label, "columns": columns, "warmup": warmup, "iterations": iterations,
                "timeout": CMD_TIMEOUT}
        steps = (warmup + iterations) * sum(1 + len(c.get("setup", [])) for c in columns.values())
        cp = run(self.user.wrap(["/usr/bin/python3", "-I", "-S", str(self.timer)]), input=json.dumps(plan),
                 timeout=CMD_TIMEOUT * 3 + steps * 10, what=f"{label} timer")
        return json.loads(cp.stdout)

    def parallel(self, label: str, jobs: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
        plan = {"mode": "parallel", "jobs": jobs, "concurrency": concurrency, "timeout": CMD_TIMEOUT * 3}
        cp = run(self.user.wrap(["/usr/bin/python3", "-I", "-S", str(self.timer)]), input=json.dumps(plan),
                 timeout=CMD_TIMEOUT * 3 + len(jobs) * 10, what=f"{label} timer")
        return json.loads(cp.stdout)

    def inspect_pids(self, tool: str, names: list[str]) -> dict[str, int]:
        if not names:
            return {}
        if tool == "sbx":
            data = json.loads(self.call("sbx", "inspect", *names))
            return {d.get("Name", "").lstrip("/") or d["Id"]: int(d["State"]["Pid"]) for d in data}
        out = self.call("podman", "inspect", "--format", "{{.Name}} {{.State.Pid}}", *names)
        pids = {}
        for line in out.splitlines():
            name, _, pid = line.strip().rpartition(" ")
            pids[name.lstrip("/")] = int(pid)
        return pids


# -- /proc ------------------------------------------------------------------------------------------------------


def proc_info(pid: int) -> dict[str, Any] | None:
    try:
        st = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    info: dict[str, Any] = {"pid": pid}
    for line in st.splitlines():
        k, _, v = line.partition(":")
        if k == "Name":
            info["comm"] = v.strip()
        elif k == "PPid":
            info["ppid"] = int(v)
        elif k == "Uid":
            info["uid"] = int(v.split()[0])
        elif k == "VmRSS":
            info["rss_kb"] = int(v.split()[0])
    info.setdefault("rss_kb", 0)
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                info["pss_kb"] = int(line.split()[1])
    except OSError:
        pass
    try:
        info["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        info["cmdline"] = ""
    return info


def mine(pid: int) -> bool:
    """A process holding the bench's directories in its command line or environment (so other users of the bench
    account, e.g. a concurrent test run, are not counted)."""
    needle = str(WORK).encode()
    for f in ("cmdline", "environ"):
        try:
            if needle in Path(f"/proc/{pid}/{f}").read_bytes():
                return True
        except OSError:
            pass
    return False


def my_processes(uid: int) -> list[dict[str, Any]]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        info = proc_info(int(d.name))
        if info and info.get("uid") == uid and mine(info["pid"]):
            out.append(info)
    return out


def helpers_of(pids: dict[str, int], extra_shared: list[int]) -> dict[str, Any]:
    """Ancestors of each container process up to pid 1, split into per-container helpers (ancestor of that one
    container only) and shared ones (ancestor of several; plus extra_shared, e.g. podman's pause process)."""
    chains: dict[str, list[dict[str, Any]]] = {}
    count: dict[int, int] = {}
    for name, pid in pids.items():
        chain = []
        info = proc_info(pid)
        seen = set()
        while info and info.get("ppid", 0) > 1 and info["ppid"] not in seen:
            seen.add(info["ppid"])
            info = proc_info(info["ppid"])
            if not info or info.get("comm") == "systemd":
                break
            chain.append(info)
            count[info["pid"]] = count.get(info["pid"], 0) + 1
        chains[name] = chain
    per_rss, per_pss, comms = [], [], {}
    for chain in chains.values():
        own = [p for p in chain if count[p["pid"]] == 1]
        per_rss.append(sum(p["rss_kb"] for p in own))
        per_pss.append(sum(p.get("pss_kb", 0) for p in own))
        key = " + ".join(p["comm"] for p in own)
        comms[key] = comms.get(key, 0) + 1
    shared_pids = {p for p, c in count.items() if c > 1} | set(extra_shared)
    shared = [i for i in (proc_info(p) for p in sorted(shared_pids)) if i]
    n = max(len(pids), 1)
    shared_rss = sum(p["rss_kb"] for p in shared)
    shared_pss = sum(p.get("pss_kb", 0) for p in shared)
    res: dict[str, Any] = {
        "containers": len(pids),
        "per_container_helpers": comms,
        "shared_helpers": [{k: p.get(k) for k in ("pid", "comm", "rss_kb", "pss_kb", "cmdline")} for p in shared],
    }
    if per_rss:
        res.update({
            "helper_rss_kb_median": percentile(per_rss, 50),
            "helper_pss_kb_median": percentile(per_pss, 50),
            "shared_rss_kb_per_container": round(shared_rss / n, 1),
            "shared_pss_kb_per_container": round(shared_pss / n, 1),
            "rss_kb_per_container": round(percentile(per_rss, 50) + shared_rss / n, 1),
            "pss_kb_per_container": round(percentile(per_pss, 50) + shared_pss / n, 1),
        })
    return res


def _timed_phase(lab: Lab, label: str, cols: dict[str, dict[str, Any]], labels: dict[str, str], warmup: int,
                 iterations: int) -> dict[str, dict[str, Any]]:
    log(f"{label}: {warmup} warm-up + {iterations} iterations of {', '.join(cols)} (rotating order)")
    out = lab.timed(label, cols, warmup, iterations) if cols else {"samples": {}, "status": {}}
    res = {}
    for c, spec in cols.items():
        st = out["status"].get(c, "not run")
        if st != "ok":
            log(f"{label} {c}: {st}")
        res[c] = timed_column(labels[c], spec["argv"], st, out["samples"].get(c, []))
        if spec.get("setup"):
            res[c]["setup_untimed"] = [shlex.join(s) for s in spec["setup"]]
    return res


def _ratio(tools: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    if "median_s" in tools.get(a, {}) and "median_s" in tools.get(b, {}):
        return round(tools[a]["median_s"] / tools[b]["median_s"], 4)
    return None


# -- the phases -------------------------------------------------------------------------------------------------


def b2_exec(lab: Lab, warmup: int, iterations: int) -> dict[str, Any]:
    cols: dict[str, dict[str, Any]] = {}
    labels = {"sbx": "sbx exec CTR true", "podman": "podman exec CTR true",
              "nsenter": "nsenter -t PID -U -m -u -i -n -p -C true into sbx's container"}
    pid = None
    status: dict[str, str] = {}
    for tool in lab.tools():
        name = f"{PREFIX}-exec"
        try:
            lab.call(tool, "run", "-d", "--network", "none", "--name", name, lab.ref(tool), "sleep", "300")
        except BenchError as e:
            status[tool] = f"failed: run -d: {e}"
            continue
        cols[tool] = {"argv": lab.cmd(tool, "exec", name, "true"), "env": lab.env(tool)}
        if tool == "sbx":
            try:
                pid = lab.inspect_pids("sbx", [name]).get(name)
            except (BenchError, ValueError, KeyError) as e:
                status["nsenter"] = f"unavailable: sbx inspect: {e}"
    if pid:
        cols["nsenter"] = {"argv": ["nsenter", "-t", str(pid), "-U", "-m", "-u", "-i", "-n", "-p", "-C", "true"],
                           "env": lab.env()}
    tools = _timed_phase(lab, "B2", cols, labels, warmup, iterations)
    for t, st in status.items():
        tools[t] = timed_column(labels[t], None, st, [])
    for tool in lab.tools():
        run(lab.user.wrap(lab.rm_force(tool, f"{PREFIX}-exec"), lab.env(tool)), check=False, timeout=120)
    ratios = {k: v for k, v in (("sbx/podman", _ratio(tools, "sbx", "podman")),
                                ("sbx/nsenter", _ratio(tools, "sbx", "nsenter"))) if v is not None}
    return {"what": "exec CTR true into a running sleep 300 container", "tools": tools, "ratios": ratios,
            "targets": {"sbx <= 0.2 x podman": ratios["sbx/podman"] <= 0.2 if "sbx/podman" in ratios else None}}


def b3_b10(lab: Lab, warmup: int, iterations: int) -> tuple[dict[str, Any], dict[str, Any]]:
    created: dict[str, Any] = {}
    for tool in lab.tools():
        jobs = [{"argv": lab.cmd(tool, "run", "-d", "--network", "none", "--name", f"{PREFIX}-ps-{k:03d}",
                                 lab.ref(tool), "sleep", "300"), "env": lab.env(tool)} for k in range(N_PS)]
        log(f"B3: creating {N_PS} running containers with {tool} (4 at a time)")
        out = lab.parallel(f"B3 {tool} create", jobs, 4)
        ok = [r["s"] for r in out["results"] if r["status"] == "ok"]
        errs = [r["status"] for r in out["results"] if r["status"] != "ok"]
        created[tool] = {"ok": len(ok), "failed": len(errs), "first_errors": errs[:3],
                         "wall_s": round(out["wall_s"], 2)}
        if ok:
            created[tool].update({"run_d_median_ms_4_at_a_time": round(percentile(ok, 50) * 1000, 1)})

    # B10 while the 100 run.
    b10: dict[str, Any] = {"what": f"memory of the helper processes per running container ({N_PS} running sleep 300 "
                           "containers per tool, --network none: no network helper)", "tools": {}}
    for tool in lab.tools():
        try:
            names = [f"{PREFIX}-ps-{k:03d}" for k in range(N_PS)]
            pids = {n: p for n, p in lab.inspect_pids(tool, names).items() if p > 0}
        except (BenchError, ValueError, KeyError) as e:
            b10["tools"][tool] = {"status": f"failed: inspect: {e}"}
            continue
        shared = []
        if tool == "podman":
            try:
                pause = int((lab.podman.work / "xdg-run" / "libpod" / "tmp" / "pause.pid").read_text().strip())
                shared.append(pause)
            except (OSError, ValueError):
                pass
        b10["tools"][tool] = {"status": "ok", **helpers_of(pids, shared)}
    st, pt = b10["tools"].get("sbx", {}), b10["tools"].get("podman", {})
    if "rss_kb_per_container" in st and "rss_kb_per_container" in pt:
        b10["ratios"] = {"sbx/podman rss": round(st["rss_kb_per_container"] / pt["rss_kb_per_container"], 2),
                         "sbx/podman pss": round(st["pss_kb_per_container"] / max(pt["pss_kb_per_container"], 1), 2)}
        b10["targets"] = {"sbx <= 1.0 x podman (rss)": b10["ratios"]["sbx/podman rss"] <= 1.0}

    py = interpreter_of(lab.sbx.cmd)
    cols: dict[str, dict[str, Any]] = {}
    labels = {"sbx ps": f"sbx ps -a ({N_PS} running)", "podman ps": f"podman ps -a ({N_PS} running)",
              "sbx --version": "sbx --version", "podman --version": "podman --version",
              "python": "python3 -I -S -c pass (sbx's interpreter)"}
    for tool in lab.tools():
        cols[f"{tool} ps"] = {"argv": lab.cmd(tool, "ps", "-a"), "env": lab.env(tool)}
        cols[f"{tool} --version"] = {"argv": lab.cmd(tool, "--version"), "env": lab.env(tool)}
    cols["python"] = {"argv": [py, "-I", "-S", "-c", "pass"], "env": lab.env()}
    images = make_images(lab)
    for tool in lab.tools():
        if images[tool]["ok"]:
            cols[f"{tool} images"] = {"argv": lab.cmd(tool, "images"), "env": lab.env(tool)}
            labels[f"{tool} images"] = f"{tool} images ({images[tool]['ok'] + 1} images)"
    tools = _timed_phase(lab, "B3", cols, labels, warmup, iterations)
    listed = {t: len(lab.names(t)) for t in lab.tools()}
    left = lab.remove_all()
    ratios = {k: v for k, v in (("sbx ps/podman ps", _ratio(tools, "sbx ps", "podman ps")),
                                ("sbx --version/podman --version", _ratio(tools, "sbx --version", "podman --version")),
                                ("sbx --version/python", _ratio(tools, "sbx --version", "python")),
                                ("sbx images/podman images", _ratio(tools, "sbx images", "podman images")))
              if v is not None}
    b3 = {"what": f"ps -a with {N_PS} running containers per tool (run -d IMG sleep 300, kept running); --version",
          "created": created, "images_imported": images, "listed_by_ps_a": listed, "tools": tools,
          "ratios": ratios,
          "left_after_rm_f": left,
          "targets": {"sbx ps <= 0.5 x podman ps": ratios["sbx ps/podman ps"] <= 0.5
                      if "sbx ps/podman ps" in ratios else None,
                      "sbx --version <= 2 x python": ratios["sbx --version/python"] <= 2
                      if "sbx --version/python" in ratios else None,
                      "sbx images <= 0.5 x podman images": ratios["sbx images/podman images"] <= 0.5
                      if "sbx images/podman images" in ratios else None}}
    return b3, b10


def make_images(lab: Lab) -> dict[str, Any]:
    """N_IMAGES - 1 more images per tool (besides the busybox one), each its own: `import` of a one-file tar."""
    import io
    import tarfile

    tars = []
    for k in range(1, N_IMAGES):
        path = WORK / f"img-{k:03d}.tar"
        data = f"image {k}\n".encode()
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo(f"image-{k:03d}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        os.chmod(path, 0o644)
        tars.append((k, path))
    made: dict[str, Any] = {}
    for tool in lab.tools():
        jobs = [{"argv": lab.cmd(tool, "import", str(path), f"{PREFIX}-img-{k:03d}:latest"), "env": lab.env(tool)}
                for k, path in tars]
        log(f"B3: importing {len(jobs)} images with {tool} (4 at a time)")
        out = lab.parallel(f"B3 {tool} import", jobs, 4)
        errs = [r["status"] for r in out["results"] if r["status"] != "ok"]
        made[tool] = {"ok": len(jobs) - len(errs), "failed": len(errs), "first_errors": errs[:3]}
    return made


def leak_state(lab: Lab) -> dict[str, Any]:
    procs = my_processes(lab.user.uid)
    dirs = {}
    for tool, paths in (("sbx", [lab.sbx.work / "data" / "sbx" / "containers", lab.sbx.run_dir / "sbx"]),
                        ("podman", [lab.podman.work / "storage" / "overlay-containers",
                                    lab.podman.work / "runroot" / "overlay-containers"])):
        found = []
        for p in paths:
            if p.is_dir():
                found += [str(c.relative_to(WORK)) for c in p.iterdir()
                          if c.is_dir() and len(c.name) >= 12 and all(ch in "0123456789abcdef" for ch in c.name)]
        dirs[tool] = found
    try:
        mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(WORK) in line]
    except OSError:
        mounts = []
    return {"processes": [{k: p.get(k) for k in ("pid", "comm", "rss_kb", "cmdline")} for p in procs],
            "container_dirs": dirs, "host_mounts": mounts,
            "ps_a": {t: lab.names(t) for t in lab.tools()}}


def b11_rm(lab: Lab, warmup: int, iterations: int) -> dict[str, Any]:
    labels = {"sbx": "sbx rm CTR (stopped)", "podman": "podman rm CTR (stopped)"}
    # sbx's foreground run (without --rm) leaves no container behind, so: run -d ... true, then wait.
    cols = {t: {"setup": [lab.cmd(t, "run", "-d", "--network", "none", "--name", f"{PREFIX}-rm-{{i}}", lab.ref(t),
                                  "true"), lab.cmd(t, "wait", f"{PREFIX}-rm-{{i}}")],
                "argv": lab.cmd(t, "rm", f"{PREFIX}-rm-{{i}}"), "env": lab.env(t)} for t in lab.tools()}
    tools = _timed_phase(lab, "B11 rm", cols, labels, warmup, iterations)
    ratios = {"sbx/podman": r} if (r := _ratio(tools, "sbx", "podman")) is not None else {}

    # Leak check: N_LEAK run -d / rm -f cycles (the rm -f timed as a by-product).
    lab.remove_all()
    time.sleep(1)
    before = leak_state(lab)
    llabels = {"sbx": "sbx rm -f CTR (running sleep 300)", "podman": "podman rm -f -t 0 CTR (running sleep 300)"}
    lcols = {t: {"setup": [lab.cmd(t, "run", "-d", "--network", "none", "--name", f"{PREFIX}-cyc-{{i}}", lab.ref(t),
                                   "sleep", "300")],
                 "argv": lab.rm_force(t, f"{PREFIX}-cyc-{{i}}"), "env": lab.env(t)} for t in lab.tools()}
    cycles = _timed_phase(lab, "B11 leak", lcols, llabels, 0, N_LEAK)
    after = leak_state(lab)
    for _ in range(10):  # a monitor may take a moment to go after rm -f
        if not after["processes"]:
            break
        time.sleep(0.5)
        after = leak_state(lab)
    before_pids = {p["pid"] for p in before["processes"]}
    leaks = {
        "new_processes": [p for p in after["processes"] if p["pid"] not in before_pids],
        "container_dirs": {t: [d for d in v if d not in before["container_dirs"].get(t, [])]
                           for t, v in after["container_dirs"].items()},
        "host_mounts": [m for m in after["host_mounts"] if m not in before["host_mounts"]],
        "ps_a": after["ps_a"],
    }
    zero = {t: not any(p for p in leaks["new_processes"] if (t == "podman") == ("conmon" in p["comm"] or
                                                                               "podman" in p["cmdline"]))
            and not leaks["container_dirs"].get(t) and not leaks["ps_a"].get(t) and not leaks["host_mounts"]
            for t in lab.tools()}
    return {"what": "rm of a stopped container (fresh per iteration, made untimed by run -d --name N IMG true; wait N)",
            "tools": tools, "ratios": ratios,
            "targets": {"sbx <= 0.3 x podman": ratios["sbx/podman"] <= 0.3 if "sbx/podman" in ratios else None,
                        "zero leaks (sbx)": zero.get("sbx")},
            "leak_check": {"cycles": N_LEAK, "cycle": "run -d --network none --name N IMG sleep 300; rm -f N",
                           "rm_f_timings": cycles, "before": before, "leaks": leaks, "zero_leaks": zero,
                           "note": "processes of the bench user holding the bench directory in cmdline/environ; "
                           "container mounts live in the containers' own mount namespaces, so host mountinfo only "
                           "catches mounts made in the host namespace (e.g. fuse-overlayfs)"}}


def b12_parallel(lab: Lab) -> dict[str, Any]:
    res: dict[str, Any] = {"what": f"{N_PARALLEL} x run -d --network none IMG sleep 30 started at once", "tools": {}}
    for tool in lab.tools():
        jobs = [{"argv": lab.cmd(tool, "run", "-d", "--network", "none", "--name", f"{PREFIX}-par-{k:02d}",
                                 lab.ref(tool), "sleep", "30"), "env": lab.env(tool)} for k in range(N_PARALLEL)]
        log(f"B12: {N_PARALLEL} x {tool} run -d at once")
        out = lab.parallel(f"B12 {tool}", jobs, N_PARALLEL)
        xs = [r["s"] for r in out["results"] if r["status"] == "ok"]
        errs = [r["status"] for r in out["results"] if r["status"] != "ok"]
        running = len(lab.call(tool, "ps", "-q", check=False).split())
        e: dict[str, Any] = {"command": shlex.join(jobs[0]["argv"]), "ok": len(xs), "failed": len(errs),
                             "first_errors": errs[:3], "running_after": running, "wall_s": round(out["wall_s"], 2)}
        if xs:
            e.update({"median_ms": round(percentile(xs, 50) * 1000, 1), "p90_ms": round(percentile(xs, 90) * 1000, 1),
                      "p99_ms": round(percentile(xs, 99) * 1000, 1), "max_ms": round(max(xs) * 1000, 1),
                      "p99/median": round(percentile(xs, 99) / percentile(xs, 50), 2),
                      "samples_s": [round(x, 4) for x in xs]})
        e["all_started"] = len(xs) == N_PARALLEL and running >= N_PARALLEL
        res["tools"][tool] = e
        lab.remove_all()
    s = res["tools"].get("sbx", {})
    res["targets"] = {"sbx: all 50 start": s.get("all_started"),
                      "sbx: p99 <= 3 x median": s["p99/median"] <= 3 if "p99/median" in s else None}
    p = res["tools"].get("podman", {})
    if "median_ms" in s and "median_ms" in p:
        res["ratios"] = {"sbx/podman median": round(s["median_ms"] / p["median_ms"], 3),
                         "sbx/podman wall": round(s["wall_s"] / p["wall_s"], 3)}
    return res


def bench_lifecycle(iterations: int = 30, warmup: int = 3) -> dict[str, Any]:
    with exclusive():
        return _bench_lifecycle(max(MIN_ITERATIONS, iterations), max(MIN_WARMUP, warmup))


def _bench_lifecycle(iterations: int, warmup: int) -> dict[str, Any]:
    t_start = time.monotonic()
    user = User.resolve()
    lab = Lab(user)
    result: dict[str, Any] = {"benchmark": "B2 B3 B10 B11 B12", "what": "container life cycle: exec, ps, helper "
                              "memory, rm and leaks, parallel start",
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "machine": machine_facts(), "user": user.name}
    try:
        lab.prepare()
        result["status"] = dict(lab.status)
        result["b2"] = b2_exec(lab, warmup, iterations)
        result["b3"], result["b10"] = b3_b10(lab, warmup, iterations)
        result["b11"] = b11_rm(lab, warmup, max(5, iterations * 2 // 3))
        result["b12"] = b12_parallel(lab)
        driver = lab.sbx.work / "data" / "sbx" / "driver.json"
        result["storage_driver"] = {"sbx": driver.read_text().strip() if driver.exists() else "sbx default",
                                    "podman": "overlay"}
        result["versions"] = {
            "sbx": (lab.call("sbx", "--version", check=False).strip().splitlines() or [None])[0],
            "sbx_command": shlex.join(lab.sbx.cmd),
            "podman": version_of(["podman", "--version"]),
            "runc": version_of(["runc", "--version"]),
            "conmon": version_of(["conmon", "--version"]),
            "nsenter": version_of(["nsenter", "--version"]),
        }
    finally:
        lab.cleanup()
        result["left_after_cleanup"] = [{k: p.get(k) for k in ("pid", "comm", "cmdline")}
                                        for p in my_processes(user.uid)]
    result["network_backend"] = "none (--network none for every container)"
    result["protocol"] = {
        "warmup": warmup, "iterations": iterations, "b11_rm_iterations": max(5, iterations * 2 // 3),
        "order": "rotating", "timing": "perf_counter around spawn + wait in one timer process running as the bench "
        "user (runuser not counted); stdout to /dev/null", "p90": "linear interpolation between closest ranks"}
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def render(r: dict[str, Any]) -> str:
    p = r["protocol"]
    lines = [f"lifecycle: {p['warmup']} warm-up + {p['iterations']} iterations (B11 rm: {p['b11_rm_iterations']}); "
             "rotating order; --network none"]
    t = Table(["figure", "tool", "median ms", "p90 ms", "status"])
    for key, fig in (("b2", "B2 exec"), ("b3", "B3"), ("b11", "B11 rm")):
        for name, e in r.get(key, {}).get("tools", {}).items():
            t.add(fig, name, e.get("median_ms"), e.get("p90_ms"), tail(e["status"], 1)[:80])
    for name, e in r.get("b11", {}).get("leak_check", {}).get("rm_f_timings", {}).items():
        t.add("B11 rm -f", name, e.get("median_ms"), e.get("p90_ms"), tail(e["status"], 1)[:80])
    lines.append(t.render())
    m = Table(["B10 per container", "helpers", "RSS KiB", "PSS KiB", "shared RSS/ctr"])
    for name, e in r.get("b10", {}).get("tools", {}).items():
        m.add(name, ", ".join(f"{k} x{v}" for k, v in e.get("per_container_helpers", {}).items()) or e.get("status"),
              e.get("rss_kb_per_container"), e.get("pss_kb_per_container"), e.get("shared_rss_kb_per_container"))
    lines.append(m.render())
    b = Table(["B12 50 at once", "ok", "running", "median ms", "p99 ms", "p99/median", "wall s"])
    for name, e in r.get("b12", {}).get("tools", {}).items():
        b.add(name, e.get("ok"), e.get("running_after"), e.get("median_ms"), e.get("p99_ms"), e.get("p99/median"),
              e.get("wall_s"))
    lines.append(b.render())
    for key in ("b2", "b3", "b10", "b11", "b12"):
        sec = r.get(key, {})
        if sec.get("ratios") or sec.get("targets"):
            lines.append(f"{key.upper()}: " + ", ".join(f"{k} = {v}" for k, v in sec.get("ratios", {}).items())
                         + ("; " if sec.get("ratios") else "")
                         + ", ".join(f"{k}: {v}" for k, v in sec.get("targets", {}).items()))
    lc = r.get("b11", {}).get("leak_check", {})
    if lc:
        lk = lc["leaks"]
        lines.append(f"B11 leaks after {lc['cycles']} run -d/rm -f cycles: zero = {lc['zero_leaks']}; new processes "
                     f"{len(lk['new_processes'])}, dirs {sum(len(v) for v in lk['container_dirs'].values())}, host "
                     f"mounts {len(lk['host_mounts'])}, ps -a {sum(len(v) for v in lk['ps_a'].values())}")
    if r.get("left_after_cleanup"):
        lines.append(f"NOTE: processes left after clean-up: {r['left_after_cleanup'][:5]}")
    lines.append(f"wall time {r.get('wall_s')} s")
    return "\n".join(lines)


def measure(iterations: int, warmup: int, only: list[str] | None = None) -> dict[str, Any]:
    del only  # every phase needs both tools' stores; narrowing is not supported
    return bench_lifecycle(iterations=iterations, warmup=warmup)


def figures(result: dict[str, Any]) -> list[Figure]:
    """sbx beside its baselines, for the summary of `make bench`."""
    b3 = result.get("b3", {}).get("tools", {})
    return (compare("B2 exec true", result.get("b2", {}).get("tools", {}), "sbx", ["podman", "nsenter"])
            + compare("B3 ps -a (100 running)", b3, "sbx ps", ["podman ps"])
            + compare("B3 --version", b3, "sbx --version", ["podman --version", "python"])
            + compare("B3 images (50)", b3, "sbx images", ["podman images"])
            + compare("B11 rm (stopped)", result.get("b11", {}).get("tools", {}), "sbx", ["podman"]))
