"""The rows of issue 15's table: repro beside DVC 3.67.1, same data, same run, medians.

Each row is a function `row_<name>(ctx) -> Result` (selected with `--only NAME` in run.py).
A row measures whatever `repro` does today: it never looks inside repro, only at the clock,
at the child's peak RSS (os.wait4's rusage for that one process), at the bytes on disk and at
the requests and bytes a counting moto server saw (benchmarks/moto_counting.py).
Every row runs without DVC too: its DVC column is then "n/a".

Estimates (this machine kind, 2 cores, run.py's defaults, DVC present, repro as of the issue;
faster as repro gets faster): add ~1.5 min, checkout ~1.5 min, pushpull ~7 min (DVC's S3
push and pull ~1 min each), repush ~1.5 min, chain ~1 min, addroot ~1 min, million ~5 min at
250,000 files (~20 min at 1M), hash10g ~3 min at 9.8 GiB (its small files are million's).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIB = 1 << 20
ESTIMATES = {
    "add": "~1.5 min",
    "checkout": "~1.5 min",
    "pushpull": "~7 min",
    "repush": "~1.5 min",
    "chain": "~1 min",
    "addroot": "~1 min",
    "million": "~5 min at 250,000 files (~20 min at 1M)",
    "hash10g": "~3 min at 9.8 GiB",
}


def repro_cmd() -> str:
    """The repro under test: REPRO_BENCH_REPRO (any launcher), else this venv's `repro`."""
    return os.environ.get("REPRO_BENCH_REPRO") or str(Path(sys.executable).parent / "repro")


def dvc_cmd() -> str | None:
    """REPRO_BENCH_DVC, else `dvc` on PATH, else the project's .venv-dvc (make bench-dvc)."""
    local = Path(__file__).resolve().parent.parent / ".venv-dvc" / "bin" / "dvc"
    p = os.environ.get("REPRO_BENCH_DVC") or shutil.which("dvc") or str(local)
    return p if p and os.path.exists(p) else None


@dataclass
class Ctx:
    """What every row needs: where to work, how often to repeat, the scales."""

    base: str
    repeat: int = 3
    budget: float = 150.0  # seconds: no further repetition past this (0: always `repeat`)
    files: int = 20_000  # rows add, checkout, pushpull
    big_mib: int = 1024  # rows repush, addroot
    files_1m: list[int] = field(default_factory=lambda: [20_000, 1_000_000])
    dvc_max_files: int = 0  # the million row runs DVC only up to this many files
    hash_small: int = 1_000_000
    hash_large: int = 10
    hash_large_mib: int = 600
    dvc: str | None = None
    counter: int = 0
    spare_small: int = 0  # the million row leaves its folder of this many files for hash10g
    spare: dict[int, str] = field(default_factory=dict)

    def fresh(self, name: str) -> str:
        """A new, empty folder under base (names never repeat within a run)."""
        self.counter += 1
        p = os.path.join(self.base, f"{name}-{self.counter}")
        os.makedirs(p)
        return p


@dataclass
class Line:
    """One row of latest.md: seconds for repro and DVC, the goal and whether it is met."""

    workload: str
    scale: str
    repro: float | None
    dvc: float | None
    goal: str
    met: bool | None
    notes: str = ""
    dvc_label: str = ""  # what the DVC column holds when it is not DVC itself

    @property
    def ratio(self) -> float | None:
        return self.dvc / self.repro if self.repro and self.dvc else None


@dataclass
class Result:
    lines: list[Line]
    details: dict


# --- processes ------------------------------------------------------------------------------
@dataclass
class Proc:
    seconds: float
    maxrss_mib: float
    rc: int
    out: str
    err: str


