"""Integration fixtures: real registries on loopback with the fixture images, and an isolated `sbx` runner.

Session fixtures (started once, on first use):

- `fixture_images`: dict name → imagebuild.Image (busybox, multilayer, multiarch, zstd)
- `registry`: anonymous RegistryServer; every image pushed as `NAME:latest` and `library/NAME:latest`,
  plus `umoci-v2s2` and `umoci-oci` (built by umoci, pushed by skopeo)
- `htpasswd_registry`: basic auth, user alice / secret, the Python-built images pushed
- `nginx_image`: the Debian nginx image (tests/fixtures/debian_image.py, built as root by
  scripts/test-integration.sh) pushed to `registry` as `library/nginx:latest`; its manifest digest
- `token_registry`: bearer-token auth through a TokenIssuer (`token_registry.issuer`); alice / secret may
  pull and push everything, anonymous users may pull `library/*` only

Each server's `.images` maps "repo:tag" → imagebuild.PushedImage.

Function fixtures:

- `sbx`: an SbxRunner; `sbx(*args, check=True, input=None, env=None, timeout=120)` runs
  `python -m sandbox ARGS` with HOME, XDG_* and SBX_CONFIG in a per-test tmp dir; the config mirrors
  docker.io to the anonymous registry, so `sbx pull busybox` pulls `library/busybox` from it, and makes
  `--network none` the default (containers get a network only where a test asks for one)
- `token_issuer`: the token registry's issuer with its request log cleared (and its public repos restored
  after the test)

The integration suite must run as an unprivileged user; in CI (CI set) running it as root fails at once,
and missing tools fail instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fixtures import imagebuild  # noqa: E402
from tests.fixtures.registry import RegistryServer, find_registry_binary  # noqa: E402
from tests.fixtures.tokenissuer import TokenIssuer  # noqa: E402

HERE = Path(__file__).resolve().parent
USERS = {"alice": "secret"}
PUBLIC_REPOS = frozenset({"library/*"})
REQUIRED_TOOLS = {  # program → Debian package
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "umoci": "umoci",
    "busybox": "busybox-static",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tools() -> dict[str, str]:
    missing = {}
    for program, package in REQUIRED_TOOLS.items():
        found = find_registry_binary() if program == "docker-registry" else shutil.which(program)
        if program == "busybox" and not found:
            try:
                found = str(imagebuild.find_busybox())
            except FileNotFoundError:
                found = None
        if not found:
            missing[program] = package
    return missing


def _is_integration(item: pytest.Item) -> bool:
    try:
        return Path(str(item.path)).resolve().is_relative_to(HERE)
    except (AttributeError, ValueError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if _is_integration(item)]
    if not ours:
        return
    if os.geteuid() == 0:
        message = (
            "integration tests must run as an unprivileged user (sbx is rootless); "
            "as root, run `make test-integration`, which runs them as the user sbxtest"
        )
        if in_ci():
            raise pytest.UsageError(message)
        warnings.warn(message, stacklevel=1)
    missing = missing_tools()
    if not missing:
        return
    packages = " ".join(sorted(set(missing.values())))
    message = f"missing {', '.join(sorted(missing))}: install with `sudo apt-get install -y {packages}` (or make setup)"
    if in_ci():
        raise pytest.UsageError(message)
    if "docker-registry" in missing:
        skip = pytest.mark.skip(reason=message)
        for item in ours:
            item.add_marker(skip)


# -- images and registries --------------------------------------------------


@pytest.fixture(scope="session")
def fixture_images() -> dict[str, imagebuild.Image]:
    return imagebuild.fixture_images()


def _push_all(server: RegistryServer, images: Mapping[str, imagebuild.Image], auth: tuple[str, str] | None) -> None:
    client = server.session(auth)
    for name, image in images.items():
        for repo in (name, f"library/{name}"):
            record = imagebuild.push_built(client, repo, "latest", image)
            server.images[record.reference] = record


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, fixture_images: dict) -> Iterator[RegistryServer]:
    """Anonymous registry with every fixture image (and the umoci/skopeo ones)."""
    workdir = tmp_path_factory.mktemp("registry")
    server = RegistryServer(workdir / "server", name="anonymous").start()
    try:
        _push_all(server, fixture_images, None)
        if shutil.which("umoci") and shutil.which("skopeo"):
            server.images.update(imagebuild.push_umoci_images(workdir / "umoci", server))
        elif in_ci():
            raise RuntimeError("umoci and skopeo are required in CI")
        else:
            warnings.warn("umoci or skopeo missing: the umoci-* images are not pushed", stacklevel=1)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nginx_image(registry: RegistryServer) -> str:
    """The cached Debian nginx image in `registry` as `library/nginx:latest` (`sbx pull nginx`); its digest."""
    from tests.fixtures import debian_image

    image = debian_image.cached_image()
    if image is None:
        message = (f"no nginx image in {debian_image.CACHE}: build it as root with "
                   "`python3 -m tests.fixtures.debian_image build` (scripts/test-integration.sh does)")
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return debian_image.push(image, registry.url)


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory, fixture_images: dict) -> Iterator[RegistryServer]:
    """Registry with basic auth (alice / secret); anonymous requests get 401."""
    workdir = tmp_path_factory.mktemp("htpasswd-registry")
    server = RegistryServer(workdir, htpasswd=USERS, name="htpasswd").start()
    try:
        _push_all(server, fixture_images, ("alice", USERS["alice"]))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, fixture_images: dict) -> Iterator[RegistryServer]:
    """Registry with token auth; `token_registry.issuer` is the TokenIssuer."""
    workdir = tmp_path_factory.mktemp("token-registry")
    issuer = TokenIssuer(workdir / "issuer", USERS, public_repos=PUBLIC_REPOS).start()
    server = RegistryServer(workdir / "server", token=issuer, name="token")
    try:
        server.start()
        _push_all(server, fixture_images, ("alice", USERS["alice"]))
        issuer.clear_requests()
        yield server
    finally:
        server.stop()
        issuer.stop()


@pytest.fixture
def token_issuer(token_registry: RegistryServer) -> Iterator[TokenIssuer]:
    """The token registry's issuer, request log cleared; public repos restored afterwards."""
    issuer = token_registry.issuer
    assert issuer is not None
    saved = set(issuer.public_repos)
    issuer.clear_requests()
    yield issuer
    issuer.public_repos = saved


