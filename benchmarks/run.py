"""repro's benchmarks: issue 15's table (repro beside DVC 3.67.1), and older rows.

    python -m benchmarks.run [--quick] [--only NAME]... [--all] [--repeat N] [--budget S]
        [--files-20k N] [--big-mib N] [--files-1m N,N] [--hash-small N] [--hash-large N]
        [--hash-large-mib N] [--size-mib N] [--files N] [--json PATH]

Default rows (issue 15; estimates at default scales, with DVC, for repro as of the issue):
add ~1.5 min, checkout ~1.5, pushpull ~7, repush ~1.5, chain ~1, addroot ~1, million ~5,
hash10g ~3: about 20 minutes. To fit, the million row runs 20,000 and 250,000 files and
hash10g 250,000 small + 10 x 900 MiB (9.8 GiB) by default; the issue's full scale is
`--files-1m 20000,1000000 --hash-small 1000000 --hash-large-mib 600` (add ~15 min at HEAD's
per-file speed). --quick shrinks every scale (a few minutes). Older rows, by name or --all:
hashing, folder, log, report, fanout.

References measured in the same run: creating the same files from Python, `cp`, reading every
byte (the read floor), md5 (DVC's hash), and DVC itself when a `dvc` command is found
(REPRO_BENCH_DVC names it; `make bench-dvc` sets it). REPRO_BENCH_REPRO names the repro command
under test (default: this venv's). Figures are medians of --repeat runs; a measurement stops
repeating when its next run would pass --budget seconds (its `n=` says how many it had).
Writes --json (default benchmarks/results/latest.json) and the markdown table beside it (.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.issue15 import ESTIMATES, ROWS, Ctx, Line, dvc_cmd, line_dicts, markdown

BIN = Path(sys.executable).parent
REPRO = os.environ.get("REPRO_BENCH_REPRO") or str(BIN / "repro")


def best(fn: Callable[[], object], n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def sh(args: list[str], cwd: str, check: bool = True) -> None:
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")


def timed(args: list[str], cwd: str, check: bool = True) -> float:
    t = time.perf_counter()
    sh(args, cwd, check)
    return time.perf_counter() - t


def read_all(paths: list[str]) -> None:
    buf = memoryview(bytearray(4 << 20))
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        while os.readv(fd, [buf]):
            pass
        os.close(fd)


def md5_all(paths: list[str]) -> None:
    buf = memoryview(bytearray(4 << 20))
    for p in paths:
        h = hashlib.md5()
        fd = os.open(p, os.O_RDONLY)
        while n := os.readv(fd, [buf]):
            h.update(buf[:n])
        os.close(fd)


def files_under(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


def make_small_files(root: str, n: int, size: int = 4096, folders: int = 100) -> None:
    for i in range(n):
        d = os.path.join(root, f"d{i % folders:03d}")
        if i < folders:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
            f.write(os.urandom(size))


def make_big_file(path: str, mib: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mib):
            f.write(block[:-8] + i.to_bytes(8, "little"))


def new_project(base: str, name: str) -> str:
    root = os.path.join(base, name)
    os.makedirs(root)
    sh(["git", "init", "-q"], root)
    sh([REPRO, "init"], root)
    return root


def dvc_project(base: str, name: str) -> str:
    root = os.path.join(base, name)
    os.makedirs(root)
    sh(["git", "init", "-q"], root)
    sh([dvc_cmd(), "init", "-q"], root)  # type: ignore[list-item]
    sh([dvc_cmd(), "config", "core.analytics", "false"], root)  # type: ignore[list-item]
    return root


# ---------------------------------------------------------------------------------------------
def bench_hashing(base: str, label: str, make: Callable[[str], None], rows: list[dict]) -> None:
    """Hash one dataset: cold (`repro add`, empty state db) and warm (`repro status`-like)."""
    proj = new_project(base, f"hash-{label}")
    data = os.path.join(proj, "data")
    os.makedirs(data)
    make(data)
    paths = files_under(data)
    nbytes = sum(os.path.getsize(p) for p in paths)
    read_all(paths)  # warm the page cache for every contender alike
    t_read = best(lambda: read_all(paths))
    t_md5 = best(lambda: md5_all(paths), 2)
    t_cold = timed([REPRO, "add", "data"], proj)
    t_warm = best(lambda: timed([REPRO, "hash", "data"], proj), 3)

    # Cold hashing alone (no cache writes): a fresh state db each time.
    def cold_hash() -> None:
        for f in ("state.db", "state.db-wal", "state.db-shm"):
            p = os.path.join(proj, ".repro", f)
            if os.path.exists(p):
                os.unlink(p)
        sh([REPRO, "hash", "data"], proj)

    t_hash = best(cold_hash, 2)
    from repro.hashing.engine import Hasher

    read_all(paths)
    t_engine = best(lambda: Hasher().hash_path(data), 3)  # in-process, empty stat cache
    t_blake3 = None
    with contextlib.suppress(Exception):  # the cost of `hash = "blake3"` (docs/security.md)
        from repro.canonical import use_hash

        use_hash("blake3")
        try:
            t_blake3 = best(lambda: Hasher().hash_path(data), 3)
        finally:
            use_hash("xxh3")
    row = {
        "dataset": label,
        "files": len(paths),
        "bytes": nbytes,
        "read_s": t_read,
        "md5_s": t_md5,
        "engine_hash_s": t_engine,
        "engine_vs_read": t_read / t_engine,
        "engine_GBps": nbytes / t_engine / 1e9,
        "read_GBps": nbytes / t_read / 1e9,
        "repro_hash_cold_s": t_hash,
        "repro_add_cold_s": t_cold,
        "repro_warm_s": t_warm,
        "hash_vs_read": t_read / t_hash,
        "hash_vs_md5": t_md5 / t_hash,
    }
    if t_blake3:
        row["engine_blake3_s"] = t_blake3
        row["blake3_vs_xxh3"] = t_blake3 / t_engine
        row["blake3_vs_read"] = t_read / t_blake3
    if dvc_cmd():
        dproj = dvc_project(base, f"dvc-{label}")
        shutil.copytree(data, os.path.join(dproj, "data"))
        read_all(files_under(os.path.join(dproj, "data")))
        row["dvc_add_s"] = timed([dvc_cmd(), "add", "-q", "data"], dproj)  # type: ignore[list-item]
        row["dvc_status_s"] = best(lambda: timed([dvc_cmd(), "status", "-q"], dproj, False), 2)  # type: ignore[list-item]
        row["add_speedup_vs_dvc"] = row["dvc_add_s"] / t_cold
        row["warm_speedup_vs_dvc"] = row["dvc_status_s"] / t_warm
    rows.append(row)
    shutil.rmtree(proj)


def dvc_pipeline(dproj: str, row: dict, noop: float, status: float, tries: int) -> None:
    """DVC's first repro, no-op repro and status on the same pipeline, and the ratios."""
    dvc = dvc_cmd()
    assert dvc is not None
    row["dvc_first_repro_s"] = timed([dvc, "repro", "-q"], dproj)
    row["dvc_noop_repro_s"] = best(lambda: timed([dvc, "repro", "-q"], dproj), tries)
    row["dvc_status_s"] = best(lambda: timed([dvc, "status", "-q"], dproj, False), tries)
    row["noop_speedup_vs_dvc"] = row["dvc_noop_repro_s"] / noop
    row["status_speedup_vs_dvc"] = row["dvc_status_s"] / status


