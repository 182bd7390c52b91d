"""`.repro/config.toml`: cache link methods, remotes, diff policy. Committed to git, so it never
holds credentials (those come from the environment and the usual cloud config files)."""

from __future__ import annotations

import os
from typing import Any

from repro.errors import SpecError

CONFIG_TEMPLATE = """\
# repro project configuration, committed to git: never put credentials here. Secrets and
# per-machine settings go in .repro/config.local.toml (git-ignored; its keys win over these).
# Every key and its default: repro's docs/cli.md, "Configuration".
[cache]
# How outputs are put into the workspace from the cache, fastest first.
# Default: ["reflink", "hardlink", "copy"]; as root ["reflink", "copy"], since root can write
# into a read-only hardlinked object and so change the cache.
# link = ["reflink", "hardlink", "copy"]
"""


LINK_METHODS = ("reflink", "hardlink", "copy")
MAX_CONFIG_BYTES = 1 << 20


LOCAL_NAME = "config.local.toml"


def load_config(path: str) -> dict[str, Any]:
    """The config as a dict ({} when there is none), with `.repro/config.local.toml` (per
    machine, git-ignored) laid over `.repro/config.toml` table by table."""
    config = _read_config(path, ".repro/config.toml")
    if os.path.basename(path) == "config.toml":
        local = _read_config(local_path(path), f".repro/{LOCAL_NAME}")
        if local:
            config = merged(config, local)
            problem = config_problem(config)
            if problem:
                raise SpecError(f".repro/{LOCAL_NAME}", problem)
    return config


def local_path(path: str) -> str:
    """`.repro/config.local.toml` beside the committed `path`."""
    return os.path.join(os.path.dirname(path), LOCAL_NAME)


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: tables merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def read_config(path: str) -> dict[str, Any]:
    """One config file alone (`.repro/config.toml` or `.repro/config.local.toml`), checked."""
    return _read_config(path, f".repro/{os.path.basename(path)}")


def edit_problem(data: dict[str, Any], other: dict[str, Any], local: bool) -> str | None:
    """Why a would-be config file (`repro config --set/--unset`) is wrong, or None: checked
    alone and merged with the other file; a section repro does not know is refused (on load it
    is left alone, for a newer repro's sake, but repro never writes one)."""
    for section in data:
        if section not in (*_TABLES, "alerts"):
            return f"unknown section '{str(section)[:60]}' (known: {', '.join(_TABLES)})"
    problem = config_problem(data)
    if problem:
        return problem
    return config_problem(merged(data, other) if not local else merged(other, data))


def _read_config(path: str, label: str) -> dict[str, Any]:
    """One config file. It is committed to git, so it can arrive broken or hostile: not TOML,
    not UTF-8, a folder, nested too deep, or known keys of the wrong type; each is refused with
    one sentence naming the file and key."""
    import tomllib

    from repro.pipeline.specio import decode_text, read_bytes

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


# (section, key) -> (check, what it must be). An unknown key in a known section is an error
# (with a did-you-mean: a misspelt `cache.links` must not be silently ignored); an unknown
# section is left alone, so an older repro reads a newer project's config, but `repro config
# --set` refuses to write one.
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
    ("dask", "scheduler"): (
        lambda v: isinstance(v, str) and bool(v.strip()),
        "a scheduler address (tcp://host:8786)",
    ),
    ("dask", "workers"): (lambda v: _int_at_least(v, 1), "a number of workers >= 1"),
    ("dask", "timeout"): (lambda v: _is_number(v) and v > 0, "seconds > 0"),
}
_TABLES = ("core", "cache", "remote", "diff", "gc", "observe", "run", "dask")
# Keys of the known sections checked elsewhere (tables of their own, or read by one module).
_OTHER_KEYS = {
    "core": ("hash",),
    "diff": ("metrics", "failure_rate", "code"),
}
# Sections whose sub-tables are named by the user (remotes) or by plugins (observers); in
# `[run]`, a table is an executor's own (`[run.myexec]`), any other key is checked.
_OPEN_TABLES = ("remote", "observe")
_EXECUTOR_TABLES = ("run",)


def known_keys(section: str) -> list[str]:
    """The keys `[section]` may hold, for did-you-mean and `repro config`."""
    keys = [k for s, k in _KEY_TYPES if s == section]
    return sorted({*keys, *_OTHER_KEYS.get(section, ())})


def unknown_key_problem(config: dict[str, Any]) -> str | None:
    """An unknown key in a known closed section (`[cache] links = ...`), with a did-you-mean."""
    for section in _TABLES:
        table = config.get(section)
        if section in _OPEN_TABLES or not isinstance(table, dict):
            continue
        known = known_keys(section)
        for key, value in table.items():
            if section in _EXECUTOR_TABLES and isinstance(value, dict):
                continue
            if key not in known:
                import difflib  # only for a key that is wrong: every command reads the config

                near = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (known: {', '.join(known)})"
                if near:
                    hint = f" (did you mean '{section}.{near[0]}'?)"
                return f"unknown key '{section}.{str(key)[:60]}'{hint}"
    return None


