"""The benchmark image and the private registry that serves it.

The image is a two-layer Debian bookworm (about 60 MB of gzip layers), built once and kept under
``$SBX_BENCH_DIR`` (default ``/var/tmp/sbx-bench``) so later runs reuse it:

* layer 1: ``debootstrap --variant=minbase bookworm`` (apt caches, package lists and /dev nodes removed);
* layer 2: ``apt-get install --no-install-recommends python3`` run in a chroot of layer 1 (``SBX_BENCH_EXTRA_PKGS``).

Both layers are made with ``umoci repack`` (gzip) into an OCI layout at ``$SBX_BENCH_DIR/oci`` and pushed with
``skopeo copy --format v2s2`` to a private ``docker-registry`` (CNCF distribution) listening on a free 127.0.0.1 port,
its data kept in ``$SBX_BENCH_DIR/registry`` so the pushed image survives between runs. Every tool pulls the very
same bytes from it over plain http on loopback. Building needs root (debootstrap, chroot); reusing does not.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, BenchError, drop_tree, is_root, log, run

REPO = "debian"
TAG = "bench"
SUITE = "bookworm"
EXTRA_PKGS = os.environ.get("SBX_BENCH_EXTRA_PKGS", "python3").split()
OCI_DIR = BENCH_DIR / "oci"
REGISTRY_DIR = BENCH_DIR / "registry"
MEDIA_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_OCI = "application/vnd.oci.image.manifest.v1+json"


# -- the registry -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A private docker-registry on 127.0.0.1:<free port>, data in REGISTRY_DIR; use as a context manager."""

    def __init__(self, data_dir: Path = REGISTRY_DIR) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, repo: str = REPO, tag: str = TAG) -> str:
        return f"{self.host}/{repo}:{tag}"

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        binary = "docker-registry"
        if run(["sh", "-c", f"command -v {binary}"], check=False).returncode != 0:
            raise BenchError("docker-registry is not installed (apt-get install docker-registry)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(3):  # the free port can be taken between probe and bind; try a few
            self.port = free_port()
            conf = BENCH_DIR / "registry.yml"
            conf.write_text(
                "version: 0.1\n"
                "log:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.data_dir}\n"
                "  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n"
            )
            logf = open(BENCH_DIR / "registry.log", "ab")  # noqa: SIM115 - lives as long as the process
            self.proc = subprocess.Popen(
                [binary, "serve", str(conf)], stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
            logf.close()
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                        if r.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    time.sleep(0.05)
            self.stop()
            last = (BENCH_DIR / "registry.log").read_text(errors="replace")[-800:]
        raise BenchError(f"docker-registry did not come up: {last}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str, accept: str | None = None) -> tuple[bytes, dict[str, str]]:
        req = urllib.request.Request(f"http://{self.host}{path}")
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read(), dict(r.headers)


# -- the image --------------------------------------------------------------------------------------------------


@dataclass
class ImageInfo:
    ref: str
    manifest_digest: str
    media_type: str
    config_bytes: int
    layers: list[dict[str, Any]] = field(default_factory=list)  # digest, size (compressed), media type
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def compressed_bytes(self) -> int:
        return sum(layer["size"] for layer in self.layers)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compressed_bytes"] = self.compressed_bytes
        return d


def manifest_info(reg: Registry) -> ImageInfo | None:
    """The pushed image as the registry serves it (v2s2), or None when it is not there."""
    try:
        body, headers = reg.get(f"/v2/{REPO}/manifests/{TAG}", accept=f"{MEDIA_V2S2}, {MEDIA_OCI}")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise BenchError(f"registry: GET manifest: HTTP {e.code}") from e
    m = json.loads(body)
    digest = next((v for k, v in headers.items() if k.lower() == "docker-content-digest"), "")
    recipe = {}
    recipe_file = BENCH_DIR / "image.json"
    if recipe_file.exists():
        recipe = json.loads(recipe_file.read_text()).get("recipe", {})
    return ImageInfo(
        ref=reg.ref(),
        manifest_digest=digest,
        media_type=m.get("mediaType", ""),
        config_bytes=m["config"]["size"],
        layers=[{"digest": x["digest"], "size": x["size"], "mediaType": x["mediaType"]} for x in m["layers"]],
        recipe=recipe,
    )


def debian_mirror() -> str:
    """The Debian archive URL apt on this host actually uses (deb822 or one-line sources), unless overridden."""
    env = os.environ.get("SBX_BENCH_MIRROR")
    if env:
        return env
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for block in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", block, re.M))
                suites = fields.get("Suites", "").split()
                if SUITE in suites and "deb" in fields.get("Types", "").split():
                    for uri in fields.get("URIs", "").split():
                        if "security" not in uri:
                            return uri
        else:
            for line in text.splitlines():
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 3 and parts[0] == "deb":
                    uri_idx = 2 if parts[1].startswith("[") else 1
                    if len(parts) > uri_idx + 1 and parts[uri_idx + 1] == SUITE and "security" not in parts[uri_idx]:
                        return parts[uri_idx]
    return "http://deb.debian.org/debian"


def _has_tag(layout: Path, tag: str) -> bool:
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError):
        return False
    return any(m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag for m in index["manifests"])


def build_oci() -> dict[str, Any]:
    """debootstrap + chroot apt-get, two umoci repacks; leaves an OCI layout at OCI_DIR (tag TAG). Needs root."""
    if not is_root():
        raise BenchError(
            f"the bench image is not built yet and building it needs root: run `sudo python -m bench pull` once "
            f"(it is cached in {BENCH_DIR})"
        )
    for tool in ("debootstrap", "umoci", "chroot", "mount"):
        if run(["sh", "-c", f"command -v {tool}"], check=False).returncode != 0:
            raise BenchError(f"{tool} is not installed; run scripts/bench-setup.sh")
    mirror = debian_mirror()
    work = BENCH_DIR / "build"
    drop_tree(work)
    work.mkdir(parents=True)
    layout, bundle = work / "oci", work / "bundle"
    img = f"{layout}:{TAG}"
    rootfs = bundle / "rootfs"
    t0 = time.monotonic()
    log(f"building the bench image: debootstrap --variant=minbase {SUITE} from {mirror} (about a minute)")
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", img])
    run(["umoci", "unpack", "--image", img, str(bundle)])
    cp = run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror], check=False, timeout=1200)
    if cp.returncode != 0:
        log_file = rootfs / "debootstrap" / "debootstrap.log"
        extra = log_file.read_text(errors="replace")[-1500:] if log_file.exists() else ""
        raise BenchError(f"debootstrap failed: {cp.stderr[-1500:] or cp.stdout[-1500:]}\n{extra}")
    # Layer 1: the minbase, without the downloaded .debs, package lists or device nodes (like Docker's images).
    lists = rootfs / "var/lib/apt/lists"
    saved_lists = work / "lists"
    lists.rename(saved_lists)
    (lists / "partial").mkdir(parents=True)
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    for node in (rootfs / "dev").iterdir():
        drop_tree(node)
    run(
        [
            "umoci",
            "repack",
            "--refresh-bundle",
            "--image",
            img,
            "--history.created_by",
            f"debootstrap --variant=minbase {SUITE}",
            str(bundle),
        ]
    )
    # Layer 2: extra packages installed in a chroot of layer 1.
    drop_tree(lists)
    saved_lists.rename(lists)
    log(f"building the bench image: layer 2 = apt-get install {' '.join(EXTRA_PKGS)}")
    env = {k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}
    env.update(DEBIAN_FRONTEND="noninteractive", PATH="/usr/sbin:/usr/bin:/sbin:/bin", LANG="C.UTF-8")
    run(["mount", "-t", "proc", "proc", str(rootfs / "proc")])
    try:
        run(
            ["chroot", str(rootfs), "apt-get", "install", "-y", "-q", "--no-install-recommends", *EXTRA_PKGS],
            env=env,
            timeout=1200,
        )
        run(["chroot", str(rootfs), "apt-get", "clean"], env=env)
    finally:
        run(["umount", "-l", str(rootfs / "proc")], check=False)
    drop_tree(lists)
    (lists / "partial").mkdir(parents=True)
    recipe2 = f"apt-get install --no-install-recommends {' '.join(EXTRA_PKGS)}"
    run(["umoci", "repack", "--image", img, "--history.created_by", recipe2, str(bundle)])
    run(
        [
            "umoci",
            "config",
            "--image",
            img,
            "--config.cmd",
            "bash",
            "--config.env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    )
    run(["umoci", "gc", "--layout", str(layout)])
    drop_tree(OCI_DIR)
    layout.rename(OCI_DIR)
    drop_tree(work)
    recipe = {
        "base": f"debootstrap --variant=minbase {SUITE} {mirror}",
        "layer2": recipe2,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_s": round(time.monotonic() - t0, 1),
    }
    (BENCH_DIR / "image.json").write_text(json.dumps({"recipe": recipe}, indent=2) + "\n")
    log(f"built the bench image in {recipe['build_s']} s")
    return recipe


def ensure_image(reg: Registry) -> ImageInfo:
    """The bench image in the running registry: reuse it, push the cached OCI layout, or build and push."""
    info = manifest_info(reg)
    if info is not None:
        return info
    if not _has_tag(OCI_DIR, TAG):
        build_oci()
    log(f"pushing the bench image to {reg.ref()}")
    run(
        [
            "skopeo",
            "copy",
            "--insecure-policy",
            "--dest-tls-verify=false",
            "--format",
            "v2s2",
            f"oci:{OCI_DIR}:{TAG}",
            f"docker://{reg.ref()}",
        ],
        timeout=600,
    )
    info = manifest_info(reg)
    if info is None:
        raise BenchError("pushed the bench image but the registry does not serve it")
    return info


# -- the physical floor -----------------------------------------------------------------------------------------


def inflate_rate(reg: Registry, info: ImageInfo) -> dict[str, Any]:
    """One core's zlib inflate speed on the image's own layers, and their uncompressed size."""
    comp = 0
    raw = 0
    secs = 0.0
    for layer in info.layers:
        blob, _ = reg.get(f"/v2/{REPO}/blobs/{layer['digest']}")
        t0 = time.perf_counter()
        d = zlib.decompressobj(wbits=31)
        n = 0
        view = memoryview(blob)
        for i in range(0, len(blob), 1 << 20):
            n += len(d.decompress(view[i : i + (1 << 20)]))
        n += len(d.flush())
        secs += time.perf_counter() - t0
        comp += len(blob)
        raw += n
    return {
        "compressed_bytes": comp,
        "uncompressed_bytes": raw,
        "inflate_s_one_core": round(secs, 4),
        "inflate_compressed_mb_s_per_core": round(comp / secs / 1e6, 1),
        "inflate_uncompressed_mb_s_per_core": round(raw / secs / 1e6, 1),
    }


def disk_write_rate(directory: Path, size: int = 256 << 20) -> float:
    """Durable sequential write speed (MB/s) in directory: write size bytes, fsync, delete."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".disk-rate"
    chunk = os.urandom(1 << 20)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size >> 20):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    secs = time.perf_counter() - t0
    path.unlink()
    return size / secs / 1e6
