"""CI gates: `repro check` (and the `--fail-on` option `repro diff` shares with it)."""

from __future__ import annotations

from typing import Annotated

import typer

from repro.cli_app import JsonOpt, _emit_json, app

FailOnOpt = Annotated[
    str | None,
    typer.Option(
        "--fail-on",
        metavar="major|minor",
        help="Exit 1 when a change of this severity (minor: minor or worse) is present.",
    ),
]


@app.command()
def check(
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="REF",
            help="Baseline: a sig, tag or git revision (default: the default branch's "
            "repro.lock, else this checkout's).",
        ),
    ] = None,
    fail_on: FailOnOpt = None,
    no_alerts: Annotated[
        bool, typer.Option("--no-alerts", help="Do not fire the project's [[alerts]].")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Gate for CI: status plus a diff against a baseline, with a verdict and its reasons.
    Exit 1 when a stage is stale or --fail-on is met.

    \b
    Example:
      repro check --fail-on major
      repro check --against v1.2 --json
    """
    from repro import api

    v = api.check(against, fail_on, alerts=not no_alerts)
    if as_json:
        _emit_json(v.to_dict())
    else:
        n = len(v.reasons)
        print(f"verdict: {v.verdict} ({n} reason{'' if n == 1 else 's'})")
        print(f"baseline: {v.baseline}" + _resolved(v.baseline, v.changes.get("from")))
        for r in v.reasons:
            print(f"  [{r.severity}] {r.text}")
        if v.stale:
            print("stale stages: 'repro run' brings them up to date; the gate fails until then")
        if v.fail_on and v.failed:
            print(f"gate failed (--fail-on {v.fail_on})")
    if v.failed:
        raise typer.Exit(1)


def _resolved(ref: str, state: str | None) -> str:
    if not state or state == ref:
        return ""
    return f" ({state[:12]})" if len(state) == 32 else f" ({state})"
