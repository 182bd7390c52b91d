"""MLflow: mirror each repro run into an MLflow run, and stamp registered models with the state
that made them (`pip install 'repro-engine[mlflow]'`, `[observe] use = ["mlflow"]`).

The observer collects what the events say while the run goes on and talks to MLflow once, at
`run_finished`, after repro has written its own run record and snapshot: the MLflow run then
holds exactly what `repro show` holds (params, metrics, signatures, git commit) and cannot
disagree with it. `import mlflow` takes seconds, so it happens only then, and the whole MLflow
exchange runs in a worker thread bounded by `[observe.mlflow] timeout` (default 30 s): an
unreachable server costs one warning line, never the run.

Where runs go: `[observe.mlflow] tracking_uri` (committed, so only an http(s) server or
`databricks`), else `MLFLOW_TRACKING_URI` (the machine's choice, any store MLflow knows). With
neither, nothing is sent (no `mlruns/` appears in the project unasked). The experiment is
`[observe.mlflow] experiment`, default the project folder's name.

What an MLflow run holds:
- params: the snapshot's param values, keyed as the stages name them (`train.lr`); a param of
  another file than `params.yaml` keeps the file (`conf/model.yaml:depth`);
- metrics: the metrics files' numeric values, flattened (`acc`, `loss.val`); a name two files
  share is prefixed with its file (`eval.json/acc`);
- tags: `repro.snapshot`, `repro.run_id`, `repro.signature.<stage>`, `repro.status`,
  `mlflow.source.git.commit`, `repro.git_dirty`, `mlflow.user`, CI ids (`repro.ci.*`:
  GitHub's run id and sha, GitLab's pipeline and job ids, Databricks' job and run ids), and the
  image digests (`repro.image.<stage>`);
- status FINISHED or FAILED, with repro's start and end times.

`tag_model_version(name, version)` stamps a registered model version with `repro.snapshot`,
`repro.run_id` and `mlflow.source.git.commit`, so a model in the registry leads back to the
exact state that made it (`repro checkout <repro.snapshot>`).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 30.0
DEFAULT_PARAMS_FILE = "params.yaml"
ENV_URI = "MLFLOW_TRACKING_URI"
# CI variables -> tag. GitHub and GitLab set these; Databricks sets no job or run id in the
# environment (they are "dynamic value references", `{{job.id}}` and `{{job.run_id}}`, passed
# by the job's settings), so those names are the ones the docs ask a job to set; on a
# Databricks cluster MLflow's own context is asked as well.
CI_TAGS = {
    "GITHUB_RUN_ID": "repro.ci.github.run_id",
    "GITHUB_SHA": "repro.ci.github.sha",
    "CI_PIPELINE_ID": "repro.ci.gitlab.pipeline_id",
    "CI_JOB_ID": "repro.ci.gitlab.job_id",
    "DATABRICKS_JOB_ID": "repro.ci.databricks.job_id",
    "DATABRICKS_JOB_RUN_ID": "repro.ci.databricks.run_id",
    "DATABRICKS_TASK_RUN_ID": "repro.ci.databricks.task_run_id",
}
_MAX_PARAMS_TAGS = 100  # per log_batch call (MLflow's limit)
_MAX_METRICS = 1000
_MAX_VALUE = 6000  # a param value's length MLflow keeps


def factory(table: dict[str, Any]) -> MlflowObserver:
    """Entry point `repro.observers: mlflow`."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        from repro.errors import MissingExtraError

        raise MissingExtraError("the MLflow observer", "mlflow")
    return MlflowObserver(table)


def tracking_uri(table: dict[str, Any]) -> str | None:
    """The configured tracking URI, else the environment's, else None."""
    return table.get("tracking_uri") or os.environ.get(ENV_URI) or None