def bench_folder_pipeline(base: str, n: int, rows: list[dict]) -> None:
    """A 3-stage pipeline over a folder of n small files: no-op run and status."""
    spec = """stages:
  list:
    cmd: ls -R data > listing.txt
    deps: [data]
    outs: [listing.txt]
  count:
    cmd: wc -l listing.txt > count.txt
    deps: [listing.txt]
    outs: [count.txt]
  copy:
    cmd: cp -r data copy
    deps: [data]
    outs: [copy]
"""
    proj = new_project(base, "folderpipe")
    make_small_files(os.path.join(proj, "data"), n)
    sh([REPRO, "add", "data"], proj)
    Path(proj, "repro.yaml").write_text(
        Path(proj, "repro.yaml").read_text().replace("stages: {}\n", "") + spec
    )
    first = timed([REPRO, "run"], proj)
    noop = best(lambda: timed([REPRO, "run"], proj), 3)
    status = best(lambda: timed([REPRO, "status"], proj), 3)
    row = {
        "dataset": f"3-stage pipeline over {n} files",
        "repro_first_run_s": first,
        "repro_noop_run_s": noop,
        "repro_status_s": status,
    }
    if dvc_cmd():
        dproj = dvc_project(base, "dvc-folderpipe")
        make_small_files(os.path.join(dproj, "data"), n)
        sh([dvc_cmd(), "add", "-q", "data"], dproj)  # type: ignore[list-item]
        Path(dproj, "dvc.yaml").write_text(spec)
        dvc_pipeline(dproj, row, noop, status, tries=2)
    rows.append(row)


