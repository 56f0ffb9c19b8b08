"""The image commands, run as the real `sbx` (as the unprivileged test user) against the real registry server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sandbox.oci.manifest import Platform


def store_root(sbx) -> Path:
    return sbx.data_home / "sbx"


def blob_files(sbx) -> list[Path]:
    root = store_root(sbx) / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def single_error_line(result) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sbx: ")
    return lines[0]


def inspect(sbx, name: str) -> dict:
    return json.loads(sbx("image", "inspect", name).stdout)[0]


# -- pull -------------------------------------------------------------------------------------------------------


def test_pull_through_docker_io_mirror(sbx, registry):
    expected = registry.images["library/busybox:latest"]
    result = sbx("pull", "busybox")
    lines = result.stdout.splitlines()
    assert lines[0] == "Using default tag: latest"
    assert lines[1] == "latest: Pulling from library/busybox"
    assert f"{expected.layer_digests[0].split(':')[1][:12]}: Pull complete" in lines
    assert f"Digest: {expected.digest}" in lines
    assert "Status: Downloaded newer image for busybox:latest" in lines
    assert lines[-1] == "docker.io/library/busybox:latest"

    listing = sbx("images").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == ["busybox", "latest", expected.config_digest.split(":")[1][:12]]
    assert sbx("images", "-q").stdout.split() == [expected.config_digest.split(":")[1][:12]]

    details = inspect(sbx, "busybox")
    assert details["Id"] == expected.config_digest
    assert details["RepoTags"] == ["busybox:latest"]
    assert details["RepoDigests"] == [f"busybox@{expected.digest}"]
    assert details["RootFS"]["Layers"] == list(expected.diff_ids)
    assert details["Config"]["Cmd"] == ["sh"]


def test_second_pull_is_up_to_date(sbx, registry):
    sbx("pull", "-q", "busybox")
    result = sbx("pull", "busybox:latest")
    assert "Status: Image is up to date for busybox:latest" in result.stdout
    assert "Already exists" in result.stdout


def test_quiet_pull_prints_only_the_name(sbx, registry):
    result = sbx("pull", "-q", f"{registry.host}/busybox")
    assert result.stdout == f"{registry.host}/busybox:latest\n"


@pytest.mark.parametrize("name", ["multilayer", "zstd", "umoci-v2s2", "umoci-oci"])
def test_pull_formats(sbx, registry, name):
    expected = registry.images[f"{name}:latest"]
    sbx("pull", "-q", f"{registry.host}/{name}:latest")
    details = inspect(sbx, f"{registry.host}/{name}")
    assert details["Id"] == expected.config_digest
    assert details["RootFS"]["Layers"] == list(expected.diff_ids)


def test_pull_by_digest_keeps_no_tag(sbx, registry):
    expected = registry.images["busybox:latest"]
    sbx("pull", f"{registry.host}/busybox@{expected.digest}")
    rows = [line.split() for line in sbx("images", "--digests").stdout.splitlines()[1:]]
    assert rows == [[f"{registry.host}/busybox", "<none>", expected.digest, expected.config_digest[7:19], *rows[0][4:]]]


def test_platform_choice_from_an_index(sbx, registry):
    index = registry.images["multiarch:latest"]
    host = str(Platform.host())
    sbx("pull", "-q", f"{registry.host}/multiarch")
    native = inspect(sbx, f"{registry.host}/multiarch")
    if host.startswith("linux/amd64"):
        assert native["Architecture"] == "amd64"
    assert native["RepoDigests"] == [f"{registry.host}/multiarch@{index.digest}"]

    sbx("pull", "-q", "--platform", "linux/arm64", f"{registry.host}/multiarch")
    arm = inspect(sbx, f"{registry.host}/multiarch")
    assert (arm["Architecture"], arm["Variant"]) == ("arm64", "v8")
    assert arm["Id"] == index.platforms["linux/arm64/v8"].config_digest

    missing = sbx("pull", "--platform", "linux/s390x", f"{registry.host}/multiarch", check=False)
    assert "no image for platform linux/s390x" in single_error_line(missing)


def test_unknown_image_and_bad_reference(sbx, registry):
    unknown = sbx("pull", f"{registry.host}/nothing-here:latest", check=False)
    assert "not found" in single_error_line(unknown)
    bad = sbx("pull", "Not/Valid", check=False)
    assert "invalid reference format" in single_error_line(bad)
    digest = sbx("pull", "busybox@sha256:../../etc/passwd", check=False)
    assert "invalid reference format" in single_error_line(digest)
    assert blob_files(sbx) == []


def test_unreachable_registry_is_one_line(sbx):
    result = sbx("pull", "127.0.0.1:9/busybox", check=False)
    single_error_line(result)
    assert blob_files(sbx) == []


# -- store -------------------------------------------------------------------------------------------------------


def test_store_is_private(sbx, registry):
    sbx("pull", "-q", "busybox")
    root = store_root(sbx)
    # the image's own trees keep their modes (setuid files, 1777 /tmp): the 0700 dirs above them keep others out
    store_dirs = [p for p in root.rglob("*") if p.is_dir() and "layers" not in p.relative_to(root).parts[:1]]
    for path in [root, root / "layers", *store_dirs]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for layer in (root / "layers").iterdir():
        assert stat.S_IMODE(layer.stat().st_mode) == 0o700, layer


def test_parallel_pulls_make_one_record(sbx, registry):
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: sbx("pull", "-q", "multilayer", check=False), range(16)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    assert len(sbx("images", "-q").stdout.split()) == 1
    expected = registry.images["library/multilayer:latest"]
    assert len(blob_files(sbx)) == len(expected.layer_digests) + 2  # layers, config, manifest
    assert sbx("system", "check").returncode == 0


KILL_POINTS = 50
KILL_SEED = 52


def _blobs_hash_to_their_names(sbx) -> list[str]:
    import hashlib

    return [str(path) for path in blob_files(sbx) if hashlib.sha256(path.read_bytes()).hexdigest() != path.name]


def test_killed_pull_leaves_a_usable_store(sbx, registry):
    """TESTPLAN 52: SIGKILL `sbx pull` at 50 seeded random points of a whole pull (start-up, download, unpack,
    record); after each the next command collects the temp files, `sbx images` works, no blob has wrong content.

    The points are drawn over the time one whole pull took here, so they cover it wherever the machine is slow;
    the sleeps choose where to kill, never what to assert. Total time: about 50 pulls."""
    import random

    ingest = store_root(sbx) / "ingest"
    started = time.monotonic()
    sbx("pull", "-q", "multilayer")
    whole = time.monotonic() - started
    sbx("rmi", "multilayer")
    draw = random.Random(KILL_SEED)
    finished = 0
    for point in range(KILL_POINTS):
        delay = draw.uniform(0, whole)
        where = f"kill point {point} (seed {KILL_SEED}, {delay:.3f} s of {whole:.3f} s)"
        process = sbx.popen("pull", "-q", "multilayer", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        listing = sbx("images", "-q", check=False)  # the next command: it must work, and collect the temp files
        assert listing.returncode == 0 and "Traceback" not in listing.stderr, (where, listing.stderr)
        assert not ingest.exists() or list(ingest.iterdir()) == [], where
        assert _blobs_hash_to_their_names(sbx) == [], where
        if listing.stdout.strip():  # the pull got to its end before the kill: start the next one from nothing
            finished += 1
            sbx("rmi", "multilayer")
    sbx("pull", "-q", "multilayer")
    assert sbx("system", "check").stdout.strip() == "no problems found"
    assert finished < KILL_POINTS  # most points fell inside the pull, not after it


def test_check_finds_a_flipped_byte(sbx, registry):
    sbx("pull", "-q", "busybox")
    layer = registry.images["library/busybox:latest"].layer_digests[0]
    path = store_root(sbx) / "blobs" / "sha256" / layer.split(":")[1]
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = sbx("system", "check", check=False)
    assert result.returncode == 1
    assert layer in result.stdout


# -- tag, push, rmi ----------------------------------------------------------------------------------------------


def test_tag_push_and_pull_back(sbx, registry, tmp_path):
    sbx("pull", "-q", "busybox")
    target = f"{registry.host}/pushed/busybox:v1"
    sbx("tag", "busybox", target)
    pushed = sbx("push", target)
    assert pushed.stdout.splitlines()[0] == f"The push refers to repository [{registry.host}/pushed/busybox]"
    assert "v1: digest: sha256:" in pushed.stdout

    sbx("rmi", "busybox", target)
    assert sbx("images", "-q").stdout == ""
    sbx("pull", "-q", target)
    assert inspect(sbx, target)["Id"] == registry.images["library/busybox:latest"].config_digest


def test_rmi_untags_then_deletes(sbx, registry):
    sbx("pull", "-q", "busybox")
    sbx("tag", "busybox", "mine:copy")
    first = sbx("rmi", "mine:copy")
    assert first.stdout == "Untagged: mine:copy\n"
    second = sbx("rmi", "busybox")
    assert second.stdout.splitlines()[0] == "Untagged: busybox:latest"
    assert f"Deleted: {registry.images['library/busybox:latest'].config_digest}" in second.stdout
    assert blob_files(sbx) == []
    gone = sbx("rmi", "busybox", check=False)
    assert "no such image: busybox" in single_error_line(gone)


def test_rmi_by_id_referenced_in_two_repositories_needs_force(sbx, registry):
    sbx("pull", "-q", "busybox")
    sbx("tag", "busybox", "other/name:1")
    image_id = sbx("images", "-q").stdout.split()[0]
    refused = sbx("rmi", image_id, check=False)
    assert "must be forced" in single_error_line(refused)
    sbx("rmi", "-f", image_id)
    assert sbx("images", "-q").stdout == ""


def test_images_json_and_filter(sbx, registry):
    sbx("pull", "-q", "busybox")
    sbx("pull", "-q", "zstd")
    rows = [json.loads(line) for line in sbx("images", "--format", "json").stdout.splitlines()]
    assert {(r["Repository"], r["Tag"]) for r in rows} == {("busybox", "latest"), ("zstd", "latest")}
    filtered = sbx("images", "--filter", "reference=busy*").stdout.splitlines()
    assert len(filtered) == 2 and filtered[1].startswith("busybox ")


# -- search ------------------------------------------------------------------------------------------------------


def test_search_the_mirrored_catalog(sbx, registry):
    result = sbx("search", "busy")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    rows = [line.split() for line in lines[1:]]
    assert ["busybox", "0", "[OK]"] in rows


# -- authentication ----------------------------------------------------------------------------------------------


def test_login_to_a_basic_auth_registry(sbx, htpasswd_registry):
    host = htpasswd_registry.host
    refused = sbx("pull", f"{host}/busybox", check=False)
    single_error_line(refused)
    wrong = sbx("login", "-u", "alice", "--password-stdin", host, input="wrong\n", check=False)
    single_error_line(wrong)
    assert not (sbx.config_home / "sbx" / "auth.json").exists()

    ok = sbx("login", "-u", "alice", "--password-stdin", host, input="secret\n")
    assert ok.stdout.strip() == "Login Succeeded"
    auth_file = sbx.config_home / "sbx" / "auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    sbx("pull", "-q", f"{host}/busybox")
    assert sbx("logout", host).stdout.strip() == f"Removing login credentials for {host}"
    assert not auth_file.exists() or "alice" not in auth_file.read_text()


def test_token_auth_flow(sbx, token_registry, token_issuer):
    host = token_registry.host
    anonymous_public = sbx("pull", "-q", f"{host}/library/busybox")
    assert anonymous_public.stdout.strip() == f"{host}/library/busybox:latest"
    refused = sbx("pull", f"{host}/busybox", check=False)
    single_error_line(refused)
    token_issuer.clear_requests()
    sbx("login", "-u", "alice", "--password-stdin", host, input="secret\n")
    sbx("pull", "-q", f"{host}/busybox")
    assert any(request.user == "alice" and request.authenticated for request in token_issuer.requests)


def test_docker_config_credentials_are_read(sbx, htpasswd_registry):
    import base64

    docker_dir = sbx.home / ".docker"
    docker_dir.mkdir()
    token = base64.b64encode(b"alice:secret").decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {htpasswd_registry.host: {"auth": token}}}))
    sbx("pull", "-q", f"{htpasswd_registry.host}/busybox")


def test_system_df_and_prune(sbx, registry):
    sbx("pull", "-q", "busybox")
    df = sbx("system", "df").stdout.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:2] == ["Images", "1"]
    sbx("tag", "busybox", "keep:me")
    sbx("rmi", "busybox")
    pruned = sbx("system", "prune", "-f")
    assert "Total reclaimed space" in pruned.stdout
    assert sbx("images", "-q").stdout.strip() != ""  # tagged keep:me is not dangling
    everything = sbx("system", "prune", "-a", "-f")
    assert "deleted: sha256:" in everything.stdout
    assert blob_files(sbx) == []


def test_version_and_help(sbx):
    assert sbx("--version").stdout.startswith("sbx version ")
    assert "pull" in sbx("--help").stdout
    result = subprocess.run(sbx.argv("nope"), capture_output=True, text=True, env=sbx.env)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_damaged_store_is_named_and_recoverable(sbx, registry):
    """TESTPLAN 55: a truncated record and a deleted blob are named, and rmi -f / system prune recover."""
    sbx("pull", "-q", "busybox")
    sbx("pull", "-q", "zstd")
    busybox = registry.images["library/busybox:latest"]
    record = store_root(sbx) / "images" / "sha256" / f"{busybox.config_digest.split(':')[1]}.json"
    record.write_bytes(record.read_bytes()[:20])
    broken = sbx("images", check=False)
    assert str(record) in single_error_line(broken)
    assert sbx("rmi", busybox.config_digest[7:19], check=False).returncode == 1
    sbx("rmi", "-f", busybox.config_digest[7:19])
    assert len(sbx("images", "-q").stdout.split()) == 1

    zstd = registry.images["library/zstd:latest"]
    (store_root(sbx) / "blobs" / "sha256" / zstd.layer_digests[0].split(":")[1]).unlink()
    check = sbx("system", "check", check=False)
    assert check.returncode == 1 and zstd.layer_digests[0] in check.stdout
    sbx("rmi", "-f", "zstd")
    sbx("system", "prune", "-a", "-f")
    assert sbx("system", "check").stdout.strip() == "no problems found"
    assert blob_files(sbx) == []


def _flip_byte(path: Path, offset: int = 100) -> None:
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[min(offset, len(data) - 1)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_images_itself_names_a_deleted_blob_and_a_flipped_byte(sbx, registry):
    """TESTPLAN 55: `sbx images` (not only `system check`) names the damaged image and blob; rmi -f and a new
    pull recover. A missing blob is seen at once; a flipped byte once a use (run reads the config) or a check has
    hashed the blob: the listing itself hashes nothing, so it stays as cheap as before."""
    sbx("pull", "-q", "busybox")
    sbx("pull", "-q", "multilayer")
    busybox = registry.images["library/busybox:latest"]
    multilayer = registry.images["library/multilayer:latest"]
    blobs = store_root(sbx) / "blobs" / "sha256"
    assert sbx("images").returncode == 0

    (blobs / multilayer.layer_digests[-1].split(":")[1]).unlink()
    listing = sbx("images", check=False)
    line = single_error_line(listing)
    assert multilayer.layer_digests[-1] in line and "missing" in line and multilayer.config_digest[7:19] in line
    assert "busybox" in listing.stdout and "multilayer" in listing.stdout  # the listing itself is still shown
    sbx("rmi", "-f", "multilayer")
    assert sbx("images").returncode == 0

    _flip_byte(blobs / busybox.config_digest.split(":")[1])
    used = sbx("run", "--rm", "busybox", "true", check=False)
    assert used.returncode == 125 and busybox.config_digest in used.stderr, used.stderr
    line = single_error_line(sbx("images", check=False))
    assert busybox.config_digest in line and "damaged" in line
    sbx("rmi", "-f", "busybox")
    sbx("pull", "-q", "busybox")
    assert sbx("images").returncode == 0

    layer = busybox.layer_digests[0]
    _flip_byte(blobs / layer.split(":")[1])
    assert sbx("system", "check", check=False).returncode == 1
    line = single_error_line(sbx("images", check=False))
    assert layer in line and "damaged" in line
    sbx("rmi", "-f", "busybox")
    sbx("system", "prune", "-a", "-f")
    sbx("pull", "-q", "busybox")
    assert sbx("images").returncode == 0
    assert sbx("system", "check").stdout.strip() == "no problems found"


def test_a_full_disk_is_one_clean_line_and_the_pull_works_once_space_is_freed(sbx, registry):
    """TESTPLAN 53: the store on a real, small tmpfs (the root harness mounts one and names it in
    SBX_TEST_SMALL_FS), filled with ballast but for a few pages: the pull fails with one line naming ENOSPC, exit 1,
    leaving no blob, temp file or record; once the ballast is gone the same pull works."""
    from tests.fixtures.environment import unavailable

    small = os.environ.get("SBX_TEST_SMALL_FS")
    if not small or not os.path.ismount(small) or not os.access(small, os.W_OK):
        unavailable("no small tmpfs for the test user: run through scripts/test-integration.sh as root")
    data = Path(tempfile.mkdtemp(prefix="store-", dir=small))
    env = {"XDG_DATA_HOME": str(data)}
    ballast = Path(small) / f"ballast-{data.name}"
    try:
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        with open(ballast, "wb") as handle:
            chunk = bytes(1 << 20)
            left = free - 64 * 1024  # a few pages stay free: the store's dirs and records fit, no layer does
            while left > 0:
                left -= handle.write(chunk[: min(len(chunk), left)])
        failed = sbx("pull", "-q", "busybox", env=env, check=False)
        line = single_error_line(failed)
        assert "ENOSPC" in line, line
        assert sbx("images", "-q", env=env).stdout == ""
        store = data / "sbx"
        assert not (store / "ingest").exists() or list((store / "ingest").iterdir()) == []
        assert not (store / "blobs" / "sha256").exists() or list((store / "blobs" / "sha256").iterdir()) == []
        ballast.unlink()
        sbx("pull", "-q", "busybox", env=env)
        assert sbx("images", "-q", env=env).stdout.strip() != ""
        assert sbx("system", "check", env=env).stdout.strip() == "no problems found"
        sbx("rmi", "busybox", env=env)
        sbx("system", "prune", "-a", "-f", env=env)
    finally:
        ballast.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)
