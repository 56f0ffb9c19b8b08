"""Go's text/template, the language of Docker's ``--format``: a small parser and evaluator over JSON-like data.

Docker users write ``{{.State.Status}}``, ``{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}`` and
``{{json .}}`` in scripts; sbx must read those the way Go does and print what Go prints. The data here is what
sbx's commands build for ``--format json`` (dicts, lists, strings, ints, floats, bools, None), which is what Docker
itself falls back to when a template does not fit its typed structures, so the semantics followed are Go's over
``map[string]interface{}``:

- a missing key is "no value": it prints ``<no value>``, is false, ranges over nothing, and a field of it is again
  no value; a field of JSON null is an error (Go: ``nil pointer evaluating interface {}.X``); a field of a string
  is an error (``can't evaluate field X in type string``);
- values print as Go's ``fmt`` prints them: ``[a b]``, ``map[a:1 b:2]`` (keys sorted), ``<nil>`` inside them,
  floats in ``%v``'s shortest form (``1e+06``);
- ``and``/``or`` short-circuit and return an operand; ``eq`` compares basic kinds and refuses mixed ones;
  ``len`` and ``index`` count and index strings in UTF-8 bytes, as Go does.

Everything the language has is here but ``define``/``template``/``block`` (one template is all ``--format`` is).
Functions are passed in (Docker's ``json``, ``join``, ``upper``... live in :mod:`sandbox.cli.formatting`); a
function raises :class:`CallError` to fail the way a Go function returning an error does. Every failure is a
:class:`~sandbox.errors.TemplateError` whose message is Go's own text (``template: :1: function "foo" not
defined``, ``template: :1:2: executing "" at <index .A 5>: error calling index: index out of range: 5``).
"""

from __future__ import annotations

import math

from sandbox.errors import TemplateError

__all__ = ["CallError", "Template", "go_sprint", "go_string", "render"]

_SPACE = " \t\r\n"
_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


class CallError(Exception):
    """Raised by a template function: rendered as Go renders a function's error (``error calling NAME: ...``)."""


