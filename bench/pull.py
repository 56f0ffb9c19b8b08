"""B4: pull a two-layer Debian image (~68 MB gzip) from a loopback registry into an empty store.

Timed, each as the unprivileged bench user (sbxtest, via runuser when the harness runs as root):

* ``sbx``: ``sbx pull -q REF`` with ``XDG_DATA_HOME``/``SBX_CONFIG``/``XDG_RUNTIME_DIR`` pointing into a scratch dir;
  the command is ``$SBX_BENCH_CMD`` (shell words) or the bench's installed ``sbx`` (``bench.common.sbx_cmd``);
* ``podman``: rootless ``podman --runtime runc --cgroup-manager cgroupfs --storage-driver overlay pull -q``
  (falls back to vfs when overlay fails; ``SBX_BENCH_PODMAN_DRIVER`` forces one) with its own --root/--runroot;
* ``skopeo+umoci``: ``skopeo copy docker://REF oci:DIR:bench`` then ``umoci unpack --rootless``.

Before every pull the tool's store is deleted (untimed) and ``sync`` runs. One warm-up, then 5 iterations, the tools
interleaved in rotating order (ABC, BCA, CAB, ...). Throughput = compressed layer bytes / median seconds (MB = 1e6 B).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
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
    is_root,
    log,
    machine_facts,
    rotations,
    run,
    sbx_cmd,
    summary,
    sync,
    tail,
    timed,
    tree_bytes,
    version_of,
)
from bench.images import REPO, ImageInfo, Registry, disk_write_rate, ensure_image, inflate_rate

TITLE = "B4: sbx pull vs rootless podman pull vs skopeo copy + umoci unpack --rootless"
ORDER = 4  # place in `python -m bench` and its summary

WORK = BENCH_DIR / "work"
PULL_TIMEOUT = 300


class Tool:
    name = "?"
    label = "?"

    def __init__(self, user: User, reg: Registry, info: ImageInfo) -> None:
        self.user = user
        self.reg = reg
        self.info = info
        self.work = WORK / self.name
        self.status = "ok"
        self.reason = ""
        self.samples: list[float] = []
        self.parts: dict[str, list[float]] = {}
        self.store: dict[str, int] = {}

    # Overridden by each tool.
    def prepare(self) -> None:
        """Raise BenchError (with the reason) when the tool cannot run here."""

    def wipe(self) -> None:
        """Delete the tool's store (untimed)."""

    def pull(self) -> float:
        """Pull once; return wall seconds; raise BenchError on failure."""
        raise NotImplementedError

    def verify(self) -> None:
        """Check (untimed) that the pull left a usable image."""

    def fallback(self) -> bool:
        """After a failed warm-up: switch to another configuration and return True to retry, if there is one."""
        return False

    def store_dirs(self) -> list[Path]:
        """Where the pulled image ends up, to measure what the pull left on disk."""
        return []

    def measure_store(self) -> None:
        total = entries = 0
        for d in self.store_dirs():
            b, n = tree_bytes(d)
            total, entries = total + b, entries + n
        self.store = {"bytes": total, "entries": entries} if self.store_dirs() else {}

    def cleanup(self) -> None:
        drop_tree(self.work)

    def versions(self) -> dict[str, str | None]:
        return {}

    def details(self) -> dict[str, Any]:
        return {}

    def sh(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        return self.user.wrap(argv, env)


class Sbx(Tool):
    name = "sbx"
    label = "sbx pull"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.cmd = sbx_cmd()
        self.ref = os.environ.get("SBX_BENCH_SBX_REF", self.info.ref)
        self.driver = os.environ.get("SBX_BENCH_SBX_DRIVER")  # unset: sbx picks its default
        # An sbx subcommand timed right after the pull, for "until it can run" while pull does not unpack,
        # e.g. SBX_BENCH_SBX_THEN='create {ref}'. {ref} is replaced by the image reference.
        then = os.environ.get("SBX_BENCH_SBX_THEN", "")
        self.then = [w.replace("{ref}", self.ref) for w in shlex.split(then)]

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

    def prepare(self) -> None:
        self.user.mkdir(self.work)
        conf = [f'[registries."docker.io"]\nmirrors = ["{self.reg.host}"]\n']
        if self.driver:
            conf.insert(0, f'storage_driver = "{self.driver}"\n\n')
        cfg = self.work / "config.toml"
        cfg.write_text("".join(conf))
        os.chmod(cfg, 0o644)
        self.wipe()
        cp = run(self.sh([*self.cmd, "pull", "--help"], self.env), check=False, timeout=60)
        if cp.returncode != 0:
            raise BenchError(f"sbx pull --help exited {cp.returncode}: {tail(cp.stderr or cp.stdout, 3)}")

    def wipe(self) -> None:
        for d in ("data", "run", "cache", "tmp"):
            drop_tree(self.work / d)
        for d, mode in (("data", 0o755), ("run", 0o700), ("cache", 0o755), ("tmp", 0o700), ("config", 0o755)):
            self.user.mkdir(self.work / d, mode)

    def pull(self) -> float:
        secs = timed(self.sh([*self.cmd, "pull", "-q", self.ref], self.env), PULL_TIMEOUT, what="sbx pull")
        if self.then:
            secs += timed(self.sh([*self.cmd, *self.then], self.env), PULL_TIMEOUT, what=f"sbx {self.then[0]}")
        return secs

    def store_dirs(self) -> list[Path]:
        return [self.work / "data"]

    def verify(self) -> None:
        store = self.work / "data" / "sbx"
        if not store.is_dir() or not any(store.iterdir()):
            raise BenchError(f"sbx pull exited 0 but left nothing under {store}")

    def versions(self) -> dict[str, str | None]:
        cp = run(self.sh([*self.cmd, "--version"], self.env), check=False, timeout=60)
        return {"sbx": (cp.stdout.strip().splitlines() or [None])[0] if cp.returncode == 0 else None}

    def details(self) -> dict[str, Any]:
        return {
            "command": shlex.join(self.cmd),
            "ref": self.ref,
            "then": shlex.join(self.then) if self.then else None,
            "storage_driver": self.driver or "sbx default",
        }


class Podman(Tool):
    name = "podman"
    label = "podman pull (rootless)"

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        forced = os.environ.get("SBX_BENCH_PODMAN_DRIVER")
        self.drivers = [forced] if forced else ["overlay", "vfs"]
        self.driver = self.drivers[0]
        self.graph_status: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": str(self.work / "xdg-run"), "TMPDIR": str(self.work / "tmp")}

    def base(self) -> list[str]:
        return [
            "podman",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--storage-driver",
            self.driver,
            "--root",
            str(self.work / "storage"),
            "--runroot",
            str(self.work / "runroot"),
        ]

    def prepare(self) -> None:
        for exe in ("podman", "runc", "newuidmap"):
            if shutil.which(exe) is None:
                raise BenchError(f"{exe} is not installed; run scripts/bench-setup.sh")
        self.user.mkdir(self.work)
        self.user.mkdir(self.work / "xdg-run", 0o700)
        self.wipe()
        self._probe()

    def _probe(self) -> None:
        cp = run(
            self.sh([*self.base(), "info", "--format", "{{json .Store.GraphStatus}}"], self.env),
            check=False,
            timeout=120,
        )
        if cp.returncode != 0:
            if self.fallback():
                return
            raise BenchError(f"podman info failed: {tail(cp.stderr, 3)}")
        import json

        try:
            self.graph_status = json.loads(cp.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.graph_status = {}

    def wipe(self) -> None:
        # The pause process (the rootless user namespace podman keeps) lives on in xdg-run between pulls, as it
        # does for a real user; only images and layers go.
        for d in ("storage", "runroot", "tmp"):
            path = self.work / d
            if path.exists() and not is_root():
                run(self.sh(["podman", "unshare", "rm", "-rf", str(path)], self.env), check=False)
            drop_tree(path)
        self.user.mkdir(self.work / "tmp", 0o700)

    def pull(self) -> float:
        argv = [*self.base(), "pull", "-q", "--tls-verify=false", self.info.ref]
        return timed(self.sh(argv, self.env), PULL_TIMEOUT, what="podman pull")

    def verify(self) -> None:
        run(self.sh([*self.base(), "image", "exists", self.info.ref], self.env), timeout=60, what="podman image exists")

    def store_dirs(self) -> list[Path]:
        return [self.work / "storage"]

    def fallback(self) -> bool:
        i = self.drivers.index(self.driver)
        if i + 1 >= len(self.drivers):
            return False
        log(f"podman: storage driver {self.driver} failed, trying {self.drivers[i + 1]}")
        self.driver = self.drivers[i + 1]
        self.wipe()
        self._probe()
        return True

    def cleanup(self) -> None:
        pid_file = self.work / "xdg-run" / "libpod" / "tmp" / "pause.pid"
        try:
            pid = int(pid_file.read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("podman"):  # "podman pause"
                os.kill(pid, signal.SIGKILL)  # it blocks SIGTERM
        except (OSError, ValueError):
            pass
        self.wipe()
        super().cleanup()

    def versions(self) -> dict[str, str | None]:
        return {"podman": version_of(["podman", "--version"]), "runc": version_of(["runc", "--version"])}

    def details(self) -> dict[str, Any]:
        return {
            "storage_driver": self.driver,
            "graph_status": self.graph_status,
            "flags": "--runtime runc --cgroup-manager cgroupfs (events backend: file, chosen by podman)",
            "pause_process": "kept across iterations (steady state of a real user)",
        }


class SkopeoUmoci(Tool):
    name = "skopeo+umoci"
    label = "skopeo copy + umoci unpack --rootless"

    @property
    def env(self) -> dict[str, str]:
        return {"TMPDIR": str(self.work / "tmp"), "XDG_RUNTIME_DIR": str(self.work / "xdg-run")}

    def prepare(self) -> None:
        for exe in ("skopeo", "umoci"):
            if shutil.which(exe) is None:
                raise BenchError(f"{exe} is not installed; run scripts/bench-setup.sh")
        self.user.mkdir(self.work)
        self.user.mkdir(self.work / "xdg-run", 0o700)
        self.wipe()
        self.parts = {"skopeo_copy": [], "umoci_unpack": []}

    def wipe(self) -> None:
        for d in ("oci", "bundle", "tmp"):
            drop_tree(self.work / d)
        self.user.mkdir(self.work / "tmp", 0o700)

    def pull(self) -> float:
        layout = f"{self.work / 'oci'}:bench"
        t_copy = timed(
            self.sh(
                [
                    "skopeo",
                    "copy",
                    "--insecure-policy",
                    "--src-tls-verify=false",
                    "-q",
                    f"docker://{self.info.ref}",
                    f"oci:{layout}",
                ],
                self.env,
            ),
            PULL_TIMEOUT,
            what="skopeo copy",
        )
        t_unpack = timed(
            self.sh(["umoci", "unpack", "--rootless", "--image", layout, str(self.work / "bundle")], self.env),
            PULL_TIMEOUT,
            what="umoci unpack",
        )
        self._last = (t_copy, t_unpack)
        return t_copy + t_unpack

    def record_parts(self) -> None:
        self.parts["skopeo_copy"].append(self._last[0])
        self.parts["umoci_unpack"].append(self._last[1])

    def store_dirs(self) -> list[Path]:
        return [self.work / "oci", self.work / "bundle"]

    def verify(self) -> None:
        bundle = self.work / "bundle"
        if not (bundle / "config.json").is_file() or not (bundle / "rootfs" / "usr" / "bin" / "env").exists():
            raise BenchError(f"umoci unpack left no usable bundle in {bundle}")

    def versions(self) -> dict[str, str | None]:
        return {"skopeo": version_of(["skopeo", "--version"]), "umoci": version_of(["umoci", "--version"])}

    def details(self) -> dict[str, Any]:
        return {"storage_driver": "none (plain directory bundle, umoci --rootless)"}


class TarFloor(Tool):
    """The physical floor: the same two gzip layers, already local, extracted by `tar -xzf` into one directory on
    the same filesystem (no registry, no digest checks, no whiteouts)."""

    name = "tar-floor"
    label = "tar -xzf of the local layers (floor)"

    def prepare(self) -> None:
        if shutil.which("tar") is None:
            raise BenchError("tar is not installed")
        self.user.mkdir(self.work)
        blobs = self.user.mkdir(self.work / "blobs")
        self.blobs = []
        for layer in self.info.layers:
            path = blobs / layer["digest"].split(":", 1)[1]
            if not path.exists():
                data, _ = self.reg.get(f"/v2/{REPO}/blobs/{layer['digest']}")
                path.write_bytes(data)
                os.chmod(path, 0o644)
            self.blobs.append(path)
        self.wipe()

    def wipe(self) -> None:
        drop_tree(self.work / "root")
        self.user.mkdir(self.work / "root")

    def pull(self) -> float:
        root = str(self.work / "root")
        script = " && ".join(
            f"tar --no-same-owner -C {shlex.quote(root)} -xzf {shlex.quote(str(b))}" for b in self.blobs
        )
        return timed(self.sh(["sh", "-c", script]), PULL_TIMEOUT, what="tar -xzf")

    def store_dirs(self) -> list[Path]:
        return [self.work / "root"]

    def verify(self) -> None:
        if not (self.work / "root" / "usr" / "bin" / "env").exists():
            raise BenchError("tar left no usr/bin/env")

    def versions(self) -> dict[str, str | None]:
        return {"tar": version_of(["tar", "--version"])}

    def details(self) -> dict[str, Any]:
        return {"storage_driver": "none (one plain directory)"}


TOOLS: list[type[Tool]] = [Sbx, Podman, SkopeoUmoci, TarFloor]


def _mbps(nbytes: int, secs: float) -> float:
    return round(nbytes / secs / 1e6, 2)


def bench_pull(iterations: int = 5, warmup: int = 1, only: list[str] | None = None) -> dict[str, Any]:
    with exclusive():
        return _bench_pull(iterations, warmup, only)


def _bench_pull(iterations: int, warmup: int, only: list[str] | None) -> dict[str, Any]:
    t_start = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result: dict[str, Any] = {
        "benchmark": "B4",
        "what": "pull a two-layer Debian image from a loopback registry into an empty store, until it can run",
        "started": started,
        "machine": machine_facts(),
        "protocol": {
            "warmup": warmup,
            "iterations": iterations,
            "order": "rotating (ABC, BCA, CAB, ...)",
            "between_pulls": "store deleted, sync (untimed)",
            "throughput": "compressed layer bytes / median seconds, MB = 1e6 bytes",
            "p90": "linear interpolation between closest ranks",
        },
        "network_backend": "none (registry on 127.0.0.1, plain http)",
    }
    user = User.resolve()
    result["user"] = user.name
    WORK.mkdir(parents=True, exist_ok=True)
    with Registry() as reg:
        info = ensure_image(reg)
        result["image"] = info.as_dict()
        result["registry"] = {"version": version_of(["docker-registry", "--version"]), "ref": info.ref}
        log(f"image {info.ref}: {len(info.layers)} layers, {info.compressed_bytes / 1e6:.1f} MB compressed")

        tools = [cls(user, reg, info) for cls in TOOLS if not only or cls.name in only]
        for t in tools:
            try:
                t.prepare()
            except BenchError as e:
                t.status, t.reason = "unavailable", str(e)
                log(f"{t.name}: unavailable: {e}")

        orders = rotations([t.name for t in tools], warmup + iterations)
        by_name = {t.name: t for t in tools}
        for it, order in enumerate(orders):
            tag = "warm-up" if it < warmup else f"iteration {it - warmup + 1}/{iterations}"
            line = []
            for name in order:
                t = by_name[name]
                if t.status != "ok":
                    continue
                while True:
                    t.wipe()
                    sync()
                    try:
                        secs = t.pull()
                        t.verify()
                        break
                    except BenchError as e:
                        if it < warmup and t.fallback():
                            continue
                        t.status, t.reason = "failed", str(e)
                        log(f"{t.name}: failed ({tag}): {e}")
                        secs = None
                        break
                if secs is None:
                    continue
                line.append(f"{name} {secs:.2f}s")
                if it == len(orders) - 1:
                    t.measure_store()
                if it >= warmup:
                    t.samples.append(secs)
                    if isinstance(t, SkopeoUmoci):
                        t.record_parts()
            log(f"{tag}: " + ", ".join(line))

        floor: dict[str, Any] = {}
        try:
            floor = inflate_rate(reg, info)
            floor["disk_write_mb_s_durable"] = round(disk_write_rate(WORK), 1)
        except (BenchError, OSError) as e:
            floor["error"] = str(e)

        versions: dict[str, str | None] = {}
        for t in tools:
            with contextlib.suppress(BenchError):
                versions.update(t.versions())
            t.cleanup()

    nbytes = info.compressed_bytes
    out_tools: dict[str, Any] = {}
    for t in tools:
        entry: dict[str, Any] = {"label": t.label, "status": t.status}
        if t.reason:
            entry["reason"] = t.reason
        if t.status == "ok" and t.samples:
            s = summary(t.samples)
            entry.update(s)
            entry["samples_s"] = [round(x, 4) for x in t.samples]
            entry["throughput_mb_s"] = _mbps(nbytes, s["median_s"])
            for part, xs in t.parts.items():
                if xs:
                    entry.setdefault("parts", {})[part] = summary(xs)
        entry.update(t.details())
        if t.store:
            entry["left_on_disk"] = t.store
        out_tools[t.name] = entry
    result["tools"] = out_tools
    result["versions"] = versions
    result["storage_driver"] = {name: e.get("storage_driver") for name, e in out_tools.items()}

    ratios: dict[str, Any] = {}
    sbx = out_tools.get("sbx", {})
    for base in ("podman", "skopeo+umoci", "tar-floor"):
        b = out_tools.get(base, {})
        if "median_s" in sbx and "median_s" in b:
            ratios[f"sbx/{base} throughput"] = round(b["median_s"] / sbx["median_s"], 3)
            ratios[f"sbx/{base} median time"] = round(sbx["median_s"] / b["median_s"], 3)
    result["ratios"] = ratios

    if "inflate_compressed_mb_s_per_core" in floor and "disk_write_mb_s_durable" in floor:
        cores = os.cpu_count() or 1
        comp_ratio = floor["compressed_bytes"] / floor["uncompressed_bytes"]
        inflate_cap = cores * floor["inflate_compressed_mb_s_per_core"]
        disk_cap = floor["disk_write_mb_s_durable"] * comp_ratio  # disk rate in compressed-byte terms
        floor["cores"] = cores
        floor["floor_mb_s"] = round(min(inflate_cap, disk_cap), 1)
        floor["note"] = (
            "min(cores x inflate rate, disk write rate), both in compressed MB/s; "
            "inflate is Python zlib on these layers, disk is a 256 MiB write + fsync"
        )
    result["floor"] = floor
    notes = []
    raw = floor.get("uncompressed_bytes")
    left = sbx.get("left_on_disk", {}).get("bytes")
    sbx_unpacks = not (raw and left is not None and left < 0.9 * raw)
    if not sbx_unpacks:
        notes.append(
            f"sbx left {left / 1e6:.0f} MB on disk, less than the {raw / 1e6:.0f} MB the layers unpack to: its pull "
            "does not unpack, so its figure stops short of 'until it can run' and the targets are not judged "
            "(set SBX_BENCH_SBX_THEN, e.g. 'create {ref}', to time the step that makes the root filesystem)"
        )
    result["sbx_unpacks"] = sbx_unpacks if "median_s" in sbx else None
    result["notes"] = notes
    targets: dict[str, Any] = {"sbx/podman throughput >= 1.0": None, "sbx >= 0.8 x floor": None}
    if "throughput_mb_s" in sbx and "floor_mb_s" in floor:
        ratios["sbx/floor throughput"] = round(sbx["throughput_mb_s"] / floor["floor_mb_s"], 3)
    if sbx_unpacks:
        if "sbx/podman throughput" in ratios:
            targets["sbx/podman throughput >= 1.0"] = ratios["sbx/podman throughput"] >= 1.0
        if "sbx/floor throughput" in ratios:
            targets["sbx >= 0.8 x floor"] = ratios["sbx/floor throughput"] >= 0.8
    result["targets"] = targets
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    return result


def render(result: dict[str, Any]) -> str:
    img = result.get("image", {})
    head = (
        f"B4 pull: {img.get('ref', '?')}  {len(img.get('layers', []))} layers, "
        f"{img.get('compressed_bytes', 0) / 1e6:.1f} MB gzip; "
        f"{result['protocol']['warmup']} warm-up + {result['protocol']['iterations']} iterations, "
        f"rotating order"
    )
    table = Table(["tool", "median s", "p90 s", "MB/s", "storage", "status"])
    for name, e in result.get("tools", {}).items():
        status = e["status"]
        if status != "ok":
            why = [x.strip() for x in e.get("reason", "").splitlines() if x.strip()] or [""]
            status = f"{status}: {why[0]}" + (f" ... {why[-1]}" if len(why) > 1 else "")
            status = status if len(status) <= 140 else status[:137] + "..."
        table.add(name, e.get("median_s"), e.get("p90_s"), e.get("throughput_mb_s"), e.get("storage_driver"), status)
    lines = [head, table.render()]
    su = result.get("tools", {}).get("skopeo+umoci", {}).get("parts")
    if su:
        lines.append(
            f"  skopeo+umoci split: copy {su['skopeo_copy']['median_s']} s + "
            f"unpack {su['umoci_unpack']['median_s']} s (medians)"
        )
    fl = result.get("floor", {})
    if "floor_mb_s" in fl:
        ratio = fl["compressed_bytes"] / fl["uncompressed_bytes"]
        lines.append(
            f"floor: {fl['floor_mb_s']} MB/s = min({fl['cores']} cores x "
            f"{fl['inflate_compressed_mb_s_per_core']} MB/s inflate, disk "
            f"{fl['disk_write_mb_s_durable']} MB/s x {ratio:.2f} compressed/raw)"
        )
    if result.get("ratios"):
        lines.append("ratios: " + ", ".join(f"{k} = {v}" for k, v in result["ratios"].items()))
    else:
        lines.append("ratios: none (sbx or podman has no figures)")
    lines.extend(f"NOTE: {n}" for n in result.get("notes", []))
    lines.append(f"wall time {result.get('wall_s')} s")
    return "\n".join(lines)


measure = bench_pull


def figures(result: dict[str, Any]) -> list[Figure]:
    """sbx beside its baselines, for the summary of `make bench`."""
    return compare("B4 pull", result.get("tools", {}), "sbx", ["podman", "skopeo+umoci"])
