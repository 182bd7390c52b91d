"""`repro exp ...`: experiments, run with params overridden away from the workspace."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from repro.cli_app import JsonOpt, WaitOpt, _emit_json, _err, app

exp_app = typer.Typer(
    help=(
        "Experiments: the pipeline run with params overridden, away from the workspace."
        "\n\n\b\nExample:\n  repro exp run -S train.lr=0.05 --name fast\n  repro exp show"
    ),
    no_args_is_help=True,
)
app.add_typer(exp_app, name="exp")

RemoteOpt = Annotated[
    str | None, typer.Option("-r", "--remote", help="Remote to use instead of the default.")
]


@exp_app.command("run")
def exp_run(
    sets: Annotated[
        list[str],
        typer.Option("-S", "--set-param", help="[FILE:]KEY=VALUE; a,b,c or range(a,b,s) sweeps."),
    ] = [],  # noqa: B006
    name: Annotated[str | None, typer.Option("--name", "-n", help="The experiment's name.")] = None,
    queue: Annotated[bool, typer.Option("--queue", help="Queue it; do not run now.")] = False,
    run_all: Annotated[
        bool, typer.Option("--run-all", help="Run every queued experiment.")
    ] = False,
    jobs: Annotated[
        int, typer.Option("-j", "--jobs", help="Experiments (or one's stages) at once.")
    ] = 1,
    no_remote: Annotated[
        bool, typer.Option("--no-remote", help="Do not ask the remote's run cache.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline with params overridden, in a temporary workspace: the params files in
    the workspace and git stay as they are. A sweep queues one experiment per combination.

    \b
    Example:
      repro exp run -S train.lr=0.05 --name fast
      repro exp run -S 'train.lr=range(0.01,0.1,0.01)' -S 'train.depth=3,5'
      repro exp run --run-all -j 2
      repro exp show --sort-by accuracy
    """
    from repro import api

    rows = api.exp_run(
        sets, name=name, queue=queue, run_all=run_all, jobs=jobs, use_remote=not no_remote
    )
    if as_json:
        _emit_json(rows)
    else:
        if run_all and not rows:
            print("no queued experiments ('repro exp run --queue -S KEY=VALUE' queues one)")
        for r in rows:
            sig = f" snapshot {r['snapshot'][:12]}" if r["snapshot"] else ""
            params = " ".join(f"{_short(k)}={v}" for k, v in r["params"].items())
            print(f"{r['name']}: {r['state']}{sig}" + (f"  {params}" if params else ""))
    failed = [r for r in rows if r["state"] == "failed"]
    for r in failed:
        _err(f"error: experiment '{r['name']}': {r['message']}")
    if failed:
        raise typer.Exit(1)


def _short(pid: str) -> str:
    """`params.yaml:train.lr` reads `train.lr`; other files keep their name."""
    file, _, key = pid.rpartition(":")
    return key if file == "params.yaml" else pid


def _table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    params = sorted({k for r in rows for k in r["params"]})
    files = sorted({f for r in rows for f in r["metrics"]})
    metrics = [
        (f, k) for f in files for k in sorted({k for r in rows for k in r["metrics"].get(f, {})})
    ]
    one_file = len(files) == 1
    head = ["name", "sig", "state"] + [_short(p) for p in params]
    head += [k if one_file else f"{f}:{k}" for f, k in metrics]
    body = []
    for r in rows:
        line = [r["name"], (r["snapshot"] or "")[:8], r["state"]]
        line += [r["params"].get(p, "") for p in params]
        line += [r["metrics"].get(f, {}).get(k, "") for f, k in metrics]
        body.append(line)
    return head, body


def _sort(rows: list[dict[str, Any]], metric: str, descending: bool) -> list[dict[str, Any]]:
    def value(r: dict[str, Any]) -> Any:
        for f, values in r["metrics"].items():
            if metric in values or metric.startswith(f + ":"):
                v = values.get(metric, values.get(metric.partition(f + ":")[2]))
                if isinstance(v, int | float):
                    return v
        return None

    if not any(value(r) is not None for r in rows):
        from repro.errors import UsageError

        raise UsageError(f"--sort-by '{metric}': no experiment has this metric.")
    have = sorted((r for r in rows if value(r) is not None), key=value, reverse=descending)
    return have + [r for r in rows if value(r) is None]


