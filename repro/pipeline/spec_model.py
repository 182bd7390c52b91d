"""The parsed pipeline (`Spec`, `Stage`, `Out`, ...), the bounds repro.yaml must keep, and the
problem list every part of the parser reports into.

Split from repro/pipeline/spec.py (which re-exports every name here): the rest of repro reads
these dataclasses; only the parser builds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TOP_KEYS = {"stages", "data", "seed", "image", "params"}
STAGE_KEYS = {
    "cmd",
    "deps",
    "params",
    "outs",
    "metrics",
    "wdir",
    "env",
    "image",
    "seed",
    "always_changed",
    "frozen",
    "environment",
    "network",
    "desc",
    "executor",
    "foreach",
    "matrix",
    "do",
}
OUT_FLAGS = {"cache", "persist"}
ENV_KEYS = {"python", "packages", "lockfiles", "platform"}
DEFAULT_PARAMS = "params.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-@]*$")
_VAR_RE = re.compile(r"\$\{\s*([A-Za-z0-9_.]+)\s*\}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Bounds that keep a hostile or mistaken repro.yaml from hanging repro (see specio for the file's
# own bounds). PYTHONHASHSEED accepts exactly this seed range; Linux refuses one argument over
# 128 KiB, and a command that long belongs in a script file anyway.
MAX_SEED = 2**32 - 1
MAX_CMD_BYTES = 100_000
MAX_STAGES = 10_000
MAX_STAMPED_VALUES = 1_000_000  # foreach/matrix: stages stamped x values in the stamped body
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Out:
    path: str  # project-relative POSIX
    cache: bool = True
    persist: bool = False
    metric: bool = False


@dataclass(frozen=True)
class ParamRef:
    file: str  # project-relative POSIX
    key: str  # dotted


@dataclass(frozen=True)
class EnvironmentSpec:
    """What of the software environment counts in the signature."""

    python: bool = False
    platform: bool = False
    packages: tuple[str, ...] = ()
    all_packages: bool = False
    lockfiles: tuple[str, ...] = ()
    # `python: PATH`: the interpreter to fingerprint (project-relative POSIX, or absolute);
    # None: the command's own interpreter, found on the stage's PATH.
    interpreter: str | None = None


@dataclass
class Stage:
    name: str
    cmd: str
    wdir: str = "."
    deps: list[str] = field(default_factory=list)
    params: list[ParamRef] = field(default_factory=list)
    outs: list[Out] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    image: str | None = None
    seed: int = 0
    always_changed: bool = False
    frozen: bool = False
    network: bool = False
    environment: EnvironmentSpec | None = None
    desc: str | None = None
    line: int = 0
    executor: str | None = None  # the executor's name; None: chosen by --executor, config, image

    @property
    def out_paths(self) -> list[str]:
        return [o.path for o in self.outs]


@dataclass
class Spec:
    path: str
    stages: dict[str, Stage]
    data: list[str]
    seed: int | None = None

    def output_owner(self, rel: str) -> str | None:
        """The stage whose output is `rel`, contains it, or lies inside it."""
        for st in self.stages.values():
            for o in st.outs:
                if overlaps(o.path, rel):
                    return st.name
        return None


def overlaps(a: str, b: str) -> bool:
    return a == b or b.startswith(a + "/") or a.startswith(b + "/")


def seed_problem(value: Any) -> str | None:
    """Why `value` cannot be a seed, or None: an integer in [0, 2^32-1], the range
    PYTHONHASHSEED (which every stage's process gets) accepts."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "must be an integer"
    if not 0 <= value <= MAX_SEED:
        return f"{value} is out of range: a seed is between 0 and {MAX_SEED}"
    return None


def derive_seed(pipeline_seed: int | None, name: str) -> int:
    """A stage's seed when it sets none: from the pipeline seed and the stage name (stable
    across machines; 31 bits so every library accepts it)."""
    import xxhash

    return xxhash.xxh3_64_intdigest(f"{pipeline_seed or 0}:{name}".encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
class _Problems:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []

    def add(
        self,
        node: Any,
        msg: str,
        stage: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        if line is None:
            line = _line(node)
        where = self.file + (f", line {line}" if line else "")
        what = []
        if stage:
            what.append(f"stage '{stage}'")
        if key:
            what.append(f"key '{key}'")
        self.items.append(f"{where}: {', '.join(what) + ': ' if what else ''}{msg}")


def _line(node: Any, key: Any = None) -> int:
    lc = getattr(node, "lc", None)
    if lc is None:
        return 0
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except Exception:
        return 0