class _Missing:
    """Go's invalid reflect.Value: what a missing map key yields."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# --- lexing ---------------------------------------------------------------------------------------------------


class _Token:
    __slots__ = ("kind", "value", "pos", "text")

    def __init__(self, kind: str, value: object, pos: int, text: str = "") -> None:
        self.kind = kind  # text open close eof space dot field var ident string number bool nil ( ) | := = ,
        self.value = value
        self.pos = pos
        self.text = text


class _Lexer:
    """Splits a template into text and action tokens, following text/template/parse/lex.go."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[_Token] = []

    def error(self, pos: int, message: str) -> TemplateError:
        return _parse_error(self.source, pos, message)

    def run(self) -> list[_Token]:
        source, pos = self.source, 0
        trim_next = False
        while True:
            start = source.find("{{", pos)
            text = source[pos:] if start < 0 else source[pos:start]
            trim_left = start >= 0 and source[start + 2: start + 3] == "-" and source[start + 3: start + 4] in (
                " ", "\t", "\r", "\n") and start + 3 < len(source)
            if trim_next:
                text = text.lstrip(_SPACE)
            if trim_left:
                text = text.rstrip(_SPACE)
            if text:
                self.tokens.append(_Token("text", text, pos))
            if start < 0:
                break
            inside = start + (4 if trim_left else 2)
            if source.startswith("/*", inside):
                pos, trim_next = self._comment(start, inside)
                continue
            self.tokens.append(_Token("open", None, start))
            pos, trim_next = self._action(inside)
        self.tokens.append(_Token("eof", None, len(source)))
        return self.tokens

    def _right_delimiter(self, pos: int) -> int:
        """The length of the right delimiter at pos (``}}`` or `` -}}``), 0 if there is none."""
        source = self.source
        if source.startswith("}}", pos):
            return 2
        if source[pos: pos + 1] in (" ", "\t", "\r", "\n") and source.startswith("-}}", pos + 1):
            return 4
        return 0

    def _comment(self, start: int, inside: int) -> tuple[int, bool]:
        end = self.source.find("*/", inside + 2)
        if end < 0:
            raise self.error(start, "unclosed comment")
        width = self._right_delimiter(end + 2)
        if not width:
            raise self.error(start, "comment ends before closing delimiter")
        return end + 2 + width, width == 4

    def _action(self, pos: int) -> tuple[int, bool]:
        source, tokens = self.source, self.tokens
        depth = 0
        while True:
            width = self._right_delimiter(pos)
            if width:
                if depth:
                    raise self.error(pos, "unclosed left paren")
                tokens.append(_Token("close", None, pos))
                return pos + width, width == 4
            if pos >= len(source):
                raise self.error(pos, "unclosed action")
            char = source[pos]
            if char in _SPACE:  # newlines too: Go allows them inside actions since 1.16
                end = pos + 1
                while end < len(source) and source[end] in _SPACE and self._right_delimiter(end) != 4:
                    end += 1
                tokens.append(_Token("space", None, pos))
                pos = end
                continue
            if char == "(":
                depth += 1
                tokens.append(_Token("(", None, pos))
                pos += 1
            elif char == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(pos, "unexpected right paren")
                tokens.append(_Token(")", None, pos))
                pos += 1
            elif char == "|":
                tokens.append(_Token("|", None, pos))
                pos += 1
            elif char == ",":
                tokens.append(_Token(",", None, pos))
                pos += 1
            elif source.startswith(":=", pos):
                tokens.append(_Token(":=", None, pos))
                pos += 2
            elif char == "=":
                tokens.append(_Token("=", None, pos))
                pos += 1
            elif char == '"':
                pos = self._quoted(pos)
            elif char == "`":
                end = source.find("`", pos + 1)
                if end < 0:
                    raise self.error(pos, "unterminated raw quoted string")
                tokens.append(_Token("string", source[pos + 1: end], pos, source[pos: end + 1]))
                pos = end + 1
            elif char == "'":
                pos = self._char(pos)
            elif char == "$":
                end = self._word_end(pos + 1)
                tokens.append(_Token("var", source[pos:end], pos, source[pos:end]))
                pos = end
            elif char == ".":
                if pos + 1 < len(source) and source[pos + 1].isdigit():
                    pos = self._number(pos)
                    continue
                end = self._word_end(pos + 1)
                if end == pos + 1:
                    tokens.append(_Token("dot", None, pos, "."))
                else:
                    tokens.append(_Token("field", source[pos + 1:end], pos, source[pos:end]))
                pos = end
            elif char.isdigit() or (char in "+-" and source[pos + 1: pos + 2].isdigit()):
                pos = self._number(pos)
            elif char.isalpha() or char == "_":
                end = self._word_end(pos)
                word = source[pos:end]
                if word in ("true", "false"):
                    tokens.append(_Token("bool", word == "true", pos, word))
                elif word == "nil":
                    tokens.append(_Token("nil", None, pos, word))
                else:
                    tokens.append(_Token("ident", word, pos, word))
                pos = end
            else:
                raise self.error(pos, f"unrecognized character in action: {_char_name(char)}")

    def _word_end(self, pos: int) -> int:
        source = self.source
        while pos < len(source) and (source[pos].isalnum() or source[pos] == "_"):
            pos += 1
        return pos

    def _quoted(self, pos: int) -> int:
        source, end = self.source, pos + 1
        while True:
            if end >= len(source) or source[end] == "\n":
                raise self.error(pos, "unterminated quoted string")
            if source[end] == "\\":
                end += 2
                continue
            if source[end] == '"':
                break
            end += 1
        text = source[pos: end + 1]
        self.tokens.append(_Token("string", _unquote(text[1:-1], '"', lambda m: self.error(pos, m)), pos, text))
        return end + 1

    def _char(self, pos: int) -> int:
        source, end = self.source, pos + 1
        while True:
            if end >= len(source) or source[end] == "\n":
                raise self.error(pos, "unterminated character constant")
            if source[end] == "\\":
                end += 2
                continue
            if source[end] == "'":
                break
            end += 1
        text = source[pos: end + 1]
        value = _unquote(text[1:-1], "'", lambda m: self.error(pos, m))
        if len(value) != 1:
            raise self.error(pos, f"malformed character constant: {text}")
        self.tokens.append(_Token("number", ord(value), pos, text))
        return end + 1

    def _number(self, pos: int) -> int:
        source, end = self.source, pos
        if source[end] in "+-":
            end += 1
        while end < len(source) and (source[end].isalnum() or source[end] in "._" or (
                source[end] in "+-" and source[end - 1] in "eEpP" and not source[pos: end].lower().startswith(
                    ("0x", "+0x", "-0x")))):
            end += 1
        text = source[pos:end]
        self.tokens.append(_Token("number", _number(text, lambda m: self.error(pos, m)), pos, text))
        return end


