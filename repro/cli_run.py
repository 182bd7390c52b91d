"""Commands that declare, run and inspect the pipeline: stage add, run, status, dag."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from repro.cli_app import (
    JsonOpt,
    _emit_json,
    _project,
    app,
)
from repro.cli_fast import print_status_report, report_run

stage_app = typer.Typer(help="Declare stages.", no_args_is_help=True)
app.add_typer(stage_app, name="stage")


@stage_app.command("add")
def stage_add(
    name: Annotated[str, typer.Argument(help="Stage name.")],
    cmd: Annotated[str, typer.Option("--cmd", "-c", help="Command, run with sh -c.")],
    deps: Annotated[list[str], typer.Option("-d", "--deps", help="Dependency.")] = [],  # noqa: B006
    outs: Annotated[list[str], typer.Option("-o", "--outs", help="Output.")] = [],  # noqa: B006
    params: Annotated[list[str], typer.Option("-p", "--params", help="Param key.")] = [],  # noqa: B006
    metrics: Annotated[list[str], typer.Option("-m", "--metrics", help="Metrics file.")] = [],  # noqa: B006
    env: Annotated[list[str], typer.Option("-e", "--env", help="Env var that counts.")] = [],  # noqa: B006
    image: Annotated[str | None, typer.Option("--image", help="Container image.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Stage seed.")] = None,
    wdir: Annotated[str | None, typer.Option("-w", "--wdir", help="Working dir.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace a stage.")] = False,
    desc: Annotated[str | None, typer.Option("--desc", help="What the stage does.")] = None,
    always_changed: Annotated[
        bool, typer.Option("--always-changed", help="Run it on every 'repro run'.")
    ] = False,
    outs_no_cache: Annotated[
        list[str], typer.Option("-O", "--outs-no-cache", help="Output kept out of the cache.")
    ] = [],  # noqa: B006
    outs_persist: Annotated[
        list[str], typer.Option("--outs-persist", help="Output kept across runs.")
    ] = [],  # noqa: B006
    plots: Annotated[list[str], typer.Option("--plots", help="Plot output.")] = [],  # noqa: B006
) -> None:
    """Add a stage to repro.yaml (comments and order of the file are kept).

    \b
    Example:
      repro stage add train -c "python train.py" -d train.py -d data.csv -p train.lr \\
        -o model.pkl -m metrics.json --plots loss.csv --desc "fit the model"
    """
    from repro.pipeline.stageadd import StageFlags
    from repro.pipeline.stageadd import stage_add as add_stage

    more = StageFlags(desc, always_changed, outs_no_cache, outs_persist, plots)
    add_stage(
        _project(), name, cmd, deps, outs, params, metrics, image, seed, wdir, env, force, more
    )
    print(f"added stage '{name}' to repro.yaml")


@stage_app.command("list")
def stage_list(as_json: JsonOpt = False) -> None:
    """List the stages: name, command, dependency and output counts, description, frozen.

    \b
    Example:
      repro stage list --json
    """
    from repro.manage import stage_list as list_stages

    rows = list_stages(_project())
    if as_json:
        _emit_json([r.to_dict() for r in rows])
        return
    for r in rows:
        frozen = "  (frozen)" if r.frozen else ""
        desc = f"  # {r.desc}" if r.desc else ""
        print(f"{r.name}: {r.cmd}  [{r.deps} deps, {r.outs} outs]{frozen}{desc}")


@stage_app.command("remove")
def stage_remove(
    name: Annotated[str, typer.Argument(help="Stage to remove.")],
    outs: Annotated[bool, typer.Option("--outs", help="Delete its outputs too.")] = False,
) -> None:
    """Remove a stage from repro.yaml and repro.lock, and its outputs' .gitignore lines (the
    outputs stay in the workspace unless --outs).

    \b
    Example:
      repro stage remove train
    """
    from repro.manage import stage_remove as remove_stage

    paths = remove_stage(_project(), name, outs)
    kept = "deleted" if outs else "left in place"
    print(f"removed stage '{name}'" + (f" (outputs {kept}: {', '.join(paths)})" if paths else ""))


@app.command()
def run(
    stages: Annotated[list[str] | None, typer.Argument(help="Stages (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Rerun even when cached.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen.")] = False,
    jobs: Annotated[int, typer.Option("-j", "--jobs", help="Stages to run at once.")] = 1,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="Also the stages after.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Rerun cached stages; compare outputs.")
    ] = False,
    no_remote: Annotated[
        bool, typer.Option("--no-remote", help="Do not ask the remote's run cache.")
    ] = False,
    push: Annotated[bool, typer.Option("--push", help="Upload the results at the end.")] = False,
    wait_lock: Annotated[float, typer.Option("--wait", help="Seconds to wait for the lock.")] = 0.0,
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="Run stages with this executor (a stage's own wins)."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler address (with --executor dask)."),
    ] = None,
    remote: Annotated[
        str | None, typer.Option("-r", "--remote", help="Remote to use instead of the default.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring the pipeline (or the named stages and what they need) up to date.

    \b
    Example:
      repro run -j 4
      repro run --executor dask --scheduler tcp://10.0.0.5:8786 -j 32
    """
    from repro.pipeline.runner import run as run_pipeline

    if jobs < 1:
        from repro.errors import UsageError

        raise UsageError("-j/--jobs must be at least 1.")
    echo = sys.stderr if as_json else sys.stdout
    project = _project()
    _run_overrides(project, scheduler, remote)
    _check_dask_remote(project, executor, no_remote)
    result = run_pipeline(
        project,
        stages or None,
        force=force,
        dry_run=dry_run,
        jobs=jobs,
        downstream=downstream,
        echo=echo,
        wait_lock=wait_lock,
        verify=verify,
        use_remote=not no_remote,
        executor=executor,
        progress=_caching_progress(jobs),
    )
    if push and not dry_run:
        from repro.transfer import push as push_cache

        push_cache(project)
    if report_run(result, as_json):
        raise typer.Exit(1)


