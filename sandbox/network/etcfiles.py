"""The container's /etc/hostname, /etc/hosts and /etc/resolv.conf: their text, and the files in the container's
directory that pid 1 binds over the image's (:func:`write_etc_files`; sbx run writes them, so this module stays
free of the mount code).

resolv.conf points at the helper's DNS forwarder (slirp4netns answers on 10.0.2.3, pasta forwards what is sent to
the address given with ``--dns-forward``), copies the host's for ``host``, and is empty for ``none``; ``--dns`` and
``--dns-search`` replace the nameservers and the search list. /etc/hosts has ``localhost``, the container's own name
(at its address on the helper's network) and every ``--add-host``.
"""

from __future__ import annotations

import ipaddress
import os

from sandbox.errors import InvalidRunOption, RootfsError

SLIRP_ADDRESS = "10.0.2.100"
SLIRP_GATEWAY = "10.0.2.2"
SLIRP_DNS = "10.0.2.3"
PASTA_DNS = "169.254.1.1"
_RESOLV_LIMIT = 64 * 1024
_FORWARDERS = {"slirp4netns": SLIRP_DNS, "pasta": PASTA_DNS}
ETC_FILES = ("hostname", "hosts", "resolv.conf")


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


def etc_name(key: str) -> str:
    """The file an ``etc_files`` key (``/etc/NAME`` or ``NAME``) names: one of :data:`ETC_FILES`, nothing else."""
    name = key.removeprefix("/etc/")
    if name not in ETC_FILES:
        raise RootfsError(f"sbx does not provide /etc/{name}", hint=f"etc files are {', '.join(ETC_FILES)}")
    return name


def write_etc_files(etc_files: dict[str, str], container_dir: str, *, durable: bool = True) -> None:
    """Write ``etc_files`` (keys ``/etc/NAME`` or ``NAME``) to ``container_dir/etc/NAME``, mode 0644.

    Each is fsynced before its rename (a power cut leaves the old file or the new one, never an empty one), unless
    not ``durable``: the files of a ``--rm`` container, which no reboot keeps (an fsync is 1-5 ms, BENCHMARKS B1)."""
    etc_dir = os.path.join(container_dir, "etc")
    os.makedirs(etc_dir, mode=0o755, exist_ok=True)
    for key, content in etc_files.items():
        path = os.path.join(etc_dir, etc_name(key))
        temporary = f"{path}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(descriptor, 0o644)  # whatever the umask
            os.write(descriptor, content.encode())
            if durable:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
