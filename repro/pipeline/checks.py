"""Observer agents per stage: the checks a stage declares under `observe:` in repro.yaml.

They run after the stage's command succeeded and its outputs were taken, and before its result
goes into the run cache and `repro.lock`: a metric bound (`metric: FILE:KEY` with `min`/`max`),
a command (`cmd:`, e.g. pytest or a Great Expectations checkpoint, run like the stage's own on
this host), or a table's schema (`schema: PATH` with `columns`). A failed check with
`on_fail: fail` makes the stage fail, so nothing is recorded as its result; with `warn` the
result is kept and the failure is a warning. Every outcome goes into the run record, the
`run --json` stage entry and the observers' `stage_finished` event, where alert observers pick
failures up. Checks observe a result; they are not inputs, so they are not in the signature:
a stage restored from the run cache or up to date runs none.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from repro.model import tidy
from repro.pipeline.spec_model import Check, Stage
from repro.project import Project
from repro.records import flat_numbers

TAIL_LINES = 20
TAIL_CHARS = 2000
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # keeps newline and tab


@dataclass
class CheckResult:
    """One check's outcome. `to_dict` is what records, `run --json` and observers carry."""

    name: str
    kind: str
    ok: bool
    message: str
    severity: str
    seconds: float
    on_fail: str = "fail"

    @property
    def blocks(self) -> bool:
        """Whether this outcome makes its stage fail."""
        return not self.ok and self.on_fail == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "ok": self.ok,
            "message": self.message,
            "severity": self.severity,
            "seconds": round(self.seconds, 6),
        }


def run_checks(
    project: Project,
    stage: Stage,
    *,
    env: dict[str, str],
    log_dir: str,
    cancel: threading.Event,
    echo: Callable[[str], None] | None = None,
) -> list[CheckResult]:
    """Run every check of `stage` in order (all of them, so the record tells the whole
    story). `env` is the environment the stage's command got (seed, declared variables)."""
    results = []
    for check in stage.observe:
        t0 = time.perf_counter()
        if check.kind == "metric":
            ok, message = metric_check(project, check)
        elif check.kind == "schema":
            ok, message = schema_check(project, check)
        else:
            ok, message = command_check(project, stage, check, env, log_dir, cancel, echo)
        message = _printable(message)
        results.append(
            CheckResult(
                check.name,
                check.kind,
                ok,
                message,
                check.severity,
                time.perf_counter() - t0,
                check.on_fail,
            )
        )
        if echo is not None:
            verdict = "passed" if ok else "FAILED"
            echo(f"check '{check.name}' {verdict}: {message.splitlines()[0]}\n")
    return results


def failure_message(stage: str, results: list[CheckResult]) -> str | None:
    """The stage's error when a check with `on_fail: fail` failed, else None."""
    failed = [r for r in results if r.blocks]
    if not failed:
        return None
    more = f" ({len(failed) - 1} more check(s) failed too)" if len(failed) > 1 else ""
    first = failed[0]
    head, _, tail = first.message.partition("\n")
    return f"stage '{stage}': check '{first.name}' failed: {head}{more}" + (
        f"\n{tail}" if tail else ""
    )


def warnings(stage: str, results: list[CheckResult]) -> list[str]:
    """One line per failed check with `on_fail: warn` (the stage's result is kept)."""
    return [
        f"stage '{stage}': check '{r.name}' failed (on_fail: warn, result kept): "
        f"{r.message.splitlines()[0]}"
        for r in results
        if not r.ok and not r.blocks
    ]


# -- metric -------------------------------------------------------------------------------------
def metric_check(project: Project, check: Check) -> tuple[bool, str]:
    """The value of `FILE:KEY` (a flat key, as `repro metrics` shows it) against its bounds."""
    from repro.errors import ReproError
    from repro.pipeline.parsecache import load_any

    rel, key = str(check.path), str(check.key)
    try:
        doc = load_any(project.abs(rel), rel)
    except FileNotFoundError:
        return False, f"{rel} does not exist"
    except ReproError as exc:
        return False, exc.message.rstrip(".")
    value = flat_numbers(doc).get(key)
    if value is None:
        return False, f"{rel} has no numeric value '{key}'"
    if value != value:
        return False, f"{key} is NaN"
    shown = tidy(value) if tidy(value) not in (check.min, check.max) else value
    if check.min is not None and value < check.min:
        return False, f"{key} {shown} < min {check.min}"
    if check.max is not None and value > check.max:
        return False, f"{key} {shown} > max {check.max}"
    bounds = [f">= min {check.min}"] if check.min is not None else []
    bounds += [f"<= max {check.max}"] if check.max is not None else []
    return True, f"{key} {shown} {' and '.join(bounds)}"


# -- schema -------------------------------------------------------------------------------------
def schema_check(project: Project, check: Check) -> tuple[bool, str]:
    """The table's columns (and, where given, their types) against what the check expects."""
    rel = str(check.path)
    path = project.abs(rel)
    if not os.path.isfile(path):
        return False, f"{rel} does not exist" if not os.path.lexists(
            path
        ) else f"{rel} is not a file"
    columns = table_columns(path, rel)
    if isinstance(columns, str):
        return False, columns
    have = dict(columns)
    missing = [c for c, _ in check.columns if c not in have]
    if missing:
        names = ", ".join(f"'{c}'" for c in missing)
        return False, (
            f"{rel} has no column {names} (it has: {', '.join(list(have)[:20]) or 'none'})"
        )
    for col, want in check.columns:
        if want is not None and not type_fits(have[col], want):
            return False, f"{rel}: column '{col}' is {have[col]}, expected {want}"
    typed = sum(1 for _, t in check.columns if t is not None)
    return True, f"{rel} has the {len(check.columns)} expected column(s)" + (
        f", {typed} with their types" if typed else ""
    )


