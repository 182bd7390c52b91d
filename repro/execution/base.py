"""The executor interface: run one stage's command and report how it went."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import IO, Protocol

from repro.pipeline.spec import Stage


@dataclass
class ExecRequest:
    stage: Stage
    root: str  # project root (absolute)
    cwd: str  # absolute working dir
    env: dict[str, str]  # full environment for the process
    stdout_path: str  # where to keep the stage's stdout
    stderr_path: str
    echo: IO[str] | None  # stream output here as it comes (None: keep quiet)
    prefix: str = ""  # put before each echoed line (parallel runs)


@dataclass
class ExecResult:
    exit_code: int
    seconds: float
    error: str | None = None  # why it could not start, if it did not


class Executor(Protocol):
    def run(self, req: ExecRequest, cancel: threading.Event) -> ExecResult: ...


_echo_lock = threading.Lock()


def echo_line(echo: IO[str] | None, prefix: str, line: str) -> None:
    if echo is None:
        return
    with _echo_lock:
        echo.write(prefix + line if prefix else line)
        if not line.endswith("\n"):
            echo.write("\n")
        echo.flush()
