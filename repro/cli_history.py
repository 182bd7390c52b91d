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
    """The runs, newest first (--saved: what repro saved before overwriting it).

    \b
    Example:
      repro log -n 20
      repro log --stage train --json
    """
    if saved:
        _print_saved(_project(), as_json)
        return
    if as_json:
        _stream_log_json(n, stage)
        return
    rows = _log_summaries(n, stage)
    if not rows:
        print("no runs yet")
        return
    _print_log(rows)


def _stream_log_json(n: int | None, stage: str | None) -> None:
    """`log --json`, one row at a time (the same document `json.dumps(rows, indent=2)` gives):
    10,000 runs start printing at once instead of after all are read."""
    from repro.records import iter_log_rows

    out = sys.stdout
    first = True
    for row in iter_log_rows(_project(), n, stage):
        text = json.dumps(row, indent=2, default=str).replace("\n", "\n  ")
        out.write(("[\n  " if first else ",\n  ") + text)
        first = False
    out.write("[]\n" if first else "\n]\n")


def _log_summaries(n: int | None, stage: str | None) -> list[dict[str, Any]]:
    """The run index's summaries (a log row plus each stage's outcome), newest first: at most
    `n`, or only the runs in which `stage` ran, was restored or failed."""
    from repro.records import summaries

    done = ("ran", "restored", "failed")
    rows: list[dict[str, Any]] = []
    if n is not None and n <= 0:
        return rows
    for row in summaries(_project().cache.backend):
        if stage and not any(s["name"] == stage and s["status"] in done for s in row["stages"]):
            continue
        rows.append(row)
        if n is not None and len(rows) >= n:
            break
    return rows


def _noop(row: dict[str, Any]) -> bool:
    """A run that changed nothing: every stage up to date (same snapshot as before)."""
    stages = row.get("stages") or []
    return (
        row.get("kind") == "run"
        and row.get("status") == "ok"
        and bool(stages)
        and all(s.get("status") == "up-to-date" for s in stages)
    )


