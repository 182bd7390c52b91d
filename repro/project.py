"""A repro project: its root, its `.repro/` folder, and the local cache and stat cache in it.

Everything that needs to know where things live on disk asks a `Project`.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from repro.canonical import use_hash
from repro.config import CONFIG_TEMPLATE, load_config
from repro.errors import NotAProjectError, PathError
from repro.hashing.engine import Hasher
from repro.hashing.state import StateDB
from repro.safety import Boundary
from repro.store.backend import LocalBackend
from repro.store.links import default_links
from repro.store.objects import ObjectStore

DOT = ".repro"
SPEC_FILE = "repro.yaml"
LOCK_FILE = "repro.lock"
DOT_GITIGNORE = (
    "/cache/\n/tmp/\n/state.db\n/state.db-*\n/state-*.db*\n/run.lock\n/saved.jsonl\n"
    "/events.jsonl\n/config.local.toml\n"
)
# The first line of a new repro.yaml: where its keys are documented (repro's own docs, no web
# address the project does not own) and the command that writes a stage.
EMPTY_SPEC = (
    "# repro pipeline: every key is in repro's docs/repro-yaml.md;"
    " 'repro stage add --help' writes a stage.\nstages: {}\n"
)


class Project:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(root)
        self.dot = os.path.join(self.root, DOT)
        if not os.path.isdir(self.dot):
            raise NotAProjectError(f"{self.root}: not a repro project (run 'repro init').")
        _check_dot_links(self.root, self.dot)
        use_hash(self.hash_name)

    # -- discovery ----------------------------------------------------------------------------
    @classmethod
    def find(cls, start: str | os.PathLike[str] | None = None) -> Project:
        here = os.path.realpath(start or os.getcwd())
        d = here
        while True:
            if os.path.isdir(os.path.join(d, DOT)):
                return cls(d)
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent
        raise NotAProjectError(
            f"{here}: no repro project here or above (run 'repro init' to make one)."
        )

    @classmethod
    def init(cls, root: str | os.PathLike[str] = ".", hash_name: str | None = None) -> Project:
        """Create `.repro/` (cache, config, ignore rules) and an empty `repro.yaml`. `hash_name`
        `blake3` makes a project whose cache may be shared with untrusted writers."""
        if hash_name is not None:
            use_hash(hash_name)  # refuses an unknown name or a missing extra before writing
        root = os.path.abspath(root)
        dot = os.path.join(root, DOT)
        os.makedirs(os.path.join(dot, "cache"), exist_ok=True)
        os.makedirs(os.path.join(dot, "tmp"), exist_ok=True)
        cfg = os.path.join(dot, "config.toml")
        if not os.path.exists(cfg):
            with open(cfg, "w") as f:
                f.write(CONFIG_TEMPLATE)
                if hash_name not in (None, "xxh3"):
                    f.write(f'\n[core]\nhash = "{hash_name}"\n')
        with open(os.path.join(dot, ".gitignore"), "w") as f:
            f.write(DOT_GITIGNORE)
        open(os.path.join(dot, "run.lock"), "a").close()
        spec = os.path.join(root, SPEC_FILE)
        if not os.path.exists(spec):
            with open(spec, "w") as f:
                f.write(EMPTY_SPEC)
        project = cls(root)
        project.state  # noqa: B018 - creates state.db
        return project

    # -- places -------------------------------------------------------------------------------
    @property
    def spec_path(self) -> str:
        return os.path.join(self.root, SPEC_FILE)

    @property
    def lock_path(self) -> str:
        return os.path.join(self.root, LOCK_FILE)

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.dot, "tmp")

    @cached_property
    def config(self) -> dict[str, Any]:
        # Remembered by the stat of both config files, as repro.yaml is: a no-op `repro run` or
        # `repro status` does not import a TOML parser (~2 ms) to read an unchanged config. Both
        # are deps too, so a file written within the last 2 s is read again next time.
        from repro.config import local_path
        from repro.pipeline.parsecache import cached_parse

        path = os.path.join(self.dot, "config.toml")
        files = [path, local_path(path)]
        return cached_parse(
            self.tmp_dir, path, lambda: load_config(path), "config", lambda _: files
        )

    @property
    def config_path(self) -> str:
        return os.path.join(self.dot, "config.toml")

    @property
    def hash_name(self) -> str:
        """The content hash: `[core] hash` in config, `xxh3` unless the project chose `blake3`."""
        name = (self.config.get("core") or {}).get("hash", "xxh3")
        return name if isinstance(name, str) else repr(name)

    @cached_property
    def state(self) -> StateDB:
        # The stat cache remembers hashes: one file per algorithm, so they never mix.
        name = "state.db" if self.hash_name == "xxh3" else f"state-{self.hash_name}.db"
        return StateDB(os.path.join(self.dot, name))

    @cached_property
    def boundary(self) -> Boundary:
        """Where the project ends on disk: every write into the workspace is checked with it."""
        return Boundary(self.root)

    @cached_property
    def hasher(self) -> Hasher:
        follow = bool((self.config.get("core") or {}).get("follow_symlinks", False))
        from repro.hashing.ignore import IgnoreRules

        inside = None if follow else self.boundary.root_real
        return Hasher(self.state, inside=inside, ignore=IgnoreRules(self.root))

    @cached_property
    def cache(self) -> ObjectStore:
        links = tuple(self.config.get("cache", {}).get("link", default_links()))
        backend = LocalBackend(os.path.join(self.dot, "cache"), tmp=self.tmp_dir)
        return ObjectStore(backend, self.state, links, name="local cache")

    # -- paths --------------------------------------------------------------------------------
    def rel(self, path: str | os.PathLike[str], what: str = "path") -> str:
        """The POSIX path of `path` relative to the root; refuses paths outside the project or
        inside `.repro/`."""
        p = os.path.abspath(os.path.join(os.getcwd(), path))
        rel = os.path.relpath(p, self.root)
        if rel == "." or rel.startswith(".."):
            raise PathError(f"{os.fspath(path)}: {what} is outside the project ({self.root}).")
        rel = rel.replace(os.sep, "/")
        if rel == DOT or rel.startswith(DOT + "/"):
            raise PathError(f"{os.fspath(path)}: {what} lies inside repro's own folder .repro/.")
        return rel

    def abs(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))


def _check_dot_links(root: str, dot: str) -> None:
    """Refuse a `.repro/` entry (cache, tmp, state.db, run.lock …) that is a symlink leading out
    of the project: a `.repro/` entry can be committed to git, and repro writes through them
    all. One `scandir` of a handful of entries; links that stay inside are fine."""
    from repro.errors import UntrustedInputError

    root_real = os.path.realpath(root)
    with os.scandir(dot) as it:
        for entry in it:
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not real.startswith(root_real + os.sep):
                    raise UntrustedInputError(
                        f"{DOT}/{entry.name}",
                        "symlink to",
                        real,
                        "leads out of the project (repro writes there); remove the link. A "
                        "cache elsewhere is a remote: 'repro remote add'",
                    )
