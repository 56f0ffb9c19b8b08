"""B9: seccomp. The filter's cost inside sbx, and the start-up delta it makes, beside podman's.

Two parts, both as the bench user:

* in-process, in sbx's own interpreter (``$SBX_BENCH_CMD``'s python): importing ``pyseccomp``; building the default
  profile into BPF (``sandbox.security.compiler.build``, native arch + i386 + x32); the same for Podman's profile
  (``/usr/share/containers/seccomp.json``) when installed; reading a cached filter (``compile_cached``, what a start
  does once the profile was compiled); and loading it (no_new_privs + seccomp(2) in a forked child, timed there);
* start-up, B1's command with and without the policy, interleaved by B1's timer: ``sbx run --rm --network none IMG
  /bin/true`` with the default profile and with ``--security-opt seccomp=unconfined``; rootless podman the same way
  with and without ``--security-opt seccomp=unconfined``.

Targets (BENCHMARKS.md): build + load ≤ 2 ms; start-up delta ≤ 3 ms.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import Any

from bench.common import BenchError, Table, User, drop_tree, exclusive, log, machine_facts, run, write_json
from bench.start import (
    CMD_TIMEOUT,
    MIN_ITERATIONS,
    MIN_WARMUP,
    TIMER_SOURCE,
    WORK,
    Podman,
    Sbx,
    _entry,
    base_env,
    build_root,
)

# Runs in sbx's interpreter as the bench user; prints one JSON object.
INPROCESS_SOURCE = r'''
import json, os, statistics, sys, tempfile, time

def median_ms(fn, n):
    xs = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); xs.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(xs), 3), "min_ms": round(min(xs), 3), "n": n}

t0 = time.perf_counter()
import pyseccomp  # noqa: F401
import_ms = (time.perf_counter() - t0) * 1000
from sandbox.kernel import Kernel
from sandbox.kernel import constants as k
from sandbox.security import capabilities, compiler, profile

caps = capabilities.container_set()
out = {"import_pyseccomp_ms": round(import_ms, 2)}
default = profile.load(profile.locate("default"))
out["build_default"] = median_ms(lambda: compiler.build(default, caps), int(sys.argv[1]))
bpf = compiler.build(default, caps).bpf
out["default_instructions"] = len(bpf) // 8
podman_path = "/usr/share/containers/seccomp.json"
if os.path.exists(podman_path):
    podman = profile.load(podman_path)
    out["build_podman_profile"] = median_ms(lambda: compiler.build(podman, caps), int(sys.argv[1]))
    out["podman_profile_instructions"] = len(compiler.build(podman, caps).bpf) // 8
with tempfile.TemporaryDirectory() as cache:
    from pathlib import Path
    def cached():
        return compiler.compile_cached(profile.read_limited(profile.locate("default")), "default", caps, Path(cache))
    cached()
    out["cached_read"] = median_ms(cached, 200)

def load_once():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        kernel = Kernel()
        kernel.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        t = time.perf_counter(); kernel.seccomp_filter(bpf); ms = (time.perf_counter() - t) * 1000
        os.write(w, repr(ms).encode()); os._exit(0)
    os.close(w); value = float(os.read(r, 64)); os.close(r); os.waitpid(pid, 0)
    return value
loads = sorted(load_once() for _ in range(50))
out["load"] = {"median_ms": round(statistics.median(loads), 3), "min_ms": round(loads[0], 3), "n": len(loads)}
json.dump(out, sys.stdout)
'''


def bench_seccomp(iterations: int = 30, warmup: int = 3) -> dict[str, Any]:
    with exclusive():
        return _bench(iterations, warmup)


def _bench(iterations: int, warmup: int) -> dict[str, Any]:
    user = User.resolve()
    iterations, warmup = max(MIN_ITERATIONS, iterations), max(MIN_WARMUP, warmup)
    drop_tree(WORK)
    user.mkdir(WORK)
    _root, tar = build_root(user)
    archive = WORK / "busybox-image.tar"
    sbx = Sbx(user)
    sbx.prepare(tar, archive)
    script = WORK / "inprocess.py"
    script.write_text(INPROCESS_SOURCE)
    os.chmod(script, 0o644)
    cp = run(user.wrap([sbx.cmd[0], "-P", str(script), "20"], sbx.env), check=False, timeout=600)
    inprocess = json.loads(cp.stdout) if cp.returncode == 0 else {"status": f"failed: {cp.stderr[-400:]}"}

    argvs = {"sbx": sbx.argv()}
    argvs["sbx_unconfined"] = [*sbx.cmd, "run", "--rm", "--network", "none", "--security-opt", "seccomp=unconfined",
                               *sbx.argv()[len(sbx.cmd) + 4:]]
    envs = {"sbx": base_env(user, sbx.env), "sbx_unconfined": base_env(user, sbx.env)}
    status = {name: "ok" for name in ("sbx", "sbx_unconfined", "podman", "podman_unconfined")}
    podman = Podman(user)
    try:
        podman.prepare(archive)
        argvs["podman"] = podman.argv()
        base = podman.base()
        argvs["podman_unconfined"] = [*base, "run", "--rm", "--network", "none", "--security-opt",
                                      "seccomp=unconfined", *podman.argv()[len(base) + 4:]]
        envs["podman"] = envs["podman_unconfined"] = base_env(user, podman.env)
    except BenchError as error:
        status["podman"] = status["podman_unconfined"] = f"unavailable: {error}"
    timer = WORK / "timer.py"
    timer.write_text(TIMER_SOURCE)
    os.chmod(timer, 0o644)
    plan = {"columns": {c: {"argv": argvs[c], "env": envs[c]} for c in status if status[c] == "ok"},
            "warmup": warmup, "iterations": iterations, "timeout": CMD_TIMEOUT}
    log(f"B9: {warmup} warm-up + {iterations} iterations of {', '.join(plan['columns'])} (rotating order)")
    cp = run(user.wrap(["/usr/bin/python3", "-I", "-S", str(timer)]), input=json.dumps(plan),
             timeout=CMD_TIMEOUT * 3 + (warmup + iterations) * len(plan["columns"]) * 10, what="B9 timer")
    timed = json.loads(cp.stdout)
    for name, st in timed["status"].items():
        status[name] = st
    tools = {c: _entry(c, argvs.get(c), status[c], timed["samples"].get(c, [])) for c in status}
    podman.cleanup()

    def delta(a: str, b: str) -> float | None:
        if "median_ms" in tools[a] and "median_ms" in tools[b]:
            return round(tools[a]["median_ms"] - tools[b]["median_ms"], 2)
        return None

    result = {
        "benchmark": "B9",
        "inprocess": inprocess,
        "tools": tools,
        "sbx_seccomp_delta_ms": delta("sbx", "sbx_unconfined"),
        "podman_seccomp_delta_ms": delta("podman", "podman_unconfined"),
        "machine": machine_facts(),
        "commands": {c: shlex.join(argv) for c, argv in argvs.items()},
    }
    write_json("seccomp", result)
    return result


def main(iterations: int = 30, warmup: int = 3) -> None:
    started = time.monotonic()
    result = bench_seccomp(iterations, warmup)
    inprocess = result["inprocess"]
    table = Table(["figure", "median ms", "note"])
    for key, note in (("build_default", "compile sbx's default.json (x86_64 + i386 + x32)"),
                      ("build_podman_profile", "compile Podman's seccomp.json"),
                      ("cached_read", "read default.json, hash it, read the cached BPF (a start's cost)"),
                      ("load", "seccomp(2) of the default filter")):
        if isinstance(inprocess.get(key), dict):
            table.add(key, f"{inprocess[key]['median_ms']:.3f}", note)
    if "import_pyseccomp_ms" in inprocess:
        table.add("import pyseccomp", f"{inprocess['import_pyseccomp_ms']:.2f}", "avoided when the filter is cached")
    for name, entry in result["tools"].items():
        table.add(name, f"{entry['median_ms']:.1f}" if "median_ms" in entry else "-", entry["status"][:60])
    table.add("sbx delta", result["sbx_seccomp_delta_ms"], "default - unconfined")
    table.add("podman delta", result["podman_seccomp_delta_ms"], "default - unconfined")
    print(table.render())
    log(f"B9 took {time.monotonic() - started:.0f} s")
