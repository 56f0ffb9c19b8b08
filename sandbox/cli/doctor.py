"""`sbx doctor`: render :mod:`sandbox.service.doctor`'s report; exit 0 when sbx can run containers here."""

from __future__ import annotations

from sandbox.cli.params import Option
from sandbox.cli.render import out


def doctor(
    output_format: str = Option("table", "--format", help="table or json."),
) -> None:
    """Check that this machine is set up for rootless containers, and say how to fix what is not."""
    import json

    import typer

    from sandbox.config import load_settings
    from sandbox.errors import SbxError
    from sandbox.service.doctor import local_report

    if output_format not in ("table", "json"):
        raise SbxError(f"unsupported format {output_format!r}", hint="use --format table or --format json")
    report = local_report(load_settings())
    if output_format == "json":
        out(json.dumps(report.as_dict(), indent=2))
    else:
        width = max(len(check.name) for check in report.checks)
        for check in report.checks:
            out(f"{check.status:<8} {check.name:<{width}}  {check.detail}")
            if check.fix and check.status != "ok":
                out(f"{'':<8} {'':<{width}}  fix: {check.fix}")
        warnings = sum(check.status != "ok" and not check.fails for check in report.checks)
        if report.can_run:
            out("\nsbx can run containers here" + (f" ({warnings} warning(s): less isolation or fewer features)"
                                                      if warnings else ""))
        else:
            failing = ", ".join(check.name for check in report.checks if check.fails)
            out(f"\nsbx cannot run containers here: fix {failing}")
    if not report.can_run:
        raise typer.Exit(1)
