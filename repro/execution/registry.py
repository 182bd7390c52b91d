"""Executors by name: the built-ins `local`, `container` and `dask`, and plug-ins registered
under the entry-point group `repro.executors` (`name = "module:factory"`).

A built-in is imported only when chosen (the container one pulls in the docker SDK), and the
installed distributions' entry points are read only when a name is not built in, so a run that
uses neither pays nothing for the seam. A factory is called with one argument, the executor's
own config table (`[run.NAME]` in `.repro/config.toml`, or `{}`), and returns an object with
`run(request, context) -> ExecResult` (see `repro.execution.base`).
"""

from __future__ import annotations

import re
from typing import Any

from repro.errors import ReproError
from repro.execution.base import Executor

GROUP = "repro.executors"
BUILTIN = {
    "local": ("repro.execution.local", "LocalExecutor"),
    "container": ("repro.execution.container", "ContainerExecutor"),
    "dask": ("repro.execution.dask", "DaskExecutor"),
}
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class ExecutorError(ReproError):
    """An executor name that names nothing, or a plug-in that cannot be loaded."""


def entry_point(group: str, name: str) -> Any | None:
    """The installed entry point `name` of `group`, or None. Reads the installed
    distributions' metadata: call it only for names that are not built in."""
    from importlib.metadata import entry_points

    found = entry_points(group=group, name=name)
    return next(iter(found), None)


def installed_names(group: str) -> list[str]:
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=group)})


def check_name(name: str, source: str) -> None:
    """Refuse a name that is neither built in nor installed, without importing anything."""
    if name in BUILTIN:
        return
    if not NAME_RE.match(name) or entry_point(GROUP, name) is None:
        others = sorted({*BUILTIN, *installed_names(GROUP)})
        raise ExecutorError(
            f"{source}: no executor named {name!r} (available: {', '.join(others)}; "
            f"plug-ins register under the entry-point group '{GROUP}')."
        )


def load_executor(name: str, source: str, config: dict[str, Any] | None = None) -> Executor:
    """The executor called `name`, made with its config table. `source` says where the name
    came from (`--executor`, `repro.yaml: stage 'x', key 'executor'`, ...): an unknown name is
    one sentence naming it."""
    if name in BUILTIN:
        import importlib

        module, attr = BUILTIN[name]
        factory = getattr(importlib.import_module(module), attr)
    else:
        check_name(name, source)
        ep = entry_point(GROUP, name)
        try:
            factory = ep.load()
        except Exception as exc:
            raise ExecutorError(
                f"{source}: executor {name!r} ({ep.value}) cannot be loaded: "
                f"{type(exc).__name__}: {_clause(exc)}."
            ) from None
    try:
        executor = factory(dict(config or {}))
    except ReproError:
        raise
    except Exception as exc:
        raise ExecutorError(
            f"{source}: executor {name!r} cannot be set up: {type(exc).__name__}: {_clause(exc)}."
        ) from None
    if not callable(getattr(executor, "run", None)):
        raise ExecutorError(f"{source}: executor {name!r} has no run(request, context) method.")
    return executor


def executor_name(executor: object) -> str:
    """The name a run record shows for an executor object handed in through the Python API."""
    name = getattr(executor, "name", None)
    return name if isinstance(name, str) and name else type(executor).__name__


def _clause(exc: BaseException) -> str:
    from repro.errors import first_line

    return first_line(exc).rstrip(".")
