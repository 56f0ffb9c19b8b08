"""The Debian nginx image of `make demo` (tests/fixtures/debian_image.py) is right: its configuration passes
`nginx -t` as the container's root, its CMD serves Debian's default page, and its logs reach `sbx logs`."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.fixtures.registry import free_port
from tests.integration.helpers import wait_for


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode("utf-8", "replace")
    except OSError:
        return None


def test_nginx_config_is_valid(sbx, nginx_image) -> None:
    result = sbx("run", "--rm", "nginx", "nginx", "-t")
    assert "test is successful" in result.stderr


def test_nginx_serves_the_default_page_and_logs_to_stdout(sbx, nginx_image) -> None:
    port = free_port()
    # host network (no -p here): move Debian's default site from 80 to a free high port, then the image's own CMD
    listen = f"s/listen 80 default_server/listen {port} default_server/; s/listen \\[::\\]:80 /listen [::]:{port} /"
    command = f"sed -i '{listen}' /etc/nginx/sites-enabled/default && exec nginx -g 'daemon off;'"
    sbx("run", "-d", "--name", "web", "--network", "host", "nginx", "sh", "-c", command)
    pages: list[str] = []
    assert wait_for(lambda: pages.append(fetch(f"http://127.0.0.1:{port}/") or "") or pages[-1], timeout=30), (
        sbx("logs", "web", check=False).stderr)
    assert re.search(r"<title>Welcome to nginx!</title>", pages[-1])
    assert wait_for(lambda: '"GET / HTTP/1.1" 200' in sbx("logs", "web").stdout, timeout=10)
    top = sbx("top", "web").stdout
    assert "nginx: master process" in top and "nginx: worker process" in top
    sbx("rm", "-f", "web")


@pytest.mark.parametrize("network", ["slirp4netns", "pasta"])
def test_nginx_served_through_a_published_port(sbx, nginx_image, network) -> None:
    """What `make demo` does, on a free port: the image's own CMD on port 80 inside, reached from the host's
    loopback through -p with a real HTTP client, for each network backend."""
    port = free_port()
    sbx("run", "-d", "--name", "web", "--network", network, "-p", f"{port}:80", "nginx")
    pages: list[str] = []
    assert wait_for(lambda: pages.append(fetch(f"http://127.0.0.1:{port}/") or "") or pages[-1], timeout=30), (
        sbx("logs", "web", check=False).stderr)
    assert "<title>Welcome to nginx!</title>" in pages[-1]
    assert f"0.0.0.0:{port}->80/tcp" in sbx("ps").stdout
    sbx("rm", "-f", "web")