# Linux carries a process's peak RSS across exec: a child forked from this harness (tens of
# MiB by then) would report at least the harness's RSS. So each child is forked by a small
# launcher (`python -I -S`, a few MiB) that times it, waits for it and writes what wait4 says.
LAUNCHER = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as e:
        os.write(2, f"{sys.argv[2]}: {e}\\n".encode())
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - t} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(args: list[str], cwd: str, check: bool = True, env: dict | None = None) -> Proc:
    """Run one child: its wall time (fork to reaped) and its own peak RSS (wait4 on its pid)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as meter,
    ):
        cmd = [sys.executable, "-I", "-S", "-c", LAUNCHER, meter.name, *args]
        rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, env=env).returncode
        seconds, maxrss_kib = (float(x) for x in (meter.read().split() or ["nan", "nan"]))
        out.seek(0)
        err.seek(0)
        proc = Proc(
            seconds,
            maxrss_kib / 1024,
            rc,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    if check and proc.rc != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.rc}):\n{proc.out}\n{proc.err}")
    return proc


def repro(args: list[str], cwd: str, check: bool = True, env: dict | None = None) -> Proc:
    return run([repro_cmd(), *args], cwd, check, env)


def dvc(ctx: Ctx, args: list[str], cwd: str, check: bool = True) -> Proc:
    assert ctx.dvc is not None
    return run([ctx.dvc, *args], cwd, check)


def medians(ctx: Ctx, once: Callable[[], dict[str, float]], repeat: int = 0) -> dict[str, float]:
    """The median of each figure over `repeat` calls (ctx.repeat by default). No further call
    once the next would take the measurement past ctx.budget seconds of wall time: `n` says how
    many there were."""
    samples: list[dict[str, float]] = []
    spent = 0.0
    for _ in range(repeat or ctx.repeat):
        if samples and ctx.budget and spent * (len(samples) + 1) / len(samples) > ctx.budget:
            break
        t = time.perf_counter()
        samples.append(once())
        spent += time.perf_counter() - t
    keys = [k for k in samples[0] if isinstance(samples[0][k], int | float)]
    out = {k: statistics.median(s[k] for s in samples if k in s) for k in keys}
    out["n"] = len(samples)
    return out


# --- data -----------------------------------------------------------------------------------
def make_small_files(root: str, n: int, size: int = 4096, per_folder: int = 1000) -> float:
    """n files of `size` random bytes (no two alike, nothing a compressor could share), in
    folders of `per_folder`; returns the seconds it took (the "create the files" reference)."""
    t = time.perf_counter()
    d = root
    for i in range(n):
        if i % per_folder == 0:
            d = os.path.join(root, f"d{i // per_folder:04d}")
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:07d}.bin"), "wb") as f:
            f.write(os.urandom(size))
    return time.perf_counter() - t


def make_big_file(path: str, mib: int) -> None:
    """Random bytes throughout: no block repeats, so chunk-level dedup cannot flatter repro."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))


