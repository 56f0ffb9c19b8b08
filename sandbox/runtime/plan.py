"""The process plan: the steps that turn a process already inside the container (its namespaces, its root) into the
container's command, the same for ``run`` (the container's pid 1) and ``exec`` (an exec'ed command).

Plan, then apply (bubblewrap's ``SetupOp`` list): :func:`build` turns a :class:`Process` into a :class:`ProcessPlan`,
a tuple of :class:`Step` records, pure data a test can compare and ``str()`` can print; :func:`execute`, the one
executor, makes each step's calls through :class:`sandbox.kernel.KernelAPI`. The steps, in order::

    setsid                                its own session: TIOCSTI cannot reach the user's terminal (TESTPLAN 38)
    -t:     set_controlling_terminal      the pty slave (made in the container's devpts and sent to sbx by the
            terminal_owner                caller) becomes the controlling terminal, the user's, and fds 0, 1, 2
            dup2 ×3, close
    no -i:  stdin                         /dev/null as fd 0 (run: the container's, opened here; exec: the host's,
                                          an fd the joiner opened before it joined anything)
    drop_bounding                         the privileges, in the order and under the kernel's rules that
    [seccomp]                             sandbox.runtime.privileges explains: the filter loads early unless
    setgroups, setresgid, setresuid       no_new_privs is set or the process keeps CAP_SYS_ADMIN, then last
    capset, clear_ambient
    [prctl no_new_privs] [seccomp]
    close_fds                             every fd above 2 but the close-on-exec sync socket (TESTPLAN 25)
    workdir                               chdir, then check where it led, with no host fd left (CVE-2024-21626)
    reset_signal SIGPIPE, SIGXFSZ         Python ignores them, and an ignored signal stays ignored across exec
    [limits]                              --ulimit, the rlimits standing in for undelegated cgroup limits, affinity
    exec                                  execvpe: PATH looked up in the container

What comes before is not the plan's: namespaces, mounts and pivot_root (run) or setns and chroot (exec), the pty
(made and sent by the caller, so sbx gets the terminal or the reason there is none first) and the user's identity
(resolved by the caller from the container's own /etc/passwd and /etc/group, :mod:`sandbox.runtime.identity`).

Errors: a refused step raises :class:`ContainerStartError` named after the step ("cannot set the capabilities:
...") with the plan's exit code (125 for run, 126 for exec, as Docker's exec); the exec step gives 127 for a
missing program and 126 for one that cannot be executed (:func:`exec_error`). The steps after it do not run, and
the fds the plan was given to own (the pty slave, exec's /dev/null) are closed. The caller reports the error and
exits; nothing runs with half-applied privileges.

The plan knows nothing of the monitor or of the sync protocol: its inputs are records and fds. An OCI runtime mode
(``sbx create --bundle`` / ``start``, with podman's conmon as the parent of the container's init and no sbx
monitor) would build the same :class:`Process` from the bundle's config.json (``process.args/env/cwd``,
``user.uid/gid/additionalGids`` as the :class:`Identity`, ``capabilities``, ``noNewPrivileges``, ``rlimits``; the
console socket's pty as ``terminal``), hold the init at ``create`` after its namespaces and root are set up, and
:func:`execute` the plan at ``start``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

from sandbox.cgroups.limits import apply_in_process
from sandbox.errors import ContainerStartError
from sandbox.exitcodes import CANNOT_RUN, NOT_EXECUTABLE, NOT_FOUND
from sandbox.kernel import constants as k
from sandbox.runtime import workdir
from sandbox.runtime.identity import Identity
from sandbox.runtime.privileges import CAP_SYS_ADMIN, PrivilegePlan
from sandbox.valueclass import valueclass

_LAST_CAP = 63
_USER = "switch to the container's user"


@valueclass
class Process:
    """What to run and how, for run and exec alike (an OCI bundle's ``process`` maps onto it).

    ``env`` is final but for HOME, which the identity's home supplies when absent. ``terminal``: the pty slave the
    process gets as controlling terminal and stdio; the plan owns it. ``stdin``: ``None`` keeps fd 0, a path is
    opened as fd 0, an fd (which the plan owns) is made fd 0. ``spare``: fds above 2 the close step leaves (the
    close-on-exec sync socket, which exec closes). ``limits``: a :class:`sandbox.cgroups.limits.Limits`.
    """

    args: tuple[str, ...]
    env: tuple[str, ...]
    identity: Identity
    privileges: PrivilegePlan
    cwd: str | None = "/"
    set_groups: bool = True  # False where setgroups is denied (a single-id map): no other group exists anyway
    terminal: int | None = None
    stdin: str | int | None = None
    spare: tuple[int, ...] = ()
    limits: object | None = None
    exit_code: int = CANNOT_RUN  # what a refused step exits with


@valueclass
class Step:
    """One step: ``op`` is a KernelAPI call made with ``args``, or one of the executor's own (see :data:`_OWN`);
    ``what`` names it in the error ("cannot {what}: {strerror}")."""

    op: str
    args: tuple = ()
    what: str = ""

    def __str__(self) -> str:
        if self.op == "exec":  # the environment's names, never its values (-e SECRET=...)
            args, env = self.args
            return f"exec({args!r}, env=[{' '.join(item.partition('=')[0] for item in env)}])"
        if self.op == "limits":
            limits = self.args[0]
            return f"limits({' '.join(map(str, limits.rlimits))}, cpus={list(limits.cpus)})"
        shown = (f"<{len(arg)}-byte filter>" if isinstance(arg, bytes) else repr(arg) for arg in self.args)
        return f"{self.op}({', '.join(shown)})"


@valueclass
class ProcessPlan:
    steps: tuple[Step, ...]
    exit_code: int
    owned: tuple[int, ...] = ()  # fds the plan closes, by a step or when a step fails

    def __str__(self) -> str:
        return "\n".join(str(step) for step in self.steps)


def build(process: Process) -> ProcessPlan:
    """The steps for ``process``; ContainerStartError (its exit code) when its working dir is refused by name."""
    cwd = workdir.checked_path(process.cwd, process.exit_code)
    identity = process.identity
    owned: list[int] = []
    steps = [Step("setsid", (), "start a new session")]
    slave = process.terminal
    if slave is not None:
        owned.append(slave)
        steps += [Step("set_controlling_terminal", (slave,), "make the terminal the controlling one"),
                  Step("terminal_owner", (slave, identity.uid), "give the terminal to the container's user")]
        steps += [Step("dup2", (slave, target), "make the terminal the standard streams") for target in (0, 1, 2)]
        if slave > 2:
            steps.append(Step("close", (slave,), "close the terminal's spare fd"))
    elif isinstance(process.stdin, int):
        owned.append(process.stdin)
        steps += [Step("dup2", (process.stdin, 0), "make /dev/null the standard input"),
                  Step("close", (process.stdin,), "close the spare /dev/null")]
    elif process.stdin is not None:
        steps.append(Step("stdin", (process.stdin,), f"make {process.stdin} the standard input"))
    steps += privilege_steps(process.privileges, identity, process.set_groups)
    steps += [Step("close_fds", (tuple(sorted(process.spare)), fd_limit()), "close the inherited fds"),
              Step("workdir", (cwd, process.exit_code), f"enter working directory {cwd}")]
    steps += [Step("reset_signal", (number,), "restore the default signal actions")
              for number in (signal.SIGPIPE, signal.SIGXFSZ)]
    limits = process.limits
    if limits is not None and (limits.rlimits or limits.cpus):
        steps.append(Step("limits", (limits, process.exit_code), "set the resource limits"))
    env = process.env if any(item.startswith("HOME=") for item in process.env) else (
        *process.env, f"HOME={identity.home or '/'}")
    steps.append(Step("exec", (tuple(process.args), env), "execute the command"))
    return ProcessPlan(tuple(steps), process.exit_code, tuple(owned))


def privilege_steps(privileges: PrivilegePlan, identity: Identity, set_groups: bool) -> list[Step]:
    """Steps 1-7 of :mod:`sandbox.runtime.privileges`, for a process that becomes ``identity``."""
    final_caps = privileges.capabilities if identity.uid == 0 else 0
    late_load = privileges.no_new_privs or bool(final_caps >> CAP_SYS_ADMIN & 1)
    seccomp = [] if privileges.seccomp is None else [
        Step("seccomp_filter", (privileges.seccomp,), "load the seccomp filter")]
    steps = [Step("drop_bounding", (privileges.capabilities,), "drop the bounding set")]
    steps += [] if late_load else seccomp
    if set_groups:
        steps.append(Step("setgroups", (tuple(identity.groups),), _USER))
    steps += [Step("setresgid", (identity.gid,) * 3, _USER), Step("setresuid", (identity.uid,) * 3, _USER),
              Step("capset", (final_caps, final_caps, 0), "set the capabilities"),
              Step("clear_ambient", (), "clear the ambient capabilities")]
    if privileges.no_new_privs:
        steps.append(Step("prctl", (k.PR_SET_NO_NEW_PRIVS, 1), "set no_new_privs"))
    return steps + (seccomp if late_load else [])


def execute(kernel, plan: ProcessPlan) -> None:
    """Make each step's calls through ``kernel``, in order; with the real kernel the exec step does not return.

    A refused step raises (see the module docstring) after the fds the plan owns that are still open are closed."""
    owned = set(plan.owned)
    try:
        for step in plan.steps:
            try:
                own = _OWN.get(step.op)
                if own is not None:
                    own(kernel, *step.args)
                else:
                    getattr(kernel, step.op)(*step.args)
            except OSError as error:
                if step.op == "exec":
                    raise exec_error(step.args[0][0], error) from None
                raise ContainerStartError(f"cannot {step.what}: {error.strerror or error}",
                                          exit_code=plan.exit_code) from None
            if step.op == "close":
                owned.discard(step.args[0])
            elif step.op == "close_fds":
                owned = {fd for fd in owned if fd <= 2 or fd in step.args[0]}
    except BaseException:
        for fd in owned:
            with contextlib.suppress(OSError):
                kernel.close(fd)
        raise


def exec_error(program: str, error: OSError) -> ContainerStartError:
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        where = "" if "/" in program else " in $PATH"
        return ContainerStartError(
            f'exec: "{program}": executable file not found{where}', exit_code=NOT_FOUND
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR):
        return ContainerStartError(f'exec: "{program}": {error.strerror.lower()}', exit_code=NOT_EXECUTABLE)
    return ContainerStartError(f'exec: "{program}": {error.strerror}', exit_code=CANNOT_RUN)


def fd_limit() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 1024


# -- the executor's own steps (several calls, or a call whose refusal is not an error) --------------------------------


def _terminal_owner(kernel, slave: int, uid: int) -> None:
    """Make the command's user the owner of its terminal (as runc does), so it may reopen it by name; the group
    (the devpts mount's gid=5, or root's) stays. A single-id map cannot name the user: the terminal stays root's."""
    if uid == 0:
        return
    try:
        kernel.fchown(slave, uid, -1)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EINVAL):
            raise


