"""Docker's --format on the real commands, as the unprivileged user (one container, kept short)."""

from __future__ import annotations

import json


def test_format_templates_on_inspect_ps_images_version(busybox):
    container_id = busybox("run", "-d", "--name", "fmt-web", "-e", "COLOR=blue", "busybox", "sleep", "30").stdout
    container_id = container_id.strip()
    try:
        assert busybox("inspect", "-f", "{{.State.Status}}", "fmt-web").stdout == "running\n"
        shown = busybox("container", "inspect", "--format",
                        "{{.Name}} {{.State.Running}} {{.Config.Image}} {{.Id}} {{range .Config.Env}}"
                        "{{if eq (index (split . \"=\") 0) \"COLOR\"}}{{.}}{{end}}{{end}}", "fmt-web").stdout
        assert shown == f"/fmt-web true busybox {container_id} COLOR=blue\n"
        pid = int(busybox("inspect", "-f", "{{.State.Pid}}", "fmt-web").stdout)
        assert pid > 1 and json.loads(busybox("inspect", "-f", "{{json .State}}", "fmt-web").stdout)["Pid"] == pid

        lines = busybox("ps", "--format", "table {{.Names}}\\t{{.Status}}").stdout.splitlines()
        assert lines[0].split() == ["NAMES", "STATUS"] and lines[0].index("STATUS") == 10
        assert lines[1].startswith("fmt-web   Up ")
        assert busybox("ps", "--format", "{{.ID}} {{.Names}}").stdout == f"{container_id[:12]} fmt-web\n"

        assert busybox("images", "--format", "{{.Repository}}:{{.Tag}}").stdout == "busybox:latest\n"
        assert busybox("image", "inspect", "-f", "{{index .RepoTags 0}}", "busybox").stdout == "busybox:latest\n"
        assert busybox("version", "--format", "{{.Client.Os}}").stdout == "linux\n"
        assert busybox("info", "--format", "{{.ContainersRunning}} {{.Images}}").stdout == "1 1\n"

        failed = busybox("inspect", "-f", "{{.State.Status", "fmt-web", check=False)
        assert failed.returncode == 1 and failed.stdout == ""
        assert failed.stderr == "sbx: template parsing error: template: :1: unclosed action\n"
    finally:
        busybox("rm", "-f", "fmt-web")