def _number(text: str, fail) -> int | float:
    """A number constant as strconv reads it: 0x/0o/0b and leading-0 octal integers, else decimal or float."""
    body = text.replace("_", "").lstrip("+-")
    negative = text.startswith("-")
    try:
        if body[:2].lower() in ("0x", "0o", "0b"):
            value = int(body, 0)
        elif any(c in body for c in ".eE"):
            value = float(body)
        elif len(body) > 1 and body[0] == "0":
            value = int(body, 8)
        else:
            value = int(body, 10)
    except ValueError:
        raise fail(f'bad number syntax: "{text}"') from None
    return -value if negative else value


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(body: str, quote: str, fail) -> str:
    """Go's strconv.Unquote of a quoted literal's body."""
    out, index = [], 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        code = body[index + 1: index + 2]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            index += 2
        elif code == quote:
            out.append(quote)
            index += 2
        elif code in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[code]
            digits = body[index + 2: index + 2 + size]
            if len(digits) != size or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise fail("invalid syntax")
            out.append(chr(int(digits, 16)) if code != "x" else bytes([int(digits, 16)]).decode("latin-1"))
            index += 2 + size
        elif code in "01234567" and code:
            digits = body[index + 1: index + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
                raise fail("invalid syntax")
            out.append(chr(int(digits, 8)))
            index += 4
        else:
            raise fail("invalid syntax")
    return "".join(out)


def _char_name(char: str) -> str:
    return f"U+{ord(char):04X} " + go_quote(char, "'")


def _template_error(go_message: str) -> TemplateError:
    """Go's error text, prefixed as Docker prefixes every template error it prints."""
    return TemplateError(f"template parsing error: {go_message}", go_message=go_message)


def _parse_error(source: str, pos: int, message: str) -> TemplateError:
    line = 1 + source.count("\n", 0, pos)
    return _template_error(f"template: :{line}: {message}")


# --- the tree -------------------------------------------------------------------------------------------------


class _Node:
    """One node of the tree; ``pos`` is its offset in the source (for Go's ``:line:column`` in errors).

    ======================  =====================  ====================  ================
    kind                    a                      b                     c
    ======================  =====================  ====================  ================
    text                    the text
    action                  its pipe
    if, with, range         the pipe               the body (nodes)      else (nodes/None)
    pipe                    declared variables     True: ``=``, not      the commands
                                                   ``:=``
    command                 the operands
    field                   the names (tuple)
    var                     ``$name``              the field names
    chain                   the operand (a pipe)   the field names
    ident                   the function's name
    string, number, bool    the source text        the value
    dot, nil                the source text
    ======================  =====================  ====================  ================
    """

    __slots__ = ("kind", "pos", "a", "b", "c")

    def __init__(self, kind: str, pos: int, a=None, b=None, c=None) -> None:
        self.kind, self.pos, self.a, self.b, self.c = kind, pos, a, b, c

    def __str__(self) -> str:  # Go's node.String(), used in error messages
        kind = self.kind
        if kind == "pipe":
            declared = ""
            if self.a:
                declared = ", ".join(self.a) + (" = " if self.b else " := ")
            return declared + " | ".join(str(command) for command in self.c)
        if kind == "command":
            return " ".join(f"({arg})" if arg.kind == "pipe" else str(arg) for arg in self.a)
        if kind == "chain":
            base = f"({self.a})" if self.a.kind == "pipe" else str(self.a)
            return base + "".join("." + name for name in self.b)
        if kind == "field":
            return "".join("." + name for name in self.a)
        if kind == "var":
            return self.a + "".join("." + name for name in self.b)
        return self.a if isinstance(self.a, str) else str(self.a)


class _Parser:
    """Recursive descent over the tokens, following text/template/parse/parse.go (its messages too)."""

    def __init__(self, source: str, functions: dict) -> None:
        self.source = source
        self.tokens = _Lexer(source).run()
        self.index = 0
        self.functions = functions
        self.variables = ["$"]
        self.range_depth = 0

    def error(self, token: _Token, message: str) -> TemplateError:
        return _parse_error(self.source, token.pos, message)

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def next(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def next_non_space(self) -> _Token:
        token = self.next()
        while token.kind == "space":
            token = self.next()
        return token

    def peek_non_space(self) -> _Token:
        at = self.index
        while self.tokens[at].kind == "space":
            at += 1
        return self.tokens[at]

    def parse(self) -> list[_Node]:
        nodes, end = self.list()
        if end is not None:
            raise self.error(end, f"unexpected {{{{{end.value}}}}}")
        return nodes

    def list(self) -> tuple[list[_Node], _Token | None]:
        """Nodes up to EOF, or up to an {{end}} or {{else}} (returned, its action's tokens partly consumed)."""
        nodes: list[_Node] = []
        while True:
            token = self.next()
            if token.kind == "eof":
                self.index -= 1
                return nodes, None
            if token.kind == "text":
                nodes.append(_Node("text", token.pos, token.value))
                continue
            word = self.peek_non_space()
            if word.kind == "ident" and word.value in _KEYWORDS:
                self.next_non_space()
                if word.value in ("end", "else"):
                    return nodes, word
                nodes.append(self.control(word))
            else:
                pipe = self.pipeline("command", close=True)
                nodes.append(_Node("action", token.pos, pipe))

    def control(self, word: _Token) -> _Node:
        keyword = word.value
        if keyword in ("break", "continue"):
            if self.next_non_space().kind != "close":
                raise self.error(word, f"unexpected {word.text} in {{{{{keyword}}}}}")
            if not self.range_depth:
                raise self.error(word, f"{{{{{keyword}}}}} outside {{{{range}}}}")
            return _Node(keyword, word.pos)
        if keyword in ("define", "template", "block"):
            raise self.error(word, f"{{{{{keyword}}}}} is not supported in --format")
        return self.branch(keyword, word)

    def branch(self, keyword: str, word: _Token) -> _Node:
        """if/with/range: pipeline, body, optional else (or else if/else with), end; variables scoped to it."""
        mark = len(self.variables)
        pipe = self.pipeline(keyword, close=True)
        if keyword == "range":
            self.range_depth += 1
        body, end = self.list()
        if keyword == "range":
            self.range_depth -= 1
        if end is None:
            raise self.error(self.peek(), "unexpected EOF")
        otherwise = None
        if end.value == "else":
            follower = self.peek_non_space()
            if follower.kind == "ident" and follower.value in ("if", "with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}}, sharing the one {{end}} (so is else with)
                self.next_non_space()
                otherwise = [self.branch(follower.value, follower)]
            else:
                if self.next_non_space().kind != "close":
                    raise self.error(end, "unexpected token in {{else}}")
                otherwise, end = self.list()
                if end is None:
                    raise self.error(self.peek(), "unexpected EOF")
                if end.value != "end":
                    raise self.error(end, "expected end; found {{else}}")
                if self.next_non_space().kind != "close":
                    raise self.error(end, "unexpected token in {{end}}")
        elif self.next_non_space().kind != "close":
            raise self.error(end, "unexpected token in {{end}}")
        del self.variables[mark:]
        return _Node(keyword, word.pos, pipe, body, otherwise)

    def pipeline(self, context: str, close: bool) -> _Node:
        start = self.peek_non_space()
        declared: list[str] = []
        assign = False
        at = self.index
        first = self.next_non_space()
        if first.kind == "var":
            after = self.next_non_space()
            if after.kind in (":=", "="):
                declared = [first.value]
                assign = after.kind == "="
            elif after.kind == "," and context == "range":
                second = self.next_non_space()
                sign = self.next_non_space()
                if second.kind != "var" or sign.kind not in (":=", "="):
                    raise self.error(second, "range can only initialize variables")
                declared = [first.value, second.value]
                assign = sign.kind == "="
            elif after.kind == ",":
                raise self.error(after, f"too many declarations in {context}")
        if not declared:
            self.index = at
        elif assign:
            for name in declared:
                if name not in self.variables:
                    raise self.error(first, f"undefined variable \"{name}\"")
        else:
            self.variables.extend(declared)
        commands: list[_Node] = []
        while True:
            token = self.peek_non_space()
            if token.kind == ("close" if close else ")"):
                self.next_non_space()
                break
            if token.kind == "eof" or (token.kind == "close" and not close):
                raise self.error(token, "unclosed action" if close else "unclosed left paren")
            commands.append(self.command())
        if not commands:
            raise self.error(start, f"missing value for {context}")
        for command in commands[1:]:
            head = command.a[0]
            if head.kind in ("bool", "dot", "nil", "number", "string"):
                raise self.error(start, f"non executable command in pipeline stage {commands.index(command) + 1}")
        return _Node("pipe", start.pos, declared, assign, commands)

    def command(self) -> _Node:
        args: list[_Node] = []
        start = self.peek_non_space()
        while True:
            while self.peek().kind == "space":
                self.next()
            token = self.peek()
            if token.kind in ("close", ")", "|", "eof"):
                break
            args.append(self.operand())
            following = self.peek()
            if following.kind not in ("space", "close", ")", "|"):
                raise self.error(following, f"unexpected {_describe(following)} in operand")
        if not args:
            raise self.error(start, "missing value for command")
        if self.peek().kind == "|":
            self.next()
            if self.peek_non_space().kind in ("close", ")", "eof"):
                raise self.error(self.peek_non_space(), "missing value for command")
        return _Node("command", args[0].pos, args)

    def operand(self) -> _Node:
        node = self.term()
        if self.peek().kind == "field":
            names = []
            while self.peek().kind == "field":
                names.extend(self.next().value.split("."))
            if node.kind == "field":
                node = _Node("field", node.pos, node.a + tuple(names))
            elif node.kind == "var":
                node = _Node("var", node.pos, node.a, node.b + tuple(names))
            elif node.kind in ("bool", "string", "number", "nil", "dot"):
                raise self.error(self.tokens[self.index - 1], f"unexpected . after term {go_quote(str(node))}")
            else:
                node = _Node("chain", node.pos, node, tuple(names))
        return node

    def term(self) -> _Node:
        token = self.next()
        kind = token.kind
        if kind == "ident":
            if token.value not in self.functions and token.value not in _BUILTINS:
                raise self.error(token, f"function \"{token.value}\" not defined")
            return _Node("ident", token.pos, token.value)
        if kind == "dot":
            return _Node("dot", token.pos, ".")
        if kind == "nil":
            return _Node("nil", token.pos, "nil")
        if kind == "var":
            if token.value not in self.variables:
                raise self.error(token, f"undefined variable \"{token.value}\"")
            return _Node("var", token.pos, token.value, ())
        if kind == "field":
            return _Node("field", token.pos, tuple(token.value.split(".")))
        if kind == "bool":
            return _Node("bool", token.pos, token.text, token.value)
        if kind == "number":
            return _Node("number", token.pos, token.text, token.value)
        if kind == "string":
            return _Node("string", token.pos, token.text, token.value)
        if kind == "(":
            return self.pipeline("parenthesized pipeline", close=False)
        raise self.error(token, f"unexpected {_describe(token)} in operand")


def _describe(token: _Token) -> str:
    if token.kind in ("(", ")", "|", ",", "=", ":="):
        return f'"{token.kind}"'
    if token.kind == "close":
        return '"}}"'
    return f"<{token.text or token.kind}>"


# --- evaluation -----------------------------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _ExecError(Exception):
    def __init__(self, node: _Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def type_name(value: object) -> str:
    """Go's name for the type of a JSON-like value (as reflect prints it)."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if callable(value):
        return "func"
    return type(value).__name__


def truth(value: object) -> bool:
    """Go's template truth: false, 0, nil, no value and empty strings, lists and maps are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | dict):
        return bool(value)
    return True


class Template:
    """A parsed template; :meth:`execute` renders it over one value."""

    def __init__(self, source: str, functions: dict | None = None) -> None:
        self.source = source
        self.functions = functions or {}
        try:
            self.tree = _Parser(source, self.functions).parse()
        except RecursionError:  # hostile nesting: an error like any other, not a traceback
            raise _template_error("template: :1: nested too deeply") from None

    def execute(self, data: object) -> str:
        out: list[str] = []
        variables: list[tuple[str, object]] = [("$", data)]
        try:
            self._walk(self.tree, data, variables, out)
        except RecursionError:
            raise _template_error('template: :1: executing "" nested too deeply') from None
        except _ExecError as error:
            node = error.node
            text = self.source[: node.pos]
            newline = text.rfind("\n")
            column = node.pos if newline < 0 else node.pos - newline - 1
            line = 1 + text.count("\n")
            raise _template_error(f'template: :{line}:{column}: executing "" at <{node}>: {error.message}') from None
        return "".join(out)

    # statements

    def _walk(self, nodes: list[_Node], dot, variables, out: list[str]) -> None:
        for node in nodes:
            kind = node.kind
            if kind == "text":
                out.append(node.a)
            elif kind == "action":
                value = self._pipeline(node.a, dot, variables)
                if not node.a.a:
                    out.append(self._printable(node, value))
            elif kind in ("if", "with"):
                mark = len(variables)
                value = self._pipeline(node.a, dot, variables)
                if truth(value):
                    self._walk(node.b, value if kind == "with" else dot, variables, out)
                elif node.c is not None:
                    self._walk(node.c, dot, variables, out)
                del variables[mark:]
            elif kind == "range":
                self._range(node, dot, variables, out)
            elif kind == "break":
                raise _Break
            elif kind == "continue":
                raise _Continue

    def _range(self, node: _Node, dot, variables, out: list[str]) -> None:
        mark = len(variables)
        pipe = node.a
        value = self._pipeline(_Node("pipe", pipe.pos, [], False, pipe.c), dot, variables)
        if isinstance(value, dict):
            items = [(key, value[key]) for key in _sorted_keys(value)]
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(index, index) for index in range(value)]
        elif value is None or value is MISSING:
            items = []
        else:
            raise _ExecError(pipe, f"range can't iterate over {go_sprint([value])}")
        for key, element in items:
            del variables[mark:]
            if len(pipe.a) == 1:
                self._declare(pipe, variables, element)
            elif len(pipe.a) == 2:
                self._declare(_Node("pipe", pipe.pos, [pipe.a[0]], pipe.b, None), variables, key)
                self._declare(_Node("pipe", pipe.pos, [pipe.a[1]], pipe.b, None), variables, element)
            try:
                self._walk(node.b, element, variables, out)
            except _Continue:
                continue
            except _Break:
                break
        else:
            if not items and node.c is not None:
                del variables[mark:]
                self._walk(node.c, dot, variables, out)
        del variables[mark:]

    def _declare(self, pipe: _Node, variables, value) -> None:
        name = pipe.a[0]
        if pipe.b:  # assignment: the innermost variable of that name
            for index in range(len(variables) - 1, -1, -1):
                if variables[index][0] == name:
                    variables[index] = (name, value)
                    return
        variables.append((name, value))

    def _printable(self, node: _Node, value) -> str:
        if value is None or value is MISSING:
            return "<no value>"
        if callable(value):
            raise _ExecError(node, f"can't print {node} of type {type_name(value)}")
        return go_string(value)

    # expressions

    def _pipeline(self, pipe: _Node, dot, variables):
        value = MISSING
        for index, command in enumerate(pipe.c):
            value = self._command(command, dot, variables, value, index > 0)
        if value is None:
            value = MISSING  # Go: a nil interface result becomes the invalid value
        if pipe.a:
            self._declare(pipe, variables, value)
        return value

    def _command(self, command: _Node, dot, variables, final, has_final: bool):
        head, args = command.a[0], command.a[1:]
        kind = head.kind
        if kind == "field":
            return self._field_chain(head, dot, dot, head.a, command, args, final, has_final, variables)
        if kind == "chain":
            receiver = self._arg(head.a, dot, variables)
            return self._field_chain(head, dot, receiver, head.b, command, args, final, has_final, variables)
        if kind == "var":
            value = self._variable(head, variables)
            if not head.b:
                if args or has_final:
                    raise _ExecError(head, f"can't give argument to non-function {head}")
                return value
            return self._field_chain(head, dot, value, head.b, command, args, final, has_final, variables)
        if kind == "ident":
            return self._call(head.a, command, dot, variables, args, final, has_final)
        if kind == "pipe":
            if args or has_final:
                raise _ExecError(head, f"can't give argument to non-function {head}")
            return self._pipeline(head, dot, variables)
        if args or has_final:
            raise _ExecError(head, f"can't give argument to non-function {head}")
        if kind == "nil":
            raise _ExecError(head, "nil is not a command")
        return self._arg(head, dot, variables)

    def _variable(self, node: _Node, variables):
        for name, value in reversed(variables):
            if name == node.a:
                return value
        raise _ExecError(node, f"undefined variable: {node.a}")

    def _field_chain(self, node, dot, receiver, names, command, args, final, has_final, variables):
        for name in names[:-1]:
            receiver = self._field(node, dot, receiver, name, [], MISSING, False, variables)
        return self._field(node, dot, receiver, names[-1], args, final, has_final, variables)

    def _field(self, node, dot, receiver, name, args, final, has_final, variables):
        if receiver is MISSING:
            return MISSING
        if receiver is None:
            raise _ExecError(node, f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, dict):
            value = receiver.get(name, MISSING)
            if callable(value):  # a method: Docker's ps rows have .Label "key"
                values = [self._arg(arg, dot, variables) for arg in args]
                if has_final:
                    values.append(None if final is MISSING else final)
                try:
                    return value(*values)
                except CallError as error:
                    raise _ExecError(node, f"error calling {name}: {error}") from None
                except TypeError:
                    raise _ExecError(node, f"wrong number of args for {name}: got {len(values)}") from None
            if args or has_final:
                raise _ExecError(node, f"{name} is not a method but has arguments")
            return value
        raise _ExecError(node, f"can't evaluate field {name} in type {type_name(receiver)}")

    def _arg(self, node: _Node, dot, variables):
        kind = node.kind
        if kind in ("string", "number", "bool"):
            return node.b
        if kind == "dot":
            return dot
        if kind == "nil":
            return None
        if kind == "var":
            value = self._variable(node, variables)
            for name in node.b:
                value = self._field(node, dot, value, name, [], MISSING, False, variables)
            return value
        if kind == "field":
            return self._field_chain(node, dot, dot, node.a, None, [], MISSING, False, variables)
        if kind == "chain":
            receiver = self._arg(node.a, dot, variables)
            return self._field_chain(node, dot, receiver, node.b, None, [], MISSING, False, variables)
        if kind == "pipe":
            return self._pipeline(node, dot, variables)
        if kind == "ident":
            return self._call(node.a, node, dot, variables, [], MISSING, False)
        raise _ExecError(node, f"can't handle {node}")

    def _call(self, name: str, command: _Node, dot, variables, args, final, has_final: bool):
        if name in ("and", "or"):
            if not args and not has_final:
                raise _ExecError(command, f"wrong number of args for {name}: want at least 1 got 0")
            value = MISSING
            for arg in args:
                value = self._arg(arg, dot, variables)
                if truth(value) == (name == "or"):
                    return value
            return final if has_final else value
        values = [self._arg(arg, dot, variables) for arg in args]
        if has_final:
            values.append(final)
        values = [None if value is MISSING else value for value in values]
        function, low, high = self.functions.get(name) or _BUILTINS[name]
        if len(values) < low or (high is not None and len(values) > high):
            want = f"at least {low}" if high is None else str(low)
            raise _ExecError(command, f"wrong number of args for {name}: want {want} got {len(values)}")
        try:
            return function(*values)
        except CallError as error:
            raise _ExecError(command, f"error calling {name}: {error}") from None


def render(source: str, data: object, functions: dict | None = None) -> str:
    return Template(source, functions).execute(data)


# --- Go's value printing (fmt) --------------------------------------------------------------------------------


def _sorted_keys(mapping: dict) -> list:
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=str)


def go_float(value: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), as %v prints: shortest digits, an exponent outside [-4, 6)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    digits, exponent = _shortest(value)
    sign = "-" if value < 0 else ""
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    if exponent + 1 >= len(digits):
        return sign + digits + "0" * (exponent + 1 - len(digits))
    return f"{sign}{digits[: exponent + 1]}.{digits[exponent + 1:]}"


def _shortest(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of |value| (Python's repr finds them too) and its decimal exponent."""
    text = repr(abs(value))
    mantissa, _, exponent_text = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    if exponent_text:  # repr's scientific form has one digit before the point
        return (whole + fraction).rstrip("0") or "0", int(exponent_text)
    if whole != "0":
        return (whole + fraction).rstrip("0"), len(whole) - 1
    significant = fraction.lstrip("0")
    return significant.rstrip("0"), -(len(fraction) - len(significant)) - 1


def go_string(value: object, top: bool = True) -> str:
    """fmt's %v of a JSON-like value."""
    if value is None or value is MISSING:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_string(item, False) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_string(key, False)}:{go_string(value[key], False)}"
                                 for key in _sorted_keys(value)) + "]"
    return str(value)


def go_sprint(values: list, spaced: bool = False) -> str:
    """fmt.Sprint (a space between operands when neither is a string) or, spaced, Sprintln without its newline."""
    out = []
    for index, value in enumerate(values):
        if index and (spaced or not (isinstance(value, str) or isinstance(values[index - 1], str))):
            out.append(" ")
        out.append(go_string(value, False))
    return "".join(out)


def go_quote(text: str, quote: str = '"') -> str:
    """strconv.Quote: printable characters as they are, the rest as Go escapes."""
    out = [quote]
    for char in text:
        code = ord(char)
        if char == quote or char == "\\":
            out.append("\\" + char)
        elif char in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(char)])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)


