"""Tests of the harness itself: registries, token issuer, image builders. None of them runs sbx."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest
import requests

from tests.fixtures import imagebuild
from tests.fixtures.registry import RegistryClient, parse_www_authenticate, push_image


def skopeo_inspect(reference: str, *extra: str) -> dict:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    env = dict(os.environ)
    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{reference}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- the anonymous registry ----------------------------------------------------


@pytest.mark.parametrize("name", ["busybox", "library/busybox", "multilayer", "zstd", "umoci-v2s2", "umoci-oci"])
def test_skopeo_inspect_matches_recorded_digest(registry, name):
    if f"{name}:latest" not in registry.images:
        pytest.skip(f"{name} was not pushed (umoci or skopeo missing)")
    record = registry.images[f"{name}:latest"]
    info = skopeo_inspect(f"{registry.host}/{name}:latest")
    assert info["Digest"] == record.digest
    assert info["Layers"] == list(record.layer_digests)


def test_multiarch_index_has_both_platforms(registry):
    record = registry.images["multiarch:latest"]
    assert record.media_type == imagebuild.MT_OCI_INDEX
    assert set(record.platforms) == {"linux/amd64", "linux/arm64/v8"}
    arm = skopeo_inspect(f"{registry.host}/multiarch:latest", "--override-arch", "arm64", "--override-variant", "v8")
    assert arm["Architecture"] == "arm64"
    assert arm["Digest"] == record.digest  # skopeo reports the index digest
    raw = subprocess.run(  # skopeo is there: skopeo_inspect above would have skipped
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/multiarch:latest"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert hashlib.sha256(raw).hexdigest() == record.digest.split(":")[1]
    for key, child in record.platforms.items():
        assert child.architecture == key.split("/")[1]
        assert "etc/arch" in child.files


def test_zstd_layer_round_trips(registry, fixture_images):
    image = fixture_images["zstd"]
    (layer,) = image.layers
    assert layer.media_type == imagebuild.MT_OCI_LAYER_ZSTD
    response = registry.session().request("GET", f"/v2/zstd/blobs/{layer.digest}")
    assert response.status_code == 200
    import zstandard

    tar = zstandard.ZstdDecompressor().decompress(response.content)
    assert imagebuild.sha256_digest(tar) == json.loads(image.config)["rootfs"]["diff_ids"][0]
    assert "etc/zstd" in registry.images["zstd:latest"].files


def test_busybox_layer_is_a_runnable_userland(fixture_images):
    image = fixture_images["busybox"]
    config = json.loads(image.config)
    assert config["config"]["Cmd"] == ["sh"]
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]
    tree = image.tree
    assert tree["bin/busybox"].type == "file" and tree["bin/busybox"].mode == 0o755
    for applet in ("sh", "ls", "cat", "echo", "id", "true", "false", "sleep", "hostname"):
        assert tree[f"bin/{applet}"] == imagebuild.FileMeta("symlink", 0o777, 0, 0, target="busybox")
    assert tree["tmp"].mode == 0o1777
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[0].data))) as tar:
        names = tar.getnames()
    assert len(names) == len(set(names)), "duplicate members in the busybox layer"


def test_multilayer_expected_tree(fixture_images):
    image = fixture_images["multilayer"]
    tree = image.tree
    assert len(image.layers) == 4  # the busybox layer, then three
    assert image.layers[0].digest == fixture_images["busybox"].layers[0].digest
    assert tree["data/remove-me.txt"].sha256 == hashlib.sha256(b"back\n").hexdigest()  # whited out, re-added
    assert tree["data/sub"].type == "file"  # a file replaced a directory
    assert "data/sub/nested.txt" not in tree
    assert "opaque/old1.txt" not in tree and "opaque/olddir" not in tree and "opaque/new.txt" in tree
    assert "links/rel-keep" not in tree and tree["links/abs-etc"].target == "/etc"
    assert "hard/original.txt" not in tree and tree["hard/link.txt"].hardlink_of == "hard/original.txt"
    assert tree["usr/local/bin/suid-tool"].mode == 0o4755
    assert tree["usr/local/bin/sgid-tool"].mode == 0o2755
    assert (tree["www/index.html"].uid, tree["www/index.html"].gid) == (33, 33)
    assert not any(name.split("/")[-1].startswith(".wh.") for name in tree)


# -- htpasswd -------------------------------------------------------------------


def test_htpasswd_registry_requires_credentials(htpasswd_registry):
    url = htpasswd_registry.url + "/v2/"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401
    scheme, _ = parse_www_authenticate(anonymous.headers["WWW-Authenticate"])
    assert scheme == "basic"
    assert requests.get(url, auth=("alice", "wrong"), timeout=10).status_code == 401
    assert requests.get(url, auth=("alice", "secret"), timeout=10).status_code == 200
    record = htpasswd_registry.images["library/busybox:latest"]
    response = htpasswd_registry.session(("alice", "secret")).get_manifest("library/busybox", "latest")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == record.digest


# -- token auth -------------------------------------------------------------------


def test_token_registry_challenges_anonymous(token_registry, token_issuer):
    response = requests.get(token_registry.url + "/v2/", timeout=10)
    assert response.status_code == 401
    scheme, params = parse_www_authenticate(response.headers["WWW-Authenticate"])
    assert scheme == "bearer"
    assert params["realm"] == token_issuer.realm
    assert params["service"] == token_issuer.service


def test_token_registry_accepts_alice_token(token_registry, token_issuer):
    challenge = requests.get(f"{token_registry.url}/v2/busybox/manifests/latest", timeout=10)
    assert challenge.status_code == 401
    _, params = parse_www_authenticate(challenge.headers["WWW-Authenticate"])
    assert params["scope"] == "repository:busybox:pull"
    token_response = requests.get(
        params["realm"],
        params={"service": params["service"], "scope": params["scope"]},
        auth=("alice", "secret"),
        timeout=10,
    )
    assert token_response.status_code == 200
    body = token_response.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert requests.get(token_registry.url + "/v2/", headers=headers, timeout=10).status_code == 200
    manifest = requests.get(
        f"{token_registry.url}/v2/busybox/manifests/latest",
        headers={**headers, "Accept": imagebuild.MT_DOCKER_MANIFEST},
        timeout=10,
    )
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == token_registry.images["busybox:latest"].digest
    (request,) = token_issuer.requests
    assert request.user == "alice" and request.authenticated
    assert request.granted == [{"type": "repository", "name": "busybox", "actions": ["pull"]}]


def test_token_issuer_rejects_wrong_password(token_registry, token_issuer):
    response = requests.get(
        token_issuer.realm, params={"service": token_issuer.service}, auth=("alice", "nope"), timeout=10
    )
    assert response.status_code == 401
    assert token_issuer.requests[-1].user == "alice" and not token_issuer.requests[-1].authenticated


def test_token_registry_anonymous_pull_only_public(token_registry, token_issuer):
    client = RegistryClient(token_registry.url)
    assert client.get_manifest("library/busybox", "latest").status_code == 200
    assert client.get_manifest("busybox", "latest").status_code == 401
    assert all(request.user is None for request in token_issuer.requests)
    token_issuer.public_repos.add("busybox")
    assert RegistryClient(token_registry.url).get_manifest("busybox", "latest").status_code == 200


def test_push_image_with_bearer_token(token_registry, token_issuer):
    config = imagebuild.image_config([])
    document = imagebuild.manifest(config, [], "oci")
    digest = push_image(
        token_registry.url,
        "alice/empty",
        "v1",
        {imagebuild.sha256_digest(config): config},
        document,
        imagebuild.MT_OCI_MANIFEST,
        auth=("alice", "secret"),
    )
    assert digest == imagebuild.sha256_digest(document)
    granted = {tuple(sorted(grant["actions"])) for request in token_issuer.requests for grant in request.granted}
    assert ("pull", "push") in granted  # the scope's action order is the client's choice
    with pytest.raises(RuntimeError, match="401"):
        push_image(token_registry.url, "alice/empty", "v2", {}, document, imagebuild.MT_OCI_MANIFEST)


# -- the sbx runner itself (does not run sbx) ------------------------------------------


def test_sbx_runner_is_isolated(sbx, registry, tmp_path):
    assert sbx.env["SBX_CONFIG"] == str(sbx.config_path)
    assert f'mirrors = ["{registry.host}"]' in sbx.config_path.read_text()
    for key in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        assert sbx.env[key].startswith(str(tmp_path))
    assert len(sbx.env["XDG_RUNTIME_DIR"]) < 40  # room for sbx/<64 hex>/attach.sock under 108 bytes
    assert os.stat(sbx.env["XDG_RUNTIME_DIR"]).st_mode & 0o777 == 0o700
    assert sbx.argv("ps", "-a")[1:] == ["-m", "sandbox", "ps", "-a"]
