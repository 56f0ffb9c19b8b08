"""The container's /etc/hosts and /etc/resolv.conf, as text (the service writes them into the container's dir).

resolv.conf points at the helper's DNS forwarder (slirp4netns answers on 10.0.2.3, pasta forwards what is sent to
the address given with ``--dns-forward``), copies the host's for ``host``, and is empty for ``none``; ``--dns`` and
``--dns-search`` replace the nameservers and the search list. /etc/hosts has ``localhost``, the container's own name
(at its address on the helper's network) and every ``--add-host``.
"""

from __future__ import annotations

import ipaddress

from sandbox.errors import InvalidRunOption

SLIRP_ADDRESS = "10.0.2.100"
SLIRP_GATEWAY = "10.0.2.2"
SLIRP_DNS = "10.0.2.3"
PASTA_DNS = "169.254.1.1"
_RESOLV_LIMIT = 64 * 1024
_FORWARDERS = {"slirp4netns": SLIRP_DNS, "pasta": PASTA_DNS}


def parse_add_host(text: str) -> tuple[str, str]:
    """Docker's ``--add-host NAME:IP`` (``NAME=IP`` too; an IPv6 address may follow the first colon)."""
    separator = "=" if "=" in text else ":"
    name, _, address = text.partition(separator)
    address = address.strip("[]")
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise InvalidRunOption(f"invalid --add-host {text[:80]!r}", hint="use --add-host NAME:IP") from None
    if not name or any(c.isspace() or c in "#\0" for c in name) or len(name) > 253:
        raise InvalidRunOption(f"invalid host name in --add-host {text[:80]!r}", hint="use --add-host NAME:IP")
    return name, address


def parse_dns(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidRunOption(f"invalid --dns {text[:80]!r}", hint="give an IP address, e.g. 192.0.2.53") from None


def parse_search(text: str) -> str:
    if not text or len(text) > 253 or any(c.isspace() or c in "#\0" for c in text):
        raise InvalidRunOption(f"invalid --dns-search {text[:80]!r}", hint="give a domain name, e.g. example.com")
    return text


def hosts(hostname: str, mode: str, add_hosts: list[tuple[str, str]] = ()) -> str:
    own = SLIRP_ADDRESS if mode == "slirp4netns" else "127.0.1.1"
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", f"{own}\t{hostname}"]
    lines += [f"{address}\t{name}" for name, address in add_hosts]
    return "\n".join(lines) + "\n"


def resolv_conf(mode: str, dns: list[str] = (), search: list[str] = (), host_text: str | None = None) -> str:
    """``host_text``: the host's resolv.conf (read by the caller only for ``host``)."""
    if mode == "host" and not dns and not search:
        return host_text or ""
    servers = list(dns) or ([_FORWARDERS[mode]] if mode in _FORWARDERS else [])
    if not servers and mode == "host" and host_text:
        servers = [line.split()[1] for line in host_text.splitlines() if line.startswith("nameserver ")
                   and len(line.split()) > 1]
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {server}" for server in servers]
    return "\n".join(lines) + ("\n" if lines else "")


def host_resolv_conf(path: str = "/etc/resolv.conf") -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(_RESOLV_LIMIT).decode("utf-8", "replace")
    except OSError:
        return ""
