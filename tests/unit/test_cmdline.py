"""Where a process's command line lives (TESTPLAN 63): fields 48 and 49 of /proc/PID/stat, after a hostile comm."""

from __future__ import annotations

from sandbox.kernel.cmdline import argument_area


def test_the_argument_area_is_read_after_the_last_parenthesis():
    fields = [str(n) for n in range(3, 53)]  # fields 3..52, each holding its own number
    text = "4242 (a) b) c (d) " + " ".join(fields)  # a comm may hold spaces and parentheses
    assert argument_area(text) == (48, 49)
