"""Redirects (TESTPLAN 21): another host gets no Authorization, https never falls to http, at most 10 hops."""

from __future__ import annotations

import re

import pytest

from sandbox.config import Settings
from sandbox.errors import InsecureRegistry, RedirectRefused, RegistryUnreachable
from sandbox.oci import mediatypes
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import Descriptor
from sandbox.registry.client import RegistryClient
from sandbox.registry.credentials import StaticCredentials
from sandbox.registry.transport import MAX_REDIRECTS, check_redirect
from tests.fixtures.fakeregistry import FakeRegistry, Reply, sha256


@pytest.fixture
def storage():
    """Blob storage on "another host" (127.0.0.2 is loopback too)."""
    with FakeRegistry("127.0.0.2") as fake:
        yield fake


DATA = b'{"architecture": "amd64", "os": "linux"}'
BLOB_PATH = f"/v2/a/blobs/{sha256(DATA)}"


def descriptor() -> Descriptor:
    return Descriptor(mediatypes.OCI_CONFIG, Digest.of(DATA), len(DATA))


def client(fake: FakeRegistry, config: Settings, **kw) -> RegistryClient:
    kw.setdefault("retries", 0)
    kw.setdefault("read_timeout", 5.0)
    return RegistryClient(fake.host, config, StaticCredentials("ana", "pw"), **kw)


def test_redirect_to_another_host_drops_authorization(registry, storage, config):
    registry.require_basic("ana", "pw")
    registry.redirect("GET", BLOB_PATH, f"{storage.url}/blobs/x?sig=1")
    storage.route("GET", "/blobs/x", Reply(body=DATA))
    assert client(registry, config).get_blob("a", descriptor()) == DATA
    assert registry.requests_to(BLOB_PATH)[-1].header("authorization") is not None
    (fetch,) = storage.requests
    assert fetch.header("authorization") is None
    assert fetch.query == {"sig": ["1"]}


def test_redirect_on_the_same_host_keeps_authorization(registry, config):
    registry.require_basic("ana", "pw")
    registry.redirect("GET", BLOB_PATH, "/v2/storage/x")  # relative Location
    registry.route("GET", "/v2/storage/x", Reply(body=DATA))
    assert client(registry, config).get_blob("a", descriptor()) == DATA
    assert registry.requests_to("/v2/storage/x")[0].header("authorization") is not None


def test_authorization_stays_dropped_after_coming_back(registry, storage, config):
    registry.require_basic("ana", "pw")
    registry.redirect("GET", BLOB_PATH, f"{storage.url}/bounce")
    storage.redirect("GET", "/bounce", f"{registry.url}/back")  # outside /v2/: not behind the auth gate
    registry.route("GET", "/back", Reply(body=DATA))
    assert client(registry, config).get_blob("a", descriptor()) == DATA
    assert registry.requests_to("/back")[0].header("authorization") is None


@pytest.mark.parametrize(("hops", "ok"), [(MAX_REDIRECTS, True), (MAX_REDIRECTS + 1, False)])
def test_redirect_limit(registry, config, hops, ok):
    def hop(request):
        number = int(request.path.rsplit("/", 1)[1])
        if number < hops:
            return Reply(302, headers={"Location": f"/hop/{number + 1}"})
        return Reply(body=DATA)

    registry.route("GET", re.compile(r"/hop/\d+"), handler=hop)
    registry.redirect("GET", BLOB_PATH, "/hop/1")
    if ok:
        assert client(registry, config).get_blob("a", descriptor()) == DATA
    else:
        with pytest.raises(RedirectRefused, match="too many redirects"):
            client(registry, config).get_blob("a", descriptor())
        assert len(registry.requests) == MAX_REDIRECTS + 1


def test_redirect_loop_fails(registry, config):
    registry.redirect("GET", BLOB_PATH, BLOB_PATH)
    with pytest.raises(RedirectRefused):
        client(registry, config).get_blob("a", descriptor())


@pytest.mark.parametrize("location", ["", "ftp://127.0.0.1/x", "file:///etc/passwd", "http://user:pw@127.0.0.2/x"])
def test_bad_redirect_targets(registry, config, location):
    registry.route("GET", BLOB_PATH, Reply(302, headers={"Location": location} if location else {}))
    with pytest.raises(RedirectRefused):
        client(registry, config).get_blob("a", descriptor())


@pytest.mark.parametrize(
    ("source", "target", "keep"),
    [
        ("https://reg.example/v2/x", "https://reg.example/other", True),
        ("https://reg.example/v2/x", "https://reg.example:443/other", True),
        ("https://reg.example/v2/x", "https://REG.example/other", True),
        ("https://reg.example/v2/x", "https://cdn.example/blob", False),
        ("https://reg.example/v2/x", "https://reg.example:8443/blob", False),
        ("http://127.0.0.1:5000/v2/x", "http://127.0.0.1:5001/blob", False),
        ("http://127.0.0.1:5000/v2/x", "https://127.0.0.1:5000/blob", True),  # an upgrade, same host:port
        ("https://reg.example/v2/x", "http://127.0.0.1:9/blob", False),  # loopback: plain http allowed
        ("http://reg.example/v2/x", "http://cdn.example/blob", False),  # already plain http
    ],
)
def test_check_redirect_decisions(config, source, target, keep):
    assert check_redirect(config, source, target) is keep


