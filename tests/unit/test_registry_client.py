"""The registry client against a fake registry on loopback: TESTPLAN 15-17, 19, 24 at the client level."""

from __future__ import annotations

import io
import json

import pytest

from sandbox.config import RegistryConfig, Settings
from sandbox.errors import (
    AuthenticationRequired,
    ConfigError,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    ManifestUnknown,
    RedirectRefused,
    RegistryError,
    RegistryUnreachable,
    ResponseTooLarge,
    SizeMismatch,
)
from sandbox.oci import mediatypes
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import MAX_MANIFEST_BYTES, Descriptor, parse_document
from sandbox.registry import client as client_module
from sandbox.registry.client import RegistryClient
from sandbox.registry.credentials import StaticCredentials
from sandbox.registry.transport import printable
from tests.fixtures.fakeregistry import FakeRegistry, Reply, closed_port, registry_errors, sha256

MIB = 1024 * 1024




def client(fake: FakeRegistry, config: Settings, creds=None, **kw) -> RegistryClient:
    kw.setdefault("retries", 0)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("read_timeout", 5.0)
    return RegistryClient(fake.host, config, creds, **kw)


def descriptor(data: bytes, size: int | None = None) -> Descriptor:
    return Descriptor(mediatypes.OCI_CONFIG, Digest.of(data), len(data) if size is None else size)


def manifest_bytes(layers: int = 1) -> bytes:
    config = b'{"os": "linux"}'
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [
            {"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": sha256(bytes([i])), "size": 1} for i in range(layers)
        ],
    }
    return json.dumps(document).encode()


# -- manifests ------------------------------------------------------------------------------------------------


def test_get_manifest_by_tag_and_digest(registry, config):
    digest = registry.add_image("library/busybox", "latest", [b"layer"])
    regclient = client(registry, config)
    by_tag = regclient.get_manifest("library/busybox", "latest")
    assert str(by_tag.digest) == digest
    assert by_tag.media_type == mediatypes.OCI_MANIFEST
    by_digest = regclient.get_manifest("library/busybox", digest)
    assert by_digest.raw == by_tag.raw
    parse_document(by_digest.raw, by_digest.media_type)
    accept = registry.requests_to("/v2/library/busybox/manifests/latest")[0].header("accept")
    assert set(mediatypes.ALL_MANIFESTS) <= {part.strip() for part in accept.split(",")}


def test_user_agent(registry, config):
    client(registry, config).ping()
    assert registry.requests[0].header("user-agent").startswith("sbx/")


def test_content_type_parameters_are_stripped(registry, config):
    raw = manifest_bytes()
    registry.route(
        "GET",
        "/v2/a/manifests/t",
        Reply(body=raw, headers={"Content-Type": mediatypes.OCI_MANIFEST + "; charset=utf-8"}),
    )
    assert client(registry, config).get_manifest("a", "t").media_type == mediatypes.OCI_MANIFEST


def test_manifest_by_digest_that_hashes_differently(registry, config):
    wanted = Digest.of(b"the manifest we pinned")
    registry.route(
        "GET",
        f"/v2/a/manifests/{wanted}",
        Reply(
            body=manifest_bytes(),
            # no Docker-Content-Digest: only the check against the digest asked for can catch this
            headers={"Content-Type": mediatypes.OCI_MANIFEST},
        ),
    )
    with pytest.raises(DigestMismatch, match="hashes to"):
        client(registry, config).get_manifest("a", str(wanted))


def test_docker_content_digest_disagreeing_with_the_bytes(registry, config):
    registry.route(
        "GET",
        "/v2/a/manifests/t",
        Reply(body=manifest_bytes(), headers={"Docker-Content-Digest": sha256(b"something else")}),
    )
    with pytest.raises(DigestMismatch, match="announced"):
        client(registry, config).get_manifest("a", "t")


def test_docker_content_digest_that_is_not_a_digest(registry, config):
    registry.route("GET", "/v2/a/manifests/t", Reply(body=manifest_bytes(), headers={"Docker-Content-Digest": "md5:x"}))
    with pytest.raises(DigestMismatch, match="invalid Docker-Content-Digest"):
        client(registry, config).get_manifest("a", "t")


