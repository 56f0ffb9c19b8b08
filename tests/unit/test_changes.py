"""`import --change` instructions (sandbox.oci.changes): Dockerfile-style lines applied to a container config."""

from __future__ import annotations

import pytest

from sandbox.errors import InvalidArchive
from sandbox.oci.changes import apply_changes


def test_change_instructions():
    config = apply_changes(
        {},
        [
            'CMD ["/bin/sh"]',
            "ENTRYPOINT echo hi",
            "ENV A=1 B='two words'",
            "ENV C three words",
            "ENV A=2",
            "WORKDIR /app",
            "WORKDIR sub",
            "EXPOSE 80 53/udp",
            "USER 1000:1000",
            'LABEL org.x="y z"',
        ],
    )
    assert config["Cmd"] == ["/bin/sh"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
    assert config["Env"] == ["B=two words", "C=three words", "A=2"]
    assert config["WorkingDir"] == "/app/sub"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["User"] == "1000:1000"
    assert config["Labels"] == {"org.x": "y z"}


@pytest.mark.parametrize("change", ["RUN rm -rf /", "EXPOSE http", "ENV", "LABEL novalue", "FROM x"])
def test_bad_change_instructions(change):
    with pytest.raises(InvalidArchive):
        apply_changes({}, [change])