def make_records(root: str, n: int) -> None:
    """n synthetic run records (two stages, one metrics file each) in the project's cache."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from repro.project import Project
    from repro.records import RunRecord, StageRecord, iso, save_record

    backend = Project(root).cache.backend
    t0 = time.time() - n * 60
    for i in range(n):
        t = t0 + i * 60
        stages = [StageRecord(s, "ran", f"{i:032x}", 1.5) for s in ("prepare", "train")]
        rec = RunRecord(
            run_id=f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(t))}000Z-{i:06x}",
            kind="run",
            user="bench",
            host="h",
            started=iso(t),
            ended=iso(t + 3),
            argv=["repro", "run"],
            ci={},
            git_commit=f"{i:040x}",
            git_dirty=False,
            python="3",
            platform="linux",
            snapshot=f"{i:032x}",
            status="ok",
            stages=stages,
            metrics={"metrics.json": {"accuracy": i / n, "loss": 1 - i / n}},
        )
        save_record(backend, rec)


def bench_log(base: str, n: int, rows: list[dict]) -> None:
    """`repro log` over n run records: the index rebuilt from the store, then answering."""
    root = new_project(base, "log")
    make_records(root, n)
    index = os.path.join(root, ".repro", "state-runs.db")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(index + suffix)
    row: dict = {"dataset": f"log over {n} run records"}
    row["repro log -n 20, index rebuilt s"] = timed([REPRO, "log", "-n", "20"], root)
    row["repro log -n 20 s"] = best(lambda: sh([REPRO, "log", "-n", "20"], root))
    row["repro log --json (all) s"] = best(lambda: sh([REPRO, "log", "--json"], root))
    rows.append(row)


def make_versions(root: str, n: int) -> None:
    """n pipeline versions: a stored snapshot each (a param moves every time), each made by one
    run record; a failed run (no snapshot) after every tenth."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from repro.project import Project
    from repro.records import RunRecord, StageRecord, iso, save_record
    from repro.snapshots import Snapshot, save_snapshot

    backend = Project(root).cache.backend
    t0 = time.time() - n * 3600

    def record(i: int, t: float, sig: str | None) -> RunRecord:
        stage = StageRecord("train", "ran" if sig else "failed", f"{i + 1:032x}", 2.0 + i % 7)
        return RunRecord(
            run_id=f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(t))}000Z-{i:06x}",
            kind="run",
            user="bench",
            host="h",
            started=iso(t),
            ended=iso(t + 3),
            argv=["repro", "run"],
            ci={},
            git_commit=f"{i:040x}",
            git_dirty=False,
            python="3",
            platform="linux",
            snapshot=sig,
            status="ok" if sig else "failed",
            stages=[stage],
            metrics={"metrics.json": {"accuracy": i / n, "loss": 1 - i / n}} if sig else {},
        )

    for i in range(n):
        t = t0 + i * 3600
        entry = {
            "cmd": "python train.py",
            "deps": {"train.py": {"hash": "ab" * 16, "size": 100}},
            "params": {"params.yaml:train.lr": i / n},
            "outs": {"model.pkl": {"hash": f"{i:032x}", "size": 10}},
            "signature": f"{i + 1:032x}",
        }
        save_record(
            backend, record(i, t, save_snapshot(backend, Snapshot({"train": entry}, {}, {})))
        )
        if i % 10 == 9:
            save_record(backend, record(n + i, t + 60, None))


