"""Stored credentials: sbx's auth.json (0600, atomic) and Docker's config.json as a read-only fallback."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from sandbox.errors import ConfigError
from sandbox.registry.credentials import CredentialStore, StaticCredentials, normalise_registry


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def store(tmp_path):
    return CredentialStore(tmp_path / "config" / "sbx" / "auth.json", tmp_path / "docker" / "config.json")


def write_docker_config(store: CredentialStore, data: dict) -> None:
    store.docker_config.parent.mkdir(parents=True, exist_ok=True)
    store.docker_config.write_text(json.dumps(data))


def test_set_writes_0600_file_in_0700_dir_and_get_reads_it(store):
    store.set("registry.example.com:5000", "ana", "s3cr:et")
    mode = stat.S_IMODE(os.stat(store.auth_file).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(store.auth_file.parent).st_mode) == 0o700
    assert store.get("registry.example.com:5000") == ("ana", "s3cr:et")
    assert store.get("registry.example.com") is None
    saved = json.loads(store.auth_file.read_text())
    assert saved["auths"]["registry.example.com:5000"]["auth"] == b64("ana:s3cr:et")
    assert [p.name for p in store.auth_file.parent.iterdir()] == ["auth.json"]  # no temp file left


def test_set_tightens_an_existing_parent_directory(store):
    store.auth_file.parent.mkdir(parents=True, mode=0o755)
    os.chmod(store.auth_file.parent, 0o755)
    store.set("h", "u", "p")
    assert stat.S_IMODE(os.stat(store.auth_file.parent).st_mode) == 0o700


def test_set_replaces_and_remove_forgets(store):
    store.set("docker.io", "ana", "one")
    store.set("https://index.docker.io/v1/", "ana", "two")
    assert store.get("docker.io") == ("ana", "two")
    assert list(json.loads(store.auth_file.read_text())["auths"]) == ["docker.io"]
    assert store.remove("index.docker.io") is True
    assert store.get("docker.io") is None
    assert store.remove("docker.io") is False


@pytest.mark.parametrize("username", ["", "a:b", "a\nb"])
def test_set_refuses_bad_usernames(store, username):
    with pytest.raises(ConfigError):
        store.set("h", username, "p")
    assert not store.auth_file.exists()


def test_docker_config_auth_and_username_fields(store):
    write_docker_config(
        store,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
                "https://other.example:5000/v2/": {"auth": b64("o:p")},
                "plain.example": {"username": "pu", "password": "pp"},
                "broken.example": {"auth": "not base64!!"},
                "nocolon.example": {"auth": b64("nocolon")},
            },
            "credsStore": "desktop",
            "credHelpers": {"plain.example": "secretservice"},
        },
    )
    assert store.get("docker.io") == ("hubuser", "hubpass")
    assert store.get("registry-1.docker.io") == ("hubuser", "hubpass")
    assert store.get("other.example:5000") == ("o", "p")
    assert store.get("other.example") is None
    assert store.get("plain.example") == ("pu", "pp")
    assert store.get("broken.example") is None
    assert store.get("nocolon.example") is None


def test_own_file_wins_over_docker_config(store):
    write_docker_config(store, {"auths": {"h.example": {"auth": b64("docker:x")}}})
    assert store.get("h.example") == ("docker", "x")
    store.set("h.example", "sbx", "y")
    assert store.get("h.example") == ("sbx", "y")


def test_exact_key_wins_over_spelled_out_key(store):
    write_docker_config(
        store,
        {"auths": {"https://h.example/v2/": {"auth": b64("long:1")}, "h.example": {"auth": b64("exact:2")}}},
    )
    assert store.get("h.example") == ("exact", "2")


@pytest.mark.parametrize("content", ["{not json", "[]", '{"auths": []}', "null"])
def test_damaged_docker_config_means_no_credentials(store, content):
    store.docker_config.parent.mkdir(parents=True)
    store.docker_config.write_text(content)
    assert store.get("h.example") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"auths": []}'])
def test_damaged_own_file_is_a_clean_error(store, content):
    store.auth_file.parent.mkdir(parents=True)
    store.auth_file.write_text(content)
    with pytest.raises(ConfigError, match="damaged") as info:
        store.get("h.example")
    assert info.value.hint and "sbx login" in info.value.hint


def test_no_files_no_credentials(tmp_path):
    assert CredentialStore(tmp_path / "auth.json", None).get("docker.io") is None


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("HTTPS://Host.Example:5000/v2/", "host.example:5000"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ],
)
def test_normalise_registry(name, normal):
    assert normalise_registry(name) == normal


def test_static_credentials_hide_the_password_and_can_be_bound_to_a_registry():
    creds = StaticCredentials("ana", "hunter2")
    assert creds.get("anything") == ("ana", "hunter2")
    assert "hunter2" not in repr(creds)
    bound = StaticCredentials("ana", "hunter2", "index.docker.io")
    assert bound.get("docker.io") == ("ana", "hunter2")
    assert bound.get("127.0.0.1:5000") is None
