"""The exit codes of `sbx` and what each means (layer L0, beside the error tree), as Docker gives them.

A script reading ``$?`` after ``sbx run IMAGE CMD`` must tell "the command ran and said N" from "sbx never got
the command started"; Docker reserves the codes above 124 for that, and sbx gives the same ones:

=========  ======================================================================================================
0          success: the command (or, for ``run``/``exec``, the container's command) ended with status 0
1          a generic sbx error (``sbx: message: hint``): no such container, a bad flag value, a failed pull, ...;
           also what :class:`~sandbox.errors.ContainerNotRunning` gives for an exec into a stopped container
125        sbx could not run the container: any sbx error during ``run``/``create`` (Docker's "daemon error"),
           and every :class:`~sandbox.errors.ContainerStartError` raised before the command's ``execve``
           (mounts, ids, privileges, working directory); the monitor records it as the container's exit code
126        the command was found but could not be executed (EACCES, ENOEXEC, a directory), and every failure
           of ``exec`` before its command runs (Docker's exec gives 126 where run gives 125)
127        the command was not found in the container (ENOENT on ``execve`` and no match on PATH)
128 + N    the command was killed by signal N (as a shell reports it: 137 for SIGKILL, 143 for SIGTERM);
           130 also when sbx itself was interrupted by Ctrl-C, 141 when its output pipe was closed (SIGPIPE)
255        unknown: the container died unwatched (its monitor was killed, or the machine rebooted) so nobody
           recorded its status (Docker shows 255 after a daemon crash)
=========  ======================================================================================================

Any other code is the container's command's own. Library code puts a code on an error either as its class's
``exit_code`` (:class:`~sandbox.errors.ContainerStartError`: 125) or as the ``exit_code`` field of one raise;
:mod:`sandbox.cli.main` renders the error and exits with that code, else with the command's failure code from
:mod:`sandbox.cli.commands` (125 for ``run`` and ``create``, 1 for the others).
"""

from __future__ import annotations

OK = 0
SBX_ERROR = 1
CANNOT_RUN = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127
SIGNAL_BASE = 128
INTERRUPTED = SIGNAL_BASE + 2  # SIGINT
BROKEN_PIPE = SIGNAL_BASE + 13  # SIGPIPE
UNKNOWN = 255


def killed_by(signal_number: int) -> int:
    """The exit code of a process killed by ``signal_number``: 128 + N, as a shell gives it."""
    return SIGNAL_BASE + signal_number