@pytest.mark.parametrize(
    "target", ["http://cdn.example/blob", "http://reg.example/blob", "http://reg.example:443/blob"]
)
def test_https_to_http_is_refused(config, target):
    with pytest.raises(InsecureRegistry, match="refusing redirect from https to plain http"):
        check_redirect(config, "https://reg.example/v2/x", target)


def test_https_to_http_allowed_for_a_configured_insecure_host(config):
    insecure = Settings(
        config.data_root, config.runtime_root, config.config_root, insecure_registries=frozenset({"lan:5000"})
    )
    assert check_redirect(insecure, "https://reg.example/v2/x", "http://lan:5000/blob") is False


class FakeResponse:
    def __init__(self, url: str, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.url, self.status_code, self.headers, self.body = url, status, headers, body
        self.reason = "whatever"
        self.closed = False

    def iter_content(self, chunk_size: int = 1):
        yield self.body

    def close(self) -> None:
        self.closed = True


class ScriptedSession:
    """Stands in for requests.Session: answers from a script keyed by URL and records what was asked."""

    def __init__(self, script: dict[str, FakeResponse]) -> None:
        self.script = script
        self.sent: list[tuple[str, str, dict]] = []

    def request(self, method, url, headers=None, **kwargs):
        self.sent.append((method, url, dict(headers or {})))
        return self.script[url]


def test_https_registry_redirecting_to_plain_http_is_refused_at_the_client(config):
    url = f"https://registry.example.com/v2/a/blobs/{sha256(DATA)}"
    session = ScriptedSession({url: FakeResponse(url, 307, {"Location": "http://cdn.example.com/blob"})})
    regclient = RegistryClient("registry.example.com", config, session=session, retries=0)
    with pytest.raises(InsecureRegistry):
        regclient.get_blob("a", descriptor())
    assert [u for _, u, _ in session.sent] == [url]
    assert session.script[url].closed


def test_https_registry_redirecting_to_loopback_http_is_followed_without_authorization(config):
    url = f"https://registry.example.com/v2/a/blobs/{sha256(DATA)}"
    target = "http://127.0.0.1:5999/blob"
    session = ScriptedSession(
        {
            url: FakeResponse(url, 307, {"Location": target}),
            target: FakeResponse(target, 200, {"Content-Length": str(len(DATA))}, DATA),
        }
    )
    regclient = RegistryClient("registry.example.com", config, StaticCredentials("u", "p"), session=session)
    regclient._auth._basic["registry.example.com"] = "Basic dTpw"  # as if a basic challenge was answered
    assert regclient.get_blob("a", descriptor()) == DATA
    assert session.sent[0][2]["Authorization"] == "Basic dTpw"
    assert "Authorization" not in session.sent[1][2]


def test_network_errors_from_the_session_are_typed(config):
    import requests

    class Failing:
        def request(self, method, url, **kwargs):
            raise requests.exceptions.ConnectionError("boom")

    regclient = RegistryClient("registry.example.com", config, session=Failing(), retries=0)
    with pytest.raises(RegistryUnreachable):
        regclient.ping()


def test_a_second_hop_on_the_storage_host_gets_no_authorization_either(registry, storage, config):
    """registry → storage → storage: the hop that stays on the storage host must not get the header back."""
    registry.require_basic("ana", "pw")
    registry.redirect("GET", BLOB_PATH, f"{storage.url}/first")
    storage.redirect("GET", "/first", f"{storage.url}/second")
    storage.route("GET", "/second", Reply(body=DATA))
    assert client(registry, config).get_blob("a", descriptor()) == DATA
    assert registry.requests_to(BLOB_PATH)[-1].header("authorization") is not None
    assert [request.header("authorization") for request in storage.requests] == [None, None]


def test_an_endless_body_without_content_length_is_cut_at_the_bound(registry, config):
    from sandbox.errors import ResponseTooLarge
    from sandbox.registry.transport import Transport

    registry.route("GET", "/endless", Reply(body=b"z" * 65536, endless=True))
    transport = Transport(config)
    response = transport.request("GET", f"{registry.url}/endless")
    assert response.headers.get("Content-Length") is None
    with pytest.raises(ResponseTooLarge, match="larger than the 1048576 bytes"):
        transport.read_bounded(response, 1024 * 1024, "the body")
    assert registry.wait_idle()
    (request,) = registry.requests_to("/endless")
    assert request.bytes_sent < 32 * 1024 * 1024  # the client hung up soon after the bound