def _bad_verb(verb: str, value: object) -> str:
    if value is None or value is MISSING:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(value)}={go_string(value, False)})"


def _format_one(verb: str, flags: str, precision: int | None, value: object) -> str:
    """One printf operand (before width padding)."""
    if verb in "vs" and isinstance(value, list | tuple):
        return "[" + " ".join(_format_one(verb, flags, precision, item) for item in value) + "]"
    if verb in "vs" and isinstance(value, dict):
        return "map[" + " ".join(
            f"{_format_one(verb, flags, precision, key)}:{_format_one(verb, flags, precision, value[key])}"
            for key in _sorted_keys(value)) + "]"
    if verb == "v" and "#" in flags and isinstance(value, str):
        return go_quote(value)
    if verb in "vs" and isinstance(value, str):
        return value if precision is None else value[:precision]
    if verb == "v":
        if isinstance(value, float) and precision is not None:
            return f"{value:.{precision}g}"
        text = go_string(value, False)
        if "+" in flags and isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            text = "+" + text
        return text
    if verb == "t":
        return ("true" if value else "false") if isinstance(value, bool) else _bad_verb(verb, value)
    if verb == "q":
        if isinstance(value, str):
            return go_quote(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return go_quote(chr(value), "'")
        return _bad_verb(verb, value)
    if isinstance(value, bool) or value is None:
        return _bad_verb(verb, value)
    if verb in "xX" and isinstance(value, str):
        text = value.encode().hex()
        return text.upper() if verb == "X" else text
    if isinstance(value, int):
        sign = "-" if value < 0 else "+" if "+" in flags else " " if " " in flags else ""
        magnitude = abs(value)
        if verb == "d":
            digits = str(magnitude)
        elif verb in "xX":
            digits = f"{magnitude:x}" if verb == "x" else f"{magnitude:X}"
            digits = ("0x" if verb == "x" else "0X") + digits if "#" in flags else digits
        elif verb == "o":
            digits = ("0" if "#" in flags else "") + f"{magnitude:o}"
        elif verb == "b":
            digits = f"{magnitude:b}"
        elif verb == "c":
            return chr(value)
        elif verb in "eEfFgG":
            return _bad_verb(verb, value)
        else:
            return _bad_verb(verb, value)
        if precision is not None:
            digits = digits.zfill(precision)
        return sign + digits
    if isinstance(value, float):
        sign = "+" if "+" in flags and value >= 0 else " " if " " in flags and value >= 0 else ""
        if verb in "fF":
            return sign + f"{value:.{6 if precision is None else precision}f}"
        if verb in "eE":
            return sign + f"{value:.{6 if precision is None else precision}{verb}}"
        if verb in "gG":
            if precision is None:
                text = go_float(value)
                return sign + (text.upper() if verb == "G" else text)
            return sign + f"{value:.{precision}{verb}}"
    return _bad_verb(verb, value)


def go_sprintf(template: str, *values: object) -> str:
    """fmt.Sprintf for the verbs templates use (%s %d %v %q %x %X %o %b %c %t %e %f %g), flags and widths."""
    out, index, used, length = [], 0, 0, len(template)
    while index < length:
        char = template[index]
        if char != "%":
            out.append(char)
            index += 1
            continue
        index += 1
        flags = ""
        while index < length and template[index] in "+-# 0":
            flags += template[index]
            index += 1
        width = precision = None
        if index < length and template[index] == "*":
            index += 1
            width = values[used] if used < len(values) and isinstance(values[used], int) else None
            used += 1
        else:
            start = index
            while index < length and template[index].isdigit():
                index += 1
            width = int(template[start:index]) if index > start else None
        if index < length and template[index] == ".":
            index += 1
            start = index
            while index < length and template[index].isdigit():
                index += 1
            precision = int(template[start:index]) if index > start else 0
        if index >= length:
            out.append("%!(NOVERB)")
            break
        verb = template[index]
        index += 1
        if verb == "%":
            out.append("%")
            continue
        if used >= len(values):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = values[used]
        used += 1
        text = _format_one(verb, flags, precision, value) if verb in "vstqdxXobcfFeEgG" else _bad_verb(verb, value)
        if width is not None and len(text) < width:
            if "-" in flags:
                text = text.ljust(width)
            elif "0" in flags and verb in "dxXobfFeEgG" and isinstance(value, int | float):
                sign = text[0] if text[:1] in "+- " else ""
                text = sign + text[len(sign):].rjust(width - len(sign), "0")
            else:
                text = text.rjust(width)
        out.append(text)
    if used < len(values):
        extra = ", ".join("<nil>" if value is None else f"{type_name(value)}={go_string(value, False)}"
                          for value in values[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --- Go's builtin functions -----------------------------------------------------------------------------------


def _basic_kind(value: object) -> str:
    if value is None or value is MISSING:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first, *others) -> bool:
    if not others:
        raise CallError("missing argument for comparison")
    kind = _basic_kind(first)
    for other in others:
        other_kind = _basic_kind(other)
        if kind != other_kind:
            if kind != "nil" and other_kind != "nil":
                raise CallError("incompatible types for comparison")
            continue
        if kind == "other":
            raise CallError(f"non-comparable type {go_string(first, False)}: {type_name(first)}")
        if first == other:
            return True
    return False


def _less(first, second) -> bool:
    kind, other = _basic_kind(first), _basic_kind(second)
    if kind not in ("int", "float", "string") or other not in ("int", "float", "string"):
        raise CallError("invalid type for comparison")
    if kind != other:
        raise CallError("incompatible types for comparison")
    return first < second


def _length(value) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list | tuple | dict):
        return len(value)
    raise CallError(f"len of type {type_name(value)}")


def _index(item, *keys):
    if item is None:
        raise CallError("index of untyped nil")
    for key in keys:
        if isinstance(item, str | list | tuple):
            sequence = item.encode() if isinstance(item, str) else item
            if not isinstance(key, int) or isinstance(key, bool):
                raise CallError(f"cannot index slice/array with type {type_name(key)}")
            if key < 0 or key >= len(sequence):
                raise CallError(f"index out of range: {key}")
            item = sequence[key]
        elif isinstance(item, dict):
            if not isinstance(key, str):
                raise CallError(f"value has type {type_name(key)}; should be string")
            item = item.get(key)
        elif item is None:
            raise CallError("index of nil pointer")
        else:
            raise CallError(f"can't index item of type {type_name(item)}")
    return item


def _slice(item, *indexes):
    if not isinstance(item, str | list | tuple):
        raise CallError(f"can't slice item of type {type_name(item)}")
    if len(indexes) > 2:
        raise CallError(f"too many slice indexes: {len(indexes)}")
    sequence = item.encode() if isinstance(item, str) else item
    bounds = [0, len(sequence)]
    for at, index in enumerate(indexes):
        if not isinstance(index, int) or isinstance(index, bool):
            raise CallError(f"cannot index slice/array with type {type_name(index)}")
        bounds[at] = index
    low, high = bounds
    if low < 0 or high > len(sequence) or low > high:
        raise CallError(f"index out of range: {high if high > len(sequence) or high < low else low}")
    part = sequence[low:high]
    return part.decode(errors="replace") if isinstance(item, str) else list(part)


def _html(*values) -> str:
    text = go_sprint(list(values))
    for old, new in (("&", "&amp;"), ("'", "&#39;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("\0", "\ufffd")):
        text = text.replace(old, new)
    return text


def _js(*values) -> str:
    out = []
    for char in go_sprint(list(values)):
        if char in "\\'\"":
            out.append("\\" + char)
        elif char in "<>&=" or ord(char) < 0x20:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return "".join(out)


def _urlquery(*values) -> str:
    from urllib.parse import quote_plus

    return quote_plus(go_sprint(list(values)), safe="")


def _call(function, *args):
    if not callable(function):
        raise CallError(f"non-function of type {type_name(function)}")
    return function(*args)


def _not(value) -> bool:
    return not truth(value)


# name -> (function, least arguments, most arguments or None)
_BUILTINS: dict[str, tuple] = {
    "and": (None, 1, None),
    "or": (None, 1, None),
    "not": (_not, 1, 1),
    "eq": (_eq, 1, None),
    "ne": (lambda a, b: not _eq(a, b), 2, 2),
    "lt": (_less, 2, 2),
    "le": (lambda a, b: _less(a, b) or _eq(a, b), 2, 2),
    "gt": (lambda a, b: not (_less(a, b) or _eq(a, b)), 2, 2),
    "ge": (lambda a, b: not _less(a, b), 2, 2),
    "len": (_length, 1, 1),
    "index": (_index, 1, None),
    "slice": (_slice, 1, None),
    "print": (lambda *values: go_sprint(list(values)), 0, None),
    "println": (lambda *values: go_sprint(list(values), spaced=True) + "\n", 0, None),
    "printf": (lambda template, *values: go_sprintf(_string_arg(template), *values), 1, None),
    "html": (_html, 0, None),
    "js": (_js, 0, None),
    "urlquery": (_urlquery, 0, None),
    "call": (_call, 1, None),
}


def _string_arg(value) -> str:
    if value is None:
        raise CallError("invalid value; expected string")
    if not isinstance(value, str):
        raise CallError(f"wrong type for value; expected string; got {type_name(value)}")
    return value