def change_middle(path: str, k: int) -> int:
    """Overwrite 1 MiB in the middle of the file (a different MiB for each k, not aligned);
    returns the offset. A hard-linked file is rewritten first, so no cache entry is touched."""
    size = os.path.getsize(path)
    offset = min(size // 2 + k * 3 * MIB + 12345, max(0, size - MIB))
    if os.stat(path).st_nlink > 1 or not os.access(path, os.W_OK):
        tmp = path + ".tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, path)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(os.urandom(MIB))
    return offset


def files_under(root: str) -> Iterator[str]:
    for d, _, fs in os.walk(root):
        for f in fs:
            yield os.path.join(d, f)


def tree_size(root: str) -> tuple[int, int]:
    """(files, bytes) under root."""
    n = b = 0
    for p in files_under(root):
        n += 1
        b += os.path.getsize(p)
    return n, b


def read_all(root: str) -> int:
    """Read every byte in Python: the read floor."""
    buf = memoryview(bytearray(4 * MIB))
    total = 0
    for p in files_under(root):
        fd = os.open(p, os.O_RDONLY)
        try:
            while n := os.readv(fd, [buf]):
                total += n
        finally:
            os.close(fd)
    return total


def evict(root: str) -> None:
    """Drop root's pages from the page cache (posix_fadvise; drop_caches needs the host).
    Dirty pages cannot be dropped: write everything back first."""
    os.sync()
    for p in files_under(root):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def md5_all(root: str) -> None:
    buf = memoryview(bytearray(4 * MIB))
    for p in files_under(root):
        h = hashlib.md5()
        fd = os.open(p, os.O_RDONLY)
        while n := os.readv(fd, [buf]):
            h.update(buf[:n])
        os.close(fd)


def rm(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def drop_state(proj: str) -> None:
    """repro's stat cache: without it every byte is hashed again."""
    for f in ("state.db", "state.db-wal", "state.db-shm"):
        rm(os.path.join(proj, ".repro", f))


# --- projects -------------------------------------------------------------------------------
def repro_project(ctx: Ctx, name: str) -> str:
    root = ctx.fresh(name)
    run(["git", "init", "-q"], root)
    repro(["init"], root)
    return root


def dvc_project(ctx: Ctx, name: str) -> str:
    root = ctx.fresh(name)
    run(["git", "init", "-q"], root)
    dvc(ctx, ["init", "-q"], root)
    dvc(ctx, ["config", "core.analytics", "false"], root)
    return root


def fmt_s(v: float | None) -> str:
    return "n/a" if v is None else (f"{v:.3f} s" if v < 10 else f"{v:.1f} s")


def fmt_mib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / MIB:.1f} MiB"


def at_least(ratio: float | None, goal: float) -> bool | None:
    return None if ratio is None else ratio >= goal


# --- 1. add 20,000 x 4 KiB, cold cache ------------------------------------------------------
def row_add(ctx: Ctx) -> Result:
    """`repro add` / `dvc add` of n small files into an empty cache; "create the files" beside
    (the same files written from Python: the floor for anything that stores them once)."""
    n = ctx.files

    def add_once(tool: str) -> dict[str, float]:
        proj = repro_project(ctx, "add") if tool == "repro" else dvc_project(ctx, "dvc-add")
        make_small_files(os.path.join(proj, "data"), n)
        os.sync()  # the files' write-back is not the add's cost
        p = (
            repro(["add", "data"], proj)
            if tool == "repro"
            else dvc(ctx, ["add", "-q", "data"], proj)
        )
        rm(proj)
        return {"s": p.seconds, "rss_mib": p.maxrss_mib}

    create = medians(ctx, lambda: {"s": _create_and_drop(ctx, n)})
    r = medians(ctx, lambda: add_once("repro"))
    d = medians(ctx, lambda: add_once("dvc")) if ctx.dvc else None
    line = Line(
        "add (cold cache)",
        f"{n:,} × 4 KiB",
        r["s"],
        d["s"] if d else None,
        "≥ 10x DVC",
        None,
        f"create the files {fmt_s(create['s'])}; repro RSS {r['rss_mib']:.0f} MiB; n={r['n']:.0f}",
    )
    line.met = at_least(line.ratio, 10)
    return Result([line], {"create": create, "repro": r, "dvc": d})


# --- 2. checkout of 20,000 files ------------------------------------------------------------
def row_checkout(ctx: Ctx) -> Result:
    """Delete the folder, `repro checkout` / `dvc checkout`; the time to create the same files
    in Python is the reference (goal: within 2x of it)."""
    n = ctx.files
    create = medians(ctx, lambda: {"s": _create_and_drop(ctx, n)})

    def setup(tool: str) -> str:
        proj = repro_project(ctx, "co") if tool == "repro" else dvc_project(ctx, "dvc-co")
        make_small_files(os.path.join(proj, "data"), n)
        if tool == "repro":
            repro(["add", "data"], proj)
        else:
            dvc(ctx, ["add", "-q", "data"], proj)
        return proj

    def once(tool: str, proj: str) -> dict[str, float]:
        rm(os.path.join(proj, "data"))
        os.sync()
        if tool == "repro":
            p = repro(["checkout"], proj)
        else:
            p = dvc(ctx, ["checkout", "-q"], proj)
        if tree_size(os.path.join(proj, "data"))[0] != n:
            raise RuntimeError(f"{tool} checkout did not restore {n} files")
        return {"s": p.seconds, "rss_mib": p.maxrss_mib}

    rp = setup("repro")
    r = medians(ctx, lambda: once("repro", rp))
    rm(rp)
    d = None
    if ctx.dvc:
        dp = setup("dvc")
        d = medians(ctx, lambda: once("dvc", dp))
        rm(dp)
    line = Line(
        "checkout (folder deleted)",
        f"{n:,} × 4 KiB",
        r["s"],
        d["s"] if d else None,
        "≥ 10x DVC, ≤ 2x creating the files",
        None,
        f"create the files {fmt_s(create['s'])} (repro/create {r['s'] / create['s']:.2f}x); "
        f"n={r['n']:.0f}",
    )
    fast, within = at_least(line.ratio, 10), r["s"] <= 2 * create["s"]
    line.met = (fast and within) if fast is not None else (None if within else False)
    return Result([line], {"create": create, "repro": r, "dvc": d})


def _create_and_drop(ctx: Ctx, n: int) -> float:
    d = ctx.fresh("create")
    s = make_small_files(d, n)
    rm(d)
    return s


# --- 3. push and pull of 20,000 files: S3 (moto, counted) and a file remote -----------------
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Remote:
    """Where a push goes: a bucket on the counting server, or a local folder."""

    kind: str  # "s3" or "file"
    server: object | None = None  # CountingMoto

    def new_location(self, ctx: Ctx, tag: str) -> str:
        if self.kind == "file":
            return ctx.fresh(f"remote-{tag}")
        import s3fs

        ctx.counter += 1
        bucket = f"{tag}-{ctx.counter}"
        s3fs.S3FileSystem(endpoint_url=self.server.url).mkdir(bucket)  # type: ignore[attr-defined]
        return f"s3://{bucket}/cache"

    def drop(self, url: str) -> None:
        if self.kind == "file":
            rm(url)
            return
        import s3fs

        with contextlib.suppress(Exception):
            s3fs.S3FileSystem(endpoint_url=self.server.url).rm(url, recursive=True)  # type: ignore[attr-defined]

    def start(self) -> None:
        if self.server is not None:
            self.server.reset()  # type: ignore[attr-defined]

    def measured(self, url: str) -> dict[str, float]:
        """Requests and bytes since start(): at the server (S3), or what the folder holds."""
        if self.kind == "s3":
            c = self.server.reset()  # type: ignore[attr-defined]
            return {"requests": c.requests, "bytes": c.body_bytes}
        files, nbytes = tree_size(url)
        return {"files": files, "bytes": nbytes}


def _configure(ctx: Ctx, tool: str, proj: str, remote: Remote, url: str) -> None:
    if tool == "repro":
        opts = ["-o", f"endpoint_url={remote.server.url}"] if remote.server else []  # type: ignore[attr-defined]
        repro(["remote", "add", "bench", url, *opts, "--default", "--force"], proj)
        return
    dvc(ctx, ["remote", "add", "-d", "-f", "bench", url], proj)
    if remote.server:
        dvc(ctx, ["remote", "modify", "bench", "endpointurl", remote.server.url], proj)  # type: ignore[attr-defined]


def _forget_local(tool: str, proj: str) -> None:
    """Delete the cache, the data and the stat cache: pull must fetch every object."""
    rm(os.path.join(proj, "data"))
    if tool == "repro":
        rm(os.path.join(proj, ".repro", "cache"))
        drop_state(proj)
    else:
        rm(os.path.join(proj, ".dvc", "cache"))


def push_pull_cycle(ctx: Ctx, tool: str, proj: str, remote: Remote) -> dict[str, float]:
    """Push to an empty location, push again (nothing new), forget everything local, pull."""
    url = remote.new_location(ctx, f"{tool}-{remote.kind}")
    _configure(ctx, tool, proj, remote, url)
    cmd: Callable[[list[str]], Proc] = (
        (lambda a: repro(a, proj)) if tool == "repro" else (lambda a: dvc(ctx, [*a, "-q"], proj))
    )
    out: dict[str, float] = {}
    remote.start()
    out["push_s"] = cmd(["push"]).seconds
    out.update({f"push_{k}": v for k, v in remote.measured(url).items()})
    remote.start()
    out["noop_push_s"] = cmd(["push"]).seconds
    if remote.kind == "s3":
        out["noop_push_requests"] = remote.measured(url)["requests"]
    _forget_local(tool, proj)
    remote.start()
    out["pull_s"] = cmd(["pull"]).seconds
    if remote.kind == "s3":
        out.update({f"pull_{k}": v for k, v in remote.measured(url).items()})
    else:  # what the pull wrote into the local cache
        cache = os.path.join(proj, ".repro" if tool == "repro" else ".dvc", "cache")
        out["pull_files"], out["pull_bytes"] = tree_size(cache)
    if tree_size(os.path.join(proj, "data"))[0] != ctx.files:
        raise RuntimeError(f"{tool} pull from {remote.kind} did not restore the files")
    remote.drop(url)
    return out


def _traffic(m: dict[str, float] | None, op: str, kind: str) -> str:
    if not m:
        return "n/a"
    if kind == "s3":
        return f"{m[f'{op}_requests']:.0f} req, {fmt_mib(m[f'{op}_bytes'])}"
    where = "in the remote" if op == "push" else "in the local cache"
    return f"{m[f'{op}_files']:.0f} files, {fmt_mib(m[f'{op}_bytes'])} {where}"


def row_pushpull(ctx: Ctx) -> Result:
    """n small files pushed to and pulled from S3 (moto on loopback, every request counted at
    the server) and a file remote (bytes: the remote folder's size; requests: n/a, files
    written instead). Each cycle pushes to a fresh, empty location."""
    try:
        import s3fs  # noqa: F401

        from benchmarks.moto_counting import CountingMoto
    except ImportError:
        print("pushpull: needs the s3 and dev extras (s3fs, moto); skipped")
        return Result([], {})
    os.environ.update(S3_ENV)
    n = ctx.files
    projects = {}
    for tool in ("repro", "dvc") if ctx.dvc else ("repro",):
        proj = repro_project(ctx, "push") if tool == "repro" else dvc_project(ctx, "dvc-push")
        make_small_files(os.path.join(proj, "data"), n)
        if tool == "repro":
            repro(["add", "data"], proj)
        else:
            dvc(ctx, ["add", "-q", "data"], proj)
        projects[tool] = proj
    lines: list[Line] = []
    details: dict = {}
    with CountingMoto() as server:
        for kind in ("s3", "file"):
            remote = Remote(kind, server if kind == "s3" else None)
            got = {
                t: medians(ctx, lambda t=t, r=remote: push_pull_cycle(ctx, t, projects[t], r))
                for t in projects
            }
            details[kind] = got
            lines += _pushpull_lines(n, kind, got.get("repro"), got.get("dvc"))
    for proj in projects.values():
        rm(proj)
    return Result(lines, details)


def _pushpull_lines(n: int, kind: str, r: dict | None, d: dict | None) -> list[Line]:
    where = "S3 (moto, loopback)" if kind == "s3" else "file remote"
    lines = []
    for op in ("push", "pull"):
        assert r is not None
        line = Line(
            f"{op} to {where}" if op == "push" else f"pull from {where}",
            f"{n:,} × 4 KiB",
            r[f"{op}_s"],
            d[f"{op}_s"] if d else None,
            "≥ 10x DVC",
            None,
            f"repro: {_traffic(r, op, kind)}; DVC: {_traffic(d, op, kind)}",
        )
        if op == "push":
            noop = f"; nothing-new push: repro {fmt_s(r['noop_push_s'])}"
            if kind == "s3":
                noop += f" ({r['noop_push_requests']:.0f} req)"
            if d:
                noop += f", DVC {fmt_s(d['noop_push_s'])}"
                if kind == "s3":
                    noop += f" ({d['noop_push_requests']:.0f} req)"
            line.notes += noop
        line.notes += f"; n={r['n']:.0f}" + (f"/{d['n']:.0f}" if d else "")
        line.met = at_least(line.ratio, 10)
        lines.append(line)
    return lines


# --- 4. re-push after changing 1 MiB in the middle of a 1 GiB file --------------------------
def row_repush(ctx: Ctx) -> Result:
    """Push a big file to S3 (moto), change 1 MiB in its middle, add it again, push again:
    the re-push's time, requests and bytes at the server. Each repetition changes another MiB."""
    try:
        from benchmarks.moto_counting import CountingMoto
    except ImportError:
        print("repush: needs moto; skipped")
        return Result([], {})
    os.environ.update(S3_ENV)
    mib = ctx.big_mib
    src = os.path.join(ctx.fresh("big"), "big.bin")
    make_big_file(src, mib)
    details: dict = {}
    with CountingMoto() as server:
        remote = Remote("s3", server)
        for tool in ("repro", "dvc") if ctx.dvc else ("repro",):
            details[tool] = _repush_tool(ctx, tool, src, remote)
    rm(os.path.dirname(src))
    r, d = details["repro"], details.get("dvc")
    line = Line(
        "re-push after changing 1 MiB in the middle",
        f"1 file of {mib:,} MiB",
        r["s"],
        d["s"] if d else None,
        "≤ 16 MiB moved",
        r["bytes"] <= 16 * MIB,
        f"moved: repro {fmt_mib(r['bytes'])} in {r['requests']:.0f} req, DVC "
        + (f"{fmt_mib(d['bytes'])} in {d['requests']:.0f} req" if d else "n/a")
        + f"; re-add: repro {fmt_s(r['add_s'])}"
        + (f", DVC {fmt_s(d['add_s'])}" if d else "")
        + f"; first push: repro {fmt_s(r['first_push_s'])}"
        + f"; n={r['n']:.0f}",
    )
    return Result([line], details)


def _repush_tool(ctx: Ctx, tool: str, src: str, remote: Remote) -> dict[str, float]:
    proj = repro_project(ctx, "repush") if tool == "repro" else dvc_project(ctx, "dvc-repush")
    path = os.path.join(proj, "big.bin")
    shutil.copyfile(src, path)
    add = (
        (lambda: repro(["add", "big.bin"], proj))
        if tool == "repro"
        else (lambda: dvc(ctx, ["add", "-q", "big.bin"], proj))
    )
    push = (
        (lambda: repro(["push"], proj))
        if tool == "repro"
        else (lambda: dvc(ctx, ["push", "-q"], proj))
    )
    add()
    url = remote.new_location(ctx, f"{tool}-big")
    _configure(ctx, tool, proj, remote, url)
    remote.start()
    first = push().seconds
    remote.measured(url)
    k = [0]

    def once() -> dict[str, float]:
        change_middle(path, k[0])
        k[0] += 1
        add_s = add().seconds
        remote.start()
        s = push().seconds
        return {"s": s, **remote.measured(url), "add_s": add_s}

    out = medians(ctx, once)
    out["first_push_s"] = first
    remote.drop(url)
    rm(proj)
    return out


# --- 5. no-op run and status of a 50-stage chain, start-up and import time ------------------
CHAIN_STAGE = (
    "  s{i}:\n    cmd: cat {dep} > o{i}.txt; echo {i} >> o{i}.txt\n"
    "    deps: [{dep}]\n    outs: [o{i}.txt]\n"
)
IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def import_times(stderr: str) -> tuple[float, float]:
    """(seconds importing repro.* modules, seconds importing everything): summed self times of
    `-X importtime` (PYTHONPROFILEIMPORTTIME) lines."""
    own = total = 0
    for m in IMPORT_LINE.finditer(stderr):
        us, name = int(m.group(1)), m.group(4)
        total += us
        if name == "repro" or name.startswith("repro."):
            own += us
    return own / 1e6, total / 1e6


def row_chain(ctx: Ctx, stages: int = 50) -> Result:
    """First run, no-op run and status of a chain of `stages` stages; `python -c pass` and the
    import time of `repro status` (repro's own modules against everything) beside."""
    spec = "stages:\n" + "".join(
        CHAIN_STAGE.format(i=i, dep="seed.txt" if i == 0 else f"o{i - 1}.txt")
        for i in range(stages)
    )
    proj = repro_project(ctx, "chain")
    Path(proj, "seed.txt").write_text("seed\n")
    Path(proj, "repro.yaml").write_text(spec)
    first = repro(["run"], proj).seconds
    noop = medians(ctx, lambda: {"s": repro(["run"], proj).seconds}, max(ctx.repeat, 5))
    status = medians(ctx, lambda: {"s": repro(["status"], proj).seconds}, max(ctx.repeat, 5))
    py = medians(ctx, lambda: {"s": run([sys.executable, "-c", "pass"], proj).seconds}, 5)
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}

    def imports() -> dict[str, float]:
        own, total = import_times(repro(["status"], proj, env=env).err)
        return {"repro_s": own, "total_s": total}

    imp = medians(ctx, imports)
    rm(proj)
    d: dict = {}
    if ctx.dvc:
        dp = dvc_project(ctx, "dvc-chain")
        Path(dp, "seed.txt").write_text("seed\n")
        Path(dp, "dvc.yaml").write_text(spec)
        d["first_s"] = dvc(ctx, ["repro", "-q"], dp).seconds
        d["noop"] = medians(ctx, lambda: {"s": dvc(ctx, ["repro", "-q"], dp).seconds})
        d["status"] = medians(ctx, lambda: {"s": dvc(ctx, ["status", "-q"], dp, False).seconds})
        rm(dp)
    common = (
        f"python -c pass {fmt_s(py['s'])}; imports (status): repro.* "
        f"{imp['repro_s'] * 1000:.0f} ms of {imp['total_s'] * 1000:.0f} ms"
    )
    lines = []
    for name, r, key in (("no-op run", noop, "noop"), ("status", status, "status")):
        line = Line(
            f"{name}, {stages}-stage chain",
            f"{stages} stages",
            r["s"],
            d[key]["s"] if d else None,
            "≥ 10x DVC",
            None,
            common
            if key == "noop"
            else f"first run: repro {fmt_s(first)}" + (f", DVC {fmt_s(d['first_s'])}" if d else ""),
        )
        line.met = at_least(line.ratio, 10)
        lines.append(line)
    return Result(
        lines,
        {"first_s": first, "noop": noop, "status": status, "python": py, "imports": imp, "dvc": d},
    )


