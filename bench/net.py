"""B1n and B8: published ports, sbx against rootless podman and the raw helpers, side by side in one run.

The image is a busybox-static root with ``httpd``, ``nc`` and one page in ``/www`` (``sbx import``-ed, ``sbx save``-d,
``podman load``-ed from those bytes), everything as the bench user.

* B1n ``run -d --name N -p PORT:80 IMG httpd -f -p 80 -h /www`` until ``GET http://127.0.0.1:PORT/`` answers 200,
  for sbx with slirp4netns (its default) and with pasta, and podman with ``--network slirp4netns`` and
  ``--network pasta`` (podman's own port handler for each); the container is removed untimed after each sample.
* B8  one TCP stream host -> container through the published port for a fixed time (``SBX_BENCH_NET_SECONDS``,
  default 5 s), drained by a python3 sink reading 1 MiB at a time (the host's, bound into the container
  read-only). Columns: sbx slirp4netns, sbx pasta, the raw tools driven by hand (``unshare -Urn`` + ``slirp4netns
  --configure --mtu=65520 --disable-host-loopback`` and ``add_hostfwd`` on its API socket; ``pasta --config-net
  -t``), and host loopback (the same sink on the host). Throughput = bytes sent until the receiver's close / time,
  Gbit/s. Podman 4.3 (Debian 12) has no ``--network pasta``: that column reports the failure.

Timing: B1n in one timer process (system python3 as the bench user: spawn + wait of ``run -d``, then the HTTP poll),
warm-ups first, rotating order; B8's sender is the harness itself (loopback only). The summary's figures: B1n sbx /
podman per network; B8 as seconds per GB (8 / Gbit/s), sbx / raw helper and sbx / host loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
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
    log,
    machine_facts,
    run,
    summary,
    tail,
    version_of,
)
from bench.lifecycle import Lab
from bench.start import BUSYBOX

TITLE = "B1n: run -d -p until the port answers vs podman; B8: TCP through -p vs raw slirp4netns/pasta and loopback"
ORDER = 21  # place in `python -m bench` and its summary

WORK = BENCH_DIR / "work" / "net"
SINK_PORT = 5001
SECONDS = float(os.environ.get("SBX_BENCH_NET_SECONDS", "5"))
HTTP_TIMEOUT = 30.0
B8_ITERATIONS = 5
# sbx beside the raw helper it drives and beside host loopback (the ceiling)
B8_PAIRS = (("sbx slirp4netns", "raw slirp4netns"), ("sbx pasta", "raw pasta"), ("sbx slirp4netns", "host loopback"),
            ("sbx pasta", "host loopback"))

# Runs as the bench user with the system python3: {"columns": {name: {"start", "stop", "env", "port"}}, "warmup",
# "iterations"}; "{i}" in argv is the iteration. Output: {"samples": {name: [s...]}, "status": {name: str}}.
TIMER_SOURCE = r'''
import json, socket, subprocess, sys, time

plan = json.load(sys.stdin)


def answered(port, deadline):
    request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
            if data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]:
                return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


def call(argv, env):
    cp = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        timeout=120)
    if cp.returncode != 0:
        return "failed: exit %d: %s" % (cp.returncode, " | ".join(cp.stderr.decode(errors="replace").splitlines()[-3:]))
    return "ok"


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
        sub = lambda argv: [a.replace("{i}", str(it)) for a in argv]
        t0 = time.perf_counter()
        st = call(sub(c["start"]), c["env"])
        if st == "ok" and not answered(c["port"], t0 + plan["http_timeout"]):
            st = "failed: no HTTP answer on 127.0.0.1:%d" % c["port"]
        secs = time.perf_counter() - t0
        call(sub(c["stop"]), c["env"])
        if st != "ok":
            status[name] = st
            continue
        if it >= plan["warmup"]:
            samples[name].append(secs)
    print("[bench] B1n iteration %d/%d" % (it + 1, total), file=sys.stderr, flush=True)
json.dump({"samples": samples, "status": status}, sys.stdout)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_root(user: User) -> Path:
    """A busybox-static root with httpd, nc and one page; a tar of it (root-owned entries, for sbx import)."""
    if not BUSYBOX.exists():
        raise BenchError(f"{BUSYBOX} missing: install busybox-static (scripts/bench-setup.sh)")
    root = WORK / "rootfs"
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "www"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in ("true", "sh", "sleep", "httpd", "nc"):
        (root / "bin" / name).symlink_to("busybox")
    (root / "www" / "index.html").write_text("hello\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    tar = WORK / "httpd-rootfs.tar"
    run(["tar", "--owner=0", "--group=0", "--numeric-owner", "--sort=name", "--mtime=@0", "-C", str(root), "-cf",
         str(tar), "."], what="tar of the httpd root")
    run(["chown", "-R", f"{user.uid}:{user.gid}", str(root), str(tar)])
    return tar


class NetLab(Lab):
    """The lifecycle bench's two prepared tools, in this benchmark's own directories."""

    def __init__(self, user: User) -> None:
        super().__init__(user)
        self.sbx.work = WORK / "sbx"
        self.sbx.run_dir = Path(f"/tmp/netb-run.{user.uid}")
        self.podman.work = WORK / "podman"
        self.timer = WORK / "timer.py"

    def prepare(self) -> None:
        drop_tree(WORK)
        self.user.mkdir(WORK)
        tar = build_root(self.user)
        archive = WORK / "httpd-image.tar"
        try:
            self.sbx.prepare(tar, archive)
        except BenchError as e:
            self.status = {"sbx": f"unavailable: {e}", "podman": f"unavailable: sbx import/save failed: {e}"}
            return
        try:
            self.podman.prepare(archive)
        except BenchError as e:
            self.status["podman"] = f"unavailable: {e}"
        self.timer.write_text(TIMER_SOURCE)
        os.chmod(self.timer, 0o644)

    def cleanup(self) -> None:
        try:
            self.remove_all()
        except BenchError as e:
            log(f"clean-up: {e}")
        pid_file = self.podman.work / "xdg-run" / "libpod" / "tmp" / "pause.pid"
        with contextlib.suppress(OSError, ValueError):  # podman 4.3's pause process is catatonit: Podman's own
            pid = int(pid_file.read_text().strip())       # clean-up looks for "podman" and leaves it
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("catatonit", "podman pause"):
                os.kill(pid, 9)
        self.podman.cleanup()
        drop_tree(WORK)
        drop_tree(self.sbx.run_dir)


# -- B1n --------------------------------------------------------------------------------------------------------


def b1n(lab: NetLab, warmup: int, iterations: int) -> dict[str, Any]:
    columns = {}
    for tool, network in (("sbx", "slirp4netns"), ("sbx", "pasta"), ("podman", "slirp4netns"), ("podman", "pasta")):
        if not lab.ok(tool):
            continue
        port = free_port()
        name = f"b1n-{tool}-{network}-{{i}}"
        start = lab.cmd(tool, "run", "-d", "--name", name, "--network", network, "-p", f"{port}:80", lab.ref(tool),
                        "httpd", "-f", "-p", "80", "-h", "/www")
        columns[f"{tool} {network}"] = {"start": start, "stop": lab.rm_force(tool, name), "env": lab.env(tool),
                                        "port": port}
    plan = {"columns": columns, "warmup": warmup, "iterations": iterations, "http_timeout": HTTP_TIMEOUT}
    cp = run(lab.user.wrap(["/usr/bin/python3", "-I", "-S", str(lab.timer)]), input=json.dumps(plan),
             timeout=(warmup + iterations) * len(columns) * 60 + 60, what="B1n timer")
    data = json.loads(cp.stdout)
    out: dict[str, Any] = {}
    for name, column in columns.items():
        xs = data["samples"][name]
        out[name] = {"status": data["status"][name], "command": " ".join(column["start"]),
                     **({"summary_ms": stats([x * 1000 for x in xs])} if xs else {})}
    return out


# -- B8 ---------------------------------------------------------------------------------------------------------


def send(port: int, seconds: float) -> float:
    """Gbit/s of one stream to 127.0.0.1:PORT for ``seconds``: the time runs until the receiver closes, so what
    the helpers still buffer is counted."""
    chunk = b"\0" * (1 << 20)
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)
    sent = 0
    with sock:
        sock.settimeout(60)
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            sock.sendall(chunk)
            sent += len(chunk)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        elapsed = time.perf_counter() - t0
    return sent * 8 / elapsed / 1e9


# The receiver: the host's python3 (bound into the container read-only), reading 1 MiB at a time; busybox nc reads
# a few KiB per call and was the bottleneck of every column, host loopback included.
SINK_PY = ("import socket, sys\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           "s.bind(('0.0.0.0', int(sys.argv[1])))\ns.listen(4)\nwhile True:\n    c, _ = s.accept()\n"
           "    while c.recv(1 << 20):\n        pass\n    c.close()\n")
HOST_LIBS = ("-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro")


def sink(port: int = SINK_PORT) -> list[str]:
    return ["/usr/bin/python3", "-I", "-S", "-c", SINK_PY, str(port)]


def wait_listening(port: int, timeout: float = 20) -> None:
    """Until the sink behind ``port`` takes a connection (a probe the sink then drains)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"x")
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(2)
                if sock.recv(1) == b"":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"the sink on 127.0.0.1:{port} never answered")