def _stdin(kernel, path: str) -> None:
    fd = kernel.open(path, os.O_RDONLY)
    try:
        kernel.dup2(fd, 0)
    finally:
        kernel.close(fd)


def _drop_bounding(kernel, keep: int) -> None:
    for cap in range(_LAST_CAP + 1):
        if keep >> cap & 1:
            continue
        try:
            present = kernel.prctl(k.PR_CAPBSET_READ, cap)
        except OSError as error:
            if error.errno == errno.EINVAL:  # past the kernel's last capability
                return
            raise
        if present == 1:
            kernel.prctl(k.PR_CAPBSET_DROP, cap)


def _clear_ambient(kernel) -> None:
    try:
        kernel.prctl(k.PR_CAP_AMBIENT, k.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as error:
        if error.errno != errno.EINVAL:  # kernels before 4.3 have no ambient set, so nothing to clear
            raise


def _close_fds(kernel, spare: tuple[int, ...], limit: int) -> None:
    first = 3
    for fd in spare:
        if fd >= first:
            kernel.close_range(first, fd - 1)
            first = fd + 1
    kernel.close_range(first, max(limit, first) - 1)


def _exec(kernel, args: tuple[str, ...], env: tuple[str, ...]) -> None:
    kernel.execvpe(args[0], args, {name: value for name, _, value in (item.partition("=") for item in env)})


_OWN = {
    "terminal_owner": _terminal_owner,
    "stdin": _stdin,
    "drop_bounding": _drop_bounding,
    "clear_ambient": _clear_ambient,
    "close_fds": _close_fds,
    "workdir": lambda kernel, path, exit_code: workdir.enter(kernel, path, exit_code),
    "limits": apply_in_process,
    "exec": _exec,
}

