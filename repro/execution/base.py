"""The executor interface: run one stage's command and report how it went.

An executor gets two things. The `ExecRequest` says *what* to run and can be pickled and sent
to another process or machine: it holds the stage's name, command, working dir relative to the
project, the environment the stage declares (its seed and its `env:` variables, never the whole
client environment), the dependencies' hashes, the output paths, the image digest and the URL of
the store it may read from and write to; no open stream, no absolute client path. The
`ExecContext` says *where this client is*: the project root, the log files, the cancel event
and the callback for live output; it stays in this process. The `ExecResult` reports the exit
code, the start and end times (epoch seconds), the logs (hashes of stored objects, or local
paths the runner stores) and, when the executor stored them itself, the outputs' hashes
(None: the runner hashes the workspace).

Executors are found by name in `repro.execution.registry`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol


@dataclass(frozen=True)
class ExecRequest:
    stage: str
    cmd: str
    wdir: str = "."  # project-relative POSIX
    env: dict[str, str] = field(default_factory=dict)  # declared vars, seed vars, REPRO_STAGE
    seed: int = 0
    deps: dict[str, str] = field(default_factory=dict)  # dependency path -> hash
    outs: tuple[str, ...] = ()  # project-relative output paths
    image: str | None = None  # the image digest (or pinned reference) to run in
    network: bool = False
    store_url: str | None = None  # the project's cache, as an fsspec URL
    run_id: str = ""
    # Scale-out (an executor that runs elsewhere, e.g. `dask`): what a worker sharing only the
    # remote needs. Never credentials: those come from the worker's own environment.
    store_options: dict[str, Any] = field(default_factory=dict)  # fsspec options of store_url
    signature: str = ""  # the stage signature: the run-cache key the worker writes last
    dirs: tuple[str, ...] = ()  # those of `deps` (and `files`) that are folders (tree hashes)
    files: dict[str, str] = field(default_factory=dict)  # other inputs (params files) -> hash
    environment: dict[str, Any] | None = None  # the fingerprint the stage declares (checked)
    resources: dict[str, float] = field(default_factory=dict)  # e.g. {"GPU": 1}
    record: bool = True  # whether the worker may write the run-cache entry (no client checks)
    priority: int = 0  # higher first: stages that wait for a worker start in pipeline order


@dataclass
class ExecContext:
    """The client side of one execution: never pickled, never sent anywhere."""

    root: str  # absolute project root
    stdout_path: str  # where to keep the stage's stdout when the executor does not store it
    stderr_path: str
    cancel: threading.Event
    echo: Callable[[str], None] | None = None  # called with each line of output, as it comes

    def cwd(self, req: ExecRequest) -> str:
        import os

        return self.root if req.wdir == "." else os.path.join(self.root, *req.wdir.split("/"))


@dataclass
class ExecResult:
    exit_code: int
    started: float  # epoch seconds
    ended: float
    error: str | None = None  # why it could not start, if it did not
    stdout: str | None = None  # hash of the stdout object, when the executor stored it
    stderr: str | None = None
    stdout_path: str | None = None  # else a local file the runner stores (default: ctx's)
    stderr_path: str | None = None
    outs: dict[str, dict[str, Any]] | None = None  # path -> {"hash", "isdir"}; None: hash here
    worker: str | None = None  # host, container or worker that ran it

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started)


class Executor(Protocol):
    """Runs one stage. One instance serves a whole run; with `-j N` it is called from N
    threads at once."""

    def run(self, req: ExecRequest, ctx: ExecContext) -> ExecResult: ...


_echo_lock = threading.Lock()


def echo_line(echo: IO[str] | None, prefix: str, line: str) -> None:
    if echo is None:
        return
    with _echo_lock:
        echo.write(prefix + line if prefix else line)
        if not line.endswith("\n"):
            echo.write("\n")
        echo.flush()


def echo_to(echo: IO[str] | None, prefix: str = "") -> Callable[[str], None] | None:
    """A live-output callback writing to `echo` (None when there is nowhere to write)."""
    if echo is None:
        return None
    return lambda line: echo_line(echo, prefix, line)