@pytest.mark.parametrize(
    "reference",
    [
        "sha256:../../x",
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 63,
        "md5:" + "a" * 32,
        "sha256:" + "a" * 64 + "/../x",
        "../x",
        "a/b",
        "",
        "t" * 129,
    ],
)
def test_malformed_references_are_refused_before_any_request(registry, config, reference):
    regclient = client(registry, config)
    with pytest.raises((InvalidDigest, InvalidReference)):
        regclient.get_manifest("a", reference)
    with pytest.raises((InvalidDigest, InvalidReference)):
        regclient.put_manifest("a", reference, b"{}", mediatypes.OCI_MANIFEST)
    assert registry.requests == []


@pytest.mark.parametrize("repository", ["../x", "A/b", "a//b", "/a", "a/", "a/../b", "a?x=1", "a b", "a%2fb"])
def test_malformed_repositories_are_refused_before_any_request(registry, config, repository):
    regclient = client(registry, config)
    for call in (
        lambda: regclient.get_manifest(repository, "latest"),
        lambda: regclient.get_blob(repository, descriptor(b"x")),
        lambda: regclient.blob_exists(repository, Digest.of(b"x")),
        lambda: regclient.list_tags(repository),
    ):
        with pytest.raises(InvalidReference):
            call()
    assert registry.requests == []


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "sha256:" + "F" * 64, "md5:abc"])
def test_malformed_blob_digests_are_refused_before_any_request(registry, config, digest):
    with pytest.raises(InvalidDigest):
        client(registry, config).blob_exists("a", digest)
    with pytest.raises(InvalidDigest):
        client(registry, config).upload_blob("a", digest, 1, lambda: io.BytesIO(b"x"))
    assert registry.requests == []


def test_oversized_manifest_with_declared_length(registry, config):
    registry.route("GET", "/v2/a/manifests/t", Reply(body=b" " * (MAX_MANIFEST_BYTES + 1)))
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("a", "t")


def test_oversized_manifest_without_length(registry, config):
    registry.route("GET", "/v2/a/manifests/t", Reply(body=b" " * (MAX_MANIFEST_BYTES + 1), content_length=None))
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("a", "t")


def test_manifest_of_exactly_the_limit_is_read(registry, config):
    raw = manifest_bytes()
    raw = raw + b" " * (MAX_MANIFEST_BYTES - len(raw))
    registry.route("GET", "/v2/a/manifests/t", Reply(body=raw, content_length=None))
    assert len(client(registry, config).get_manifest("a", "t").raw) == MAX_MANIFEST_BYTES


def test_endless_manifest_stops_early(registry, config):
    registry.route("GET", "/v2/a/manifests/t", Reply(body=b"[" * 65536, endless=True))
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("a", "t")
    assert registry.wait_idle()
    (request,) = registry.requests_to("/v2/a/manifests/t")
    assert request.bytes_sent < 32 * MIB  # the client hung up soon after 4 MiB


def test_manifest_not_found_uses_the_registry_error_code(registry, config):
    with pytest.raises(ManifestUnknown) as info:
        client(registry, config).get_manifest("library/nope", "v9")
    assert str(info.value) == f"manifest for {registry.host}/library/nope:v9 not found: manifest unknown"


def test_denied_and_server_errors(registry, config):
    registry.route(
        "GET", "/v2/a/manifests/t", Reply(403, registry_errors("DENIED", "requested access to the resource is denied"))
    )
    with pytest.raises(AuthenticationRequired, match="denied: requested access"):
        client(registry, config).get_manifest("a", "t")
    registry.route("GET", "/v2/a/manifests/t", Reply(500, b"<html>oops</html>"))
    with pytest.raises(RegistryError, match="500") as info:
        client(registry, config).get_manifest("a", "t")
    assert not isinstance(info.value, RegistryUnreachable)


def test_oversized_error_body(registry, config):
    registry.route("GET", "/v2/a/manifests/t", Reply(400, b"x" * (2 * MIB)))
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("a", "t")
    registry.route("GET", "/v2/a/manifests/t", Reply(400, b"x" * 65536, endless=True))
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("a", "t")


def test_escape_sequences_in_error_messages_are_escaped(registry, config):
    evil = "manifest \x1b[31mred\x1b]0;title\x07 \u202egnp.exe\r\nfake line"
    registry.route("GET", "/v2/a/manifests/t", Reply(404, registry_errors("MANIFEST_UNKNOWN", evil)))
    with pytest.raises(ManifestUnknown) as info:
        client(registry, config).get_manifest("a", "t")
    message = str(info.value)
    assert message.isprintable()
    assert "\\x1b[31mred" in message and "\\u202e" in message and "\\r\\n" in message


