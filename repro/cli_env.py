"""Commands about the environment stages run in: lock (image digests) and env."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import (
    JsonOpt,
    _emit_json,
    _project,
    app,
)


@app.command("lock")
def lock_cmd(
    update: Annotated[bool, typer.Option("--update", help="Re-resolve every tag.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resolve stage images to immutable digests and write them to repro.lock.

    \b
    Example:
      repro lock --update
    """
    from repro.execution.images import lock_images

    changes = lock_images(_project(), update)
    if as_json:
        _emit_json({ref: {"old": old, "new": new} for ref, (old, new) in changes.items()})
        return
    if not changes:
        print("no stage declares an image")
    for ref, (old, new) in changes.items():
        if old and old != new:
            print(f"{ref}: {old} -> {new}")
        else:
            print(f"{ref}: {new}")


@app.command()
def env(as_json: JsonOpt = False) -> None:
    """The environment fingerprint of this interpreter: Python, platform, distributions.

    \b
    Example:
      repro env --json
    """
    from repro.pipeline.envfp import current_environment

    fp = current_environment()
    if as_json:
        _emit_json(fp)
        return
    print(f"python {fp['python']} ({fp['executable']}) on {fp['platform']}")
    for name, version in fp["packages"].items():
        print(f"  {name} {version}")