def bench_report(base: str, n: int, rows: list[dict]) -> None:
    """`repro report` over n versions, and the page's render in headless Chromium (the time
    from the script's start to every chart drawn, and from navigation to that point)."""
    root = new_project(base, "report")
    make_versions(root, n)
    out = os.path.join(base, "report.html")
    row: dict = {"dataset": f"report over {n} versions"}
    row["repro report s"] = best(lambda: sh([REPRO, "report", "-o", out], root))
    row["report MiB"] = os.path.getsize(out) / 2**20
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        row["chromium"] = "playwright not installed"
        rows.append(row)
        return
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        tries = []
        for _ in range(3):
            page = b.new_page(viewport={"width": 1280, "height": 900})
            t = time.perf_counter()
            page.goto(Path(out).as_uri())
            page.wait_for_selector("body[data-rendered]", timeout=60_000)
            tries.append(
                (time.perf_counter() - t, float(page.evaluate("document.body.dataset.rendered")))
            )
            row["dots"] = page.locator("[data-sig]").count()
            page.close()
        b.close()
    row["chromium load to rendered s"] = min(x for x, _ in tries)
    row["chromium script to rendered s"] = min(y for _, y in tries) / 1000
    rows.append(row)


FANOUT_WORK = """\
import sys
i, n = int(sys.argv[1]), int(sys.argv[2])
acc = 0
for k in range(n):
    acc = (acc * 31 + k * k + i) % 1000003
with open(f"out/o{i}.txt", "w") as f:
    f.write(f"{i} {acc}\\n")
"""


def calibrate_work(seconds: float) -> int:
    """Loop iterations of FANOUT_WORK that take about `seconds` of pure Python here."""
    n, t = 200_000, 0.0
    while t < 0.2:
        n *= 2
        t0 = time.perf_counter()
        acc = 0
        for k in range(n):
            acc = (acc * 31 + k * k) % 1000003
        t = time.perf_counter() - t0
    return int(n * seconds / t)


def fanout_project(base: str, name: str, stages: int, n: int) -> str:
    root = new_project(base, name)
    Path(root, "work.py").write_text(FANOUT_WORK)
    os.makedirs(os.path.join(root, "out"))
    Path(root, "repro.yaml").write_text(
        "stages:\n"
        + "".join(
            f"  w{i}:\n    cmd: python3 work.py {i} {n}\n    deps: [work.py]\n"
            f"    outs: [out/o{i}.txt]\n"
            for i in range(stages)
        )
    )
    return root