# --- 6. add 1 GiB as a root file (a safe copy into the cache) vs cp -------------------------
def row_addroot(ctx: Ctx) -> Result:
    """`repro add big.bin` into an empty cache (as root: a copy, no links) against `cp` of the
    same file and `dvc add`; page cache warm for all (a cold one cannot be had here)."""
    mib = ctx.big_mib
    home = ctx.fresh("addroot")
    src = os.path.join(home, "big.bin")
    make_big_file(src, mib)
    read_all(home)

    def cp_once() -> dict[str, float]:
        dst = os.path.join(home, "copy.bin")
        os.sync()
        p = run(["cp", src, dst], home)
        rm(dst)
        return {"s": p.seconds}

    def add_once(tool: str) -> dict[str, float]:
        proj = repro_project(ctx, "root") if tool == "repro" else dvc_project(ctx, "dvc-root")
        inside = os.path.join(proj, "big.bin")
        os.rename(src, inside)
        os.sync()
        try:
            if tool == "repro":
                p = repro(["add", "big.bin"], proj)
            else:
                p = dvc(ctx, ["add", "-q", "big.bin"], proj)
        finally:
            if os.path.exists(inside):
                os.rename(inside, src)
        rm(proj)
        if not os.path.exists(src):
            make_big_file(src, mib)
        return {"s": p.seconds, "rss_mib": p.maxrss_mib}

    cp = medians(ctx, cp_once)
    r = medians(ctx, lambda: add_once("repro"))
    d = medians(ctx, lambda: add_once("dvc")) if ctx.dvc else None
    rm(home)
    line = Line(
        "add 1 file as root (safe copy into the cache)",
        f"{mib:,} MiB",
        r["s"],
        d["s"] if d else None,
        "≤ 1.5x `cp`",
        r["s"] <= 1.5 * cp["s"],
        f"cp {fmt_s(cp['s'])} (repro/cp {r['s'] / cp['s']:.2f}x); repro RSS "
        f"{r['rss_mib']:.0f} MiB; page cache warm; n={r['n']:.0f}",
    )
    return Result([line], {"cp": cp, "repro": r, "dvc": d})


