"""How sbx starts a container's monitor: forked (a detached one execs its lean steady state later), except that a
container joining another's network (its stage 1 lives on, forked from the monitor) gets a fresh interpreter."""

from __future__ import annotations

import pytest

from sandbox.monitor import monitor
from sandbox.service import monitoring

CONTAINER_ID = "cd" * 32


def test_a_detached_start_gets_a_fresh_monitor_given_only_roots_and_the_id(config, monkeypatch):
    calls = []
    monkeypatch.setattr(monitor, "spawn", lambda *args, **kwargs: calls.append(("fork", args, kwargs)) or 1)
    monkeypatch.setattr(monitor, "spawn_fresh", lambda *args, **kwargs: calls.append(("fresh", args, kwargs)) or 2)
    assert monitoring.spawn(config, CONTAINER_ID, lambda record: None, lambda path: None) == 2
    [(how, (entry, params, container_id), kwargs)] = calls
    assert how == "fresh" and entry == monitoring.ENTRY and container_id == CONTAINER_ID
    assert params == {"data_root": str(config.data_root), "runtime_root": str(config.runtime_root),
                      "config_root": str(config.config_root), "id": CONTAINER_ID}
    assert kwargs == {"runtime_root": config.runtime_root}


def test_an_attached_start_forks_its_monitor(config, monkeypatch):
    calls = []
    monkeypatch.setattr(monitor, "spawn", lambda *args, **kwargs: calls.append(("fork", args, kwargs)) or 1)
    monkeypatch.setattr(monitor, "spawn_fresh", lambda *args, **kwargs: calls.append(("fresh", args, kwargs)) or 2)
    assert monitoring.spawn(config, CONTAINER_ID, "build", "remove", on_listening=print) == 1
    [(how, args, kwargs)] = calls
    assert how == "fork" and args[1:] == (CONTAINER_ID, "build", "remove")
    assert kwargs == {"runtime_root": config.runtime_root, "on_listening": print}


@pytest.mark.parametrize(("network", "how"), [("none", "fork"), ("host", "fork"), ("slirp4netns", "fork"),
                                              ("pasta", "fork"), ("container:" + "ab" * 32, "fresh")])
def test_a_detached_start_is_forked_unless_it_joins_another_container(config, monkeypatch, network, how):
    calls = []
    monkeypatch.setattr(monitor, "spawn", lambda *args, **kwargs: calls.append(("fork", args, kwargs)) or 1)
    monkeypatch.setattr(monitor, "spawn_fresh", lambda *args, **kwargs: calls.append(("fresh", args, kwargs)) or 2)
    monitoring.spawn(config, CONTAINER_ID, "build", "remove", network=network)
    [(made, args, kwargs)] = calls
    assert made == how
    if how == "fork":
        assert args[1:] == (CONTAINER_ID, "build", "remove")
        entry, params = kwargs["finish"]
        assert entry == monitoring.FINISH
        assert params == {"data_root": str(config.data_root), "runtime_root": str(config.runtime_root),
                          "config_root": str(config.config_root), "id": CONTAINER_ID}  # roots and the id only


@pytest.mark.parametrize("detached", [False, True])
def test_a_monitor_that_stays_itself_imports_its_end_while_pid_1_makes_its_mounts(config, monkeypatch, detached):
    """A prepared monitor whose GO came before it imported the container service would import it after the
    container exited, on the way of `run --rm`'s answer: the monitor that ends in itself imports it while the
    container starts. A detached one ends in a fresh interpreter and is given nothing to import."""
    served = {}
    monkeypatch.setattr(monitor, "serve", lambda *args, **kwargs: served.update(kwargs))
    params = {"data_root": str(config.data_root), "runtime_root": str(config.runtime_root),
              "config_root": str(config.config_root), "id": CONTAINER_ID, "prepared": True, "detached": detached}
    monitoring.run(3, params)
    assert served["meanwhile"] is (None if detached else monitoring._import_the_end)