@dataclass
class MirroredRun:
    """What goes to MLflow for one repro run: plain values, built before MLflow is touched."""

    experiment: str
    run_name: str
    start_ms: int
    end_ms: int
    status: str  # FINISHED | FAILED
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class MlflowObserver:
    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.root = ""
        self.run_id = ""
        self.signatures: dict[str, str] = {}
        self.mlflow_run_id: str | None = None  # the MLflow run, once mirrored

    def run_started(self, event: dict[str, Any]) -> None:
        self.root = event["root"]
        self.run_id = event["run_id"]

    def stage_finished(self, event: dict[str, Any]) -> None:
        if event.get("signature"):
            self.signatures[event["stage"]] = event["signature"]

    def run_finished(self, event: dict[str, Any]) -> None:
        uri = tracking_uri(self.table)
        if not uri:
            _warn(
                "observer 'mlflow': no tracking URI ([observe.mlflow] tracking_uri or "
                f"{ENV_URI}); the run is not sent to MLflow"
            )
            return
        run = self._collect(event)
        timeout = float(self.table.get("timeout", DEFAULT_TIMEOUT))
        outcome = _bounded(lambda: _send(uri, run), timeout)
        if isinstance(outcome, BaseException):
            _warn(f"observer 'mlflow': could not record the run at {uri} ({_short(outcome)})")
        elif outcome is _TIMED_OUT:
            _warn(f"observer 'mlflow': {uri} did not answer within {timeout:g} s; not recorded")
        else:
            self.mlflow_run_id = outcome

    # -- what the MLflow run holds ----------------------------------------------------------
    def _collect(self, event: dict[str, Any]) -> MirroredRun:
        """Repro's own record of this run (saved before run_finished) and its snapshot."""
        from repro.lockfile import load_lock
        from repro.project import Project
        from repro.records import RunRecord, load_record
        from repro.snapshots import load_snapshot

        project = Project(self.root)
        rec: RunRecord | None
        try:
            backend = _backend(project)
            try:
                rec = load_record(backend, self.run_id)
            except Exception:
                rec = None  # the run stopped before its record was written
            sig = event.get("snapshot")
            if sig:
                state = load_snapshot(backend, sig).stages
            else:
                try:
                    state = load_lock(project.lock_path).stages
                except Exception:
                    state = {}
        finally:
            _close(project)
        ok = event.get("status") == "ok"
        now_ms = _ms(None)
        run = MirroredRun(
            experiment=str(self.table.get("experiment") or os.path.basename(self.root)),
            run_name=self.run_id,
            start_ms=_ms(rec.started) if rec else now_ms,
            end_ms=_ms(rec.ended) if rec else now_ms,
            status="FINISHED" if ok else "FAILED",
            params=flat_params(state),
            metrics=flat_run_metrics(rec.metrics) if rec and ok else {},
        )
        run.tags = self._tags(event, rec, state)
        return run

    def _tags(
        self, event: dict[str, Any], rec: Any, state: dict[str, dict[str, Any]]
    ) -> dict[str, str]:
        tags = {"repro.run_id": self.run_id, "repro.status": str(event.get("status"))}
        if event.get("snapshot"):
            tags["repro.snapshot"] = event["snapshot"]
        signatures = {n: e.get("signature") for n, e in state.items() if e.get("signature")}
        signatures.update(self.signatures)  # this run's word for the stages it ran
        for stage, signature in signatures.items():
            tags[f"repro.signature.{stage}"] = str(signature)
        for stage, entry in state.items():
            if entry.get("image"):
                tags[f"repro.image.{stage}"] = str(entry["image"])
        if rec is not None:
            if rec.git_commit:
                tags["mlflow.source.git.commit"] = rec.git_commit
            if rec.git_dirty is not None:
                tags["repro.git_dirty"] = "true" if rec.git_dirty else "false"
            tags["mlflow.user"] = rec.user
        tags.update(ci_tags(rec.ci if rec is not None else {}))
        return {k: v for k, v in tags.items() if _valid_name(k)}


