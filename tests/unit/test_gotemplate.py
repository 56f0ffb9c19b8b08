"""Go's text/template as Docker's --format uses it: the examples of Go's and Docker's docs, printed as Go prints
them, properties over random data, and the errors (one line each, Go's text)."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.cli import formatting
from sandbox.cli.formatting import FUNCTIONS, render_listing, tabwriter
from sandbox.cli.gotemplate import Template, go_float, go_sprintf, go_string, render
from sandbox.errors import SbxError, TemplateError


def docker(source: str, data: object) -> str:
    return Template(source, FUNCTIONS).execute(data)


CONTAINER = {
    "Id": "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2",
    "Name": "/web",
    "Path": "nginx",
    "Args": ["-g", "daemon off;"],
    "Image": "sha256:77af4d6b9913",
    "LogPath": "/home/ana/.local/share/sbx/containers/4fa6/ctr.log",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0, "Error": ""},
    "HostConfig": {"Binds": [], "NetworkMode": "slirp4netns", "AutoRemove": False},
    "Mounts": [],
    "Config": {
        "Env": ["PATH=/usr/local/sbin:/usr/bin", "NGINX_VERSION=1.25.3"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Image": "nginx:latest",
        "Labels": {"maintainer": "NGINX Docker Maintainers", "com.example.vendor": "ACME"},
    },
    "NetworkSettings": {
        "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42:ac:11:00:02"}},
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                  "8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8787"}]},
    },
}

# --- Go's text/template documentation: every one of these prints "output" -----------------------------------

GO_DOC_PIPELINES = [
    '{{"\\"output\\""}}',
    '{{`"output"`}}',
    '{{printf "%q" "output"}}',
    '{{"output" | printf "%q"}}',
    '{{printf "%q" (print "out" "put")}}',
    '{{"put" | printf "%s%s" "out" | printf "%q"}}',
    '{{"output" | printf "%s" | printf "%q"}}',
    '{{with "output"}}{{printf "%q" .}}{{end}}',
    '{{with $x := "output" | printf "%q"}}{{$x}}{{end}}',
    '{{with $x := "output"}}{{printf "%q" $x}}{{end}}',
    '{{with $x := "output"}}{{$x | printf "%q"}}{{end}}',
]


@pytest.mark.parametrize("source", GO_DOC_PIPELINES)
def test_the_examples_of_gos_documentation(source: str) -> None:
    assert render(source, None) == '"output"'


def test_trim_markers_as_gos_documentation_shows() -> None:
    assert render("{{23 -}} < {{- 45}}", None) == "23<45"
    assert render("a  {{- /* a comment */ -}}\n  b", None) == "ab"
    assert render("{{/* only a comment */}}", None) == ""
    assert render("{{-3}}", None) == "-3"  # no space after the dash: a negative number, not a trim marker
    assert render("{{if 1 -}} a {{- else -}} b {{- end}}|{{range .}} {{- . -}} {{end}}", ["x", "y"]) == "a|xy"
    assert render("{{.A\n}}", {"A": 1}) == "1"  # a newline inside an action is a space (Go 1.16+)


# --- Docker's documentation: docker inspect, docker ps, docker images, the formatting page --------------------

DOCKER_INSPECT = [
    ("{{.State.Status}}", "running"),
    ("{{.State.Pid}}", "4242"),
    ("{{.State.Running}}", "true"),
    ("{{.Config.Image}}", "nginx:latest"),
    ("{{.LogPath}}", CONTAINER["LogPath"]),
    ("{{.Config.Env}}", "[PATH=/usr/local/sbin:/usr/bin NGINX_VERSION=1.25.3]"),
    ("{{.Config.Labels}}", "map[com.example.vendor:ACME maintainer:NGINX Docker Maintainers]"),
    ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.2"),
    ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}", "02:42:ac:11:00:02"),
    ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}", "172.17.0.2\n"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
     " 80/tcp -> 8080  8787/tcp -> 8787 "),
    ('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', "8787"),
    ('{{join .Args " , "}}', "-g , daemon off;"),
    ("{{json .Mounts}}", "[]"),
    ("{{json .State}}", '{"Status":"running","Running":true,"Pid":4242,"ExitCode":0,"Error":""}'),
    ("{{lower .Name}}", "/web"),
    ("{{upper .Name}}", "/WEB"),
    ("{{title .Name}}", "/Web"),
    ('{{split .Config.Image ":"}}', "[nginx latest]"),
    ('{{split (join .Args "/") "/"}}', "[-g daemon off;]"),
    ("{{.Name | upper}}", "/WEB"),
    ("{{len .Config.Env}}", "2"),
    ("{{.HostConfig.Binds}}", "[]"),
    ("{{.NoSuchField}}", "<no value>"),
    ("{{.NoSuchField.Below}}", "<no value>"),
    ('{{range $i, $e := .Config.Env}}{{if $i}},{{end}}{{index (split $e "=") 0}}{{end}}', "PATH,NGINX_VERSION"),
    ('{{if eq .State.Status "running"}}up{{else if eq .State.Status "exited"}}down{{else}}other{{end}}', "up"),
    ("{{with .State}}{{.Status}} {{.ExitCode}}{{end}}", "running 0"),
    ("{{with .NoSuch}}yes{{else}}no{{end}}", "no"),
    ("{{range .Mounts}}{{.Source}}{{else}}no mounts{{end}}", "no mounts"),
    ("{{if and .State.Running (not .HostConfig.AutoRemove)}}kept{{end}}", "kept"),
    ("{{if or (gt .State.Pid 10000) (lt .State.Pid 5000)}}in range{{end}}", "in range"),
    ('{{printf "%-6s|%6d|%v" .State.Status .State.Pid .State.Running}}', "running|  4242|true"),
    ('{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}',
     "com.example.vendor=ACME;maintainer=NGINX Docker Maintainers;"),
    ("{{$name := .Name}}{{range .Config.Cmd}}{{$name}}:{{.}} {{end}}", "/web:nginx /web:-g /web:daemon off; "),
    ('{{range .Config.Cmd}}{{if eq . "-g"}}{{continue}}{{end}}{{if eq . "daemon off;"}}{{break}}{{end}}{{.}}{{end}}',
     "nginx"),
    ('{{pad .Name 2 1}}|{{truncate .Id 12}}', "  /web |4fa6e0f0c678"),
]


@pytest.mark.parametrize(("source", "expected"), DOCKER_INSPECT, ids=[case[0] for case in DOCKER_INSPECT])
def test_the_inspect_forms_of_dockers_documentation(source: str, expected: str) -> None:
    assert docker(source, CONTAINER) == expected


def test_json_of_the_whole_object_round_trips() -> None:
    assert json.loads(docker("{{json .}}", CONTAINER)) == CONTAINER


PS_ROWS = [
    {"ID": "a87ecb4f327c", "Image": "busybox", "Command": '"/bin/sh -c #(nop) MA"', "Names": "web",
     "Status": "Up 3 minutes", "Labels": "com.docker.swarm.node=ubuntu,com.docker.swarm.storage=ssd",
     "RunningFor": "3 minutes ago", "Ports": "", "State": "running"},
    {"ID": "01946d9d34d8", "Image": "nginx", "Command": '"nginx -g \'daemon of…"', "Names": "a-longer-name",
     "Status": "Exited (0) 2 seconds ago", "Labels": "", "RunningFor": "2 hours ago", "Ports": "", "State": "exited"},
]
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "Names": "NAMES", "Status": "STATUS",
              "Labels": "LABELS", "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE"}


def test_ps_forms_of_dockers_documentation() -> None:
    assert render_listing("{{.ID}}: {{.Command}}", PS_ROWS, PS_HEADERS) == (
        'a87ecb4f327c: "/bin/sh -c #(nop) MA"\n01946d9d34d8: "nginx -g \'daemon of…"\n')
    assert render_listing("table {{.ID}}\\t{{.Labels}}", PS_ROWS, PS_HEADERS) == (
        "CONTAINER ID   LABELS\n"
        "a87ecb4f327c   com.docker.swarm.node=ubuntu,com.docker.swarm.storage=ssd\n"
        "01946d9d34d8   \n")
    assert render_listing("table {{.Names}}\\t{{.Status}}", PS_ROWS, PS_HEADERS) == (
        "NAMES           STATUS\n"
        "web             Up 3 minutes\n"
        "a-longer-name   Exited (0) 2 seconds ago\n")
    # not a table: the two characters \t are a tab all the same, and nothing is aligned
    assert render_listing("{{.Names}}\\t{{.State}}", PS_ROWS, PS_HEADERS) == "web\trunning\na-longer-name\texited\n"


def test_table_headers_see_through_dockers_functions() -> None:
    assert render_listing("table {{.Names | upper}}\\t{{lower .State}}", PS_ROWS[:1], PS_HEADERS) == (
        "NAMES     STATE\nWEB       running\n")
    assert render_listing("table {{.ID}}", [], PS_HEADERS) == "CONTAINER ID\n"  # the header without rows


IMAGES = [
    {"ID": "77af4d6b9913", "Repository": "<none>", "Tag": "<none>", "Size": "1.089GB", "Digest": "<none>",
     "CreatedSince": "19 hours ago"},
    {"ID": "b6fa739cedf5", "Repository": "committ", "Tag": "latest", "Size": "1.089GB", "Digest": "<none>",
     "CreatedSince": "19 hours ago"},
    {"ID": "78a85c484f71", "Repository": "ubuntu", "Tag": "24.04", "Size": "78.1MB", "Digest": "<none>",
     "CreatedSince": "3 weeks ago"},
]
IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Size": "SIZE", "Digest": "DIGEST",
                 "CreatedSince": "CREATED"}


def test_images_forms_of_dockers_documentation() -> None:
    assert render_listing("{{.ID}}: {{.Repository}}", IMAGES, IMAGE_HEADERS) == (
        "77af4d6b9913: <none>\nb6fa739cedf5: committ\n78a85c484f71: ubuntu\n")
    assert render_listing("table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}\\t{{.Size}}", IMAGES, IMAGE_HEADERS) == (
        "IMAGE ID       REPOSITORY   TAG       SIZE\n"
        "77af4d6b9913   <none>       <none>    1.089GB\n"
        "b6fa739cedf5   committ      latest    1.089GB\n"
        "78a85c484f71   ubuntu       24.04     78.1MB\n")
    assert render_listing("{{.Repository}}:{{.Tag}}", IMAGES[1:], IMAGE_HEADERS) == "committ:latest\nubuntu:24.04\n"


def test_version_forms_of_dockers_documentation() -> None:
    data = {"Client": {"Version": "0.1.0", "Os": "linux", "Arch": "amd64"}}
    assert docker("{{.Client.Version}}", data) == "0.1.0"
    assert docker("{{.Client.Os}}/{{.Client.Arch}}", data) == "linux/amd64"
    assert docker("{{.Server.Version}}", data) == "<no value>"
    assert json.loads(docker("{{json .}}", data)) == data


# --- Go's printing rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("text", "text"), (7, "7"), (-3, "-3"), (True, "true"), (False, "false"), (None, "<no value>"),
    ([], "[]"), (["a", "b"], "[a b]"), ([1, None, "x"], "[1 <nil> x]"), ({}, "map[]"),
    ({"b": 2, "a": [1, 2]}, "map[a:[1 2] b:2]"), ([{"k": "v"}], "[map[k:v]]"), ([[]], "[[]]"),
    (0.5, "0.5"), (1000000.0, "1e+06"), (123456.0, "123456"), (1e-05, "1e-05"), (0.0001, "0.0001"),
    (3.0, "3"), (1.5e300, "1.5e+300"), (-2.25, "-2.25"), (100.0, "100"),
])
def test_values_print_as_gos_fmt(value, expected: str) -> None:
    assert go_string(value) == expected
    assert render("{{.}}", value) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ('{{print 1 2 "a" "b" 3}}', "1 2ab3"),
    ('{{println 1 "a" nil}}', "1 a <nil>\n"),
    ('{{print nil}}', "<nil>"),
    ('{{printf "%5.1f|%e|%g" 3.14159 1234.5678 0.000012}}', "  3.1|1.234568e+03|1.2e-05"),
    ('{{printf "%x %X %o %b %c %q" 255 255 8 5 65 66}}', "ff FF 10 101 A 'B'"),
    ('{{printf "%05d|%-4d|%+d" 42 7 3}}', "00042|7   |+3"),
    ('{{printf "%.2s|%10s|%-10s|" "abcdef" "right" "left"}}', "ab|     right|left      |"),
    ('{{printf "%t %v %s" true . .}}', "true [a b] [a b]"),
    ('{{printf "%d" "x"}}', "%!d(string=x)"),
    ('{{printf "%s %s" "x"}}', "x %!s(MISSING)"),
    ('{{printf "%s" "x" 1}}', "x%!(EXTRA int=1)"),
    ('{{printf "100%%"}}', "100%"),
    ('{{printf "%q" "tab\\there"}}', '"tab\\there"'),
    ('{{printf "%v" .}}', "[a b]"),
    ('{{len "héllo"}}', "6"),
    ('{{index "abc" 1}}', "98"),
    ('{{slice "abcdef" 1 3}} {{slice . 1}}', "bc [b]"),
    ("{{html \"<a href='x'>\"}}", "&lt;a href=&#39;x&#39;&gt;"),
    ('{{urlquery "a b&c"}}', "a+b%26c"),
    ("{{js \"it's <b>\"}}", "it\\'s \\u003Cb\\u003E"),
    ("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{'a'}} {{1.5e3}}", "31 15 15 5 1000 97 1500"),
    ('{{"\\x41\\u00e9\\t"}}', "Aé\t"),
    ("{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" \"x\"}} {{or 0 \"\"}} {{not .}}", "0 2 x  false"),
    ("{{eq 1 2 3 1}} {{ne \"a\" \"b\"}} {{le 2 2}} {{ge 1.5 2.5}}", "true true true false"),
    ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{range $i, $e := .}}{{$i}}{{$e}}{{end}}", "0a1b"),
    ("{{range $e := .}}{{$e}}{{end}}", "ab"),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .}}{{$}}{{end}}", "[a b][a b]"),
    ("{{with $x := index . 1}}{{$x}}{{end}}", "b"),
    ("{{if false}}a{{else with index . 0}}{{.}}{{end}}", "a"),
    ("{{.}}\n{{- .}}", "[a b][a b]"),
])
def test_functions_and_statements_as_go(source: str, expected: str) -> None:
    assert render(source, ["a", "b"]) == expected


# --- errors: typed, one line, Go's text behind Docker's prefix ----------------------------------------------


PARSE_ERRORS = [
    ("{{.Name", "template: :1: unclosed action"),
    ("{{if .Name}}x", "template: :1: unexpected EOF"),
    ("{{range .}}{{else}}", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{nosuch .Name}}", 'template: :1: function "nosuch" not defined'),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{if 1}}{{$x := 1}}{{end}}{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{}}", "template: :1: missing value for command"),
    ("{{.A | }}", "template: :1: missing value for command"),
    ("{{ .A ! }}", "template: :1: unrecognized character in action: U+0021 '!'"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{`abc}}", "template: :1: unterminated raw quoted string"),
    ("{{/* no end }}", "template: :1: unclosed comment"),
    ("{{/* c */ .A}}", "template: :1: comment ends before closing delimiter"),
    ("a\n\n{{break}}", "template: :3: {{break}} outside {{range}}"),
    ("{{(.A}}", "template: :1: unclosed left paren"),
    ("{{.A)}}", "template: :1: unexpected right paren"),
    ("{{1x}}", 'template: :1: bad number syntax: "1x"'),
    ("{{.A | 3}}", "template: :1: non executable command in pipeline stage 2"),
    ('{{template "x"}}', "template: :1: {{template}} is not supported in --format"),
    ("{{if $a, $b := .}}{{end}}", "template: :1: too many declarations in if"),
]


@pytest.mark.parametrize(("source", "message"), PARSE_ERRORS, ids=[case[0] for case in PARSE_ERRORS])
def test_parse_errors_are_gos_messages(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template(source, FUNCTIONS)
    assert caught.value.message == f"template parsing error: {message}"
    assert caught.value.go_message == message
    assert isinstance(caught.value, SbxError) and "\n" not in caught.value.message


EXEC_ERRORS = [
    ("{{index .Config.Env 9}}",
     'template: :1:2: executing "" at <index .Config.Env 9>: error calling index: index out of range: 9'),
    ("{{.Name.First}}", 'template: :1:2: executing "" at <.Name.First>: can\'t evaluate field First in type string'),
    ("{{.Null.X}}", 'template: :1:2: executing "" at <.Null.X>: nil pointer evaluating interface {}.X'),
    ('{{eq .State.Pid "1"}}',
     'template: :1:2: executing "" at <eq .State.Pid "1">: error calling eq: incompatible types for comparison'),
    ("{{lt .Config .Config}}",
     'template: :1:2: executing "" at <lt .Config .Config>: error calling lt: invalid type for comparison'),
    ("{{len .State.Pid}}", 'template: :1:2: executing "" at <len .State.Pid>: error calling len: len of type int'),
    ("x\n  {{range .Name}}{{end}}", 'template: :2:10: executing "" at <.Name>: range can\'t iterate over /web'),
    ('{{join .Name ","}}', 'template: :1:2: executing "" at <join .Name ",">: error calling join: wrong type for '
                           "value; expected []string; got string"),
    ("{{upper .State.Pid}}", 'template: :1:2: executing "" at <upper .State.Pid>: error calling upper: wrong type '
                             "for value; expected string; got int"),
    ('{{.Name "arg"}}', 'template: :1:2: executing "" at <.Name>: Name is not a method but has arguments'),
    ("{{lower}}", 'template: :1:2: executing "" at <lower>: wrong number of args for lower: want 1 got 0'),
    ('{{index .Config.Labels 1}}',
     'template: :1:2: executing "" at <index .Config.Labels 1>: error calling index: value has type int; should be '
     "string"),
]


@pytest.mark.parametrize(("source", "message"), EXEC_ERRORS, ids=[case[0] for case in EXEC_ERRORS])
def test_execution_errors_are_gos_messages(source: str, message: str) -> None:
    data = {**CONTAINER, "Null": None}
    with pytest.raises(TemplateError) as caught:
        docker(source, data)
    assert caught.value.message == f"template parsing error: {message}"


def test_a_hostile_template_is_only_an_error() -> None:
    """Deep nesting, a huge range count and recursion-prone text end as errors or bounded output, not a crash."""
    with pytest.raises(TemplateError, match="unclosed left paren"):
        Template("{{" + "(" * 5000 + ".A" + ")" * 4999 + "}}", FUNCTIONS)
    with pytest.raises(TemplateError, match="nested too deeply"):
        Template("{{" + "(" * 5000 + ".A" + ")" * 5000 + "}}", FUNCTIONS)
    with pytest.raises(TemplateError, match="nested too deeply"):
        Template("{{if 1}}" * 3000 + "{{end}}" * 3000, FUNCTIONS)
    nested: list = []
    for _ in range(3000):
        nested = [nested]
    with pytest.raises(TemplateError, match="nested too deeply"):
        render("{{.}}", nested)
    assert render("{{range 3}}{{range 3}}x{{end}}{{end}}", None) == "x" * 9


# --- properties -----------------------------------------------------------------------------------------------

plain_text = st.text().filter(lambda text: "{{" not in text)
identifier = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


@given(plain_text)
def test_plain_text_round_trips(text: str) -> None:
    assert render(text, {"any": "data"}) == text


@given(st.lists(st.text()))
def test_range_over_strings_is_their_join(items: list[str]) -> None:
    assert render("{{range .}}{{.}}{{end}}", items) == "".join(items)
    assert render("{{range $i, $v := .}}{{if $i}},{{end}}{{$v}}{{end}}", items) == ",".join(items)
    assert docker('{{join . ","}}', items) == ",".join(items)
    assert render("{{len .}}", items) == str(len(items))


@given(st.dictionaries(identifier, st.text() | st.integers()))
def test_a_field_is_its_key(mapping: dict) -> None:
    for key, value in mapping.items():
        assert render("{{." + key + "}}", mapping) == str(value)
    assert render("{{range $k, $v := .}}{{$k}}={{$v}};{{end}}", mapping) == "".join(
        f"{key}={mapping[key]};" for key in sorted(mapping))


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_printf_q_is_a_go_string_that_reads_back(text: str) -> None:
    quoted = go_sprintf("%q", text)
    assert render("{{" + quoted + "}}", None) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_print_with_the_shortest_digits_that_read_back(value: float) -> None:
    assert float(go_float(value)) == value


@given(st.lists(st.lists(st.text(alphabet=string.ascii_letters + " ", max_size=12), min_size=2, max_size=2),
                min_size=1, max_size=6))
def test_tabwriter_aligns_every_column(rows: list[list[str]]) -> None:
    text = "".join(f"{first}\t{second}\n" for first, second in rows)
    lines = tabwriter(text).split("\n")[:-1]
    width = max(10, max(len(first) for first, _ in rows) + 3)
    assert [line[:width].rstrip(" ") for line in lines] == [first.rstrip(" ") for first, _ in rows]
    assert [line[width:] for line in lines] == [second for _, second in rows]


def test_tabwriter_blocks_end_at_a_line_without_the_column() -> None:
    # Go: the second column's block is the first two lines only; the third line has no tab and ends it
    assert tabwriter("a\tb\tc\naaaaaaaaaaaa\tb\tc\nno tabs\nx\ty\n") == (
        "a              b         c\naaaaaaaaaaaa   b         c\nno tabs\nx         y\n")


def test_output_reaches_the_terminal_escaped_but_for_the_templates_tabs_and_newlines(capsys) -> None:
    hostile = {"Names": "evil\x1b]0;owned\x07\x1b[2J", "Status": "Up"}
    formatting.write_listing("table {{.Names}}\\t{{.Status}}", [hostile], {"Names": "NAMES", "Status": "STATUS"})
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\x07" not in printed
    assert "evil\\x1b]0;owned\\x07\\x1b[2J" in printed and "\t" not in printed and printed.count("\n") == 2
    formatting.write_objects(Template("{{.Names}}\t{{json .}}", FUNCTIONS), [hostile])
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and printed.count("\t") == 1
    assert json.loads(printed.split("\t")[1]) == hostile  # the JSON stays valid JSON
