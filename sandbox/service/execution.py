"""`sbx exec`: run one more command in a running container (the process work is :mod:`sandbox.runtime.enter`)."""

from __future__ import annotations

import os
from collections.abc import Callable

from sandbox.config import Settings
from sandbox.errors import ContainerNotRunning, InvalidRunOption
from sandbox.valueclass import field, valueclass


@valueclass(frozen=False)
class ExecOptions:
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    console_size: tuple[int, int] | None = None  # with tty: (rows, columns) of the terminal sbx runs in


@valueclass
class PipedCommand:
    """An exec'ed command without a tty: ``started`` (``sync.Started``) and the ``relay`` of its pipes."""

    started: object
    relay: object


class Execution:
    def __init__(self, settings: Settings, lifecycle=None) -> None:
        if lifecycle is None:
            from sandbox.service.lifecycle import Lifecycle

            lifecycle = Lifecycle(settings)
        self.lifecycle = lifecycle
        self.runtime_root = settings.runtime_root

    def exec(
        self,
        text: str,
        args: list[str],
        options: ExecOptions,
        *,
        attach: Callable[[object, object], int],
    ) -> int:
        """Run ``args`` in the running container ``text``; its exit code (0 at once with ``options.detach``).

        ``attach(handle, request)`` drives the command's stdio and returns the exit code sbx leaves with. Without a
        tty ``handle`` is a :class:`PipedCommand`: the command's stdio are pipes its relay copies to and from sbx's
        own (``handle.relay.run``), never sbx's terminal itself. With ``options.tty`` it is an
        :class:`~sandbox.monitor.exec_holder.ExecSession`: a detached exec holder owns the command's pty, so sbx
        can detach and leave the command running, and ``handle.sock`` is connected to it (before the command
        started: no output is lost); it is closed when ``attach`` returns.
        Raises ContainerNotFound, ContainerNotRunning (exit 1, as Docker's daemon errors), InvalidUser/InvalidEnv
        for bad flags, and ContainerStartError with 126 or 127 when the command cannot be started (Docker's codes).
        """
        from sandbox.runtime import enter
        from sandbox.runtime.command import build_args, merge_env
        from sandbox.runtime.identity import parse_user

        record = self.lifecycle.get(text)
        store = self.lifecycle.store
        if record.state.value != "running" or not store.alive(record):
            raise ContainerNotRunning(f"container {text} is not running")
        spec = record.spec or {}
        command = build_args(None, None, None, tuple(args))
        user = options.user if options.user is not None else str(spec.get("user") or "")
        parse_user(user)
        workdir = options.workdir if options.workdir else str(spec.get("cwd") or "/")
        if not workdir.startswith("/"):
            raise InvalidRunOption(f"the working directory {workdir!r} is invalid, it needs to be an absolute path")
        env = merge_env(
            list(spec.get("env") or []), list(options.env), [], os.environ,
            hostname=str(spec.get("hostname") or ""), home="",
        )
        if not spec.get("hostname"):  # an old record without a host name: keep the container's own HOSTNAME
            env = tuple(entry for entry in env if entry != "HOSTNAME=")
        from sandbox.runtime import privileges
        from sandbox.runtime.spec import stored_spec

        # the container's own caps and profile (as Docker's exec), compiled here, before the joiner's chroot
        container = stored_spec(record)
        plan = privileges.prepare(container.security, privileges.cache_dir(store.root.parent))
        request = enter.ExecRequest(
            pid=int(record.pid), args=command, env=env, privileges=plan, limits=container.limits, user=user,
            cwd=workdir,
            tty=options.tty, interactive=options.interactive, detach=options.detach,
            console_size=options.console_size if options.tty and not options.detach else None,
        )
        verify = lambda: store.alive(record)  # noqa: E731
        from sandbox.kernel import Kernel

        kernel = Kernel()  # the exec's one kernel: the joiner and the command's plan make their calls through it
        if options.tty and not options.detach:
            from sandbox.monitor import exec_holder

            session = exec_holder.spawn(self.runtime_root, record.id, lambda: enter.start(request, verify, kernel))
            try:
                return attach(session, request)
            finally:
                session.sock.close()
        if options.detach:
            enter.confirm(enter.start(request, verify, kernel))
            return 0
        from sandbox.runtime.relay import Relay

        relay = Relay(options.interactive)  # sbx's terminal never becomes the command's (TESTPLAN 58)
        try:
            started = enter.start(request, verify, kernel, stdio=relay.child_stdio(),
                                  parent_ends=relay.parent_ends())
        except BaseException:
            relay.close()
            raise
        relay.close_child_ends()
        return attach(PipedCommand(started, relay), request)
