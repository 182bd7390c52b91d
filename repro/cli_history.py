"""Commands that read the history back: log, show, diff."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from repro.cli_app import (
    JsonOpt,
    _emit_json,
    _human_bytes,
    _print_saved,
    _project,
    app,
)
from repro.model import tidy


@app.command()
def log(
    n: Annotated[int | None, typer.Option("-n", help="Show at most N runs.")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="Only runs that ran STAGE.")] = None,
    saved: Annotated[
        bool, typer.Option("--saved", help="List content saved before an overwrite.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The runs, newest first (--saved: what repro saved before overwriting it)."""
    if saved:
        _print_saved(_project(), as_json)
        return
    from repro import api

    rows = api.log(n, stage)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("no runs yet")
    for r in rows:
        commit = (r["git_commit"] or "-")[:8]
        sig = (r["snapshot"] or "-")[:12]
        metrics = "  ".join(f"{k}={tidy(v)}" for m in r["metrics"].values() for k, v in m.items())
        print(
            f"{r['run_id']}  {sig:12s}  {r['started'][:19]}  {r['user']}@{r['host']}  "
            f"{commit:8s}  {r['kind']:8s} {r['status']:6s}  {metrics}".rstrip()
        )


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="SIG|RUN_ID", help="Snapshot sig or run id.")],
    logs: Annotated[str | None, typer.Option("--logs", help="Print STAGE's kept output.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One snapshot or run in full."""
    from repro import api

    if logs:
        from repro import history

        out, err = history.stage_logs(_project(), ref, logs)
        sys.stdout.write(out)
        sys.stderr.write(err)
        return
    doc = api.show(ref)
    if as_json:
        _emit_json(doc)
        return
    from repro.pipeline.specio import dump_yaml

    print(dump_yaml(doc), end="")


@app.command()
def diff(
    a: Annotated[
        str | None,
        typer.Argument(
            help="From: a sig, a tag, a git revision or repro.lock (default: repro.lock)."
        ),
    ] = None,
    b: Annotated[
        str | None, typer.Argument(help="To: the same kinds, or workspace (default).")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            metavar="major|minor",
            help="Exit 1 when a change of this severity (minor: minor or worse) is present.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What changed between two states (default: repro.lock against the workspace).

    \b
    Example:
      repro diff                          # repro.lock against the workspace
      repro diff v1.1 v1.2 --fail-on major
      repro diff HEAD~1 --json
    """
    from repro import api

    if fail_on not in (None, "major", "minor"):
        from repro.errors import UsageError

        raise UsageError(f"--fail-on must be 'major' or 'minor', not '{fail_on}'.")
    doc = api.diff(a, b)
    if as_json:
        _emit_json(doc)
    else:
        _print_diff(doc, a or "repro.lock", b or "workspace")
    if fail_on and _fails(doc, fail_on):
        raise typer.Exit(1)


def _fails(doc: dict, fail_on: str) -> bool:
    """Whether `doc` holds a change of severity `fail_on` or worse (the gate of `--fail-on`)."""
    wanted = ("major",) if fail_on == "major" else ("major", "minor")
    changes = [c for st in doc["stages"] for c in st["changes"]] + list(doc["data"])
    return any(c.get("severity") in wanted for c in changes)


def _print_diff(doc: dict, a: str, b: str) -> None:
    from repro.safety import is_hash

    def short(name: str, ref: str) -> str:
        """A sig is shortened and follows the name it was asked by (`v1.2 (3f2a9c1e0b7d)`);
        `HEAD~1 (0a1b2c3d4e)` is shown whole."""
        if not is_hash(name):
            return name
        return name[:12] if name.startswith(ref.lower()) else f"{ref} ({name[:12]})"

    print(f"from {short(doc['from'], a)} to {short(doc['to'], b)}")
    if doc.get("absent"):
        n = len(doc["absent"])
        print(
            f"note: {n} recorded path{'s are' if n > 1 else ' is'} not in the workspace "
            f"({', '.join(doc['absent'][:3])}{', ...' if n > 3 else ''}); compared as "
            "recorded. 'repro pull' fetches them."
        )
    if not doc["stages"] and not doc["data"]:
        print("no changes")
    for item in doc["data"]:
        print(f"data: {_change_line(item)}")
    for st in doc["stages"]:
        print(f"{st['name']}:")
        for c in st["changes"]:
            print(f"  {_change_line(c)}")


def _short(v: Any) -> str:
    if isinstance(v, dict) and "hash" in v:
        return f"{v['hash'][:10]} ({_human_bytes(v.get('size') or 0)})"
    return json.dumps(tidy(v)) if not isinstance(v, str) else v


def _change_line(c: dict) -> str:
    line = f"[{c['severity']}] {c['kind']} {c['target']}: {_short(c['old'])} -> {_short(c['new'])}"
    if c.get("note"):
        line += f" ({c['note']})"
    if c.get("lines") is not None:
        line += f" ({c['lines']} line{'' if c['lines'] == 1 else 's'} changed)"
    if c.get("files"):
        f = c["files"]
        line += f" [+{len(f['added'])} -{len(f['removed'])} ~{len(f['changed'])} files]"
    for k, m in (c.get("metrics") or {}).items():
        delta = f" ({m['delta']:+g})" if m.get("delta") is not None else ""
        if m.get("rule"):
            delta += f" [{m['severity']}: rule {m['rule']}]"
        line += f"\n      {k}: {tidy(m['old'])} -> {tidy(m['new'])}{delta}"
    return line
