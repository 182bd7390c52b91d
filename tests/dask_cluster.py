"""A real Dask cluster for the tests: `dask scheduler` and N `dask worker` processes on loopback.

Each worker is its own process tree (nanny and worker) with its own working dir, its own
`--local-directory`, `--nthreads 1` and, when asked, `--resources`; the workers share nothing
with the client but the environment they are given (S3 credentials for moto) and the remote.
With `user=` they run as another uid (a system user made with `useradd --system` when absent)
that cannot read the project: that proves no shared filesystem is assumed. When the Python
the tests run on lives under a folder that other users cannot cross (pyenv under a 0700
`/root`), the worker gets a private mount namespace where only that interpreter's folder is
visible beneath it: nothing changes on the host.

Teardown kills every process the cluster started (their descendants included, found through
/proc before anything is killed) and fails the test if one survives.

    cluster = cluster_fixture(n_workers=2, user="reprotest")   # in a test module

The scheduler preloads this module (`dask_setup`): it keeps a pickled copy of every task that
enters it, so a test can assert what a worker receives (`cluster.submitted()`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.s3server import free_port, wait_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
MARKER = "REPRO_TEST_CLUSTER"  # every process of one cluster carries it in its environment
DEFAULT_USER = "reprotest"


# -- the scheduler side: remember what each task carried ----------------------------------------
class TaskRecorder:
    """A scheduler plugin keeping each new task's run spec, pickled (what a worker receives)."""

    name = "repro-test-recorder"

    def __init__(self) -> None:
        self.specs: list[bytes] = []

    def update_graph(self, scheduler, *, tasks=(), **kwargs) -> None:
        import cloudpickle

        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is not None and ts.run_spec is not None:
                with contextlib.suppress(Exception):
                    self.specs.append(cloudpickle.dumps(ts.run_spec))


def dask_setup(scheduler) -> None:
    from distributed.diagnostics.plugin import SchedulerPlugin

    recorder = type("Recorder", (TaskRecorder, SchedulerPlugin), {})()
    scheduler.add_plugin(recorder, name=TaskRecorder.name)


def _recorded(dask_scheduler) -> list[bytes]:
    plugin = dask_scheduler.plugins.get(TaskRecorder.name)
    return list(plugin.specs) if plugin is not None else []


def _transitions(dask_scheduler) -> int:
    return int(dask_scheduler.transition_counter)


# -- processes ----------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, parents first."""
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def marked(tag: str) -> list[int]:
    """Live processes whose environment carries this cluster's marker."""
    needle = f"{MARKER}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                if needle in env and _alive(int(entry)):
                    found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""


def kill_all(pids: list[int], grace: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.time() + grace
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)


# -- another uid --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int


def system_user(name: str = DEFAULT_USER) -> Identity:
    """The system user `name`, made with `useradd --system` when absent; skips the test when
    this process cannot switch users or make one."""
    if os.geteuid() != 0:
        pytest.skip("running workers as another uid needs root")
    if not shutil.which("setpriv"):
        pytest.skip("running workers as another uid needs setpriv (util-linux)")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        p = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            pytest.skip(f"cannot make the system user {name!r}: {p.stderr.strip() or p.returncode}")
        pw = pwd.getpwnam(name)
    return Identity(name, pw.pw_uid, pw.pw_gid)