@exp_app.command("show")
def exp_show(
    as_json: JsonOpt = False,
    md: Annotated[bool, typer.Option("--md", help="A Markdown table.")] = False,
    csv: Annotated[bool, typer.Option("--csv", help="CSV.")] = False,
    sort_by: Annotated[
        str | None, typer.Option("--sort-by", help="Sort by this metric ([FILE:]KEY).")
    ] = None,
    sort_order: Annotated[
        str, typer.Option("--sort-order", help="asc or desc (with --sort-by).")
    ] = "asc",
) -> None:
    """List the experiments: name, snapshot, state, overridden params and metrics.

    \b
    Example:
      repro exp show --sort-by accuracy --sort-order desc
      repro exp show --json
    """
    from repro import api

    if sort_order not in ("asc", "desc"):
        from repro.errors import UsageError

        raise UsageError(f"--sort-order '{sort_order}': use asc or desc.")
    rows = api.exp_show()
    if sort_by:
        rows = _sort(rows, sort_by, sort_order == "desc")
    if as_json:
        _emit_json(
            [{k: r[k] for k in ("name", "snapshot", "params", "metrics", "state")} for r in rows]
        )
        return
    if not rows:
        print("no experiments yet ('repro exp run -S KEY=VALUE' runs one)")
        return
    head, body = _table(rows)
    if csv:
        import csv as csv_mod
        import sys

        w = csv_mod.writer(sys.stdout, lineterminator="\n")
        w.writerow(head)
        w.writerows(body)
    elif md:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in body:
            print("| " + " | ".join(str(c) for c in line) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        for line in [head, *body]:
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


@exp_app.command("diff")
def exp_diff(
    a: Annotated[str, typer.Argument(help="An experiment.")],
    b: Annotated[str, typer.Argument(help="Another experiment.")],
    as_json: JsonOpt = False,
) -> None:
    """Compare two experiments' params and metrics.

    \b
    Example:
      repro exp diff exp-1a2b3c exp-4d5e6f
    """
    from repro import api

    doc = api.exp_diff(a, b)
    if as_json:
        _emit_json(doc)
        return
    for file, keys in doc["params"].items():
        for key, d in keys.items():
            print(f"param  {file}:{key}  {d['old']} -> {d['new']}")
    for file, keys in doc["metrics"].items():
        for key, d in keys.items():
            print(f"metric {file}:{key}  {d.get('old')} -> {d.get('new')}")
    if not doc["params"] and not doc["metrics"]:
        print(f"no differences between '{a}' and '{b}'")


@exp_app.command("apply")
def exp_apply(
    name: Annotated[str, typer.Argument(help="The experiment to bring into the workspace.")],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Do not save workspace content first.")
    ] = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Bring an experiment's params files, outputs and repro.lock into the workspace (content
    not in the cache is saved first, as checkout does).

    \b
    Example:
      repro exp apply exp-1a2b3c && git commit -am "lr 0.05"
    """
    from repro import api

    report = api.exp_apply(name, force=force, wait=wait)
    print(f"applied experiment '{name}' (snapshot {(report.snapshot or '')[:12]})")


@exp_app.command("remove")
def exp_remove(
    names: Annotated[list[str], typer.Argument(help="Experiments to forget.")],
) -> None:
    """Forget experiments (their snapshots stay until gc).

    \b
    Example:
      repro exp remove exp-1a2b3c exp-4d5e6f
    """
    from repro import api

    for n in api.exp_remove(names):
        print(f"removed experiment '{n}'")


@exp_app.command("push")
def exp_push(
    names: Annotated[list[str] | None, typer.Argument(help="Experiments (default: all).")] = None,
    remote: RemoteOpt = None,
) -> None:
    """Send experiments, their snapshots and objects to the remote.

    \b
    Example:
      repro exp push exp-1a2b3c
    """
    from repro import api

    sent = api.exp_push(names or None, remote=remote)
    print(f"pushed {len(sent)} experiment(s)")


@exp_app.command("pull")
def exp_pull(
    names: Annotated[list[str] | None, typer.Argument(help="Experiments (default: all).")] = None,
    remote: RemoteOpt = None,
) -> None:
    """Fetch experiments, their snapshots and objects from the remote (the workspace is kept).

    \b
    Example:
      repro exp pull && repro exp show
    """
    from repro import api

    got = api.exp_pull(names or None, remote=remote)
    print(f"pulled {len(got)} experiment(s)")
