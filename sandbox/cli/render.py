"""How sbx shows things: Docker's tables, sizes and durations, and text made safe for a terminal."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Sequence

# compiled on first use (re's cache), not at import: a run that prints nothing never needs it (~0.4 ms, B1)
_CONTROL = r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def escape(text: str) -> str:
    """Control characters (escape sequences, bidi overrides) from a registry or image never reach the terminal raw."""

    def one(match: re.Match) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return re.sub(_CONTROL, one, text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Go's tabwriter as Docker configures it: minwidth 10, tabwidth 1, padding 3, padded with spaces.

    Every cell but the last in its line is padded to max(minwidth, widest cell + padding).
    """
    lines = [list(headers), *([escape(str(cell)) for cell in row] for row in rows)]
    widths = [0] * (len(headers) - 1)
    for line in lines:
        for index, cell in enumerate(line[:-1]):
            widths[index] = max(widths[index], len(cell))
    widths = [max(10, width + 3) for width in widths]
    out = []
    for line in lines:
        padded = [cell.ljust(widths[index]) for index, cell in enumerate(line[:-1])]
        out.append("".join(padded) + line[-1])
    return "\n".join(out)


def human_size(size: float, precision: int = 3) -> str:
    """go-units HumanSizeWithPrecision: decimal units, `precision` significant digits (5.59MB, 1.23kB, 12B)."""
    index = 0
    while size >= 1000 and index < len(_UNITS) - 1:
        size /= 1000.0
        index += 1
    return f"{size:.{precision}g}{_UNITS[index]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, the words of `Up 3 minutes` and `5 seconds ago`."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_time(text: str | None) -> float | None:
    """RFC 3339 from image configs (nanosecond fractions, `Z`) to a timestamp; None when absent or malformed."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    fraction = (fraction or ".0")[:7]
    zone = "+00:00" if zone == "Z" else zone
    from datetime import datetime  # here: ps, rm and run render no image times

    try:
        return datetime.fromisoformat(f"{base}{fraction}{zone}").timestamp()
    except ValueError:
        return None


def since(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "N/A"
    return f"{human_duration(max(0.0, (now or time.time()) - timestamp))} ago"


def docker_time(timestamp: float | None) -> str:
    """The `CreatedAt` form of Docker's JSON listings: 2024-01-02 03:04:05 +0000 UTC."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(timestamp))


def truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def json_line(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def listing_template_given(output_format: str) -> bool:
    """Whether a listing's --format is a Go template (anything but table and json). The template is parsed here,
    before anything is read, so that a bad one is the one error; the template engine is imported only then."""
    if output_format in ("table", "json", ""):
        return False
    from sandbox.cli.formatting import listing_template

    listing_template(output_format)
    return True


def confirm(warning: str) -> bool:
    """Docker's prune prompt: ``WARNING! {warning}`` and the y/N question; True only for y or yes."""
    sys.stdout.write(f"WARNING! {warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def report_pruned(title: str, removed: Iterable[str], reclaimed: int) -> None:
    """Docker's prune report: ``Deleted {title}:`` and one line each (when any), then the space reclaimed."""
    removed = list(removed)
    if removed:
        out(f"Deleted {title}:")
        for line in removed:
            out(line)
        out()
    out(f"Total reclaimed space: {human_size(reclaimed)}")

