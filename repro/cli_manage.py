"""The small commands: remove, move, commit, freeze, unfreeze, config, completion."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, _emit_json, _project, app


@app.command("remove")
def remove(
    path: Annotated[str, typer.Argument(help="Tracked data to untrack.")],
) -> None:
    """Stop tracking data: drop it from repro.yaml, repro.lock and .gitignore (the file stays).

    \b
    Example:
      repro remove data/raw.csv
    """
    from repro.manage import remove_data

    rel = remove_data(_project(), path)
    print(f"untracked {rel} (the file is left in place)")


@app.command("move")
def move(
    src: Annotated[str, typer.Argument(help="Tracked data to move.")],
    dst: Annotated[str, typer.Argument(help="New path (or a folder to move it into).")],
) -> None:
    """Move tracked data, updating repro.yaml, repro.lock and .gitignore.

    \b
    Example:
      repro move data/raw.csv data/v1/raw.csv
    """
    from repro.manage import move_data

    old, new = move_data(_project(), src, dst)
    print(f"moved {old} -> {new}")


@app.command("commit")
def commit(
    stage: Annotated[str | None, typer.Argument(help="Stage (default: every stage).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record the current outputs as the stage's result without running it (after a change
    that cannot alter them, such as a comment in its code).

    \b
    Example:
      repro commit train
    """
    from repro.manage import commit as commit_stages

    done = commit_stages(_project(), stage)
    if as_json:
        _emit_json([c.to_dict() for c in done])
        return
    for c in done:
        print(f"{c.stage}: committed {c.signature[:12]} ({len(c.outs)} outputs)")


@app.command("freeze")
def freeze(stage: Annotated[str, typer.Argument(help="Stage to freeze.")]) -> None:
    """Freeze a stage: `repro run` never runs it and its recorded result stands.

    \b
    Example:
      repro freeze download
    """
    from repro.manage import set_frozen

    changed = set_frozen(_project(), stage, True)
    print(f"stage '{stage}' {'frozen' if changed else 'was frozen already'}")


@app.command("unfreeze")
def unfreeze(stage: Annotated[str, typer.Argument(help="Stage to unfreeze.")]) -> None:
    """Unfreeze a stage: `repro run` runs it again when its inputs change.

    \b
    Example:
      repro unfreeze download
    """
    from repro.manage import set_frozen

    changed = set_frozen(_project(), stage, False)
    print(f"stage '{stage}' {'unfrozen' if changed else 'was not frozen'}")


@app.command("config")
def config(
    get: Annotated[str | None, typer.Option("--get", help="Print one key's value.")] = None,
    set_: Annotated[
        tuple[str, str] | None,
        typer.Option("--set", help="Set KEY VALUE (TOML value; bare words are strings)."),
    ] = None,
    unset: Annotated[str | None, typer.Option("--unset", help="Remove a key.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="Print every key.")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Use .repro/config.local.toml (git-ignored).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Read or change the project config (.repro/config.toml, or with --local the per-machine
    .repro/config.local.toml). Values are checked before writing; comments are kept.

    \b
    Example:
      repro config --set cache.link '["hardlink", "copy"]'
      repro config --local --set core.remote scratch
      repro config --get cache.link
      repro config --list
    """
    from repro.errors import UsageError

    chosen = [x for x in (get, set_, unset) if x is not None] + ([True] if list_ else [])
    if len(chosen) > 1:
        raise UsageError("config: give one of --get, --set, --unset, --list.")
    _config_command(_project(), get, set_, unset, local, as_json)


def _config_command(project, get, set_, unset, local: bool, as_json: bool) -> None:
    import json
    import os

    from repro import config_edit
    from repro.config import edit_problem, load_config, local_path, read_config

    committed = project.config_path
    path = local_path(committed) if local else committed
    label = f".repro/{os.path.basename(path)}"
    if set_ is not None or unset is not None:
        other = read_config(committed if local else local_path(committed))

        def check(data: dict) -> str | None:
            return edit_problem(data, other, local)

        if set_ is not None:
            key, text = set_
            config_edit.set_value(path, key, config_edit.parse_value(text), check, label)
            print(f"{label}: set {key}")
        else:
            config_edit.unset_value(path, unset, check, label)
            print(f"{label}: removed {unset}")
        return
    # --local: that file alone; otherwise the merged view, what repro uses
    data = read_config(path) if local else load_config(committed)
    if get is not None:
        try:
            value = config_edit.get_value(data, get)
        except KeyError:
            from repro.errors import NotFoundError

            raise NotFoundError(f"{label}: no key '{get}' is set.") from None
        print(json.dumps(value) if as_json or not isinstance(value, str) else value)
        return
    rows = config_edit.flatten(data)
    if as_json:
        _emit_json(dict(rows))
        return
    for k, v in rows:
        print(f"{k} = {json.dumps(v)}")


@app.command("completion")
def completion(
    shell: Annotated[str, typer.Argument(help="bash, zsh, fish or powershell.")],
) -> None:
    """Print the shell completion script for `repro` (Tab completes commands and options).

    \b
    Example:
      repro completion bash >> ~/.bashrc
      repro completion zsh > "${fpath[1]}/_repro"
      repro completion fish > ~/.config/fish/completions/repro.fish
    """
    from typer._completion_shared import get_completion_script

    from repro.errors import UsageError

    if shell not in ("bash", "zsh", "fish", "powershell"):
        raise UsageError(f"completion: unknown shell {shell!r} (bash, zsh, fish or powershell).")
    print(get_completion_script(prog_name="repro", complete_var=COMPLETE_VAR, shell=shell))


COMPLETE_VAR = "_REPRO_COMPLETE"