# -- the sbx runner ---------------------------------------------------------


class SbxCommandFailed(AssertionError):
    def __init__(self, result: subprocess.CompletedProcess) -> None:
        self.result = result
        super().__init__(
            f"sbx {' '.join(map(str, result.args[3:]))} exited {result.returncode}\n"
            f"--- stdout ---\n{_tail(result.stdout)}\n--- stderr ---\n{_tail(result.stderr)}"
        )


def _tail(text: str | bytes | None, limit: int = 4000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else "…" + text[-limit:]


class SbxRunner:
    """Runs `python -m sandbox` with an environment of its own.

    Attributes: `env` (the full environment of every call), `home`, `data_home`, `config_home`,
    `runtime_dir` (short, under /tmp: unix socket paths must stay under 108 bytes), `config_path`
    (SBX_CONFIG), `registry` (the anonymous RegistryServer the config mirrors docker.io to).
    """

    def __init__(self, root: Path, runtime_dir: Path, registry: RegistryServer) -> None:
        self.root = root
        self.registry = registry
        self.home = root / "home"
        self.data_home = root / "data"
        self.config_home = root / "config"
        self.cache_home = root / "cache"
        self.tmp = root / "tmp"
        self.runtime_dir = runtime_dir
        for path in (self.home, self.data_home, self.config_home, self.cache_home, self.tmp):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path = root / "config.toml"
        # network = "none": the suite's containers need no network (test_network.py asks for one, and for the default)
        self.write_config(f'network = "none"\n[registries."docker.io"]\nmirrors = ["{registry.host}"]\n')
        self.env = {
            "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "USER": os.environ.get("USER") or os.environ.get("LOGNAME") or "",
            "XDG_DATA_HOME": str(self.data_home),
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_CACHE_HOME": str(self.cache_home),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "TMPDIR": str(self.tmp),
            "SBX_CONFIG": str(self.config_path),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)

    def argv(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "sandbox", *map(str, args)]

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        merged = dict(self.env)
        if env:
            merged.update(env)
        return merged

    def __call__(
        self,
        *args: object,
        check: bool = True,
        input: str | bytes | None = None,  # noqa: A002
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            self.argv(*args),
            input=input,
            capture_output=True,
            text=not isinstance(input, bytes),
            env=self.environ(env),
            cwd=self.root,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise SbxCommandFailed(result)
        return result

    def popen(self, *args: object, env: Mapping[str, str] | None = None, **kwargs: object) -> subprocess.Popen:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.argv(*args), env=self.environ(env), cwd=self.root, **kwargs)  # type: ignore[call-overload]

    def cleanup(self) -> None:
        """Best effort: remove containers this test left (running ones too)."""
        if not any(self.data_home.iterdir()):
            return
        try:
            listing = self("ps", "-aq", check=False, timeout=60)
            ids = listing.stdout.split() if listing.returncode == 0 else []
            if ids:
                self("rm", "-f", *ids, check=False, timeout=120)
        except (subprocess.TimeoutExpired, OSError):
            pass


@pytest.fixture
def sbx(tmp_path: Path, registry: RegistryServer) -> Iterator[SbxRunner]:
    runtime_dir = Path(tempfile.mkdtemp(prefix="sbxrt-", dir="/tmp"))
    runtime_dir.chmod(0o700)
    runner = SbxRunner(tmp_path / "sbx", runtime_dir, registry)
    try:
        yield runner
    finally:
        runner.cleanup()
        shutil.rmtree(runtime_dir, ignore_errors=True)


@pytest.fixture
def busybox(sbx: SbxRunner) -> SbxRunner:
    """The `sbx` runner with the busybox fixture image pulled (as docker.io/library/busybox)."""
    sbx("pull", "-q", "busybox")
    return sbx
