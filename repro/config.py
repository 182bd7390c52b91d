"""`.repro/config.toml`: cache link methods, remotes, diff policy. Committed to git, so it never
holds credentials (those come from the environment and the usual cloud config files)."""

from __future__ import annotations

import os
from typing import Any

from repro.errors import SpecError

CONFIG_TEMPLATE = """\
# repro project configuration (committed to git; never put credentials here).
[cache]
# How outputs are put into the workspace from the cache, fastest first.
# Default: ["reflink", "hardlink", "copy"]; as root ["reflink", "copy"], since root can write
# into a read-only hardlinked object and so change the cache.
# link = ["reflink", "hardlink", "copy"]
"""


LINK_METHODS = ("reflink", "hardlink", "copy")
MAX_CONFIG_BYTES = 1 << 20


def load_config(path: str) -> dict[str, Any]:
    """The config as a dict ({} when there is none). It is committed to git, so it can arrive
    broken or hostile: not TOML, not UTF-8, a folder, nested too deep, or known keys of the wrong
    type; each is refused with one sentence naming the file and key."""
    import tomllib

    from repro.pipeline.specio import decode_text, read_bytes

    label = ".repro/config.toml"
    try:
        text = decode_text(read_bytes(path, label, MAX_CONFIG_BYTES), label)
    except FileNotFoundError:
        return {}
    try:
        config = tomllib.loads(text)
    except RecursionError:
        raise SpecError(f"{label}: nested too deeply to read.") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise SpecError(f"{label}: not valid TOML ({exc}).") from None
    problem = config_problem(config)
    if problem:
        raise SpecError(label, problem)
    return config


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# (section, key) -> (check, what it must be). Unknown sections and keys are left alone, so an
# older repro reads a newer project's config.
_KEY_TYPES: dict[tuple[str, str], tuple[Any, str]] = {
    ("core", "remote"): (lambda v: isinstance(v, str), "a remote name"),
    ("core", "follow_symlinks"): (lambda v: isinstance(v, bool), "true or false"),
    ("cache", "link"): (
        lambda v: _is_str_list(v) and all(m in LINK_METHODS for m in v),
        f"a list of link methods ({', '.join(LINK_METHODS)})",
    ),
    ("diff", "severity"): (
        lambda v: isinstance(v, dict) and all(x in ("major", "minor") for x in v.values()),
        "a table of change kinds to 'major' or 'minor'",
    ),
    ("diff", "metric_threshold"): (_is_number, "a number"),
    ("gc", "keep_saved_days"): (lambda v: _is_number(v) and v >= 0, "a number of days >= 0"),
    ("observe", "use"): (_is_str_list, "a list of observer names"),
    ("run", "executor"): (lambda v: isinstance(v, str), "an executor name"),
}
_TABLES = ("core", "cache", "remote", "diff", "gc", "observe", "run")


def config_problem(config: dict[str, Any]) -> str | None:
    """Why the known parts of `config` have the wrong shape, or None."""
    for section in _TABLES:
        if section in config and not isinstance(config[section], dict):
            return f"[{section}] must be a table"
    link = (config.get("cache") or {}).get("link")
    if isinstance(link, list) and "symlink" in link:
        # A symlinked output would let a stage or an editor write into the cache itself.
        return "key 'cache.link': 'symlink' is not supported; use reflink, hardlink or copy"
    for (section, key), (ok, what) in _KEY_TYPES.items():
        table = config.get(section) or {}
        if key in table and not ok(table[key]):
            return f"key '{section}.{key}' must be {what}, not {table[key]!r:.100}"
    for name, remote in (config.get("remote") or {}).items():
        if not isinstance(remote, dict):
            return f"[remote.{name}] must be a table with a 'url'"
        if "url" in remote and not isinstance(remote["url"], str):
            return f"key 'remote.{name}.url' must be a string"
        if "options" in remote and not isinstance(remote["options"], dict):
            return f"key 'remote.{name}.options' must be a table"
    alerts = config.get("alerts")
    if alerts is not None and not (
        isinstance(alerts, list) and all(isinstance(a, dict) for a in alerts)
    ):
        return "'alerts' must be [[alerts]] tables"
    return None


def save_config(path: str, config: dict[str, Any]) -> None:
    import tomli_w

    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        tomli_w.dump(config, f)
    os.replace(tmp, path)