def _is_http_url(v: Any) -> bool:
    return isinstance(v, str) and v.startswith(("http://", "https://")) and len(v) > 8


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


# (observer, key) -> (check, what it must be), for `[observe.prometheus]` and `[observe.mlflow]`
# (repro/integrations). Paths and URLs here come from a committed file: a machine-level
# destination (any path, a file: tracking store) comes from the environment instead.
_OBSERVER_KEYS: dict[tuple[str, str], tuple[Any, str]] = {
    ("prometheus", "textfile"): (
        lambda v: _is_text(v) and not v.startswith("/") and ".." not in v.split("/"),
        "a path relative to the project (REPRO_PROMETHEUS_TEXTFILE takes an absolute one)",
    ),
    ("prometheus", "pushgateway"): (_is_http_url, "an http:// or https:// URL"),
    ("prometheus", "job"): (_is_text, "a job name"),
    ("prometheus", "timeout"): (lambda v: _is_number(v) and 0 < v <= 60, "seconds, 0 to 60"),
    ("mlflow", "tracking_uri"): (
        lambda v: _is_http_url(v) or (isinstance(v, str) and v.split("://")[0] == "databricks"),
        "an http(s):// URL or 'databricks' (a local store: set MLFLOW_TRACKING_URI)",
    ),
    ("mlflow", "experiment"): (_is_text, "an experiment name"),
    ("mlflow", "timeout"): (lambda v: _is_number(v) and 0 < v <= 600, "seconds, 0 to 600"),
}


def observer_problem(observe: dict[str, Any]) -> str | None:
    """Why `[observe.prometheus]` or `[observe.mlflow]` is malformed, or None."""
    for name in ("prometheus", "mlflow"):
        if name in observe and not isinstance(observe[name], dict):
            return f"key 'observe.{name}' must be a table"
    for (name, key), (ok, what) in _OBSERVER_KEYS.items():
        table = observe.get(name) or {}
        if key in table and not ok(table[key]):
            shown = table[key]
            if key in ("pushgateway", "tracking_uri") and isinstance(shown, str):
                from repro.alerts import redacted  # a URL's user part or path may be a secret

                shown = redacted(shown)
            return f"key 'observe.{name}.{key}' must be {what}, not {shown!r:.100}"
    return None


def config_problem(config: dict[str, Any]) -> str | None:
    """Why the known parts of `config` have the wrong shape, or None."""
    for section in _TABLES:
        if section in config and not isinstance(config[section], dict):
            return f"[{section}] must be a table"
    problem = unknown_key_problem(config)
    if problem:
        return problem
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
    problem = observer_problem(config.get("observe") or {})
    if problem:
        return problem
    problem = diff_problem(config.get("diff") or {})
    if problem:
        return problem
    alerts = config.get("alerts")
    if alerts is not None and not (
        isinstance(alerts, list) and all(isinstance(a, dict) for a in alerts)
    ):
        return "'alerts' must be [[alerts]] tables"
    for i, entry in enumerate(alerts or [], 1):
        problem = _alert_problem(entry)
        if problem:
            return f"[[alerts]] entry {i}: {problem}"
    return None


def _alert_problem(entry: dict[str, Any]) -> str | None:
    """Why one `[[alerts]]` table is wrong (DESIGN.md, "Alerts"), or None. Its URL is committed
    to git, so only http(s) is taken; a key is never in the file, only `secret_env`, the name
    of the environment variable that holds it."""
    import re

    from repro.alerts import KINDS, MAX_RETRIES, ON_VALUES, command_argv, redacted, url_problem

    on, kind = entry.get("on"), entry.get("kind")
    if on not in ON_VALUES:
        return f"key 'on' must be one of {', '.join(ON_VALUES)}, not {on!r:.100}"
    if kind not in KINDS:
        return f"key 'kind' must be one of {', '.join(KINDS)}, not {kind!r:.100}"
    if kind == "command":
        cmd = entry.get("command")
        if not (isinstance(cmd, str) or _is_str_list(cmd)) or not command_argv(cmd):
            return "key 'command' must be a program and its arguments (a string or a list)"
        if "url" in entry:
            return "key 'url' does not go with kind 'command'"
    else:
        problem = url_problem(entry.get("url"))
        if problem:
            return f"key 'url' {redacted(entry.get('url'))!r:.100} {problem}"
        if "command" in entry:
            return f"key 'command' does not go with kind '{kind}'"
    env = entry.get("secret_env")
    if env is not None and kind != "webhook":
        return "key 'secret_env' signs webhooks only (kind 'webhook')"
    if env is not None and not (isinstance(env, str) and re.fullmatch(r"[A-Za-z_]\w*", env)):
        return f"key 'secret_env' must name an environment variable, not {env!r:.100}"
    timeout = entry.get("timeout", 1)
    if not _is_number(timeout) or not 0 < timeout <= 300:
        return f"key 'timeout' must be a number of seconds (0 to 300), not {timeout!r:.100}"
    retries = entry.get("retries", 0)
    if not (isinstance(retries, int) and not isinstance(retries, bool)):
        return f"key 'retries' must be a whole number, not {retries!r:.100}"
    if not 0 <= retries <= MAX_RETRIES:
        return f"key 'retries' must be 0 to {MAX_RETRIES}, not {retries}"
    return None