def test_printable_escapes_and_bounds():
    assert printable("ok text") == "ok text"
    assert printable("a\x1b[2Jb\tc\x00") == "a\\x1b[2Jb\\tc\\x00"
    assert printable("x" * 1000, 10) == "x" * 10 + "…"


# -- small blobs ----------------------------------------------------------------------------------------------


def test_get_blob(registry, config):
    data = b'{"architecture": "amd64"}'
    registry.add_blob("a", data)
    assert client(registry, config).get_blob("a", descriptor(data)) == data


def test_get_blob_digest_mismatch(registry, config):
    data = b"the real config"
    registry.route("GET", f"/v2/a/blobs/{sha256(data)}", Reply(body=b"the fake config"))
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        client(registry, config).get_blob("a", descriptor(data))


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b"short"),
        Reply(body=b"much longer than the descriptor says"),
        Reply(body=b"much longer than the descriptor says", content_length=None),
        Reply(body=b"x" * 65536, endless=True),
    ],
)
def test_get_blob_size_mismatch(registry, config, reply):
    data = b"exactly sixteen!"
    registry.route("GET", f"/v2/a/blobs/{sha256(data)}", reply)
    with pytest.raises(SizeMismatch, match="size mismatch"):
        client(registry, config).get_blob("a", descriptor(data))


def test_get_blob_over_its_limit_is_refused_before_any_request(registry, config):
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_blob("a", descriptor(b"x", size=MAX_MANIFEST_BYTES + 1))
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_blob("a", descriptor(b"x" * 100), limit=10)
    assert registry.requests == []


def test_get_blob_not_found(registry, config):
    with pytest.raises(RegistryError, match="blob unknown") as info:
        client(registry, config).get_blob("a", descriptor(b"x"))
    assert not isinstance(info.value, RegistryUnreachable)


# -- push -------------------------------------------------------------------------------------------------------


def test_push_round_trip(registry, config):
    regclient = client(registry, config)
    layer = b"layer bytes " * 1000
    digest = Digest.of(layer)
    assert regclient.blob_exists("team/app", digest) is False
    seen: list[int] = []
    regclient.upload_blob("team/app", digest, len(layer), lambda: io.BytesIO(layer), seen.append)
    assert sum(seen) == len(layer)
    assert regclient.blob_exists("team/app", str(digest)) is True
    assert registry.blobs["team/app"][str(digest)] == layer
    raw = manifest_bytes()
    pushed = regclient.put_manifest("team/app", "v1", raw, mediatypes.OCI_MANIFEST)
    assert pushed == Digest.of(raw)
    assert regclient.get_manifest("team/app", "v1").raw == raw
    assert regclient.list_tags("team/app") == ["v1"]
    put = registry.requests_to(method="PUT")[0]
    assert put.query["digest"] == [str(digest)] and "_state" in put.query  # the Location's query was kept


def test_upload_with_absolute_location(registry, config):
    registry.location_absolute = True
    data = b"abc"
    client(registry, config).upload_blob("a", Digest.of(data), 3, lambda: io.BytesIO(data))
    assert registry.blobs["a"][sha256(data)] == data


def test_upload_location_on_another_host_gets_no_authorization(registry, config):
    with FakeRegistry("127.0.0.2") as storage:
        registry.require_basic("ana", "pw")
        registry.route(
            "POST", "/v2/a/blobs/uploads/", Reply(202, headers={"Location": f"{storage.url}/upload/1?state=s"})
        )
        storage.route("PUT", "/upload/1", Reply(201, headers={"Docker-Content-Digest": sha256(b"abc")}))
        client(registry, config, StaticCredentials("ana", "pw")).upload_blob(
            "a", Digest.of(b"abc"), 3, lambda: io.BytesIO(b"abc")
        )
        (put,) = storage.requests
        assert put.header("authorization") is None
        assert put.body == b"abc" and put.query == {"state": ["s"], "digest": [sha256(b"abc")]}


def test_upload_stream_shorter_than_size(registry, config):
    with pytest.raises(SizeMismatch):
        client(registry, config).upload_blob("a", Digest.of(b"abcd"), 4, lambda: io.BytesIO(b"ab"))


