"""Docker's ``--format``: ``json``, Go templates with Docker's functions, and the ``table`` directive.

Two shapes, as in Docker's CLI:

- objects (`inspect`, `version`, `info`): the template runs once per object, each output followed by a newline;
  the template text is taken as it is;
- listings (`ps`, `images`, and `stats`, `volume ls` when they come): ``json`` prints each row as one JSON line;
  otherwise the template runs once per row, after Docker's preparation of the text (a leading ``table`` removed,
  surrounding spaces trimmed, the two-character ``\\t`` and ``\\n`` made a tab and a newline). With ``table`` a
  header line comes first — the same template run over the header names (``{{.ID}}`` → ``CONTAINER ID``) with
  Docker's functions reduced to the identity — and the lines go through Go's tabwriter (minwidth 10, tabwidth
  1, padding 3, spaces), so ``table {{.ID}}\\t{{.Names}}`` gives Docker's columns.

A command calls :func:`write_listing` or :func:`write_objects` in one line; :mod:`sandbox.cli.gotemplate` is
imported only here, and this module only when a command is given a ``--format`` other than its default.
The output goes through the same terminal escaping as every table (control characters from images or
containers never reach the terminal raw); the tabs and newlines the template makes are kept.
"""

from __future__ import annotations

import json
import re
import sys

from sandbox.cli.gotemplate import CallError, Template, type_name
from sandbox.cli.render import escape
from sandbox.errors import TemplateError


def _strings(value) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        got = "string" if isinstance(value, str) else "[]interface {}" if isinstance(value, list | tuple) else \
            type(value).__name__ if value is not None else "<nil>"
        raise CallError(f"wrong type for value; expected []string; got {got}")
    return list(value)


def _string(value) -> str:
    if value is None:
        raise CallError("invalid value; expected string")
    if not isinstance(value, str):
        raise CallError(f"wrong type for value; expected string; got {type_name(value)}")
    return value


def _integer(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CallError(f"wrong type for value; expected int; got {type_name(value)}")
    return value


def to_json(value) -> str:
    """Docker's ``json``: Go's encoder without HTML escaping, compact, no final newline."""
    if isinstance(value, dict):  # methods (ps's .Label) are not data: Go's encoder leaves them out too
        value = {key: item for key, item in value.items() if not callable(item)}
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=lambda _item: None)
    # Go also escapes U+2028/U+2029; C1 controls are escaped here so the terminal escaping leaves JSON valid
    return re.sub(r"[\x7f-\x9f\u2028\u2029]", lambda match: f"\\u{ord(match.group()):04x}", text)


def _title(text) -> str:
    """Go's strings.Title: the first letter of each word upper case (word: after a non-letter, non-digit)."""
    text = _string(text)
    out, previous = [], " "
    for char in text:
        separator = not (previous.isalnum() or previous == "_") if previous.isascii() else \
            not previous.isalnum() and previous.isspace()
        out.append(char.title() if separator and len(char.title()) == 1 else char)
        previous = char
    return "".join(out)


def _map_each(text, mapping) -> str:
    """Per character, as Go's ToUpper/ToLower map runes: a character whose case form is longer stays itself."""
    return "".join(mapping(char) if len(mapping(char)) == 1 else char for char in _string(text))


def _split(text, separator) -> list[str]:
    text, separator = _string(text), _string(separator)
    return list(text) if separator == "" else text.split(separator)


def _pad(text, prefix, suffix) -> str:
    text = _string(text)
    return text if not text else " " * _integer(prefix) + text + " " * _integer(suffix)


def _truncate(text, length) -> str:
    text, length = _string(text), _integer(length)
    return text if len(text) < length else text[:length]


# name -> (function, least arguments, most arguments): Docker's templates.basicFunctions
FUNCTIONS = {
    "json": (to_json, 1, 1),
    "split": (_split, 2, 2),
    "join": (lambda items, separator: _string(separator).join(_strings(items)), 2, 2),
    "title": (_title, 1, 1),
    "lower": (lambda text: _map_each(text, str.lower), 1, 1),
    "upper": (lambda text: _map_each(text, str.upper), 1, 1),
    "pad": (_pad, 3, 3),
    "truncate": (_truncate, 2, 2),
}