METRIC_DIRECTIONS = ("drop", "rise")


def flatten_metric_rules(table: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """`[diff.metrics]` as flat metric names -> rules. An unquoted dotted TOML key
    (`eval.acc = {...}`) arrives as nested tables; it is joined back into the name diff shows
    (to a depth of 32: deeper is taken as a rule, and refused as one)."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        nested = isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values())
        if nested and depth < 32:
            out.update(flatten_metric_rules(v, name, depth + 1))
        else:
            out[name] = v
    return out


def metric_limit(v: Any) -> tuple[float, bool] | None:
    """(amount, relative) of a metric rule's limit (`0.02` or `"2%"`), or None if malformed."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return (float(v), False) if v >= 0 else None
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            pct = float(v.strip()[:-1])
        except ValueError:
            return None
        return (pct / 100.0, True) if pct >= 0 else None
    return None


def _int_at_least(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def diff_problem(diff: dict[str, Any]) -> str | None:
    """Why the change policy's tables (`[diff.metrics]`, `[diff.failure_rate]`, `[diff.code]`)
    are malformed, or None."""
    for key in ("metrics", "failure_rate", "code"):
        if key in diff and not isinstance(diff[key], dict):
            return f"key 'diff.{key}' must be a table"
    for name, rule in flatten_metric_rules(diff.get("metrics") or {}).items():
        where = f"key 'diff.metrics.{name[:100]!s}'"
        if not isinstance(rule, dict) or not rule:
            return f'{where} must be a table such as {{ drop = 0.02 }} or {{ rise = "5%" }}'
        for direction, limit in rule.items():
            if direction not in METRIC_DIRECTIONS:
                return f"{where}: {direction[:40]!r} is not a direction (use drop or rise)"
            if metric_limit(limit) is None:
                return (
                    f"{where}: {direction} must be a number >= 0 or a percentage such as "
                    f'"2%", not {limit!r:.60}'
                )
    fr = diff.get("failure_rate") or {}
    if fr and not ("runs" in fr and "max" in fr):
        return "key 'diff.failure_rate' needs both 'runs' (a count) and 'max' (a rate)"
    if "runs" in fr and not _int_at_least(fr["runs"], 1):
        return f"key 'diff.failure_rate.runs' must be a whole number >= 1, not {fr['runs']!r:.60}"
    if "max" in fr and not (_is_number(fr["max"]) and 0 <= fr["max"] <= 1):
        return f"key 'diff.failure_rate.max' must be a rate from 0 to 1, not {fr['max']!r:.60}"
    lines = (diff.get("code") or {}).get("major_lines")
    if lines is not None and not _int_at_least(lines, 0):
        return f"key 'diff.code.major_lines' must be a whole number >= 0, not {lines!r:.60}"
    return None


def save_config(path: str, config: dict[str, Any]) -> None:
    """Write the committed config. `config` may be the merged view (`Project.config`): what
    only `config.local.toml` set is taken out again, so a per-machine secret never lands in
    the file git commits."""
    import tomli_w

    local = _read_config(local_path(path), f".repro/{LOCAL_NAME}")
    if local:
        config = _without_local(config, local, _read_config(path, ".repro/config.toml"))

    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        tomli_w.dump(config, f)
    os.replace(tmp, path)


def _without_local(config: dict[str, Any], local: dict[str, Any], base: dict[str, Any]) -> dict:
    """`config` with each value that came from `local` put back to `base`'s (or dropped)."""
    out = dict(config)
    for k, v in local.items():
        if k not in out:
            continue
        if isinstance(v, dict) and isinstance(out[k], dict):
            sub = base.get(k) if isinstance(base.get(k), dict) else {}
            out[k] = _without_local(out[k], v, sub)
            if not out[k] and k not in base:
                del out[k]
        elif out[k] == v:
            if k in base:
                out[k] = base[k]
            else:
                del out[k]
    return out
