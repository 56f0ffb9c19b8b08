"""Registry authentication: ``WWW-Authenticate`` challenges, the Docker token flow, HTTP basic.

The protocol (Docker registry token authentication, as Docker Hub and CNCF distribution speak it):

1. A request without (valid) credentials gets ``401`` and a challenge, e.g.
   ``WWW-Authenticate: Bearer realm="https://auth.example.com/token",service="registry.example.com",
   scope="repository:library/busybox:pull"``, or ``Basic realm="Registry"``.
2. Bearer: the client GETs the realm with query parameters ``service`` and ``scope`` (ours:
   ``repository:NAME:pull`` or ``repository:NAME:pull,push``; ``registry:catalog:*``) and, when it holds
   credentials that may go there, HTTP basic ``Authorization`` plus ``account=USERNAME``. The answer is JSON with
   ``token`` (or the OAuth2 ``access_token``) and optionally ``expires_in`` (seconds, 60 when absent) and
   ``issued_at``. The client retries with ``Authorization: Bearer TOKEN``.
3. Basic: the client retries with ``Authorization: Basic base64(user:password)``.

sbx's rules on top (TESTPLAN 22): stored credentials go to a token realm only when the realm's host name is the
registry endpoint's host name (ports may differ), or for Docker Hub (``registry-1.docker.io``) to
``auth.docker.io``; any other realm gets an anonymous token request. A realm must be http(s); an https registry
must have an https realm unless the realm is on a loopback address. The token body is bounded to 1 MiB and the
token must be printable ASCII (it becomes a header). Tokens are cached per (endpoint, scope) for their lifetime,
less a margin.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

from sandbox.config import is_loopback
from sandbox.errors import AuthenticationRequired, InsecureRegistry, RegistryError
from sandbox.registry.credentials import CredentialSource
from sandbox.registry.transport import Endpoint, Transport, http_url, printable
from sandbox.valueclass import field, valueclass

MAX_TOKEN_BODY = 1024 * 1024
MAX_CHALLENGE_HEADER = 16 * 1024
DEFAULT_TOKEN_LIFETIME = 60
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_AUTH = "auth.docker.io"

_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@valueclass(slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: the scheme (lower-case) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


class _Parser:
    """RFC 7235 challenges: ``scheme [token68 | name=(token|"quoted") *(, name=...)] *(, challenge)``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> RegistryError:
        return RegistryError(f"malformed WWW-Authenticate header ({why}): {printable(self.text, 120)!r}")

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def token(self, allowed: frozenset[str] = _TCHAR) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in allowed:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        self.pos += 1  # the opening quote
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(out)
            if char == "\\":
                self.pos += 1
                if self.at_end():
                    break
                char = self.text[self.pos]
            if char in "\r\n\0":
                raise self.fail("control character in a quoted value")
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated quoted value")

    def parse(self) -> list[Challenge]:
        challenges: list[Challenge] = []
        while True:
            self.skip(" \t,")
            if self.at_end():
                return challenges
            scheme = self.token()
            if not scheme:
                raise self.fail("expected an auth scheme")
            if not self.at_end() and self.peek() not in " \t,":
                raise self.fail("junk after the auth scheme")
            params: dict[str, str] = {}
            token68 = None
            self.skip(" \t")
            # A token68 (``Negotiate abc==``) is the scheme's only argument: a run of token68 characters and
            # '=' padding followed by the end or a comma (a parameter would go on with '=' and a value).
            mark = self.pos
            if self.token(_TOKEN68):
                self.skip("=")
                end = self.pos
                self.skip(" \t")
                if self.at_end() or self.peek() == ",":
                    token68 = self.text[mark:end]
                else:
                    self.pos = mark
            if token68 is None:
                while True:
                    self.skip(" \t,")
                    if self.at_end():
                        break
                    mark = self.pos
                    name = self.token()
                    if not name:
                        raise self.fail("expected a parameter name")
                    self.skip(" \t")
                    if self.peek() != "=":
                        self.pos = mark  # the next challenge's scheme
                        break
                    self.pos += 1
                    self.skip(" \t")
                    if self.peek() == '"':
                        value = self.quoted()
                    else:
                        value = self.token()
                        if not value:
                            raise self.fail(f"parameter {name!r} has no value")
                    key = name.lower()
                    if key in params:
                        raise self.fail(f"parameter {key!r} given twice")
                    params[key] = value
                    self.skip(" \t")
                    if not self.at_end() and self.peek() != ",":
                        raise self.fail(f"junk after parameter {key!r}")
            challenges.append(Challenge(scheme.lower(), params, token68))