def test_upload_retries_with_a_fresh_stream(registry, config):
    registry.route(
        "POST", "/v2/a/blobs/uploads/", Reply(503), Reply(202, headers={"Location": "/v2/a/blobs/uploads/x?_state=1"})
    )
    registry.route("PUT", "/v2/a/blobs/uploads/x", Reply(201))
    opened = []

    def open_stream():
        opened.append(1)
        return io.BytesIO(b"abc")

    client(registry, config, retries=2).upload_blob("a", Digest.of(b"abc"), 3, open_stream)
    assert len(opened) == 1 and len(registry.requests_to("/v2/a/blobs/uploads/")) == 2


def test_put_manifest_by_digest_must_match(registry, config):
    raw = manifest_bytes()
    with pytest.raises(DigestMismatch):
        client(registry, config).put_manifest("a", sha256(b"other"), raw, mediatypes.OCI_MANIFEST)
    assert client(registry, config).put_manifest("a", sha256(raw), raw, mediatypes.OCI_MANIFEST) == Digest.of(raw)
    assert registry.requests_to(method="PUT")[0].header("content-type") == mediatypes.OCI_MANIFEST
    with pytest.raises(InvalidManifest):
        client(registry, config).put_manifest("a", "big", b" " * (MAX_MANIFEST_BYTES + 1), mediatypes.OCI_MANIFEST)


# -- listings ---------------------------------------------------------------------------------------------------


def test_catalog_pagination(registry, config):
    names = [f"repo{i:02d}" for i in range(25)]
    for name in names:
        registry.add_blob(name, b"x")
    regclient = client(registry, config)
    assert regclient.catalog() == names
    assert len(registry.requests_to("/v2/_catalog")) == 1
    assert regclient.catalog(limit=7) == names[:7]
    registry.requests.clear()
    registry.max_page = 10  # the server gives 10 per page whatever n asks, and Link headers for the rest
    assert regclient.catalog() == names
    pages = registry.requests_to("/v2/_catalog")
    assert [p.query.get("last") for p in pages] == [None, ["repo09"], ["repo19"]]
    registry.requests.clear()
    assert regclient.catalog(limit=12) == names[:12]
    assert len(registry.requests_to("/v2/_catalog")) == 2


def test_tags_pagination(registry, config):
    tags = [f"v{i}" for i in range(7)]
    for tag in tags:
        registry.add_manifest("a", manifest_bytes() + tag.encode(), tags=[tag])
    registry.page_size = 3
    assert client(registry, config).list_tags("a") == sorted(tags)
    assert len(registry.requests_to("/v2/a/tags/list")) == 3


def test_catalog_returns_names_raw_for_the_cli_to_escape(registry, config):
    evil = "evil\x1b[2J\x1b]0;pwned\x07name"
    registry.route("GET", "/v2/_catalog", Reply(body=json.dumps({"repositories": ["ok", evil]}).encode()))
    names = client(registry, config).catalog()
    assert names == ["ok", evil]
    assert "\x1b" not in printable(names[1])


def test_pagination_link_to_another_host_is_refused(registry, config):
    registry.route(
        "GET",
        "/v2/_catalog",
        Reply(body=b'{"repositories": ["a"]}', headers={"Link": '<http://127.0.0.2:1/v2/_catalog?last=a>; rel="next"'}),
    )
    with pytest.raises(RedirectRefused):
        client(registry, config).catalog()


def test_pagination_loop_ends(registry, config):
    registry.route(
        "GET", "/v2/a/tags/list", Reply(body=b'{"tags": ["t"]}', headers={"Link": '</v2/a/tags/list>; rel="next"'})
    )
    assert client(registry, config).list_tags("a") == ["t"]


@pytest.mark.parametrize("body", [b'{"tags": null}', b'{"name": "a"}'])
def test_tags_of_an_empty_repository(registry, config, body):
    registry.route("GET", "/v2/a/tags/list", Reply(body=body))
    assert client(registry, config).list_tags("a") == []


@pytest.mark.parametrize("body", [b'{"tags": "t"}', b'{"tags": [1]}', b"[]", b"nope"])
def test_malformed_tag_lists(registry, config, body):
    registry.route("GET", "/v2/a/tags/list", Reply(body=body))
    with pytest.raises(RegistryError, match="malformed"):
        client(registry, config).list_tags("a")


def test_tags_of_unknown_repository(registry, config):
    with pytest.raises(ManifestUnknown, match="name unknown"):
        client(registry, config).list_tags("nope")