# --- 7. a million files: add, status, checkout, peak RSS ------------------------------------
FLAT_MIB_PER_1M = 64  # "flat": peak RSS grows by at most this much per million files


def row_million(ctx: Ctx) -> Result:
    """At each scale in ctx.files_1m: add (once: an empty cache each time would cost another
    add), status unchanged (medians), checkout after deleting the folder (medians), each with
    its own peak RSS. RSS is flat when, between the smallest and the largest scale, it grows by
    at most FLAT_MIB_PER_1M per million files (~67 B/file). DVC only up to ctx.dvc_max_files
    files (the quick run: it takes hours at 1M, dvc #7607; at full scale rows add and checkout
    give DVC at 20,000)."""
    scales = sorted(set(ctx.files_1m))
    per: dict[int, dict] = {}
    for n in scales:
        per[n] = {"repro": _million_tool(ctx, "repro", n)}
        if ctx.dvc and n <= ctx.dvc_max_files:
            per[n]["dvc"] = _million_tool(ctx, "dvc", n)
    flat_goal = f"RSS flat (≤ +{FLAT_MIB_PER_1M} MiB per 1M files)"
    lines = []
    for op in ("add", "status", "checkout"):
        small, large = per[scales[0]]["repro"][op], per[scales[-1]]["repro"][op]
        per_file = (large["rss_mib"] - small["rss_mib"]) * MIB / max(1, scales[-1] - scales[0])
        flat = per_file * 1e6 <= FLAT_MIB_PER_1M * MIB if len(scales) > 1 else None
        for n in scales:
            r = per[n]["repro"][op]
            d = per[n].get("dvc", {}).get(op)
            met = flat if op != "status" else (r["s"] < 2 and flat is not False)
            notes = f"repro RSS {r['rss_mib']:.0f} MiB"
            if d:
                notes += f", DVC RSS {d['rss_mib']:.0f} MiB"
            elif ctx.dvc and n > ctx.dvc_max_files:
                notes += "; DVC: quick run only (hours at 1M files, dvc #7607)"
            if n == scales[-1] and len(scales) > 1:
                notes += (
                    f"; RSS {scales[0]:,}→{n:,} files: {per_file:+.0f} B/file "
                    f"(→ {per_file * 1e6 / MIB:+.0f} MiB per 1M files)"
                )
            lines.append(
                Line(
                    f"{n:,} files: {op}" + (" (unchanged)" if op == "status" else ""),
                    f"{n:,} × 4 KiB",
                    r["s"],
                    d["s"] if d else None,
                    ("< 2 s, " if op == "status" else "") + flat_goal,
                    met if n == scales[-1] else None,
                    notes + f"; n={r['n']:.0f}",
                )
            )
    return Result(lines, {str(n): v for n, v in per.items()})


