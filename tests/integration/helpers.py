"""Small helpers the integration tests share."""

from __future__ import annotations

import json
import time


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def state(sbx, name: str) -> dict:
    """The `State` object of `sbx inspect NAME`."""
    return json.loads(sbx("inspect", name).stdout)[0]["State"]


# what `tty` names, whether that path exists in the container, and where fd 0 points: all three agree only if the
# terminal came from the container's own devpts (a host pty has no name under the container's /dev/pts). printf's
# %s keeps the terminal's echo of the command line from matching a field.
TERMINAL_REPORT = (
    "t=$(tty); test -e \"$t\"; e=$?; printf 'tty=[%s] exists=[%s] fd0=[%s] pts=[%s] owner=[%s]\\n' "
    "\"$t\" $e \"$(readlink /proc/self/fd/0)\" \"$(echo $(ls /dev/pts))\" \"$(stat -c '%u %g %a' \"$t\")\""
)


def terminal_report(child) -> dict[str, str]:
    """Run TERMINAL_REPORT in the shell ``child`` drives; its fields."""
    child.sendline(TERMINAL_REPORT)
    child.expect(r"tty=\[([^]%\r\n]*)\] exists=\[(\d+)\] fd0=\[([^]\r\n]*)\] pts=\[([^]\r\n]*)\] "
                 r"owner=\[([^]\r\n]*)\]")
    return dict(zip(("tty", "exists", "fd0", "pts", "owner"), child.match.groups(), strict=True))