def _closed_ancestor(path: Path) -> Path | None:
    """The highest folder above `path` that others cannot cross (no o+x), if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


def _as_user(ident: Identity, argv: list[str], stage: Path) -> list[str]:
    """`argv` run as `ident`. When the interpreter lies under a folder others cannot cross,
    in a private mount namespace where that folder is an empty tmpfs showing only the
    interpreter's tree (bound through `stage`): the host's mounts are untouched."""
    drop = ["setpriv", f"--reuid={ident.uid}", f"--regid={ident.gid}", "--clear-groups", "--"]
    prefix = Path(sys.base_prefix).resolve()
    closed = _closed_ancestor(prefix)
    if closed is None:
        return [*drop, *argv]
    keep = closed / prefix.relative_to(closed).parts[0]
    script = (
        'mount --rbind "$1" "$2" && mount -t tmpfs -o mode=711 tmpfs "$3" && mkdir -p "$1" '
        '&& mount --rbind "$2" "$1" && shift 3 && exec "$@"'
    )
    return [
        "unshare", "-m", "--propagation", "private",
        "sh", "-c", script, "sh", str(keep), str(stage), str(closed), *drop, *argv,
    ]  # fmt: skip


# -- the cluster --------------------------------------------------------------------------------
@dataclass
class WorkerProc:
    name: str
    home: Path  # its working dir; its --local-directory is home/"dask"
    resources: str | None
    proc: subprocess.Popen | None = None
    address: str = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


@dataclass
class DaskCluster:
    """A scheduler and workers as real processes; see the module's docstring."""

    n_workers: int = 2
    user: Identity | None = None
    resources: list[str | None] = field(default_factory=list)  # per worker, e.g. "GPU=1"
    env: dict[str, str] = field(default_factory=dict)  # for every worker (AWS_* ...)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    base: Path = field(init=False)
    scheduler: subprocess.Popen | None = field(init=False, default=None)
    workers: list[WorkerProc] = field(init=False, default_factory=list)
    address: str = field(init=False, default="")
    _seen: set[int] = field(init=False, default_factory=set)

    # -- start -----------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> DaskCluster:
        self.base = Path(tempfile.mkdtemp(prefix="repro-dask-"))
        os.chmod(self.base, 0o755)  # a worker of another uid reaches its own folder below
        (self.base / "ns").mkdir()
        self._check_user()
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        sched_dir = self.base / "scheduler"
        sched_dir.mkdir()
        env = {**self._base_env(sched_dir), "PYTHONPATH": str(REPO)}
        self.scheduler = self._spawn(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard", "--idle-timeout", "900", "--preload", "tests.dask_cluster"],
            sched_dir, env, as_user=False,
        )  # fmt: skip
        try:
            wait_port(port, timeout=30)
        except RuntimeError:
            self.close()
            raise
        for i in range(self.n_workers):
            res = self.resources[i] if i < len(self.resources) else None
            self.workers.append(self._start_worker(f"w{i}", res))
        self.wait(timeout)
        return self

    def _check_user(self) -> None:
        """Skip (after cleaning up) when the other uid cannot run the workers' Python."""
        if self.user is None:
            return
        p = self.as_worker_user([sys.executable, "-c", "import distributed, repro"], cwd="/")
        if p.returncode != 0:
            shutil.rmtree(self.base, ignore_errors=True)
            why = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            pytest.skip(f"workers cannot run as {self.user.name!r}: {why}")

    def _base_env(self, home: Path) -> dict[str, str]:
        tmp = home / "tmp"
        tmp.mkdir(exist_ok=True)
        return {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            MARKER: self.tag,
        }

    def _start_worker(self, name: str, resources: str | None) -> WorkerProc:
        home = self.base / f"{name}-{uuid.uuid4().hex[:6]}"
        (home / "dask").mkdir(parents=True)
        env = {**self._base_env(home), **self.env}
        if self.user is not None:
            for p in [home, *home.rglob("*")]:
                os.chown(p, self.user.uid, self.user.gid)
        os.chmod(home, 0o700)
        argv = [
            str(BIN / "dask"), "worker", self.address, "--name", name, "--host", "127.0.0.1",
            "--nthreads", "1", "--no-dashboard", "--death-timeout", "60",
            "--local-directory", str(home / "dask"),
        ]  # fmt: skip
        if resources:
            argv += ["--resources", resources]
        w = WorkerProc(name, home, resources)
        w.proc = self._spawn(argv, home, env, as_user=True)
        return w

    def _spawn(self, argv: list[str], cwd: Path, env: dict, as_user: bool) -> subprocess.Popen:
        if as_user and self.user is not None:
            argv = _as_user(self.user, argv, self.base / "ns")
        log = open(cwd.parent / f"{cwd.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            return subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()

    def wait(self, timeout: float = 60) -> None:
        """Until every live worker has registered; fills in their addresses."""
        want = {w.name: w for w in self.workers if w.proc and w.proc.poll() is None}
        with self.client() as c:
            deadline = time.time() + timeout
            while True:
                info = c.scheduler_info(n_workers=-1)["workers"]
                names = {v.get("name"): addr for addr, v in info.items()}
                if all(n in names for n in want):
                    break
                dead = [w.name for w in self.workers if w.proc and w.proc.poll() is not None]
                if time.time() > deadline or (dead and set(dead) & set(want)):
                    raise RuntimeError(f"workers did not register: {self.logs()}")
                time.sleep(0.1)
        for n, w in want.items():
            w.address = names[n]

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=20)

    # -- look and act ----------------------------------------------------------------------
    def logs(self) -> str:
        out = []
        for f in sorted(self.base.glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def tree(self, w: WorkerProc) -> list[int]:
        pids = descendants(w.pid)
        self._seen.update(pids)
        return pids

    def worker_running(self, token: str) -> WorkerProc | None:
        """The worker one of whose processes has `token` on its command line."""
        for w in self.workers:
            live = w.proc is not None and w.proc.poll() is None
            if live and any(token in cmdline(p) for p in self.tree(w)[1:]):
                return w
        return None

    def kill_worker(self, w: WorkerProc) -> None:
        """SIGKILL a worker's whole tree at once, its running stages with it: a lost machine."""
        pids = self.tree(w)
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        assert w.proc is not None
        w.proc.wait(timeout=10)
        kill_all(pids, grace=2)

    def replace_worker(self, w: WorkerProc) -> WorkerProc:
        """A fresh worker under the same name and resources in place of a killed one."""
        new = self._start_worker(w.name, w.resources)
        self.workers[self.workers.index(w)] = new
        self.wait()
        return new

    def as_worker_user(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run `argv` with the workers' uid and view of the filesystem."""
        if self.user is not None:
            argv = _as_user(self.user, argv, self.base / "ns")
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)

    def submitted(self) -> list[bytes]:
        """Every task that entered the scheduler so far, pickled as a worker gets it."""
        with self.client() as c:
            return c.run_on_scheduler(_recorded)

    def task_count(self) -> int:
        """Grows whenever a task enters the scheduler or changes state."""
        with self.client() as c:
            return c.run_on_scheduler(_transitions)

    # -- stop ------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill everything this cluster started; raise when something survives."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        if self.scheduler is not None:
            procs.append(self.scheduler)
        pids: list[int] = []
        for p in procs:
            pids += descendants(p.pid)
        pids += marked(self.tag)
        pids = list(dict.fromkeys([*pids, *self._seen]))
        kill_all(pids)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        left = [p for p in [*pids, *marked(self.tag)] if _alive(p)]
        shutil.rmtree(self.base, ignore_errors=True)
        assert not left, f"processes outlived the cluster: {[(p, cmdline(p)) for p in left]}"


def distributed_or_skip() -> None:
    pytest.importorskip("distributed", reason="the Dask tests need the 'dask' extra (distributed)")
    if not (BIN / "dask").exists():
        pytest.skip(f"no `dask` command beside {sys.executable}")


@contextlib.contextmanager
def running_cluster(
    n_workers: int = 2,
    *,
    user: str | None = None,
    resources: list[str | None] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[DaskCluster]:
    """A started cluster, killed on exit (and checked that nothing of it survives)."""
    distributed_or_skip()
    ident = system_user(user) if user else None
    cluster = DaskCluster(n_workers, ident, list(resources or []), dict(env or {}))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


def cluster_fixture(scope: str = "module", *, s3: bool = True, env_from: str | None = None, **kw):
    """A fixture giving a `DaskCluster` made with `running_cluster(**kw)`, one per `scope`.
    Workers get the S3 credentials of the `s3_server` fixture when `s3` (the default), and the
    variables of the fixture named `env_from` (a dict) when given."""
    extra_env = dict(kw.pop("env", None) or {})

    @pytest.fixture(scope=scope)
    def _cluster(request) -> Iterator[DaskCluster]:
        env = dict(extra_env)
        if s3:
            from tests.conftest import AWS_ENV

            request.getfixturevalue("s3_server")
            env = {**AWS_ENV, **env}
        if env_from:
            env.update(request.getfixturevalue(env_from))
        with running_cluster(env=env, **kw) as c:
            yield c

    return _cluster