def _print_log(rows: list[dict[str, Any]]) -> None:
    """The runs as a table; consecutive no-op runs of one snapshot fold into one line."""
    from repro.cli_render import STATE_STYLE, Column, num, print_table, rich_stdout

    fancy = rich_stdout()
    columns = [
        Column("Run"),
        Column("Snapshot"),
        Column("Started", drop=1),
        Column("By", drop=3),
        Column("Commit", drop=2),
        Column("Kind"),
        Column("Status"),
        Column("Metrics", wrap=True),
    ]
    table: list[list[Any]] = []
    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and _noop(rows[j]) and rows[j]["snapshot"] == rows[i]["snapshot"]:
            j += 1
        if j - i >= 2:  # a stretch of runs that changed nothing: one line says how many
            fold = (f"… {j - i} no-op runs …", "dim")
            sig = ((rows[i]["snapshot"] or "-")[:12], "dim")
            table.append([fold, sig, "", "", "", "", "", ""])
            i = j
            continue
        r = rows[i]
        metrics = "  ".join(
            f"{k}={num(tidy(v))}" for m in (r["metrics"] or {}).values() for k, v in m.items()
        )
        started = r["started"][:19].replace("T", " ") if fancy else r["started"][:19]
        table.append(
            [
                r["run_id"],
                (r["snapshot"] or "-")[:12],
                started,
                f"{r['user']}@{r['host']}",
                (r["git_commit"] or "-")[:8],
                r["kind"],
                (r["status"], STATE_STYLE.get(r["status"])),
                metrics,
            ]
        )
        i += 1
    print_table(columns, table, plain_header=False)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(metavar="SIG|RUN_ID", help="Snapshot sig or run id.")],
    logs: Annotated[str | None, typer.Option("--logs", help="Print STAGE's kept output.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One snapshot or run in full.

    \b
    Example:
      repro show v1.0
      repro show 20261124T050751926Z-a6ae05 --logs train
    """
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
    if doc.get("type") == "run":
        _show_run(doc)
    else:
        _show_snapshot(doc)


def _heading(title: str) -> None:
    from repro.cli_render import print_styled

    print_styled([(title, "bold underline")])


def _fields(pairs: list[tuple[str, Any]], indent: str = "  ") -> None:
    """`key  value` lines, keys aligned; empty values left out. On a terminal a value of several
    items (two spaces apart) wraps between them to the width, under its first line."""
    from repro.cli_render import print_styled, rich_stdout, width, wrap

    pairs = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    w = max((len(k) for k, _ in pairs), default=0)
    room = max(20, width() - len(indent) - w - 2) if rich_stdout() else 0
    for k, v in pairs:
        style = None
        if isinstance(v, tuple):
            v, style = v
        lines = wrap(str(v), room) if room else [str(v)]
        print_styled([(f"{indent}{k:<{w}}  ", "dim"), (lines[0], style)])
        for more in lines[1:]:
            print_styled([(" " * (len(indent) + w + 2), None), (more, style)])


def _show_run(doc: dict[str, Any]) -> None:
    """`show RUN_ID`: Run, Stages, Metrics sections (`--json` has every field)."""
    from repro.cli_render import STATE_STYLE, num

    commit = doc.get("git_commit")
    if commit and doc.get("git_dirty"):
        commit += " (dirty)"
    _heading(f"Run {doc['run_id']}")
    _fields(
        [
            ("kind", doc.get("kind")),
            ("status", (doc.get("status"), STATE_STYLE.get(doc.get("status") or ""))),
            ("snapshot", doc.get("snapshot")),
            ("rolled back from", doc.get("rollback_from")),
            ("started", doc.get("started")),
            ("ended", doc.get("ended")),
            ("by", f"{doc.get('user')}@{doc.get('host')}"),
            ("git commit", commit),
            ("command", " ".join(["repro", *(doc.get("argv") or [])[1:]])),
            ("CI", "  ".join(f"{k}={v}" for k, v in sorted((doc.get("ci") or {}).items()))),
            ("python", doc.get("python")),
            ("platform", doc.get("platform")),
        ]
    )
    if doc.get("stages"):
        _heading("Stages")
        for st in doc["stages"]:
            _show_stage_outcome(st)
    if doc.get("metrics"):
        _heading("Metrics")
        for path, values in doc["metrics"].items():
            _fields([(path, "  ".join(f"{k}={num(tidy(v))}" for k, v in values.items()))])


def _show_stage_outcome(st: dict[str, Any]) -> None:
    from repro.cli_render import REASON_STYLE, print_styled

    status = st.get("status") or "-"
    secs = st.get("seconds")
    where = "@".join(x for x in (st.get("executor"), st.get("worker")) if x)
    style = {"ran": "green", "restored": "cyan", "failed": "bold red", "skipped": "yellow"}
    print_styled(
        [
            (f"  {st.get('name')}", "bold"),
            (f"  {status}", style.get(status)),
            (f"  {secs:.2f} s" if isinstance(secs, int | float) else "", None),
            (f"  {(st.get('signature') or '')[:12]}", "dim"),
            (f"  {where}" if where else "", "dim"),
        ]
    )
    for r in st.get("reasons") or []:
        kind = str(r.get("kind"))
        print_styled(
            [
                ("      because ", "dim"),
                (kind, REASON_STYLE.get(kind)),
                (f" {r.get('target')}", None),
            ]
        )
    if st.get("message"):
        print_styled([(f"      {st['message']}", "red")])
    for c in st.get("checks") or []:
        mark = ("ok", "green") if c.get("ok") else ("FAILED", "bold red")
        msg = f": {c['message']}" if c.get("message") else ""
        print_styled(
            [("      check ", "dim"), (mark[0], mark[1]), (f" {c.get('name')}{msg}", None)]
        )


def _show_snapshot(doc: dict[str, Any]) -> None:
    """`show SIG`: Snapshot, Stages, Params, Data, Runs sections (`--json` has every field)."""
    _heading(f"Snapshot {doc['snapshot']}")
    files = doc.get("files") or {}
    _fields(
        [
            ("files", "  ".join(f"{p} {_hsize(h)}" for p, h in sorted(files.items()))),
            ("images", _pairs(doc.get("images"))),
        ]
    )
    stages = doc.get("stages") or {}
    if stages:
        _heading("Stages")
        for name, st in stages.items():
            _show_snapshot_stage(name, st)
    params = {k: v for st in stages.values() for k, v in (st.get("params") or {}).items()}
    if params:
        _heading("Params")
        _fields(
            [
                (k, json.dumps(tidy(v)) if not isinstance(v, str) else v)
                for k, v in sorted(params.items())
            ]
        )
    if doc.get("data"):
        _heading("Data")
        _fields([(p, _hsize(h)) for p, h in sorted(doc["data"].items())])
    if doc.get("runs"):
        _heading("Runs")
        for r in doc["runs"]:
            _fields(
                [
                    (
                        r["run_id"],
                        f"{r.get('kind')}  {r.get('started')}  {r.get('user')}@{r.get('host')}",
                    )
                ]
            )


def _pairs(v: Any) -> str:
    """A small mapping on one line (`key value  key value`); other values as JSON."""
    if not v:
        return ""
    if isinstance(v, dict):
        return "  ".join(
            f"{k} {x if isinstance(x, str) else json.dumps(tidy(x))}" for k, x in v.items()
        )
    return v if isinstance(v, str) else json.dumps(tidy(v))


def _hsize(h: Any) -> str:
    """`3f2a9c1e0b (3 files, 1.2 KiB)`: a recorded path's hash and size."""
    if not isinstance(h, dict):
        return str(h)
    files = f"{h['nfiles']} files, " if h.get("isdir") and h.get("nfiles") is not None else ""
    return f"{str(h.get('hash'))[:10]} ({files}{_human_bytes(h.get('size') or 0)})"


def _show_snapshot_stage(name: str, st: dict[str, Any]) -> None:
    from repro.cli_render import print_styled

    print_styled([(f"  {name}", "bold"), (f"  {(st.get('signature') or '')[:12]}", "dim")])
    _fields(
        [
            ("cmd", st.get("cmd")),
            ("wdir", st.get("wdir") if st.get("wdir") not in (None, ".") else None),
            ("image", st.get("image")),
            ("seed", st.get("seed")),
            ("deps", "  ".join(f"{p} {_hsize(h)}" for p, h in (st.get("deps") or {}).items())),
            ("outs", "  ".join(f"{p} {_hsize(h)}" for p, h in (st.get("outs") or {}).items())),
            ("env", "  ".join(f"{k}={v}" for k, v in (st.get("env") or {}).items())),
            ("environment", _pairs(st.get("environment"))),
        ],
        indent="      ",
    )


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
        _say(f"data: {_change_line(item)}")
    for st in doc["stages"]:
        _say(f"{st['name']}:", "bold")
        for c in st["changes"]:
            _say(f"  {_change_line(c)}")


def _say(text: str, style: str | None = None) -> None:
    """Lines of `diff`: on a terminal the severity tag is coloured ([major] red, [minor]
    yellow); piped, the same text exactly."""
    import re

    from repro.cli_render import SEVERITY_STYLE, print_styled

    for line in text.split("\n"):
        m = re.search(r"\[(major|minor)\]", line)
        if m is None:
            print_styled([(line, style)])
            continue
        sev = SEVERITY_STYLE[m.group(1)]
        print_styled([(line[: m.start()], None), (m.group(0), sev), (line[m.end() :], None)])


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
