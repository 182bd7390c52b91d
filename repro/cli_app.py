"""The one Typer app of the `repro` command and the helpers its command modules share.

The commands live in repro/cli_*.py, grouped by what they touch; each registers itself on `app`
here when imported, and repro/cli.py imports them all (in the order `--help` lists them). Kept
small and free of heavy imports: everything here loads on every `repro` invocation."""

from __future__ import annotations

from typing import Annotated

import typer

# The output helpers every command shares live below the app, where the fast path uses them too.
from repro.cli_fast import emit_json as _emit_json
from repro.cli_fast import err as _err  # noqa: F401
from repro.cli_render import human_bytes as _human_bytes  # noqa: F401

app = typer.Typer(
    name="repro",
    help="Content-addressed reproducibility for data and ML pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
WaitOpt = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for the project lock.", min=0)
]


def _project():
    from repro.project import Project

    return Project.find()


class _Progress:
    """Progress on stderr for a person watching (a terminal, not CI), phase by phase with known
    totals (repro.cli_render.PhaseProgress); nothing otherwise. `.callback` is what the layers
    below are handed: None when nothing is shown, so they pay nothing."""

    def __init__(self, label: str) -> None:
        from repro.cli_render import progress_for

        self.label = label
        self._shown = progress_for(label)

    def __enter__(self):
        self._shown.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._shown.__exit__(*exc)

    @property
    def callback(self):
        return self._shown.callback


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _print_saved(project, as_json: bool) -> None:
    from repro.saved import list_saved

    rows = [s.to_dict() for s in reversed(list(list_saved(project.dot)))]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("nothing was saved before an overwrite")
    for r in rows:
        kind = "folder" if r["isdir"] else "file"
        print(f"{r['when']}  {r['path']} ({kind}) by '{r['command']}'\n    {r['restore']}")
