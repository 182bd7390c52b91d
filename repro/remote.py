"""Remotes: named fsspec stores with the cache's layout, configured in `.repro/config.toml`.

`[remote.NAME] url = "s3://bucket/prefix"` with `[remote.NAME.options]` passed to fsspec as
storage options (`endpoint_url`, `profile`, `region_name` …); `[core] remote = NAME` names the
default. Credentials never go here: they come from the environment and the usual cloud config
files. Errors from a remote become one sentence naming the remote and what to check.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from repro.config import save_config
from repro.errors import NotFoundError, RemoteError, ReproError, UsageError, first_line
from repro.project import Project
from repro.store.objects import ObjectStore

T = TypeVar("T")
EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
}


def default_remote_name(project: Project) -> str | None:
    return (project.config.get("core") or {}).get("remote")


def remote_config(project: Project, name: str) -> dict[str, Any]:
    remotes = project.config.get("remote") or {}
    if name not in remotes:
        raise NotFoundError(
            "remote", name, where=".repro/config.toml", hint="see 'repro remote list'"
        )
    return remotes[name]


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def add_remote(
    project: Project,
    name: str,
    url: str,
    default: bool = False,
    options: list[str] | None = None,
    force: bool = False,
) -> None:
    cfg = dict(project.config)
    remotes = dict(cfg.get("remote") or {})
    if name in remotes and not force:
        raise UsageError(f"remote '{name}' exists already (use --force to replace it).")
    opts = {}
    for item in options or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-o {item!r}: options are KEY=VALUE.")
        if key.lower() in (
            "key",
            "secret",
            "token",
            "password",
            "aws_secret_access_key",
            "secret_access_key",
            "account_key",
            "sas_token",
        ):
            raise UsageError(
                f"-o {key}: credentials do not belong in .repro/config.toml (it is "
                "committed to git); use environment variables or a cloud profile."
            )
        opts[key] = _coerce(value)
    entry: dict[str, Any] = {"url": url}
    if opts:
        entry["options"] = opts
    remotes[name] = entry
    cfg["remote"] = remotes
    if default or not (cfg.get("core") or {}).get("remote"):
        cfg["core"] = {**(cfg.get("core") or {}), "remote": name}
    save_config(project.config_path, cfg)
    project.__dict__.pop("config", None)


def remove_remote(project: Project, name: str) -> None:
    cfg = dict(project.config)
    remotes = dict(cfg.get("remote") or {})
    if name not in remotes:
        raise NotFoundError("remote", name, where=".repro/config.toml")
    del remotes[name]
    cfg["remote"] = remotes
    if (cfg.get("core") or {}).get("remote") == name:
        core = dict(cfg["core"])
        del core["remote"]
        cfg["core"] = core
    save_config(project.config_path, cfg)
    project.__dict__.pop("config", None)


def set_default(project: Project, name: str) -> None:
    remote_config(project, name)
    cfg = dict(project.config)
    cfg["core"] = {**(cfg.get("core") or {}), "remote": name}
    save_config(project.config_path, cfg)
    project.__dict__.pop("config", None)


def list_remotes(project: Project) -> list[dict[str, Any]]:
    default = default_remote_name(project)
    return [
        {"name": n, "url": r.get("url"), "options": r.get("options", {}), "default": n == default}
        for n, r in (project.config.get("remote") or {}).items()
    ]


# A lookup that may fail (the run cache asked before running a stage locally) makes one
# attempt with a short connect timeout: an unreachable remote must not hold up a run.
QUICK_S3 = {"config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 1}}}


def open_remote(
    project: Project, name: str | None = None, quick: bool = False
) -> tuple[str, ObjectStore]:
    """The named (or default) remote as an object store; `quick`: one attempt, short connect
    timeout (for lookups that can do without the remote)."""
    name = name or default_remote_name(project)
    if not name:
        raise NotFoundError(
            "no remote given and no default remote set (repro remote add NAME URL --default)."
        )
    rc = remote_config(project, name)
    url = rc.get("url")
    if not isinstance(url, str) or not url:
        raise NotFoundError(f".repro/config.toml: remote '{name}' has no url.")
    from repro.store.backend import open_backend

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    options = dict(rc.get("options") or {})
    if quick and scheme in ("s3", "s3a"):
        config = {**QUICK_S3["config_kwargs"], **(options.get("config_kwargs") or {})}
        options = {**QUICK_S3, **options, "config_kwargs": config}
    try:
        backend = open_backend(url, options)
    except ImportError:
        from repro.errors import MissingExtraError

        raise MissingExtraError(f"remote '{name}' ({url})", EXTRAS.get(scheme, "all")) from None
    except ValueError as exc:
        raise RemoteError(name, url, str(exc)) from None
    with remote_errors(name, url):
        retry(backend.check, attempts=1 if quick else 4)
    return name, ObjectStore(backend, name=f"remote '{name}'")


@contextlib.contextmanager
def remote_errors(name: str, url: str) -> Iterator[None]:
    """Turn a backend's exceptions into one sentence about the remote."""
    try:
        yield
    except ReproError:
        raise
    except PermissionError as exc:
        raise RemoteError(
            name,
            url,
            f"access denied ({first_line(exc)}); check the credentials in your environment "
            "or cloud profile",
        ) from None
    except FileNotFoundError as exc:
        raise RemoteError(
            name, url, f"not found ({first_line(exc)}); does the bucket or folder exist?"
        ) from None
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise RemoteError(name, url, f"cannot be reached ({first_line(exc)})") from None
    except Exception as exc:  # botocore and friends raise their own classes
        text = first_line(exc)
        if any(
            w in text
            for w in (
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "Forbidden",
                "403",
            )
        ):
            raise RemoteError(name, url, f"access denied ({text}); check the credentials") from None
        if any(w in text for w in ("NoSuchBucket", "404")):
            raise RemoteError(name, url, f"the bucket does not exist ({text})") from None
        if any(w in text.lower() for w in ("connect", "endpoint", "timeout", "resolve")):
            raise RemoteError(name, url, f"cannot be reached ({text})") from None
        raise RemoteError(name, url, f"{type(exc).__name__}: {text}") from None


TRANSIENT = (ConnectionError, TimeoutError)


def retry(fn: Callable[[], T], attempts: int = 4, base: float = 0.2) -> T:
    """Call `fn`, retrying transient failures with jittered exponential backoff."""
    for i in range(attempts):
        try:
            return fn()
        except TRANSIENT:
            if i == attempts - 1:
                raise
        except OSError as exc:
            if isinstance(exc, FileNotFoundError | PermissionError) or i == attempts - 1:
                raise
        time.sleep(base * (2**i) * (0.5 + random.random()))
    raise AssertionError("unreachable")
