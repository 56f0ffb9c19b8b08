"""A supervisor started as a fresh interpreter, so that what it costs while the container runs is what supervising
needs, not what the sbx command had imported.

A monitor forked from sbx would carry every module the command imported (the CLI, the services, the image code) for
the whole life of its container. :func:`spawn` detaches exactly as :func:`sandbox.monitor.session.spawn` does
(double fork, ``setsid``, stdio and every inherited fd on /dev/null, SIGINT/SIGHUP ignored, subreaper; all of these
survive ``execve``), then the grandchild execs::

    python -I -S -c BOOT SEARCH_PATH ENTRY PARAMS REPORT_FD

``-I -S``: no site, no user site, no environment variables, no working directory on sys.path; the directory that
holds the ``sandbox`` package and sbx's own absolute sys.path entries are appended (:func:`search_path`), so
nothing is imported at start but what ``BOOT`` names. :func:`main` blanks that command line to a title, imports
``ENTRY`` (``module:function``) and calls it with the report socket's fd (left open across the exec, and only it)
and the JSON ``PARAMS`` (with ``PARAMS["handed"]`` the ``key=value`` words after REPORT_FD, which a detached
monitor's steady state appends when it execs back here: :mod:`sandbox.monitor.handoff`; REPORT_FD is then -1, sbx
having heard already); the entry speaks to sbx over the report socket as any supervisor does (sync messages).
``PARAMS`` carries roots and a container id, never what the user passed (env values, the command): those stay in
the container's record.
"""

from __future__ import annotations

import os
import sys

BOOT = ("import sys,json;sys.path.extend(p for p in json.loads(sys.argv[1]) if p not in sys.path);"
        "from sandbox.monitor.fresh import main;main()")


def command(entry: str, params: dict) -> list[str]:
    """The fresh interpreter's argv, without the report fd that :func:`spawn` appends."""
    import json

    return [interpreter(), "-I", "-S", "-c", BOOT, json.dumps(search_path()), entry, json.dumps(params)]


def search_path() -> list[str]:
    """Where the fresh interpreter finds sbx and its dependencies: the directory holding the ``sandbox`` package
    (site-packages, or the checkout of an editable install), then this process's other absolute entries (the
    site-packages that ``-S`` leaves out: pyseccomp for a profile not yet compiled, the network's modules)."""
    import sandbox

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(sandbox.__file__)))
    found = [package_parent]
    for entry in sys.path:
        if entry and os.path.isabs(entry) and entry not in found:
            found.append(entry)
    return found


def interpreter() -> str:
    """This Python (a venv's own path keeps its prefix); /proc/self/exe where Python cannot tell its own path."""
    return sys.executable or os.readlink("/proc/self/exe")


def spawn(entry: str, params: dict, names, *, timeout: float, on_listening=None) -> dict:
    """Start ``entry`` in a detached fresh interpreter; the ``{pid, monitor}`` of its RUNNING once the supervised
    process runs (as :func:`sandbox.monitor.session.spawn`, whose errors it raises)."""
    from sandbox.monitor.session import spawn as spawn_detached

    argv = command(entry, params)

    def exec_fresh(report_fd: int) -> None:
        os.set_inheritable(report_fd, True)
        os.execv(argv[0], [*argv, str(report_fd)])

    return spawn_detached(exec_fresh, names, timeout=timeout, on_listening=on_listening)


def main() -> None:
    """The fresh interpreter's start: never returns (``_exit``), like every detached supervisor."""
    import json

    code = 1
    try:
        entry, params, report_fd = sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
        if len(sys.argv) > 5:  # a monitor's finish: what its steady state handed on (sandbox.monitor.handoff)
            from sandbox.monitor.handoff import handed

            params["handed"] = handed(sys.argv[5:])
        _retitle(params.get("title") or "sbx (supervisor)")
        module, _, function = entry.partition(":")
        getattr(__import__(module, fromlist=[function]), function)(report_fd, params)
        code = 0
    except BaseException:  # nowhere to report it: stdio is /dev/null, and sbx reads EOF on the report socket
        code = 1
    finally:
        os._exit(code)


def _retitle(title: str) -> None:
    import contextlib

    from sandbox.kernel.cmdline import blank_command_line

    with contextlib.suppress(OSError):
        blank_command_line(title)