def _million_tool(ctx: Ctx, tool: str, n: int) -> dict[str, dict[str, float]]:
    proj = repro_project(ctx, f"m{n}") if tool == "repro" else dvc_project(ctx, f"dvc-m{n}")
    data = os.path.join(proj, "data")
    out: dict[str, dict[str, float]] = {"create": {"s": make_small_files(data, n)}}

    def cmd(args: list[str], check: bool = True) -> Proc:
        return repro(args, proj, check) if tool == "repro" else dvc(ctx, [*args, "-q"], proj, check)

    os.sync()
    p = cmd(["add", "data"])
    out["add"] = {"s": p.seconds, "rss_mib": p.maxrss_mib, "n": 1}

    def status() -> dict[str, float]:
        q = cmd(["status"], check=False)
        return {"s": q.seconds, "rss_mib": q.maxrss_mib}

    def checkout() -> dict[str, float]:
        rm(data)
        os.sync()
        q = cmd(["checkout"])
        return {"s": q.seconds, "rss_mib": q.maxrss_mib}

    out["status"] = medians(ctx, status)
    out["checkout"] = medians(ctx, checkout)
    if tool == "repro" and n == ctx.spare_small and n not in ctx.spare:
        ctx.spare[n] = os.path.join(ctx.fresh("spare"), "small")
        os.rename(data, ctx.spare[n])  # hash10g's small files, already made
    rm(proj)
    return out


