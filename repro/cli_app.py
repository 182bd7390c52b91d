"""The one Typer app of the `repro` command and the helpers its command modules share.

The commands live in repro/cli_*.py, grouped by what they touch; each registers itself on `app`
here when imported, and repro/cli.py imports them all (in the order `--help` lists them). Kept
small and free of heavy imports: everything here loads on every `repro` invocation."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

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


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip() + "\n")


def _project():
    from repro.project import Project

    return Project.find()


class _Progress:
    """A rich byte progress bar on a terminal; nothing otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None
        self.task = None
        if sys.stderr.isatty() and not os.environ.get("CI"):
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                transient=True,
                console=_console(stderr=True),
            )

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    @property
    def callback(self):
        if self.bar is None:
            return None
        bar, task = self.bar, self.task
        return lambda n: bar.advance(task, n)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


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
