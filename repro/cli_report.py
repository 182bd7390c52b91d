"""`repro report`: the timeline dashboard, one self-contained HTML file."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, _emit_json, _project, app


@app.command()
def report(
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="FILE", help="Where to write the page.")
    ] = "report.html",
    open_it: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
    json_data: Annotated[
        bool,
        typer.Option(
            "--json-data",
            help="Print the data the page shows (versions, changes, runs, chart specs) as one "
            "JSON document instead of writing the page; needs no extra.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write one HTML file (no server, no network) with a timeline of the pipeline's versions
    (click a dot for its details), metric trends, the DAG, runs per day and stage durations.
    Needs the 'report' extra: pip install 'repro-engine[report]'.

    \b
    Example:
      repro report -o report.html
      repro report --open
      repro report --json-data > report.json
    """
    from repro import report as rpt

    project = _project()
    if json_data:
        _emit_json(rpt.collect(project))
        return
    result = rpt.write_report(project, output)
    if as_json:
        _emit_json(result.to_dict())
    else:
        size = result.bytes / 1024
        print(
            f"report: {result.path} ({size:,.0f} KiB, {result.snapshots} versions, "
            f"{result.runs} runs)"
        )
    if open_it:
        import webbrowser
        from pathlib import Path

        webbrowser.open(Path(result.path).as_uri())