# --- 8. hash a 10 GiB dataset (1M small files + 10 large), cold-ish and warm ----------------
def row_hash10g(ctx: Ctx) -> Result:
    """`repro hash data` with no stat cache, its pages evicted (cold-ish: posix_fadvise per
    file; the host's own caches stay; one pass) and warm (medians), against reading every byte
    in Python in the same state (the read floor) and md5 in Python (DVC's hash, the DVC
    column). The small files are the million row's when it ran at the same scale."""
    proj = repro_project(ctx, "hash")
    data = os.path.join(proj, "data")
    os.makedirs(data)
    spare = ctx.spare.pop(ctx.hash_small, None)
    if spare:
        os.rename(spare, os.path.join(data, "small"))
        rm(os.path.dirname(spare))
    else:
        make_small_files(os.path.join(data, "small"), ctx.hash_small)
    os.makedirs(os.path.join(data, "large"))
    for i in range(ctx.hash_large):
        make_big_file(os.path.join(data, "large", f"big{i}.bin"), ctx.hash_large_mib)
    files, nbytes = tree_size(data)

    def read(cold: bool) -> dict[str, float]:
        if cold:
            evict(data)
        t = time.perf_counter()
        read_all(data)
        return {"s": time.perf_counter() - t}

    def hash_(cold: bool) -> dict[str, float]:
        drop_state(proj)
        if cold:
            evict(data)
        p = repro(["hash", "data"], proj)
        return {"s": p.seconds, "rss_mib": p.maxrss_mib}

    def md5() -> dict[str, float]:
        t = time.perf_counter()
        md5_all(data)
        return {"s": time.perf_counter() - t}

    read_all(data)  # the warm figures start warm
    got = {
        "read_cold": medians(ctx, lambda: read(True), 1),  # one pass: cold is cold once
        "hash_cold": medians(ctx, lambda: hash_(True), 1),
        "read_warm": medians(ctx, lambda: read(False)),
        "hash_warm": medians(ctx, lambda: hash_(False)),
        "md5_warm": medians(ctx, md5, 1),
    }
    rm(proj)
    gb = nbytes / 1e9
    lines = []
    for state in ("cold", "warm"):
        h, rd = got[f"hash_{state}"], got[f"read_{state}"]
        frac = rd["s"] / h["s"]
        lines.append(
            Line(
                f"hash a dataset, {state}" + ("-ish (pages evicted)" if state == "cold" else ""),
                f"{nbytes / 2**30:.1f} GiB: {ctx.hash_small:,} × 4 KiB + "
                f"{ctx.hash_large} × {ctx.hash_large_mib} MiB",
                h["s"],
                got["md5_warm"]["s"] if state == "warm" else None,
                "≥ 0.6 of the read floor",
                frac >= 0.6,
                f"{gb / h['s']:.2f} GB/s vs read floor {gb / rd['s']:.2f} GB/s "
                f"({frac:.2f} of it); repro RSS {h['rss_mib']:.0f} MiB; n={h['n']:.0f}",
                dvc_label="md5 in Python, DVC's hash",
            )
        )
    return Result(lines, {"files": files, "bytes": nbytes, **got})


