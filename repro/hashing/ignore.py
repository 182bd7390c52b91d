"""Ignore rules: `.reproignore` files (gitignore syntax) plus built-in defaults.

A file a rule ignores is not part of any folder's tree: hashing, status, `repro add` and checkout
all see the folder without it. Rules work as in git: a `.reproignore` in the project root or in
any folder below it applies to that folder's subtree, patterns are relative to the folder holding
the file, the last matching pattern wins, a deeper file overrides a shallower one, `!` re-includes,
and nothing inside an ignored folder can be re-included (the folder is not walked).

The defaults are the lowest layer, so a project can re-include one with `!`. They are matched by
name without `pathspec` (16 ms to import, a third of a no-op run's start-up); `pathspec` is
imported only when a `.reproignore` file exists.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Any

IGNORE_FILE = ".reproignore"

# Folders that tools write beside code and data, and files editors and file browsers leave.
DEFAULT_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".repro",
        "__pycache__",
        ".ipynb_checkpoints",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
    }
)
OWNED_DIRS = frozenset({".git", ".repro"})  # git's and repro's own: never part of a folder
DEFAULT_FILES = (
    "*.pyc",
    "*.pyo",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "*.swp",
    "*.swo",
    "*~",
    ".#*",
)
# The same rules in gitignore syntax (what `pathspec` would be given; tests check they agree).
DEFAULT_RULES = tuple(f"{d}/" for d in sorted(DEFAULT_DIRS)) + DEFAULT_FILES
_DEFAULT_RE = re.compile("|".join(fnmatch.translate(p) for p in DEFAULT_FILES))
RULES_VERSION = "1:" + ",".join(DEFAULT_RULES)


def default_files_re() -> re.Pattern[str]:
    """The built-in file rules as one regex (the walk tests names against it inline)."""
    return _DEFAULT_RE


def default_ignored(name: str, is_dir: bool) -> bool:
    """Whether the built-in rules ignore an entry called `name` (at any depth)."""
    if is_dir and name in DEFAULT_DIRS:
        return True
    return _DEFAULT_RE.match(name) is not None  # one regex: 100k files cost ~30 ms, not 0.3 s


@dataclass(frozen=True)
class _Layer:
    base: str  # "" or "sub/dir/": where the `.reproignore` lies, relative to the walk's base
    spec: Any  # pathspec.GitIgnoreSpec


# Bounds on a rule file (it may come with `git pull`): pathspec turns each pattern into a
# backtracking regex, so `*a*a*a*a*a*ab` takes 10 s on one 100-character name and
# `a/**/a/**/a/**/b` seconds on one deep path; 50k patterns cost 10 ms a file. Real files hold
# a few hundred patterns with one or two wildcards each. A pattern with two `*` runs in one name
# (`*a*b`) or two `**` costs ~0.5 ms on a 255-character name, so only a few of those are allowed.
MAX_PATTERNS = 2000
MAX_PATTERN_CHARS = 1000
MAX_STARS_PER_PART = 2  # runs of `*` inside one path component (3 cost ~20 ms a long name)
MAX_DOUBLE_STARS = 2  # `**` components in one pattern
MAX_COMPLEX = 50  # patterns at either bound above


def _pattern_problem(line: str) -> tuple[str | None, bool]:
    """Why a pattern is refused (it could take minutes to match) or None, and whether it is
    at a bound (costly enough that only MAX_COMPLEX such patterns are allowed)."""
    if len(line) > MAX_PATTERN_CHARS:
        return f"is over {MAX_PATTERN_CHARS} characters", True
    parts = line.strip().lstrip("!").split("/")
    runs = [p for i, p in enumerate(parts) if p == "**" and (i == 0 or parts[i - 1] != "**")]
    if len(runs) > MAX_DOUBLE_STARS:  # `**/**` is one `**`
        return f"has more than {MAX_DOUBLE_STARS} '**' components", True
    stars = max((len(re.findall(r"\*+", p)) for p in parts if p != "**"), default=0)
    if stars > MAX_STARS_PER_PART:
        return f"has more than {MAX_STARS_PER_PART} '*' wildcards in one name", True
    return None, len(runs) == MAX_DOUBLE_STARS or stars == MAX_STARS_PER_PART


def _compile(text: str, source: str = IGNORE_FILE) -> Any:
    from repro.errors import UntrustedInputError

    lines = text.splitlines()
    patterns = complex_ = 0
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        patterns += 1
        if patterns > MAX_PATTERNS:
            raise UntrustedInputError(
                source, "pattern count", patterns, f"is over {MAX_PATTERNS} patterns"
            )
        problem, costly = _pattern_problem(line)
        complex_ += costly
        if problem is None and complex_ > MAX_COMPLEX:
            problem = f"is the {MAX_COMPLEX + 1}th pattern with two '*' in a name or two '**'"
        if problem:
            raise UntrustedInputError(
                source, f"line {n}", line, f"{problem} (a pattern that could take minutes)"
            )
    try:
        return _from_lines(lines)
    except Exception:  # pathspec raises ValueError, re.error and errors of its own
        for n, line in enumerate(lines, 1):
            try:
                _from_lines([line])
            except Exception as exc:
                raise UntrustedInputError(
                    source, f"line {n}", line, f"is not a valid pattern ({exc})"
                ) from None
        raise


def _from_lines(lines: list[str]) -> Any:
    import warnings

    import pathspec

    with warnings.catch_warnings():  # re's "possible nested set" is no concern of the user's
        warnings.simplefilter("ignore")
        return pathspec.GitIgnoreSpec.from_lines(lines)


@dataclass
class Matcher:
    """The rules in force in one folder: the defaults plus every `.reproignore` above it.

    `sources` collects (path, content hash) of every rule file read during one walk: their
    identity goes into the folder's stat-cache fingerprint, so editing one re-hashes."""

    layers: tuple[_Layer, ...] = ()
    sources: list[tuple[str, str]] = field(default_factory=list)

    def ignored(self, rel: str, name: str, is_dir: bool) -> bool:
        """Whether `rel` (relative to the project root, POSIX) is ignored. `.git` and `.repro`
        always are: no rule file (it may come with `git pull`) re-includes them with `!`."""
        if is_dir and name in OWNED_DIRS:
            return True
        for layer in reversed(self.layers):
            if layer.base and not rel.startswith(layer.base):
                continue
            sub = rel[len(layer.base) :] + ("/" if is_dir else "")
            res = layer.spec.check_file(sub).include
            if res is not None:
                return bool(res)
        return default_ignored(name, is_dir)

    def enter(self, folder: str, rel_prefix: str) -> Matcher:
        """The matcher for the folder `folder` (absolute) whose path relative to the project
        root is `rel_prefix` ("" or ending in "/"): adds its own `.reproignore`, if any."""
        text = _read_rules(os.path.join(folder, IGNORE_FILE), rel_prefix + IGNORE_FILE)
        if text is None:
            return self
        self.sources.append((rel_prefix + IGNORE_FILE, _digest(text)))
        spec = _compile(text, rel_prefix + IGNORE_FILE)
        return Matcher((*self.layers, _Layer(rel_prefix, spec)), self.sources)

    def identity(self) -> str:
        """What the rules of one walk were: changes when a default or any rule file does."""
        if not self.sources:
            return RULES_VERSION
        return RULES_VERSION + "|" + ";".join(f"{p}={h}" for p, h in sorted(set(self.sources)))