def _caching_progress(jobs: int):
    """What draws caching each stage's outputs (hash, then store) for a person watching (a
    terminal, not CI) while one stage runs at a time; None otherwise: nothing is drawn."""
    from repro.cli_render import progress_for, progress_wanted

    return progress_for if jobs == 1 and progress_wanted() else None


def _run_overrides(project, scheduler: str | None, remote: str | None) -> None:
    """`--scheduler` and `-r` for this run only: laid over the loaded config, never saved."""
    if remote:
        from repro.remote import remote_config

        remote_config(project, remote)  # an unknown name: one sentence
        project.config["core"] = {**(project.config.get("core") or {}), "remote": remote}
    if scheduler is not None:
        if not scheduler.strip():
            from repro.errors import UsageError

            raise UsageError("--scheduler: give the scheduler's address (tcp://host:8786).")
        project.config["dask"] = {**(project.config.get("dask") or {}), "scheduler": scheduler}


def _check_dask_remote(project, executor: str | None, no_remote: bool) -> None:
    """`dask` chosen for the run without a shared remote: refused before anything is read or
    written (a stage's own `executor: dask` is refused by the runner, as early as it can)."""
    configured = (project.config.get("run") or {}).get("executor")
    source = "--executor" if executor else ".repro/config.toml: key 'run.executor'"
    if (executor or configured) != "dask":
        return
    from repro.remote import default_remote_name

    if no_remote or not default_remote_name(project):
        from repro.pipeline.stageexec import needs_remote_error

        raise needs_remote_error(source)


@app.command()
def status(
    stages: Annotated[list[str] | None, typer.Argument(help="Stages (default: all).")] = None,
    as_json: JsonOpt = False,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when any stage is stale.")
    ] = False,
    external: Annotated[
        bool,
        typer.Option("--external", help="Ask imported data's sources whether they changed."),
    ] = False,
) -> None:
    """Say which stages and tracked data are stale and why.

    \b
    Example:
      repro status
      repro status train --exit-code
      repro status --external
    """
    from repro import api

    rep = api.status(stages or None)
    if external:  # imported data whose source changed: stale, kind `external`
        from repro.external import mark_external

        mark_external(_project(), rep)
    if as_json:
        _emit_json(rep.to_dict())
    else:
        print_status_report(rep)
    if exit_code and rep.stale:
        raise typer.Exit(1)


@app.command()
def dag(
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid flowchart.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Draw the pipeline graph.

    \b
    Example:
      repro dag --mermaid
    """
    from repro.pipeline.dag import render

    print(
        render(
            _project(), "mermaid" if mermaid else "dot" if dot else "json" if as_json else "text"
        )
    )