# the header row of a table: the same names, each giving back its first argument (templates.HeaderFunctions)
HEADER_FUNCTIONS = {
    "json": (lambda value: value, 1, 1),
    "split": (lambda value, _separator: value, 2, 2),
    "join": (lambda value, _separator: value, 2, 2),
    "title": (lambda value: value, 1, 1),
    "lower": (lambda value: value, 1, 1),
    "upper": (lambda value: value, 1, 1),
    "pad": (lambda value, _prefix, _suffix: value, 3, 3),
    "truncate": (lambda value, _length: value, 2, 2),
}


def object_template(output_format: str | None) -> Template | None:
    """The template of `inspect`, `version`, `info` (None for their JSON: no format, or ``json``).

    Commands parse it before looking anything up, so that a bad template is the one error printed, as in Docker.
    """
    if output_format in (None, "", "json"):
        return None
    return Template(output_format, FUNCTIONS)


def write_object(output_format: str, data: dict) -> None:
    """`version` and `info`: one object; ``json`` is ``{{json .}}`` there, as in Docker."""
    write_objects(Template("{{json .}}" if output_format == "json" else output_format, FUNCTIONS), [data])


def listing_template(output_format: str) -> Template:
    """The row template of a listing's --format, prepared as Docker prepares it (raises TemplateError)."""
    return Template(_prepare(output_format), FUNCTIONS)


def _prepare(output_format: str) -> str:
    text = output_format[len("table"):] if output_format.startswith("table") else output_format
    return text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def render_listing(output_format: str, rows: list[dict], headers: dict[str, str]) -> str:
    """`ps`, `images`...: JSON lines, or the template per row (``table`` adds the header and tabwriter columns)."""
    if output_format == "json":
        return "".join(json.dumps({key: value for key, value in row.items() if not callable(value)},
                                  separators=(",", ":"), sort_keys=True) + "\n" for row in rows)
    is_table = output_format.startswith("table")
    text = _prepare(output_format)
    template = Template(text, FUNCTIONS)
    body = "".join(template.execute(row) + "\n" for row in rows)
    if not is_table:
        return body
    try:
        header = Template(text, HEADER_FUNCTIONS).execute(headers)
    except Exception:  # Docker ignores a header that does not render (a method with arguments, say)
        header = ""
    return tabwriter(header + "\n" + body)


def write_listing(output_format: str, rows: list[dict], headers: dict[str, str]) -> None:
    """The one call a listing command makes for any --format but its default table."""
    sys.stdout.write(terminal_safe(render_listing(output_format, rows, headers)))


def write_objects(template: Template, objects: list) -> None:
    """Each object's output as it renders; the first template error is raised after the others are written."""
    failure = None
    for item in objects:
        try:
            sys.stdout.write(terminal_safe(template.execute(item) + "\n"))
        except TemplateError as error:
            failure = failure or error
    if failure is not None:
        raise failure


def terminal_safe(text: str) -> str:
    """Control characters escaped as everywhere in sbx's output, but the template's own tabs and newlines."""
    return "".join(part if part in ("\t", "\n") else escape(part) for part in re.split(r"([\t\n])", text))


def tabwriter(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as Docker sets it up (minwidth 10, tabwidth 1, padding 3, ' ', no flags).

    Cells are tab-terminated; the text after a line's last tab is not part of any column. A column's width is
    max(minwidth, widest cell + padding) over a block of consecutive lines that have a cell in that column, so a
    line with fewer cells ends the blocks of the columns it lacks, as in Go.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []

    def write(first: int, last: int, widths: list[int]) -> None:
        for cells in lines[first:last]:
            out.append("".join(cell.ljust(widths[index]) if index < len(widths) else cell
                               for index, cell in enumerate(cells)))

    def format_block(first: int, last: int, widths: list[int]) -> None:
        column = len(widths)
        line = first
        while line < last:
            if column >= len(lines[line]) - 1:
                line += 1
                continue
            write(first, line, widths)
            first = line
            width = minwidth
            while line < last and column < len(lines[line]) - 1:
                width = max(width, len(lines[line][column]) + padding)
                line += 1
            format_block(first, line, [*widths, width])
            first = line
        write(first, last, widths)

    format_block(0, len(lines), [])
    return "\n".join(out)