def _digest(text: str) -> str:
    import xxhash

    return xxhash.xxh3_64_hexdigest(text.encode())


def _read_rules(path: str, label: str = IGNORE_FILE) -> str | None:
    """The text of a rule file, or None when there is none (a folder, a dangling link …)."""
    from repro.readfile import read_bytes

    if os.path.isdir(path):
        return None
    try:  # opened without blocking: a FIFO named `.reproignore` is an error, not a hang
        data = read_bytes(path, label, 1 << 20)  # 1 MiB of patterns is far past any real file
    except (FileNotFoundError, NotADirectoryError):
        return None
    return data.decode("utf-8", "replace")


class IgnoreRules:
    """The ignore rules of a project rooted at `root` (or, with None, the defaults alone with
    each walked folder as its own base)."""

    def __init__(self, root: str | None) -> None:
        self.root = os.path.abspath(root) if root else None

    def rel_of(self, path: str) -> str | None:
        """`path` relative to the root as "a/b" ("" for the root), or None when outside it."""
        if self.root is None:
            return None
        ap = os.path.abspath(path)
        if ap == self.root:
            return ""
        if not ap.startswith(self.root.rstrip(os.sep) + os.sep):
            return None
        return os.path.relpath(ap, self.root).replace(os.sep, "/")

    def matcher_above(self, folder: str) -> tuple[Matcher, str]:
        """The rules in force for the entries of `folder` before its own `.reproignore` is
        read, and `folder`'s path relative to the rules' base ("" or ending in "/")."""
        rel = self.rel_of(folder)
        m = Matcher()
        if not rel or self.root is None:
            return m, ""  # the root (or a folder outside any project) reads its own file
        m = m.enter(self.root, "")
        prefix = ""
        for part in rel.split("/")[:-1]:
            prefix += part + "/"
            m = m.enter(os.path.join(self.root, *prefix[:-1].split("/")), prefix)
        return m, rel + "/"

    def path_ignored(self, path: str) -> bool:
        """Whether a path the user names (`repro add PATH`) is one the rules ignore: itself or
        a folder holding it."""
        rel = self.rel_of(path)
        if not rel or self.root is None:
            return False
        parts = rel.split("/")
        m = Matcher().enter(self.root, "")
        prefix = ""
        for i, part in enumerate(parts):
            is_dir = i < len(parts) - 1 or os.path.isdir(path)
            if m.ignored(prefix + part, part, is_dir):
                return True
            prefix += part + "/"
            if i < len(parts) - 1:
                m = m.enter(os.path.join(self.root, *parts[: i + 1]), prefix)
        return False
