"""--format on the commands: ps, images, inspect, version and info take Go templates through the fast parser,
the template module stays off the hot path, and a bad template is one line with exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from sandbox.cli import containers, fast, version
from sandbox.cli.main import main
from sandbox.store.containers import ContainerRecord

NOW = time.time()


def record(name: str, state: str, **fields) -> ContainerRecord:
    return ContainerRecord(
        id=(name.encode().hex() * 64)[:64], name=name, image="busybox", image_id="sha256:" + "ab" * 32,
        command=("sleep", "30"), created=NOW - 300, spec={"network": "none"}, state=state,
        started_at=NOW - 180 if state != "created" else None, finished_at=NOW - 5 if state == "exited" else None,
        exit_code=0 if state == "exited" else None, **fields,
    )


class FakeLifecycle:
    def __init__(self, records) -> None:
        self.records = records

    def list(self, all_containers: bool = False):
        return [r for r in self.records if all_containers or r.state.value == "running"]

    def inspect(self, text: str) -> dict:
        from sandbox.errors import ContainerNotFound

        for r in self.records:
            if r.name == text:
                return {"Id": r.id, "Name": f"/{r.name}", "State": {"Status": r.state.value, "Pid": 7},
                        "Config": {"Env": ["A=1", "B=2"]}}
        raise ContainerNotFound(f"no such container: {text}")


@pytest.fixture
def lifecycle(monkeypatch):
    fake = FakeLifecycle([record("web", "running"), record("old-box", "exited")])
    monkeypatch.setattr(containers, "_lifecycle", lambda: fake)
    monkeypatch.setattr(time, "time", lambda: NOW)  # the durations are the fake records' own
    return fake


def test_ps_table_template_has_dockers_headers_and_columns(lifecycle, capsys) -> None:
    assert fast.dispatch(["ps", "-a", "--format", "table {{.Names}}\\t{{.Status}}\\t{{.RunningFor}}"]) is True
    assert capsys.readouterr().out == (
        "NAMES     STATUS                     CREATED\n"
        "web       Up 3 minutes               5 minutes ago\n"
        "old-box   Exited (0) 5 seconds ago   5 minutes ago\n"
    )


def test_ps_row_template_sees_dockers_field_names(lifecycle, capsys) -> None:
    fields = "{{.ID}} {{.Image}} {{.Command}} {{.State}} {{.Size}} {{.Networks}} {{.LocalVolumes}} {{.Label \"x\"}}"
    assert fast.dispatch(["ps", "--format", fields]) is True
    assert capsys.readouterr().out == f'{lifecycle.records[0].id[:12]} busybox "sleep 30" running 0B none 0 \n'
    assert fast.dispatch(["ps", "-a", "--format", "{{json .}}"]) is True
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["Names"] for row in rows] == ["web", "old-box"] and "Label" not in rows[0]


def test_inspect_takes_a_template_per_object(lifecycle, capsys) -> None:
    containers.container_inspect(["web", "old-box"], output_format="{{.State.Status}} {{join .Config.Env \",\"}}")
    assert capsys.readouterr().out == "running A=1,B=2\nexited A=1,B=2\n"
    containers.container_inspect(["web"], output_format="json")
    assert json.loads(capsys.readouterr().out)[0]["Name"] == "/web"


def test_a_bad_template_is_one_line_and_exit_code_1_before_anything_is_read(monkeypatch, capsys) -> None:
    monkeypatch.setattr(containers, "_lifecycle", lambda: pytest.fail("read the store for a bad template"))
    for argv in (["ps", "--format", "{{.Names"], ["inspect", "-f", "{{nosuch .}}", "web"]):
        with pytest.raises(SystemExit) as leaving:
            main(argv)
        assert leaving.value.code == 1
        error = capsys.readouterr().err
        assert error.startswith("sbx: template parsing error: template: :1: ") and error.count("\n") == 1


def test_an_execution_error_is_one_line_and_exit_code_1(lifecycle, capsys) -> None:
    with pytest.raises(SystemExit) as leaving:
        main(["ps", "--format", "{{index .Names 99}}"])
    assert leaving.value.code == 1
    assert capsys.readouterr().err == ('sbx: template parsing error: template: :1:2: executing "" at '
                                       "<index .Names 99>: error calling index: index out of range: 99\n")


def test_version_has_dockers_client_section_and_format(capsys) -> None:
    assert fast.dispatch(["version"]) is True
    text = capsys.readouterr().out
    assert text.startswith("Client:\n Version:           ") and " OS/Arch:           linux/" in text
    assert fast.dispatch(["version", "-f", "{{.Client.Version}}"]) is True
    assert capsys.readouterr().out == version.version_data()["Client"]["Version"] + "\n"
    assert fast.dispatch(["version", "--format", "json"]) is True
    assert json.loads(capsys.readouterr().out) == version.version_data()


def test_the_default_and_json_formats_do_not_import_the_template_engine(tmp_path) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "d"), "XDG_RUNTIME_DIR": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"}
    probe = ("import sys; from sandbox.cli.fast import dispatch; dispatch(sys.argv[1:]); "
             "sys.stderr.write(str(sorted(m for m in sys.modules if m.startswith('sandbox.cli'))))")
    for argv in (["ps"], ["ps", "--format", "json"], ["images"], ["version"]):
        result = subprocess.run([sys.executable, "-c", probe, *argv], env=env, capture_output=True, text=True,
                                check=True, cwd=containers.__file__.rsplit("/sandbox/", 1)[0])
        assert "gotemplate" not in result.stderr and "formatting" not in result.stderr, argv
    result = subprocess.run([sys.executable, "-c", probe, "ps", "--format", "{{.Names}}"], env=env,
                            capture_output=True, text=True, check=True,
                            cwd=containers.__file__.rsplit("/sandbox/", 1)[0])
    assert "sandbox.cli.gotemplate" in result.stderr
