"""Auth: challenge parsing, the bearer token flow, basic auth, and where credentials may go (TESTPLAN 19, 22)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.config import Settings
from sandbox.errors import AuthenticationRequired, InsecureRegistry, RegistryError, ResponseTooLarge
from sandbox.registry.auth import Authenticator, Challenge, may_send_credentials, parse_challenge
from sandbox.registry.client import RegistryClient
from sandbox.registry.credentials import StaticCredentials
from sandbox.registry.transport import Endpoint, Transport
from tests.fixtures.fakeregistry import FakeRegistry, Reply


def make_settings(tmp_path: Path) -> Settings:
    return Settings(data_root=tmp_path / "data", runtime_root=tmp_path / "run", config_root=tmp_path / "config")




@pytest.fixture
def other_host():
    """A second loopback address: "another host" for realms and redirects."""
    with FakeRegistry("127.0.0.2") as fake:
        yield fake


def client(fake: FakeRegistry, config: Settings, creds=None, **kw) -> RegistryClient:
    kw.setdefault("retries", 0)
    kw.setdefault("read_timeout", 5.0)
    return RegistryClient(fake.host, config, creds, **kw)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- parse_challenge ------------------------------------------------------------------------------------------


def test_parse_bearer_challenge_with_commas_and_escapes_in_quotes():
    header = (
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:a/b:pull,push" , error="insufficient_scope", x="say \\"hi\\""'
    )
    assert parse_challenge(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example.com/token",
                "service": "registry.example.com",
                "scope": "repository:a/b:pull,push",
                "error": "insufficient_scope",
                "x": 'say "hi"',
            },
        )
    ]


def test_parse_several_challenges_and_token68():
    parsed = parse_challenge('Negotiate abc+/==, Basic realm=Registry, BEARER Realm="r", Service=svc')
    assert parsed == [
        Challenge("negotiate", {}, "abc+/=="),
        Challenge("basic", {"realm": "Registry"}),
        Challenge("bearer", {"realm": "r", "service": "svc"}),
    ]


def test_parse_bare_schemes():
    assert parse_challenge("Basic, Bearer") == [Challenge("basic"), Challenge("bearer")]
    assert parse_challenge("") == []
    assert parse_challenge(None) == []


@pytest.mark.parametrize(
    "header",
    [
        'Bearer realm="unterminated',
        'Bearer realm="a" junk',
        "Bearer a=b=c",
        "Bearer realm= service=x",
        '"quoted-scheme"',
        'Bearer realm="a", realm="b"',
        'Bearer realm="a\r\nb"',
        "=x",
        "Bearer" + ' x="y",' * 5000,
    ],
)
def test_parse_junk_is_a_registry_error(header):
    with pytest.raises(RegistryError):
        parse_challenge(header)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_fails_with_anything_but_registry_error(text):
    try:
        parsed = parse_challenge(text)
    except RegistryError:
        return
    assert all(isinstance(c, Challenge) and c.scheme == c.scheme.lower() for c in parsed)


# -- where credentials may go ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "realm", "allowed"),
    [
        ("registry.example.com", "https://registry.example.com/token", True),
        ("registry.example.com:5000", "https://registry.example.com:5001/token", True),
        ("registry.example.com", "https://REGISTRY.example.com/token", True),
        ("registry.example.com", "https://auth.example.com/token", False),
        ("registry.example.com", "https://registry.example.com.evil.net/token", False),
        ("registry-1.docker.io", "https://auth.docker.io/token", True),
        ("mirror.example.com", "https://auth.docker.io/token", False),
        ("registry.example.com", "not a url", False),
    ],
)
def test_may_send_credentials(endpoint, realm, allowed):
    assert may_send_credentials(Endpoint("https", endpoint, endpoint), realm) is allowed


def test_https_registry_with_plain_http_realm_is_refused_before_any_request(config):
    class NoNetwork:
        def request(self, *args, **kwargs):
            raise AssertionError("no request may be sent")

    auth = Authenticator(Transport(config, session=NoNetwork()), StaticCredentials("u", "p"))
    endpoint = Endpoint("https", "registry.example.com", "registry.example.com")
    with pytest.raises(InsecureRegistry):
        auth.authorize(endpoint, 'Bearer realm="http://registry.example.com/token"', "repository:a:pull")
    with pytest.raises(RegistryError, match="not an http"):
        auth.authorize(endpoint, 'Bearer realm="file:///etc/passwd"', "repository:a:pull")
    with pytest.raises(RegistryError, match="without a realm"):
        auth.authorize(endpoint, 'Bearer service="x"', "repository:a:pull")


# -- the bearer flow against fakes ----------------------------------------------------------------------------


def test_bearer_anonymous(registry, config):
    realm = registry.serve_tokens("/token", "anon-token")
    registry.require_bearer(realm, service="fake-svc", token="anon-token")
    registry.add_image("library/busybox", "latest", [b"layer"])
    fetched = client(registry, config).get_manifest("library/busybox", "latest")
    assert fetched.raw
    (token_request,) = registry.requests_to("/token")
    assert token_request.header("authorization") is None
    assert token_request.query["service"] == ["fake-svc"]
    assert token_request.query["scope"] == ["repository:library/busybox:pull"]
    assert "account" not in token_request.query
    final = registry.requests_to("/v2/library/busybox/manifests/latest")[-1]
    assert final.header("authorization") == "Bearer anon-token"


def test_realm_on_another_host_never_gets_stored_credentials(registry, other_host, config):
    realm = other_host.serve_tokens("/token", "tok", users={"ana": "pw"}, anonymous=True)
    registry.require_bearer(realm, token="tok")
    registry.add_image("team/app", "v1", [b"layer"])
    client(registry, config, StaticCredentials("ana", "pw")).get_manifest("team/app", "v1")
    (token_request,) = other_host.requests_to("/token")
    assert token_request.header("authorization") is None
    assert "account" not in token_request.query
    assert all("pw" not in value for r in other_host.requests for value in r.headers.values())


def test_realm_on_same_host_other_port_gets_credentials(registry, config):
    with FakeRegistry("127.0.0.1") as issuer:
        realm = issuer.serve_tokens("/token", "user-token", users={"ana": "pw"}, anonymous=False)
        registry.require_bearer(realm, token="user-token")
        registry.add_image("team/app", "v1", [b"layer"])
        fetched = client(registry, config, StaticCredentials("ana", "pw")).get_manifest("team/app", "v1")
        assert fetched.raw
        (token_request,) = issuer.requests_to("/token")
        assert token_request.header("authorization") == basic("ana", "pw")
        assert token_request.query["account"] == ["ana"]


def test_wrong_credentials_at_the_token_server(registry, config):
    with FakeRegistry("127.0.0.1") as issuer:
        realm = issuer.serve_tokens("/token", "t", users={"ana": "pw"}, anonymous=False)
        registry.require_bearer(realm, token="t")
        with pytest.raises(AuthenticationRequired, match="refused") as info:
            client(registry, config, StaticCredentials("ana", "wrong")).ping()
        assert "sbx login" in info.value.hint
        with pytest.raises(AuthenticationRequired, match="requires a login"):
            client(registry, config).ping()


def test_ping_with_good_credentials(registry, config):
    with FakeRegistry("127.0.0.1") as issuer:
        realm = issuer.serve_tokens("/token", "t", users={"ana": "pw"}, anonymous=False)
        registry.require_bearer(realm, token="t")
        client(registry, config, StaticCredentials("ana", "pw")).ping()
        (token_request,) = issuer.requests_to("/token")
        assert "scope" not in token_request.query


def test_tokens_are_cached_per_scope(registry, config):
    realm = registry.serve_tokens("/token", "t")
    registry.require_bearer(realm, token="t")
    registry.add_image("library/a", "latest", [b"one"])
    registry.add_image("library/b", "latest", [b"two"])
    regclient = client(registry, config)
    regclient.get_manifest("library/a", "latest")
    regclient.get_manifest("library/a", "latest")
    regclient.list_tags("library/a")
    assert len(registry.requests_to("/token")) == 1
    regclient.get_manifest("library/b", "latest")
    assert len(registry.requests_to("/token")) == 2


def test_token_under_access_token_field_and_expired_token_is_refetched(registry, config):
    realm = registry.serve_tokens("/token", "t", field_name="access_token", expires_in=1)
    registry.require_bearer(realm, token="t")
    registry.add_image("library/a", "latest", [b"one"])
    regclient = client(registry, config)
    regclient.get_manifest("library/a", "latest")
    regclient.get_manifest("library/a", "latest")  # lifetime 1 s, less the margin: still fresh
    assert len(registry.requests_to("/token")) == 1
    regclient._auth.clock = lambda: 10**9  # far in the future: the token has expired
    regclient.get_manifest("library/a", "latest")
    assert len(registry.requests_to("/token")) == 2


def test_token_body_over_one_mib_is_refused(registry, config):
    registry.route("GET", "/big-token", Reply(body=b'{"token": "' + b"a" * (1024 * 1024 + 10) + b'"}'))
    registry.require_bearer(f"{registry.url}/big-token", token="never")
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("library/a", "latest")


def test_endless_token_body_is_bounded(registry, config):
    registry.route("GET", "/endless-token", Reply(body=b"a" * 65536, endless=True))
    registry.require_bearer(f"{registry.url}/endless-token", token="never")
    with pytest.raises(ResponseTooLarge):
        client(registry, config).get_manifest("library/a", "latest")
    assert registry.wait_idle()
    (token_request,) = registry.requests_to("/endless-token")
    assert token_request.bytes_sent < 32 * 1024 * 1024


@pytest.mark.parametrize(
    "body",
    [b"[]", b"not json", b'{"token": ""}', b'{"token": "a b"}', b'{"token": "a\\r\\nX-Evil: 1"}', b'{"token": 5}'],
)
def test_unusable_token_responses(registry, config, body):
    registry.route("GET", "/bad-token", Reply(body=body))
    registry.require_bearer(f"{registry.url}/bad-token", token="never")
    with pytest.raises(RegistryError, match="token"):
        client(registry, config).get_manifest("library/a", "latest")


def test_token_accepted_but_registry_still_refuses(registry, config):
    realm = registry.serve_tokens("/token", "issued-but-not-accepted")
    registry.require_bearer(realm, token="something-else")
    with pytest.raises(AuthenticationRequired, match="unauthorized"):
        client(registry, config).get_manifest("library/a", "latest")
    assert len(registry.requests_to("/v2/library/a/manifests/latest")) == 2


# -- basic ------------------------------------------------------------------------------------------------------


def test_basic_auth(registry, config):
    registry.require_basic("ana", "pw")
    registry.add_image("library/a", "latest", [b"one"])
    regclient = client(registry, config, StaticCredentials("ana", "pw"))
    regclient.get_manifest("library/a", "latest")
    regclient.get_manifest("library/a", "latest")
    auths = [r.header("authorization") for r in registry.requests_to("/v2/library/a/manifests/latest")]
    assert auths == [None, basic("ana", "pw"), basic("ana", "pw")]  # the second fetch sends it at once


def test_basic_auth_without_or_with_wrong_credentials(registry, config):
    registry.require_basic("ana", "pw")
    with pytest.raises(AuthenticationRequired, match="requires a login") as info:
        client(registry, config).ping()
    assert info.value.hint == f"run: sbx login {registry.host}"
    with pytest.raises(AuthenticationRequired, match="unauthorized"):
        client(registry, config, StaticCredentials("ana", "nope")).ping()


def test_unknown_scheme_or_missing_challenge(registry, config):
    registry.route("GET", "/v2/", Reply(401, headers={"WWW-Authenticate": 'Digest realm="x", nonce="y"'}))
    with pytest.raises(AuthenticationRequired, match="unsupported authentication"):
        client(registry, config).ping()
    registry.route("GET", "/v2/", Reply(401))
    with pytest.raises(AuthenticationRequired, match="without a challenge"):
        client(registry, config).ping()


@pytest.mark.parametrize("realm", ["https://evilregistry.example.com/token", "https://xregistry.example.com/token",
                                   "https://attacker-registry.example.com:5000/token"])
def test_a_realm_host_that_merely_ends_with_the_registrys_name_gets_no_credentials(realm):
    assert may_send_credentials(Endpoint("https", "registry.example.com", "registry.example.com"), realm) is False


@pytest.mark.parametrize("realm", ["https://user@registry.example.com/token", "https://:pw@registry.example.com/t",
                                   "https://user:pw@registry.example.com/token"])
def test_a_realm_with_any_credentials_in_its_url_is_refused_before_any_request(config, realm):
    class NoNetwork:
        def request(self, *args, **kwargs):
            raise AssertionError("no request may be sent")

    auth = Authenticator(Transport(config, session=NoNetwork()), StaticCredentials("u", "p"))
    endpoint = Endpoint("https", "registry.example.com", "registry.example.com")
    with pytest.raises(RegistryError, match="carries credentials"):
        auth.authorize(endpoint, f'Bearer realm="{realm}"', "repository:a:pull")
