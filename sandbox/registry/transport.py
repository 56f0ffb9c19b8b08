"""HTTP plumbing shared by the auth flow and the client: endpoints, redirects, bounded bodies, error mapping.

Contract with a registry (OCI distribution spec, Docker registry HTTP API v2):

- Every response body is hostile until bounded: :meth:`Transport.read_bounded` refuses a declared
  ``Content-Length`` above the bound before reading, and stops reading one byte past the bound otherwise, so an
  endless body costs at most ``limit + 1`` bytes of memory (TESTPLAN 19).
- Redirects are followed by hand (``allow_redirects=False``), at most :data:`MAX_REDIRECTS` hops. Blob storage
  often redirects a blob GET to another host (S3, a CDN); the ``Authorization`` header is sent only while the
  request stays on the host:port it started on and never again once it left (TESTPLAN 21). A redirect from https
  to plain http is refused unless the target host is one the settings allow plain http for (loopback or configured
  insecure); a redirect to any other scheme, or carrying ``user:password@``, is refused.
- Error bodies (``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "..."}]}``) are read up to 1 MiB and shown
  with non-printable characters escaped (TESTPLAN 24), so a registry cannot paint the user's terminal.
- ``requests`` and ``urllib3`` exceptions never escape: they become :class:`RegistryUnreachable` (with
  ``transient`` and ``connect_failed`` fields the retry logic reads) or :class:`RegistryError`.

``requests`` is imported when a :class:`Transport` is built, never at import time.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

from sandbox import __version__
from sandbox.config import Settings, is_loopback
from sandbox.errors import (
    AuthenticationRequired,
    ConfigError,
    InsecureRegistry,
    RedirectRefused,
    RegistryError,
    RegistryUnreachable,
    ResponseTooLarge,
    SbxError,
)
from sandbox.valueclass import valueclass

MAX_REDIRECTS = 10
MAX_ERROR_BODY = 1024 * 1024
USER_AGENT = f"sbx/{__version__}"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
UNREACHABLE_HINT = "is the registry running and reachable? check the mirror config (registries.NAME.mirrors)"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def printable(text: str, limit: int = 300) -> str:
    """Text from a registry made safe for one terminal line: control and format characters escaped, bounded."""
    out = []
    for char in text[: limit * 2]:
        if char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    result = "".join(out)
    if len(result) > limit or len(text) > limit * 2:
        result = result[:limit] + "…"
    return result


@valueclass(slots=True)
class Endpoint:
    """One server that answers the registry API: a mirror or the registry itself.

    ``credentials_key`` is the name stored credentials are looked up by (``docker.io`` for Docker Hub's
    ``registry-1.docker.io``; a mirror's own host for a mirror).
    """

    scheme: str
    netloc: str
    credentials_key: str
    mirror: bool = False

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def hostname(self) -> str:
        return (urlsplit(self.base_url).hostname or "").lower()

    def url(self, path: str) -> str:
        return self.base_url + path


def origin(url: str) -> tuple[str, int | None]:
    """(hostname, effective port) of a URL: what "the same host" means for credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise RedirectRefused(f"invalid port in url {printable(url, 200)!r}") from None
    return (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(parts.scheme.lower())


def netloc_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


def http_url(url: str, what: str, error: type[SbxError]) -> SplitResult:
    """``url`` split (scheme lowercased) if it is an http(s) URL with a host and no user info, else ``error``.

    ``what`` starts the message ("refusing redirect to", "token realm of HOST:"); credentials are never printed.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise error(f"{what} {printable(url, 200)!r}: not an http(s) url")
    if parts.username is not None or parts.password is not None:
        raise error(f"{what} {parts.hostname}: the url carries credentials")
    return parts._replace(scheme=parts.scheme.lower())


def check_redirect(settings: Settings, source: str, target: str) -> bool:
    """Decide whether a redirect from ``source`` to ``target`` may be followed; True if Authorization may go along.

    Raises :class:`RedirectRefused` for a target that is not http(s) or carries user info, and
    :class:`InsecureRegistry` for https → http unless the target host is allowed plain http by the settings.
    """
    parts = http_url(target, "refusing redirect to", RedirectRefused)
    if urlsplit(source).scheme.lower() == "https" and parts.scheme == "http" and not settings.is_insecure(parts.netloc):
        raise InsecureRegistry(
            f"refusing redirect from https to plain http://{printable(parts.netloc, 200)}",
            hint=f"add {parts.netloc} to insecure_registries in the config file if that host is trusted",
        )
    return origin(source) == origin(target)


def transient(error: BaseException) -> bool:
    """May the request that failed this way be tried again (a dropped connection, an idle timeout, a 5xx)?"""
    return bool(getattr(error, "transient", False))


def _chain(exc: BaseException, depth: int = 0) -> Iterator[BaseException]:
    """The exception, its causes, contexts, wrapped reasons and exception args (urllib3 nests them deeply)."""
    if depth > 8:
        return
    yield exc
    seen: list[BaseException] = []
    for candidate in (getattr(exc, "reason", None), exc.__cause__, exc.__context__, *exc.args):
        if isinstance(candidate, BaseException) and candidate is not exc and candidate not in seen:
            seen.append(candidate)
            yield from _chain(candidate, depth + 1)


class Transport:
    """A ``requests`` session with sbx's timeouts, redirect rules, bounds and error mapping."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: Any = None,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
    ) -> None:
        import requests

        self._requests = requests
        self.settings = settings
        self.connect_timeout = connect_timeout
        if read_timeout is None:
            text = os.environ.get("SBX_HTTP_TIMEOUT", "30")
            try:
                read_timeout = float(text)
            except ValueError:
                raise ConfigError(
                    f"SBX_HTTP_TIMEOUT must be a number of seconds, not {printable(text, 40)!r}"
                ) from None
            if read_timeout <= 0:
                raise ConfigError("SBX_HTTP_TIMEOUT must be a positive number of seconds")
        self.read_timeout = read_timeout
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            # No ~/.netrc credentials sneaking onto redirected requests, no environment surprises: proxies and
            # the CA bundle are taken from the environment explicitly, per request, below.
            session.trust_env = False
        self.session = session

    # -- sending ----------------------------------------------------------------------------------------------

    def _environment(self, url: str) -> dict[str, Any]:
        if not self._own_session:
            return {}
        netloc = urlsplit(url).netloc
        proxies = {} if is_loopback(netloc) else self._requests.utils.get_environ_proxies(url)
        verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or True
        return {"proxies": proxies, "verify": verify}

    def send_once(self, method: str, url: str, headers: Mapping[str, str], body: Any = None) -> Any:
        """One HTTP exchange, body not yet read; network failures become RegistryUnreachable."""
        all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        all_headers.update(headers)
        try:
            return self.session.request(
                method,
                url,
                headers=all_headers,
                data=body,
                stream=True,
                allow_redirects=False,
                timeout=(self.connect_timeout, self.read_timeout),
                **self._environment(url),
            )
        except SbxError:  # raised by a body being sent (an upload that ends early)
            raise
        except Exception as exc:  # requests, urllib3 (not all wrapped by requests) and socket errors
            raise self.network_error(exc, url) from None

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
        body: Any = None,
    ) -> Any:
        """Send and follow redirects by the rules in the module docstring; return the final (unread) response."""
        current = url
        keep_authorization = True
        hops = 0
        while True:
            request_headers = dict(headers or {})
            if authorization and keep_authorization:
                request_headers["Authorization"] = authorization
            response = self.send_once(method, current, request_headers, body)
            if response.status_code not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            status = response.status_code
            response.close()
            if not location:
                raise RedirectRefused(f"{netloc_of(current)} answered {status} without a location")
            if method not in ("GET", "HEAD") and (status not in (307, 308) or not isinstance(body, bytes | None)):
                raise RedirectRefused(f"refusing to follow a {status} redirect of a {method} request")
            hops += 1
            if hops > MAX_REDIRECTS:
                raise RedirectRefused(
                    f"too many redirects (more than {MAX_REDIRECTS}) starting at {netloc_of(url)}",
                    hint="the registry or its storage is misconfigured",
                )
            target = urljoin(current, location.strip())
            keep_authorization = check_redirect(self.settings, current, target) and keep_authorization
            if status == 303 and method != "HEAD":
                method, body = "GET", None
            current = target

    # -- reading ------------------------------------------------------------------------------------------------

    def iter_body(self, response: Any, chunk_size: int) -> Iterator[bytes]:
        """The body in chunks; a dropped connection or an idle timeout becomes a transient RegistryUnreachable."""
        try:
            for chunk in response.iter_content(chunk_size=chunk_size):
                if chunk:
                    yield chunk
        except SbxError:
            raise
        except Exception as exc:
            raise self.network_error(exc, getattr(response, "url", "") or "", reading=True) from None

    def read_bounded(self, response: Any, limit: int, what: str) -> bytes:
        """Read a whole body of at most ``limit`` bytes; stop at ``limit + 1`` and raise ResponseTooLarge."""
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            response.close()
            raise ResponseTooLarge(f"{what} is {int(declared)} bytes, more than the {limit} allowed")
        data = bytearray()
        try:
            for chunk in self.iter_body(response, 64 * 1024):
                data += chunk
                if len(data) > limit:
                    raise ResponseTooLarge(f"{what} is larger than the {limit} bytes allowed")
        finally:
            response.close()
        return bytes(data)

    # -- errors -------------------------------------------------------------------------------------------------

    def network_error(self, exc: BaseException, url: str, *, reading: bool = False) -> RegistryError:
        """Map a requests/urllib3/socket exception to a typed error with a one-line reason."""
        requests = self._requests
        host = netloc_of(url) or "the registry"
        chain = list(_chain(exc))
        if any(isinstance(e, requests.exceptions.SSLError) for e in chain) or any(
            type(e).__name__ in ("SSLError", "SSLCertVerificationError") for e in chain
        ):
            return RegistryUnreachable(
                f"tls connection to {host} failed: certificate or handshake error",
                hint=f"if {host} serves plain http, add it to insecure_registries; "
                "for a private CA set REQUESTS_CA_BUNDLE",
                host=host,
                transient=False,
                connect_failed=True,
            )
        connect_failed = any(type(e).__name__ in ("NewConnectionError", "NameResolutionError") for e in chain) or (
            isinstance(exc, requests.exceptions.ConnectTimeout)
        )
        timed_out = isinstance(exc, requests.exceptions.Timeout) or any(
            isinstance(e, TimeoutError | socket.timeout) or "Timeout" in type(e).__name__ for e in chain
        )
        if timed_out and not any(type(e).__name__ == "NewConnectionError" for e in chain):
            if connect_failed:
                message = f"connecting to {host} timed out after {self.connect_timeout:g}s"
            else:
                message = f"reading from {host} timed out after {self.read_timeout:g}s without data"
            return RegistryUnreachable(
                message, hint=UNREACHABLE_HINT, host=host, transient=True, connect_failed=connect_failed
            )
        if connect_failed:
            reason = "connection failed"
            for e in chain:
                if isinstance(e, ConnectionRefusedError):
                    reason = "connection refused"
                    break
                if isinstance(e, socket.gaierror):
                    reason = "cannot resolve the host name"
                    break
                if isinstance(e, OSError) and e.strerror:
                    reason = e.strerror.lower()
                    break
            return RegistryUnreachable(
                f"cannot reach registry {host}: {reason}",
                hint=UNREACHABLE_HINT,
                host=host,
                transient=True,
                connect_failed=True,
            )
        transient_types = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, OSError)
        broken = any(type(e).__name__ in ("ProtocolError", "IncompleteRead") for e in chain)
        if broken or isinstance(exc, transient_types):
            what = "while reading" if reading else "before answering"
            return RegistryUnreachable(
                f"connection to {host} was closed {what}",
                hint=UNREACHABLE_HINT,
                host=host,
                transient=True,
                connect_failed=False,
            )
        return RegistryError(
            f"request to {host} failed: {printable(type(exc).__name__ + ': ' + str(exc), 200)}",
            host=host,
            transient=False,
        )

    def error_detail(self, response: Any) -> str:
        """The registry's error code and message from a JSON errors body, escaped; bounded at 1 MiB."""
        status = response.status_code
        raw = self.read_bounded(response, MAX_ERROR_BODY, f"error body from {netloc_of(response.url or '')}")
        text = ""
        try:
            document = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and isinstance(document.get("errors"), list) and document["errors"]:
            first = document["errors"][0]
            if isinstance(first, dict):
                code = first.get("code")
                message = first.get("message")
                parts = []
                if isinstance(code, str) and code:
                    parts.append(code.lower().replace("_", " "))
                if isinstance(message, str) and message and message.lower() != (parts[0] if parts else None):
                    parts.append(message)
                text = ": ".join(parts)
        elif isinstance(document, dict) and isinstance(document.get("details") or document.get("message"), str):
            text = document.get("details") or document.get("message")
        if not text:
            reason = getattr(response, "reason", None)
            text = f"http {status}" + (f" {reason.lower()}" if isinstance(reason, str) and reason else "")
        return printable(text, 300)

    def registry_error(
        self,
        response: Any,
        context: str,
        *,
        not_found: type[RegistryError] = RegistryError,
        not_found_message: str | None = None,
    ) -> RegistryError:
        """The typed error for a non-success response (reads and closes the response)."""
        status = response.status_code
        host = netloc_of(response.url or "")
        detail = self.error_detail(response)
        if status == 401:
            return AuthenticationRequired(f"{context}: unauthorized: {detail}", status=status, host=host)
        if status == 403:
            return AuthenticationRequired(
                f"{context}: access denied: {detail}",
                hint=f"check the repository name and your access; run: sbx login {host}",
                status=status,
                host=host,
            )
        if status == 404:
            message = not_found_message or f"{context}: not found"
            return not_found(f"{message}: {detail}", status=status, host=host)
        if status == 429:
            return RegistryError(
                f"{context}: too many requests: {detail}",
                hint="wait a while, log in, or configure a mirror",
                status=status,
                host=host,
                transient=False,
            )
        return RegistryError(
            f"{context}: {host} answered {status}: {detail}", status=status, host=host, transient=status >= 500
        )