ROWS: dict[str, Callable[[Ctx], Result]] = {
    "add": row_add,
    "checkout": row_checkout,
    "pushpull": row_pushpull,
    "repush": row_repush,
    "chain": row_chain,
    "addroot": row_addroot,
    "million": row_million,
    "hash10g": row_hash10g,
}


# --- the table ------------------------------------------------------------------------------
def markdown(lines: list[Line], meta: dict) -> str:
    head = [
        "# repro beside DVC: issue 15's table",
        "",
        f"Measured {meta['when']} on {meta['cpus']} CPUs; {meta['repro']}; "
        f"DVC: {meta['dvc']}. Medians of {meta['repeat']} (fewer where a repetition would pass "
        f"{meta['budget']:g} s: `n=` in the notes). Written by `make bench` "
        "(`python -m benchmarks.run`), with every figure in latest.json.",
        "",
        "| workload | scale | repro | DVC | DVC/repro | goal | met? | requests / bytes / notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    body = []
    for ln in lines:
        dvc_cell = fmt_s(ln.dvc) + (f" ({ln.dvc_label})" if ln.dvc_label and ln.dvc else "")
        ratio = "n/a" if ln.ratio is None else f"{ln.ratio:.1f}x"
        met = {True: "yes", False: "**no**", None: "–"}[ln.met]
        cells = [ln.workload, ln.scale, fmt_s(ln.repro), dvc_cell, ratio, ln.goal, met, ln.notes]
        body.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(head + body) + "\n"


def line_dicts(lines: list[Line]) -> list[dict]:
    return [{**asdict(ln), "ratio": ln.ratio} for ln in lines]