# -- turning repro's values into MLflow's -----------------------------------------------------
def flat_params(stages: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Every stage's params (`params.yaml:train.lr` -> `train.lr`), as MLflow's text values."""
    out: dict[str, str] = {}
    for entry in stages.values():
        for ref, value in (entry.get("params") or {}).items():
            file, _, key = ref.rpartition(":")
            name = key if file in ("", DEFAULT_PARAMS_FILE) else ref
            if _valid_name(name):
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                out[name] = text[:_MAX_VALUE]
    return out


def flat_run_metrics(by_file: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The metrics files' values by name; a name two files share is prefixed with its file."""
    seen: dict[str, int] = {}
    for values in by_file.values():
        for k in values:
            seen[k] = seen.get(k, 0) + 1
    out: dict[str, float] = {}
    for file, values in by_file.items():
        for k, v in values.items():
            name = k if seen[k] == 1 else f"{file}/{k}"
            if _valid_name(name) and isinstance(v, int | float) and not isinstance(v, bool):
                out[name] = float(v)
    return out


def ci_tags(ci: dict[str, str]) -> dict[str, str]:
    """CI ids as tags: the run record's CI variables, and Databricks' ids when known."""
    env = {**{k: os.environ[k] for k in CI_TAGS if k in os.environ}, **ci}
    tags = {tag: str(env[var]) for var, tag in CI_TAGS.items() if env.get(var)}
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        tags.update({k: v for k, v in _databricks_context().items() if k not in tags})
    return tags


def _databricks_context() -> dict[str, str]:
    """Job and run ids from the notebook context MLflow reads on a Databricks cluster."""
    try:
        from mlflow.utils import databricks_utils as du

        found = {"repro.ci.databricks.job_id": du.get_job_id()}
        found["repro.ci.databricks.run_id"] = du.get_job_run_id()
    except Exception:
        return {}
    return {k: str(v) for k, v in found.items() if v}


def _valid_name(name: str) -> bool:
    """MLflow's rule for param, metric and tag names (letters, digits, `_ - . / : ` and
    space; not a path that would resolve to another name)."""
    import posixpath
    import re

    return (
        bool(name)
        and len(name) <= 250
        and re.fullmatch(r"[/\w.\- :]+", name) is not None
        and posixpath.normpath(name) == name
        and not name.startswith("/")
    )


# -- talking to MLflow -------------------------------------------------------------------------
_TIMED_OUT = object()
_QUIET = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def _bounded(work: Any, timeout: float) -> Any:
    """`work()`'s result, its exception, or `_TIMED_OUT`: a daemon thread, so a server that
    never answers cannot keep the run (or the process) waiting. MLflow's own retries (7, with
    backoff, minutes in all) are cut to one try within the timeout unless the user set them."""
    box: list[Any] = [_TIMED_OUT]
    limits = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(timeout))),
    }
    added = [k for k in limits if k not in os.environ]
    for k in added:
        os.environ[k] = limits[k]
    # MLflow prints "View run … at …" on stdout, which must hold only `run --json`'s document.
    quiet = os.environ.get(_QUIET)
    os.environ[_QUIET] = "true"

    def target() -> None:
        try:
            box[0] = work()
        except BaseException as exc:
            box[0] = exc

    worker = threading.Thread(target=target, name="repro-mlflow", daemon=True)
    worker.start()
    worker.join(timeout)
    if not worker.is_alive():  # a worker still running keeps them: it may yet send
        for k in added:
            os.environ.pop(k, None)
        if quiet is None:
            os.environ.pop(_QUIET, None)
        else:
            os.environ[_QUIET] = quiet
    return box[0]