def table_columns(path: str, rel: str) -> list[tuple[str, str]] | str:
    """[(column, type)] of a CSV/TSV/Parquet/JSON table, or why it cannot be read."""
    from repro.schema import schema_of

    if path.lower().endswith(".json"):
        return _json_columns(path, rel)
    schema = schema_of(path)
    if schema is None:
        if path.lower().endswith(".parquet"):
            return f"cannot read the schema of {rel} (Parquet needs pyarrow: repro-engine[parquet])"
        return f"{rel} is not a table repro can read (no header row)"
    return [(str(c), str(t)) for c, t in schema]


def _json_columns(path: str, rel: str) -> list[tuple[str, str]] | str:
    """A JSON table: a list of records (`[{"a": 1}, ...]`) or columns (`{"a": [1, ...]}`)."""
    from repro.errors import ReproError
    from repro.pipeline.parsecache import load_any

    try:
        doc = load_any(path, rel)
    except ReproError as exc:
        return exc.message.rstrip(".")
    kinds: dict[str, str] = {}
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        for row in doc[:1000]:
            for k, v in row.items():
                kinds[str(k)] = _merge(kinds.get(str(k), "null"), _json_kind(v))
    elif isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()):
        for k, values in doc.items():
            for v in values[:1000]:
                kinds[str(k)] = _merge(kinds.get(str(k), "null"), _json_kind(v))
            kinds.setdefault(str(k), "null")
    else:
        return f"{rel} is not a JSON table (a list of records, or a mapping of columns)"
    return list(kinds.items())


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "str" if isinstance(v, str) else "object"


def _merge(a: str, b: str) -> str:
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    return "float" if {a, b} == {"int", "float"} else "str"


def type_family(name: str) -> str:
    """int, float, str, bool or null for the usual spellings (CSV's sampled kinds, pandas'
    and Arrow's names); any other name stands for itself."""
    t = name.strip().lower()
    if re.fullmatch(r"u?int(8|16|32|64)?|integer|long", t):
        return "int"
    if re.fullmatch(r"float(16|32|64)?|double|halffloat|number|real|decimal.*", t):
        return "float"
    if t in ("str", "string", "utf8", "large_string", "large_utf8", "text", "object"):
        return "str"
    if t in ("bool", "boolean"):
        return "bool"
    return t


def type_fits(actual: str, expected: str) -> bool:
    """Whether a column of type `actual` satisfies `expected`: same family (int64 fits int),
    whole numbers where floats are expected, and an all-empty sampled column fits anything."""
    if actual.strip().lower() == expected.strip().lower():
        return True
    have, want = type_family(actual), type_family(expected)
    return have == want or have == "null" or (have, want) == ("int", "float")


# -- command ------------------------------------------------------------------------------------
class _Deadline(threading.Event):
    """The cancel flag the local executor polls: the run's own, or the check's timeout."""

    def __init__(self, run_cancel: threading.Event, seconds: float | None) -> None:
        super().__init__()
        self.run_cancel = run_cancel
        self.at = None if seconds is None else time.monotonic() + seconds
        self.expired = False

    def is_set(self) -> bool:
        if self.at is not None and time.monotonic() >= self.at:
            self.expired = True
            return True
        return self.run_cancel.is_set()


def command_check(
    project: Project,
    stage: Stage,
    check: Check,
    env: dict[str, str],
    log_dir: str,
    cancel: threading.Event,
    echo: Callable[[str], None] | None,
) -> tuple[bool, str]:
    """`sh -c CMD` on this host in the stage's working dir with the stage's environment (and
    REPRO_CHECK), in its own process group like a stage; exit code 0 passes."""
    from repro.execution.base import ExecContext, ExecRequest
    from repro.execution.local import LocalExecutor

    os.makedirs(log_dir, exist_ok=True)
    base = os.path.join(log_dir, f"{stage.name.replace('/', '_')}.check{check.index}")
    deadline = _Deadline(cancel, check.timeout)
    ctx = ExecContext(project.root, base + ".out", base + ".err", deadline, echo)
    req = ExecRequest(
        stage=stage.name,
        cmd=str(check.cmd),
        wdir=stage.wdir,
        env={**env, "REPRO_CHECK": check.name},
        seed=stage.seed,
    )
    if echo is not None:
        echo(f"Checking stage '{stage.name}' ({check.name}):\n> {check.cmd}\n")
    result = LocalExecutor().run(req, ctx)
    tail = _tail(ctx.stdout_path, ctx.stderr_path)
    if result.error:
        return False, f"its command could not start: {result.error}"
    if deadline.expired:
        return False, f"its command timed out after {check.timeout:g} s" + tail
    if result.exit_code != 0:
        return False, f"its command exited with code {result.exit_code}" + tail
    return True, "its command exited with code 0"


def _tail(*paths: str) -> str:
    """The last lines of the command's output (stdout, then stderr), indented on the lines
    after the message's first."""
    lines: list[str] = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                f.seek(max(0, os.path.getsize(p) - 64 * 1024))
                lines += f.read().decode(errors="replace").splitlines()
        except OSError:
            continue
    lines = [ln.rstrip() for ln in lines if ln.strip()][-TAIL_LINES:]
    text = "\n".join(f"  {ln}" for ln in lines)[-TAIL_CHARS:]
    return f"\n{text}" if text else ""


def _printable(text: str) -> str:
    """Output from a check's command may hold terminal escapes; records keep text only."""
    return _UNPRINTABLE.sub("?", text)