def parse_challenge(header: str | None) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into challenges; malformed → :class:`RegistryError`."""
    if not header:
        return []
    if len(header) > MAX_CHALLENGE_HEADER:
        raise RegistryError(f"WWW-Authenticate header is longer than {MAX_CHALLENGE_HEADER} characters")
    return _Parser(header).parse()


def may_send_credentials(endpoint: Endpoint, realm: str) -> bool:
    """Stored credentials go to the realm only on the registry's own host name, or Docker Hub's auth server."""
    realm_host = (urlsplit(realm).hostname or "").lower()
    if not realm_host:
        return False
    if realm_host == endpoint.hostname:
        return True
    return endpoint.hostname == DOCKER_HUB_ENDPOINT and realm_host == DOCKER_HUB_AUTH


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _valid_header_token(token: object) -> bool:
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_BODY and all(0x21 <= ord(c) <= 0x7E for c in token)


class Authenticator:
    """Answers challenges for one client and caches what it got; safe to share between threads."""

    def __init__(
        self,
        transport: Transport,
        credentials: CredentialSource | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.credentials = credentials
        self.clock = clock
        self._tokens: dict[tuple[str, str | None], tuple[str, float]] = {}
        self._basic: dict[str, str] = {}
        self._lock = threading.Lock()

    def cached(self, endpoint: Endpoint, scope: str | None) -> str | None:
        """An Authorization value already known good for this endpoint and scope, if any."""
        with self._lock:
            entry = self._tokens.get((endpoint.netloc, scope))
            if entry is not None:
                if entry[1] > self.clock():
                    return entry[0]
                del self._tokens[(endpoint.netloc, scope)]
            return self._basic.get(endpoint.netloc)

    def forget(self, endpoint: Endpoint, scope: str | None) -> None:
        with self._lock:
            self._tokens.pop((endpoint.netloc, scope), None)
            self._basic.pop(endpoint.netloc, None)

    def _stored(self, endpoint: Endpoint) -> tuple[str, str] | None:
        if self.credentials is None:
            return None
        return self.credentials.get(endpoint.credentials_key)

    def authorize(self, endpoint: Endpoint, header: str | None, scope: str | None) -> str:
        """Answer the challenge in ``header`` (from a 401 of ``endpoint``); return the Authorization value."""
        challenges = parse_challenge(header)
        by_scheme = {c.scheme: c for c in reversed(challenges)}
        if "bearer" in by_scheme:
            with self._lock:
                value, lifetime = self._fetch_token(endpoint, by_scheme["bearer"], scope)
                # Renew a little early: a token that expires in flight costs a 401 and a retry.
                margin = min(10.0, lifetime * 0.1)
                self._tokens[(endpoint.netloc, scope)] = (value, self.clock() + lifetime - margin)
            return value
        if "basic" in by_scheme:
            stored = self._stored(endpoint)
            if stored is None:
                raise AuthenticationRequired(
                    f"{endpoint.credentials_key} requires a login", hint=f"run: sbx login {endpoint.credentials_key}"
                )
            value = basic_header(*stored)
            with self._lock:
                self._basic[endpoint.netloc] = value
            return value
        if challenges:
            raise AuthenticationRequired(
                f"{endpoint.netloc} asks for unsupported authentication {printable(challenges[0].scheme, 40)!r}",
                hint=None,
            )
        raise AuthenticationRequired(f"{endpoint.netloc} answered 401 unauthorized without a challenge")

    def _fetch_token(self, endpoint: Endpoint, challenge: Challenge, scope: str | None) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"{endpoint.netloc} sent a bearer challenge without a realm")
        parts = http_url(realm, f"{endpoint.netloc} sends a token realm", RegistryError)
        if endpoint.scheme == "https" and parts.scheme == "http" and not is_loopback(parts.netloc):
            raise InsecureRegistry(
                f"{endpoint.netloc} sends tokens over plain http ({printable(realm, 120)}); refusing",
                hint="the registry's token service must use https",
            )
        query: list[tuple[str, str]] = []
        service = challenge.params.get("service")
        if service:
            query.append(("service", service))
        wanted_scope = scope or challenge.params.get("scope")
        if wanted_scope:
            query.append(("scope", wanted_scope))
        authorization = None
        stored = self._stored(endpoint) if may_send_credentials(endpoint, realm) else None
        if stored is not None:
            query.append(("account", stored[0]))
            authorization = basic_header(*stored)
        url_query = "&".join(q for q in (parts.query, urlencode(query)) if q)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", url_query, ""))
        response = self.transport.request("GET", url, authorization=authorization)
        realm_host = parts.netloc
        if response.status_code in (401, 403):
            detail = self.transport.error_detail(response)
            if stored is not None:
                raise AuthenticationRequired(
                    f"login to {endpoint.credentials_key} refused: {detail}",
                    hint=f"check the username and password, then run: sbx login {endpoint.credentials_key}",
                )
            raise AuthenticationRequired(f"{endpoint.credentials_key} requires a login: {detail}")
        if response.status_code != 200:
            raise self.transport.registry_error(response, f"token request to {realm_host}")
        raw = self.transport.read_bounded(response, MAX_TOKEN_BODY, f"token response from {realm_host}")
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict):
            raise RegistryError(f"token response from {realm_host} is not a JSON object")
        token = document.get("token") or document.get("access_token")
        if not _valid_header_token(token):
            raise RegistryError(f"token response from {realm_host} has no usable token")
        lifetime = document.get("expires_in")
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        return f"Bearer {token}", float(min(lifetime, 24 * 3600))