class RawSlirp:
    """slirp4netns driven by hand: a sink in ``unshare -Urn``, the helper with the flags sbx uses, one hostfwd."""

    def __init__(self, user: User, port: int) -> None:
        self.user, self.port, self.procs = user, port, []
        self.sock = WORK / "raw-slirp.sock"

    def start(self) -> None:
        sink_process = subprocess.Popen(self.user.wrap(["unshare", "-Urn", *sink()]), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.procs.append(sink_process)
        pid = _child_pid(sink_process.pid)
        helper = subprocess.Popen(self.user.wrap(["slirp4netns", "--configure", "--mtu=65520",
                                                  "--disable-host-loopback", f"--api-socket={self.sock}", str(pid),
                                                  "tap0"]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(helper)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if time.monotonic() > deadline:
                raise BenchError("raw slirp4netns made no API socket")
            time.sleep(0.02)
        request = {"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1",
                                                           "host_port": self.port, "guest_port": SINK_PORT}}
        with socket.socket(socket.AF_UNIX) as api:
            api.connect(str(self.sock))
            api.sendall(json.dumps(request).encode())
            api.shutdown(socket.SHUT_WR)
            answer = api.recv(4096)
        if b"error" in answer:
            raise BenchError(f"raw slirp4netns add_hostfwd: {answer!r}")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _kill_tree(proc.pid)
        self.procs.clear()


class RawPasta(RawSlirp):
    def start(self) -> None:
        sink_process = subprocess.Popen(self.user.wrap(["unshare", "-Urn", *sink()]), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.procs.append(sink_process)
        pid = _child_pid(sink_process.pid)
        pid_file = WORK / "raw-pasta.pid"
        helper = subprocess.Popen(self.user.wrap(["pasta", "--config-net", "-f", "-q", "-t", f"{self.port}:{SINK_PORT}",
                                                  "-u", "none", "-T", "none", "-U", "none", "-P", str(pid_file),
                                                  str(pid)]),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(helper)
        deadline = time.monotonic() + 10
        while not pid_file.exists():
            if time.monotonic() > deadline:
                raise BenchError("raw pasta wrote no pid file")
            time.sleep(0.02)


class HostSink(RawSlirp):
    def start(self) -> None:
        self.procs.append(subprocess.Popen(self.user.wrap(sink(self.port)), stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))


def _child_pid(pid: int, timeout: float = 10) -> int:
    """The process at the bottom of runuser/env/unshare's chain (the one in the new namespaces)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = pid
        while True:
            try:
                children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            except OSError:
                break
            if not children:
                break
            current = int(children[0])
        try:
            if os.readlink(f"/proc/{current}/ns/net") != os.readlink("/proc/self/ns/net"):
                return current
        except OSError:
            pass
        time.sleep(0.02)
    raise BenchError("the sink's namespace never appeared")


def _kill_tree(pid: int) -> None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        _kill_tree(int(child))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def b8(lab: NetLab, iterations: int) -> dict[str, Any]:
    setups: dict[str, Any] = {}
    started: list[tuple[str, str]] = []
    for network in ("slirp4netns", "pasta"):
        if lab.ok("sbx"):
            port = free_port()
            name = f"b8-{network}"
            try:
                lab.call("sbx", "run", "-d", "--name", name, "--network", network,
                         "-p", f"127.0.0.1:{port}:{SINK_PORT}", *HOST_LIBS, lab.ref("sbx"), *sink())
                started.append(("sbx", name))
                setups[f"sbx {network}"] = port
            except BenchError as e:
                setups[f"sbx {network}"] = f"failed: {e}"
    raws = {"raw slirp4netns": RawSlirp, "raw pasta": RawPasta, "host loopback": HostSink}
    running = []
    for label, kind in raws.items():
        raw = kind(lab.user, free_port())
        try:
            raw.start()
            running.append(raw)
            setups[label] = raw.port
        except BenchError as e:
            raw.stop()
            setups[label] = f"failed: {e}"
    out: dict[str, Any] = {}
    try:
        labels = [label for label, port in setups.items() if isinstance(port, int)]
        for label in labels:
            try:
                wait_listening(setups[label])
            except BenchError as e:
                setups[label] = f"failed: {e}"
        labels = [label for label in labels if isinstance(setups[label], int)]
        rates: dict[str, list[float]] = {label: [] for label in labels}
        for it in range(iterations):
            k = it % max(len(labels), 1)
            for label in labels[k:] + labels[:k]:
                rates[label].append(send(setups[label], SECONDS))
            log(f"B8 iteration {it + 1}/{iterations}")
        for label, port in setups.items():
            if isinstance(port, int):
                xs = rates[label]
                out[label] = {"status": "ok", "gbit_s": stats(xs)}
            else:
                out[label] = {"status": port}
    finally:
        for raw in running:
            raw.stop()
        for tool, name in started:
            lab.call(tool, "rm", "-f", name, check=False)
    return out


# -- the report -------------------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float]:
    """summary() without its unit in the key names (these are milliseconds or Gbit/s)."""
    return {key.removesuffix("_s"): value for key, value in summary(values).items()}


def render(result: dict[str, Any]) -> str:
    lines = []
    table = Table(["B1n: run -d -p until HTTP 200", "median ms", "p90 ms", "status"])
    for name, entry in result["b1n"].items():
        s = entry.get("summary_ms") or {}
        table.add(name, _f(s.get("median")), _f(s.get("p90")), tail(entry["status"], 1)[:100])
    lines.append(table.render())
    ratios = result.get("b1n_ratios", {})
    if ratios:
        lines.append("  " + ", ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()))
    table = Table(["B8: one TCP stream through -p", "median Gbit/s", "p90 Gbit/s", "status"])
    for name, entry in result["b8"].items():
        s = entry.get("gbit_s") or {}
        table.add(name, _f(s.get("median"), 2), _f(s.get("p90"), 2), tail(entry["status"], 1)[:100])
    lines.append(table.render())
    ratios = result.get("b8_ratios", {})
    if ratios:
        lines.append("  " + ", ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()))
    if "wall_s" in result:
        lines.append(f"wall time {result['wall_s']} s")
    return "\n\n".join(lines)


def _f(value: float | None, digits: int = 1) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    try:
        return a[key]["median"] / b[key]["median"]
    except (TypeError, KeyError, ZeroDivisionError):
        return None


def measure(iterations: int, warmup: int, only: list[str] | None = None) -> dict[str, Any]:
    del only  # every figure is sbx beside a baseline of the same network: all columns always run
    user = User.resolve()
    t_start = time.monotonic()
    with exclusive():
        lab = NetLab(user)
        try:
            lab.prepare()
            result: dict[str, Any] = {
                "benchmark": "B1n, B8",
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine_facts(),
                "versions": {"slirp4netns": version_of(["slirp4netns", "--version"]),
                             "podman": version_of(["podman", "--version"])},
                "status": dict(lab.status),
                "b1n": b1n(lab, max(warmup, 3), max(iterations, 30)),
                "b8": b8(lab, B8_ITERATIONS),
            }
        finally:
            lab.cleanup()
    b1n_ = result["b1n"]
    result["b1n_ratios"] = {
        f"{tool} / podman {net}": value
        for tool in ("sbx slirp4netns", "sbx pasta") for net in ("slirp4netns", "pasta")
        if (value := _ratio({"x": (b1n_.get(tool) or {}).get("summary_ms")},
                            {"x": (b1n_.get(f"podman {net}") or {}).get("summary_ms")}, "x")) is not None
    }
    b8_ = result["b8"]
    result["b8_ratios"] = {
        f"{a} / {b}": value for a, b in B8_PAIRS
        if (value := _ratio({"x": (b8_.get(a) or {}).get("gbit_s")}, {"x": (b8_.get(b) or {}).get("gbit_s")}, "x"))
        is not None
    }
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def figures(result: dict[str, Any]) -> list[Figure]:
    """B1n: sbx (each network) beside podman (each network). B8 as seconds per GB moved (8 / Gbit/s), so that, as in
    every other figure, the ratio is sbx / baseline and below 1 means sbx is faster."""
    b1n_s = {name: {"median_s": e["summary_ms"]["median"] / 1000} for name, e in result["b1n"].items()
             if (e.get("summary_ms") or {}).get("median")}
    b8_s = {name: {"median_s": 8 / e["gbit_s"]["median"]} for name, e in result["b8"].items()
            if (e.get("gbit_s") or {}).get("median")}
    found: list[Figure] = []
    for net in ("slirp4netns", "pasta"):
        found += compare(f"B1n run -d -p to HTTP 200, {net}", b1n_s, f"sbx {net}",
                         ["podman slirp4netns", "podman pasta"])
    for net in ("slirp4netns", "pasta"):
        found += compare(f"B8 TCP via -p, s/GB, {net}", b8_s, f"sbx {net}",
                         [b for a, b in B8_PAIRS if a == f"sbx {net}"])
    return found