# -- search -----------------------------------------------------------------------------------------------------


def test_search_hub(registry, config, monkeypatch):
    monkeypatch.setattr(client_module, "HUB_SEARCH_URL", f"{registry.url}/v1/search")
    results = {
        "num_results": 3,
        "results": [
            {"name": "nginx", "description": "Official build of Nginx.", "star_count": 20000, "is_official": True},
            {"name": "evil\x1b[2J", "description": None, "star_count": "many", "is_official": "yes"},
            {"description": "no name"},
            "junk",
        ],
    }
    registry.route("GET", "/v1/search", Reply(body=json.dumps(results).encode()))
    found = RegistryClient("docker.io", config).search_hub("nginx", 250)
    assert found == [
        {"name": "nginx", "description": "Official build of Nginx.", "star_count": 20000, "is_official": True},
        {"name": "evil\x1b[2J", "description": "", "star_count": 0, "is_official": False},
    ]
    (request,) = registry.requests
    assert request.query == {"q": ["nginx"], "n": ["100"]}


def test_search_is_for_docker_hub_only(registry, config):
    with pytest.raises(RegistryError, match="only available for docker.io"):
        client(registry, config).search_hub("x", 10)
    with pytest.raises(InvalidReference):
        RegistryClient("docker.io", config).search_hub("bad\nterm", 10)


# -- endpoints ----------------------------------------------------------------------------------------------------


def test_endpoints_and_schemes(config):
    hub = RegistryClient("index.docker.io", config)
    assert hub.registry == "docker.io"
    assert hub.upstream.base_url == "https://registry-1.docker.io"
    assert RegistryClient("registry.example.com:5000", config).upstream.base_url == "https://registry.example.com:5000"
    assert RegistryClient("localhost:5000", config).upstream.base_url == "http://localhost:5000"
    insecure = Settings(
        config.data_root, config.runtime_root, config.config_root, insecure_registries=frozenset({"lan:5000"})
    )
    assert RegistryClient("lan:5000", insecure).upstream.base_url == "http://lan:5000"
    mirrored = Settings(
        config.data_root,
        config.runtime_root,
        config.config_root,
        registries={
            "docker.io": RegistryConfig(mirrors=("127.0.0.1:5000", "https://mirror.example.com/", "http://lan:80"))
        },
    )
    assert [e.base_url for e in RegistryClient("docker.io", mirrored).endpoints] == [
        "http://127.0.0.1:5000",
        "https://mirror.example.com",
        "http://lan:80",
        "https://registry-1.docker.io",
    ]


@pytest.mark.parametrize("name", ["", "a/b", "user@host", "host:99999", "host:port", "ho st"])
def test_invalid_registry_names(config, name):
    with pytest.raises(InvalidReference):
        RegistryClient(name, config)


def test_timeout_from_environment(config, monkeypatch):
    monkeypatch.setenv("SBX_HTTP_TIMEOUT", "7.5")
    assert RegistryClient("localhost:1", config).read_timeout == 7.5
    monkeypatch.setenv("SBX_HTTP_TIMEOUT", "soon")
    with pytest.raises(ConfigError):
        RegistryClient("localhost:1", config)


def test_registry_down(config):
    port = closed_port()
    regclient = RegistryClient(f"127.0.0.1:{port}", config, retries=2, backoff=0.01)
    with pytest.raises(RegistryUnreachable, match="connection refused") as info:
        regclient.get_manifest("a", "t")
    assert "registry running" in info.value.hint


def test_a_push_stored_under_another_digest_is_refused(registry, config):
    other = sha256(b"other")
    registry.route("POST", "/v2/a/blobs/uploads/", Reply(202, headers={"Location": "/v2/a/blobs/uploads/x"}))
    registry.route("PUT", "/v2/a/blobs/uploads/x", Reply(201, headers={"Docker-Content-Digest": other}))
    with pytest.raises(DigestMismatch, match=f"stored blob {sha256(b'abc')} as {other}"):
        client(registry, config).upload_blob("a", Digest.of(b"abc"), 3, lambda: io.BytesIO(b"abc"))
    registry.route("PUT", "/v2/a/manifests/t", Reply(201, headers={"Docker-Content-Digest": other}))
    with pytest.raises(DigestMismatch, match="stored manifest"):
        client(registry, config).put_manifest("a", "t", manifest_bytes(), mediatypes.OCI_MANIFEST)