def _send(uri: str, run: MirroredRun) -> str:
    """Create the MLflow run and log everything in a few batches; its run id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, run.experiment)
    created = client.create_run(
        experiment_id,
        start_time=run.start_ms,
        tags={"mlflow.runName": run.run_name},
        run_name=run.run_name,
    )
    rid = created.info.run_id
    params = [Param(k, v) for k, v in sorted(run.params.items())]
    tags = [RunTag(k, v) for k, v in sorted(run.tags.items())]
    metrics = [Metric(k, v, run.end_ms, 0) for k, v in sorted(run.metrics.items())]
    for i in range(0, max(len(params), len(tags), 1), _MAX_PARAMS_TAGS):
        client.log_batch(
            rid, params=params[i : i + _MAX_PARAMS_TAGS], tags=tags[i : i + _MAX_PARAMS_TAGS]
        )
    for i in range(0, len(metrics), _MAX_METRICS):
        client.log_batch(rid, metrics=metrics[i : i + _MAX_METRICS])
    client.set_terminated(rid, status=run.status, end_time=run.end_ms)
    return rid


def _experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:
        found = client.get_experiment_by_name(name)  # made at the same moment elsewhere
        if found is None:
            raise
        return found.experiment_id


# -- the registry ------------------------------------------------------------------------------
def tag_model_version(
    name: str,
    version: str | int,
    root: str | os.PathLike[str] = ".",
    sig: str | None = None,
    *,
    tracking_uri: str | None = None,
) -> dict[str, str]:
    """Stamp registered model `name` version `version` with the repro state that made it:
    `repro.snapshot` (`sig`: a sig, prefix, tag or git revision; default the state repro.lock
    records, which must have been snapshotted), the run that made that snapshot
    (`repro.run_id`) and its git commit (`mlflow.source.git.commit`). Returns the tags set.

    The way back: `MlflowClient().get_model_version(name, v).tags["repro.snapshot"]`, then
    `repro checkout <sig>`."""
    import importlib.util

    from repro.errors import NotFoundError

    if importlib.util.find_spec("mlflow") is None:
        from repro.errors import MissingExtraError

        raise MissingExtraError("tag_model_version", "mlflow")
    project = _project(root)
    try:
        full = _state_sig(project, sig)
        tags = {"repro.snapshot": full}
        rec = _run_for(project, full)
        uri = tracking_uri or _configured_uri(project)
    finally:
        _close(project)
    if rec is not None:
        tags["repro.run_id"] = rec.run_id
        if rec.git_commit:
            tags["mlflow.source.git.commit"] = rec.git_commit
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.get_model_version(name, str(version))
    except Exception as exc:
        raise NotFoundError(
            f"MLflow model registry: no version {version} of model '{name}' ({_short(exc)})."
        ) from None
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    return tags


def _project(root: str | os.PathLike[str]) -> Any:
    from repro.errors import PathError
    from repro.project import Project

    if not os.path.isdir(root):
        raise PathError(f"{os.fspath(root)}: no such folder (root= names a folder in a project).")
    return Project.find(root)


def _close(project: Any) -> None:
    state = project.__dict__.get("state")
    if state is not None:
        state.close()


def _configured_uri(project: Any) -> str | None:
    table = (project.config.get("observe") or {}).get("mlflow") or {}
    return tracking_uri(table if isinstance(table, dict) else {})


def _state_sig(project: Any, sig: str | None) -> str:
    """The full sig `sig` names, or the snapshot holding the state repro.lock records."""
    from repro.errors import NotFoundError
    from repro.lockfile import load_lock
    from repro.refs import matching_snapshot, resolve_sig

    if sig is not None:
        return resolve_sig(project, sig)
    found = matching_snapshot(project, load_lock(project.lock_path))
    if found is None:
        raise NotFoundError(
            "repro.lock: no snapshot in the cache holds the state it records "
            "(run 'repro run' first, or name a sig)."
        )
    return found


def _run_for(project: Any, sig: str) -> Any:
    """The newest successful run whose snapshot is `sig`, or None."""
    from repro.records import list_records

    for rec in list_records(_backend(project)):
        if rec.snapshot == sig and rec.status == "ok":
            return rec
    return None


def _backend(project: Any) -> Any:
    return project.cache.backend


def _ms(stamp: str | None) -> int:
    import time
    from datetime import datetime

    if stamp:
        try:
            return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)


def _short(exc: BaseException) -> str:
    """The cause people can act on: an OS error buried in urllib3's retry text ("[Errno 111]
    Connection refused") rather than the first 200 characters of that text."""
    import re

    text = str(exc).strip().splitlines()
    cause = re.search(r"\[Errno -?\d+\][^'\")]*", text[0]) if text else None
    if cause:
        said = "cannot connect: " if "connect" in text[0].lower() else ""
        return f"{said}{cause.group(0).strip()}"
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _warn(text: str) -> None:
    from repro.observers import warn

    warn(text)