def bench_fanout(base: str, seconds: float, rows: list[dict], stages: int = 16) -> None:
    """`stages` independent stages of ~`seconds` of CPU each: local `-j 1` against a Dask
    cluster of 2 single-thread workers (tests/dask_cluster.py) sharing a remote; the speed-up
    beside the ideal (2.0x)."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None or not (BIN / "dask").exists():
        print("fanout: needs the dask extra (distributed); skipped")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.dask_cluster import running_cluster

    n = calibrate_work(seconds)
    local = fanout_project(base, "fanout-local", stages, n)
    t_local = timed([REPRO, "run", "-j", "1"], local)
    remote = os.path.join(base, "fanout-remote")
    os.makedirs(remote)
    dask = fanout_project(base, "fanout-dask", stages, n)
    sh([REPRO, "remote", "add", "shared", f"file://{remote}", "--default"], dask)
    with running_cluster(2) as cluster:
        args = ["--executor", "dask", "--scheduler", cluster.address, "-j", str(stages)]
        t_dask = timed([REPRO, "run", *args], dask)
    same = all(
        Path(local, "out", f"o{i}.txt").read_bytes() == Path(dask, "out", f"o{i}.txt").read_bytes()
        for i in range(stages)
    )
    rows.append(
        {
            "dataset": f"fan-out: {stages} stages of ~{seconds:g} s CPU each",
            "local -j 1 s": t_local,
            "dask 2 workers s": t_dask,
            "speed-up": t_local / t_dask,
            "ideal speed-up": 2.0,
            "outputs identical": same,
            "cpus on this machine": os.cpu_count() or 0,
        }
    )


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v < 100 else f"{v:.0f}"
    return str(v)


OLD_ROWS = ("hashing", "folder", "log", "report", "fanout")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument(
        "--only", action="append", choices=[*ROWS, *OLD_ROWS], help="run this row (repeatable)"
    )
    ap.add_argument("--all", action="store_true", help="issue 15's rows and the older ones")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median); 3")
    ap.add_argument(
        "--budget", type=float, default=150.0, help="seconds a figure may take (0: no limit)"
    )
    ap.add_argument("--files-20k", type=int, help="files for add/checkout/pushpull; 20000")
    ap.add_argument("--big-mib", type=int, help="the big file of repush/addroot (MiB); 1024")
    ap.add_argument("--files-1m", help="scales of the million row, comma-separated; 20000,250000")
    ap.add_argument(
        "--dvc-max-files", type=int, help="DVC in `million` up to N files; quick 100000, else 0"
    )
    ap.add_argument("--hash-small", type=int, help="small files of hash10g; 250000")
    ap.add_argument("--hash-large", type=int, default=10, help="large files of hash10g; 10")
    ap.add_argument("--hash-large-mib", type=int, help="size of each large file (MiB); 900")
    ap.add_argument("--size-mib", type=int, default=1024, help="large file of `hashing` (MiB)")
    ap.add_argument("--files", type=int, default=100_000, help="small files of `hashing`")
    ap.add_argument("--json", default="benchmarks/results/latest.json")
    a = ap.parse_args()
    quick = {"files_20k": 2000, "big_mib": 64, "files_1m": "20000,100000", "hash_small": 20_000}
    full = {"files_20k": 20_000, "big_mib": 1024, "files_1m": "20000,250000"}
    for k, v in (quick if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.dvc_max_files is None:
        a.dvc_max_files = 100_000 if a.quick else 0
    if a.hash_small is None:
        a.hash_small = 20_000 if a.quick else 250_000
    if a.hash_large_mib is None:
        a.hash_large_mib = 8 if a.quick else 900
    if a.quick:
        a.size_mib, a.files = 64, 5000
    return a


def run_old_rows(a: argparse.Namespace, only: set[str], base: str, rows: list[dict]) -> None:
    """The rows that predate issue 15 (hashing engine, folder pipeline, log, report, fan-out)."""
    if "hashing" in only:
        bench_hashing(
            base,
            f"1 file of {a.size_mib} MiB",
            lambda d: make_big_file(os.path.join(d, "big.bin"), a.size_mib),
            rows,
        )
        bench_hashing(
            base, f"{a.files} files of 4 KiB", lambda d: make_small_files(d, a.files), rows
        )

        def mixed(d: str) -> None:
            make_small_files(os.path.join(d, "small"), a.files // 10)
            for i in range(4):
                make_big_file(os.path.join(d, f"big{i}.bin"), max(1, a.size_mib // 8))

        bench_hashing(base, "mixed", mixed, rows)
    if "folder" in only:
        bench_folder_pipeline(base, 20_000 if not a.quick else 2000, rows)
    if "log" in only:
        bench_log(base, 10_000 if not a.quick else 2000, rows)
    if "report" in only:
        bench_report(base, 1000 if not a.quick else 200, rows)
    if "fanout" in only:
        bench_fanout(base, 1.0 if not a.quick else 0.3, rows)


def version_of(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    if p.returncode != 0:
        return "n/a"
    lines = (p.stdout.strip() or p.stderr.strip()).splitlines()
    return lines[-1] if lines else ""  # `git status --porcelain` of a clean tree says nothing


def meta_of(a: argparse.Namespace) -> dict:
    commit = version_of(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"])
    dirty = version_of(["git", "-C", str(Path(__file__).parent), "status", "--porcelain"])
    dvc = dvc_cmd()
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count() or 0,
        "repro": f"{version_of([REPRO, '--version'])} (commit {commit}"
        + (", uncommitted changes)" if dirty not in ("", "n/a") else ")"),
        "dvc": version_of([dvc, "--version"]) if dvc else "not installed (columns n/a)",
        "repeat": a.repeat,
        "budget": a.budget,
        "args": sys.argv[1:],
    }


def run_new_rows(ctx: Ctx, only: list[str], lines: list, details: dict) -> None:
    """Issue 15's rows in table order; a row that fails is a line saying so, not an abort."""
    for name in ROWS:
        if name not in only:
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        t = time.perf_counter()
        try:
            res = ROWS[name](ctx)
        except Exception as e:
            said = [ln for ln in str(e).strip().splitlines() if ln.strip()] or [type(e).__name__]
            why = said[0][:150] + (f" … {said[-1][:150]}" if len(said) > 1 else "")
            lines.append(Line(name, "", None, None, "", False, f"failed: {why}"))
            details[name] = {"error": str(e)}
            print(f"  {name} failed: {e}", flush=True)
            continue
        lines += res.lines
        details[name] = {**res.details, "wall_s": time.perf_counter() - t}
        print(f"  {name}: {details[name]['wall_s']:.0f} s", flush=True)


