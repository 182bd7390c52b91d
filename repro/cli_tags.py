"""Named versions and going back: `repro tag`, `tags`, `rollback` and `install-hooks`."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, WaitOpt, _emit_json, _err, app


@app.command()
def tag(
    name: Annotated[str, typer.Argument(help="The tag's name (letters, digits, . _ -).")],
    sig: Annotated[
        str | None,
        typer.Argument(help="The state to name: a sig, tag or git revision (default: repro.lock)."),
    ] = None,
    message: Annotated[str, typer.Option("-m", "--message", help="A note kept with it.")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Move a tag that names another state.")
    ] = False,
    delete: Annotated[
        bool, typer.Option("-d", "--delete", help="Delete tag NAME (locally).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Name a snapshot (default: the state repro.lock records); push and pull share it.

    \b
    Example:
      repro tag v1.2 -m "accuracy 0.91, shipped"
      repro diff v1.1 v1.2
      repro tag -d v1.2
    """
    from repro import api

    if delete:
        if sig is not None:
            from repro.errors import UsageError

            raise UsageError("repro tag -d NAME: give only the name of the tag to delete.")
        api.untag(name)
        if as_json:
            _emit_json({"deleted": name})
        else:
            print(f"deleted tag '{name}'")
        return
    doc = api.tag(name, sig, message=message, force=force)
    if as_json:
        _emit_json(doc)
        return
    print(f"tag '{doc['name']}' -> {doc['sig']}")


@app.command()
def tags(as_json: JsonOpt = False) -> None:
    """The tags, newest first: name, sig, who, when, message.

    \b
    Example:
      repro tags --json
    """
    from repro import api

    rows = api.tags()
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        print("no tags yet ('repro tag NAME' names the current state)")
    for t in rows:
        first = t["message"].splitlines()[0] if t["message"] else ""
        print(
            f"{t['name']:20s} {t['sig'][:12]}  {t['time'][:19]}  {t['user']}@{t['host']}"
            + (f"  {first}" if first else "")
        )


@app.command()
def rollback(
    ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[NAME|SIG]", help="Where to go (default: the previous tagged version)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Do not check in content about to be overwritten.")
    ] = False,
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Check out an earlier version and record the rollback as a run (kind rollback).

    \b
    Example:
      repro rollback          # to the previous tagged version
      repro rollback v1.1     # or a tag, sig prefix or git revision
      git commit -am "roll back to v1.1"   # make it stick
    """
    from repro import api

    result = api.rollback(ref, force=force, wait=wait)
    if as_json:
        _emit_json(result.to_dict())
        return
    for p, h in result.saved:
        print(
            f"saved {p} ({h}) to the cache before overwriting it; "
            f"get it back with: repro restore {h} {p}"
        )
    for note in result.notes:
        print(note)
    named = f" ({', '.join(result.tags)})" if result.tags else ""
    was = result.from_sig[:12] if result.from_sig else "an unrecorded state"
    print(
        f"rolled back from {was} to {result.to_sig[:12]}{named}: {result.placed} files placed, "
        f"{result.removed} removed, {result.unchanged} unchanged; recorded as run {result.run_id}"
    )


@app.command("install-hooks")
def install_hooks(
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace hooks repro did not write (kept as .repro-backup)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Install git hooks: pre-commit warns on stale stages; post-checkout/post-merge check out.

    \b
    Example:
      repro install-hooks
      git checkout main       # the post-checkout hook runs 'repro checkout'
    """
    from repro import api

    actions = api.install_hooks(force=force)
    if as_json:
        _emit_json([a.to_dict() for a in actions])
        return
    for a in actions:
        if a.action == "skipped":
            _err(f"warning: {a.note}")
            continue
        print(f"{a.action} {a.path}" + (f" ({a.note})" if a.note else ""))
