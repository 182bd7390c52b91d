"""`repro metrics show|diff` and `repro params diff`: tables of a state's numbers, DVC style.

Text output is a table: rich's on a terminal (honours NO_COLOR), plain aligned columns when
piped, a Markdown table with `--md`; numbers to 4 significant digits. `--json` prints the
documents of repro/metrics.py unrounded."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from repro.cli_app import JsonOpt, _emit_json, app
from repro.cli_render import num as _num
from repro.cli_render import pct as _pct
from repro.cli_render import signed as _signed
from repro.cli_render import value as _value
from repro.cli_render import width as _width

metrics_app = typer.Typer(
    help="Metrics of the workspace, snapshots, tags and git revisions, and how they moved.",
    no_args_is_help=True,
)
params_app = typer.Typer(help="Params: what changed between two states.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")
app.add_typer(params_app, name="params")

MdOpt = Annotated[bool, typer.Option("--md", help="Print a Markdown table.")]
RefA = Annotated[
    str | None,
    typer.Argument(help="From: a sig, tag, git revision or repro.lock (default: repro.lock)."),
]
RefB = Annotated[
    str | None, typer.Argument(help="To: the same kinds, or workspace (default: workspace).")
]


# -- formatting (the shared helpers of repro/cli_render.py) -------------------------------------
def _label(name: str, tags: dict[str, list[str]]) -> str:
    """A state's name as a column shows it: a sig shortened (with its tags), others whole."""
    from repro.safety import is_hash

    if not is_hash(name):
        return name
    names = tags.get(name)
    return f"{name[:12]} ({', '.join(names)})" if names else name[:12]


def _tags_by_sig() -> dict[str, list[str]]:
    from repro.cli_app import _project
    from repro.tags import list_tags

    out: dict[str, list[str]] = {}
    for t in list_tags(_project().cache.backend):
        out.setdefault(t.sig, []).append(t.name)
    return out


def _table(headers: list[str], rows: list[list[str]], md: bool, right: set[int]) -> None:
    """Print a table: Markdown, rich (a terminal) or plain aligned columns (piped)."""
    if md:
        print("| " + " | ".join(headers) + " |")
        print("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        return
    if sys.stdout.isatty():  # the terminal table `log` draws too (NO_COLOR, COLUMNS)
        from repro.cli_render import SEVERITY_STYLE, Column, print_table

        columns = [Column(h, right=i in right) for i, h in enumerate(headers)]
        print_table(columns, [[(c, SEVERITY_STYLE.get(c)) for c in r] for r in rows])
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    print(line(headers))
    for r in rows:
        print(line(r))


# -- metrics show -------------------------------------------------------------------------------
@metrics_app.command("show")
def metrics_show(
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[REF]...", help="Sigs, tags, git revisions, repro.lock or workspace."
        ),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", "-A", help="Every snapshot in the history, newest first.")
    ] = False,
    md: MdOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The metrics files' values: the workspace (default), or the states named.

    \b
    Example:
      repro metrics show
      repro metrics show v1.0 HEAD~1 workspace --md
      repro metrics show --all --json
    """
    from repro import api

    doc = api.metrics_show(refs, all=all_)
    if as_json:
        _emit_json(doc)
        return
    if not any(doc.values()):
        print("no metrics (mark a stage's metrics files with -m in 'repro stage add')")
        return
    tags = _tags_by_sig() if any(k != "workspace" for k in doc) else {}
    states = [(_label(name, tags), files) for name, files in doc.items()]
    with_state = len(states) > 1 or states[0][0] != "workspace"
    keys = list(dict.fromkeys(k for _, files in states for m in files.values() for k in m))
    wide_headers = (["State"] if with_state else []) + ["Path", *keys]
    wide_rows = []
    for label, files in states:
        for path, m in files.items():
            wide_rows.append(
                ([label] if with_state else []) + [path, *(_num(m.get(k)) for k in keys)]
            )
    first = 2 if with_state else 1
    widths = [max(len(h), *(len(r[i]) for r in wide_rows)) for i, h in enumerate(wide_headers)]
    if md or sum(widths) + 2 * (len(widths) - 1) <= _width():
        _table(wide_headers, wide_rows, md, set(range(first, len(wide_headers))))
        return
    # Too wide for the terminal: one metric a row.
    long_rows = [
        ([label] if with_state else []) + [path, k, _num(v)]
        for label, files in states
        for path, m in files.items()
        for k, v in m.items()
    ]
    headers = (["State"] if with_state else []) + ["Path", "Metric", "Value"]
    _table(headers, long_rows, md, {len(headers) - 1})


# -- metrics diff -------------------------------------------------------------------------------
@metrics_app.command("diff")
def metrics_diff(
    a: RefA = None,
    b: RefB = None,
    all_: Annotated[bool, typer.Option("--all", help="Unchanged metrics too.")] = False,
    md: MdOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """How each metric moved: old, new, change, % and severity (default: repro.lock against
    the workspace).

    \b
    Example:
      repro metrics diff
      repro metrics diff v1.0 v1.1 --md
      repro metrics diff HEAD~1 --json
    """
    from repro import api

    doc = api.metrics_diff(a, b, all=all_)
    if as_json:
        _emit_json(doc)
        return
    tags = _tags_by_sig()
    src, dst = _label(doc["from"], tags), _label(doc["to"], tags)
    if not doc["metrics"]:
        print(f"no metric changed from {src} to {dst}")
        return
    print(f"metrics from {src} to {dst}")
    rows = [
        [
            path,
            key,
            _num(c["old"]),
            _num(c["new"]),
            _signed(c["delta"]),
            _pct(c["pct"]),
            c.get("severity", ""),
        ]
        for path, metrics in doc["metrics"].items()
        for key, c in metrics.items()
    ]
    headers = ["Path", "Metric", "Old", "New", "Change", "%", "Severity"]
    if not any(r[-1] for r in rows):
        headers, rows = headers[:-1], [r[:-1] for r in rows]
    _table(headers, rows, md, {2, 3, 4, 5})


# -- params diff --------------------------------------------------------------------------------
@params_app.command("diff")
def params_diff(
    a: RefA = None,
    b: RefB = None,
    all_: Annotated[bool, typer.Option("--all", help="Unchanged params too.")] = False,
    md: MdOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The params that changed between two states, old and new (default: repro.lock against
    the workspace).

    \b
    Example:
      repro params diff
      repro params diff v1.0 v1.1 --all
      repro params diff HEAD~1 workspace --json
    """
    from repro import api

    doc = api.params_diff(a, b, all=all_)
    if as_json:
        _emit_json(doc)
        return
    tags = _tags_by_sig()
    src, dst = _label(doc["from"], tags), _label(doc["to"], tags)
    if not doc["params"]:
        print(f"no param changed from {src} to {dst}")
        return
    print(f"params from {src} to {dst}")
    rows = [
        [path, key, _value(c["old"]), _value(c["new"])]
        for path, params in doc["params"].items()
        for key, c in params.items()
    ]
    _table(["Path", "Param", "Old", "New"], rows, md, set())