def write_results(path: str, meta: dict, lines: list, details: dict, rows: list[dict]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        doc = {"meta": meta, "table": line_dicts(lines), "details": details, "other": rows}
        json.dump(doc, f, indent=2, default=str)
    md = markdown(lines, meta) if lines else "# repro benchmarks\n"
    for row in rows:
        md += f"\n## {row['dataset']}\n\n| figure | value |\n| --- | --- |\n"
        md += "".join(f"| {k} | {fmt(v)} |\n" for k, v in row.items() if k != "dataset")
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(md)
    if lines:
        print("\n" + markdown(lines, meta))
    print(f"results written to {path} and {os.path.splitext(path)[0]}.md")


def main() -> None:
    a = parse_args()
    only = list(a.only or (list(ROWS) + list(OLD_ROWS) if a.all else list(ROWS)))
    base = tempfile.mkdtemp(prefix="repro-bench-", dir=os.environ.get("REPRO_BENCH_DIR"))
    ctx = Ctx(
        base=base,
        repeat=a.repeat,
        budget=a.budget,
        files=a.files_20k,
        big_mib=a.big_mib,
        files_1m=[int(x) for x in str(a.files_1m).split(",") if x.strip()],
        dvc_max_files=a.dvc_max_files,
        hash_small=a.hash_small,
        hash_large=a.hash_large,
        hash_large_mib=a.hash_large_mib,
        dvc=dvc_cmd(),
    )
    if "hash10g" in only and "million" in only:
        ctx.spare_small = ctx.hash_small
    print(f"repro benchmarks in {base}; DVC: {ctx.dvc or 'not installed (no DVC column)'}")
    if not a.quick:
        print("estimates: " + ", ".join(f"{n} {ESTIMATES[n]}" for n in only if n in ESTIMATES))
    meta = meta_of(a)
    meta["scales"] = {k: v for k, v in vars(a).items() if k not in ("only", "json")}
    lines: list = []
    details: dict = {}
    rows: list[dict] = []
    try:
        run_new_rows(ctx, only, lines, details)
        run_old_rows(a, set(only), base, rows)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for row in rows:
        print(f"\n{row['dataset']}")
        for k, v in row.items():
            if k != "dataset":
                print(f"  {k:28s} {fmt(v)}")
    write_results(a.json, meta, lines, details, rows)


if __name__ == "__main__":
    main()
