"""`repro plots show|diff`: the plots repro.yaml declares, as one self-contained HTML page or
as Vega-Lite specs (repro/plots.py does the work; imported inside the commands)."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, _emit_json, _err, _project, app

plots_app = typer.Typer(
    help="Draw the plots repro.yaml declares (DVC's plots: CSV/TSV/JSON series or images).",
    no_args_is_help=True,
)
app.add_typer(plots_app, name="plots")

OutOpt = Annotated[str, typer.Option("-o", "--out", help="The HTML file to write.")]
TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--targets", help="Only these plots (a plot id or a file); repeatable."),
]


def _draw(refs: list[str] | None, targets: list[str] | None, out: str, as_json: bool) -> None:
    from repro.plots import collect, write_html

    project = _project()
    result = collect(project, refs, targets)
    for note in result.notes:
        _err(f"warning: {note}")
    if as_json:
        _emit_json(result.specs)
        return
    title = "repro plots" + (f": {' vs '.join(refs)}" if refs else "")
    path = write_html(out, result.specs, title)
    print(f"wrote {path} ({len(result.specs)} plot{'s' if len(result.specs) != 1 else ''})")


@plots_app.command("show")
def show(
    targets: Annotated[
        list[str] | None, typer.Argument(help="Plot ids or files (default: every plot).")
    ] = None,
    out: OutOpt = "plots.html",
    as_json: JsonOpt = False,
) -> None:
    """Draw the workspace's plots into one HTML file that needs no network.

    \b
    Example:
      repro plots show -o plots.html
      repro plots show loss.csv --json
    """
    _draw(None, targets, out, as_json)


@plots_app.command("diff")
def diff(
    a: Annotated[
        str | None,
        typer.Argument(help="The old state: sig, tag, git revision (default: repro.lock)."),
    ] = None,
    b: Annotated[str | None, typer.Argument(help="The new state (default: the workspace).")] = None,
    targets: TargetsOpt = None,
    out: OutOpt = "plots.html",
    as_json: JsonOpt = False,
) -> None:
    """Overlay two states' plots, coloured by state (default: repro.lock against the workspace).

    \b
    Example:
      repro plots diff v1 v2 -o compare.html
      repro plots diff HEAD~1 --targets loss.csv --json
    """
    _draw([a or "repro.lock", b or "workspace"], targets, out, as_json)
