"""repro's benchmarks: speed as ratios to references measured in the same run.

    python -m benchmarks.run [--quick] [--size-mib N] [--files N] [--json PATH] [--only NAME]

References, each measured here beside repro: reading the same bytes (the physical limit), md5
over them (DVC's hash), and DVC itself when a `dvc` command is found (set REPRO_BENCH_DVC to its
path, or `make bench-dvc`). The machine is shared and noisy: each figure is the best of a few
tries, and the ratios matter more than the seconds.
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

BIN = Path(sys.executable).parent
REPRO = str(BIN / "repro")


def dvc_cmd() -> str | None:
    p = os.environ.get("REPRO_BENCH_DVC") or shutil.which("dvc")
    return p if p and os.path.exists(p) else None


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


def bench_checkout(base: str, n: int, rows: list[dict]) -> None:
    proj = new_project(base, "checkout")
    make_small_files(os.path.join(proj, "data"), n)
    sh([REPRO, "add", "data"], proj)
    shutil.rmtree(os.path.join(proj, "data"))
    t = timed([REPRO, "checkout"], proj)
    row = {"dataset": f"checkout {n} files", "files": n, "repro_checkout_s": t}
    if dvc_cmd():
        dproj = dvc_project(base, "dvc-checkout")
        make_small_files(os.path.join(dproj, "data"), n)
        sh([dvc_cmd(), "add", "-q", "data"], dproj)  # type: ignore[list-item]
        shutil.rmtree(os.path.join(dproj, "data"))
        row["dvc_checkout_s"] = timed([dvc_cmd(), "checkout", "-q"], dproj)  # type: ignore[list-item]
        row["checkout_speedup_vs_dvc"] = row["dvc_checkout_s"] / t
    rows.append(row)


CHAIN_STAGE = (
    "  s{i}:\n    cmd: cat {dep} > o{i}.txt; echo {i} >> o{i}.txt\n"
    "    deps: [{dep}]\n    outs: [o{i}.txt]\n"
)


def dvc_pipeline(dproj: str, row: dict, noop: float, status: float, tries: int) -> None:
    """DVC's first repro, no-op repro and status on the same pipeline, and the ratios."""
    dvc = dvc_cmd()
    assert dvc is not None
    row["dvc_first_repro_s"] = timed([dvc, "repro", "-q"], dproj)
    row["dvc_noop_repro_s"] = best(lambda: timed([dvc, "repro", "-q"], dproj), tries)
    row["dvc_status_s"] = best(lambda: timed([dvc, "status", "-q"], dproj, False), tries)
    row["noop_speedup_vs_dvc"] = row["dvc_noop_repro_s"] / noop
    row["status_speedup_vs_dvc"] = row["dvc_status_s"] / status


def bench_chain(base: str, n: int, rows: list[dict]) -> None:
    """A chain of n stages: first run, no-op run and status."""
    spec = "stages:\n" + "".join(
        CHAIN_STAGE.format(i=i, dep="seed.txt" if i == 0 else f"o{i - 1}.txt") for i in range(n)
    )
    proj = new_project(base, "chain")
    Path(proj, "seed.txt").write_text("seed\n")
    Path(proj, "repro.yaml").write_text(spec)
    first = timed([REPRO, "run"], proj)
    noop = best(lambda: timed([REPRO, "run"], proj), 5)
    status = best(lambda: timed([REPRO, "status"], proj), 5)
    py = best(lambda: timed([sys.executable, "-c", "pass"], proj), 5)
    row = {
        "dataset": f"{n}-stage chain",
        "repro_first_run_s": first,
        "repro_noop_run_s": noop,
        "repro_status_s": status,
        "python_startup_s": py,
    }
    if dvc_cmd():
        dproj = dvc_project(base, "dvc-chain")
        Path(dproj, "seed.txt").write_text("seed\n")
        Path(dproj, "dvc.yaml").write_text(spec)
        dvc_pipeline(dproj, row, noop, status, tries=3)
    rows.append(row)


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


def bench_push_pull(base: str, n: int, rows: list[dict]) -> None:
    """Push and pull a folder of n small files to a real S3 API (moto) on loopback."""
    try:
        import s3fs

        from tests.s3server import MotoServer
    except ImportError:
        print("push/pull: needs the s3 and dev extras; skipped")
        return
    creds = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(creds)
    server = MotoServer()
    try:
        fs = s3fs.S3FileSystem(endpoint_url=server.url)
        fs.mkdir("repro-bench")
        proj = new_project(base, "push")
        make_small_files(os.path.join(proj, "data"), n)
        sh([REPRO, "add", "data"], proj)
        sh(
            [
                REPRO,
                "remote",
                "add",
                "s3",
                "s3://repro-bench/cache",
                "-o",
                f"endpoint_url={server.url}",
                "--default",
            ],
            proj,
        )
        t_push = timed([REPRO, "push"], proj)
        t_noop = timed([REPRO, "push"], proj)
        shutil.rmtree(os.path.join(proj, ".repro", "cache"))
        shutil.rmtree(os.path.join(proj, "data"))
        for f in ("state.db", "state.db-wal", "state.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(proj, ".repro", f))
        t_pull = timed([REPRO, "pull"], proj)
        row = {
            "dataset": f"push/pull {n} files to S3 (moto)",
            "repro_push_s": t_push,
            "repro_push_nothing_new_s": t_noop,
            "repro_pull_s": t_pull,
        }
        dvc = dvc_cmd()
        if (
            dvc
            and subprocess.run([dvc, "version"], capture_output=True, text=True).stdout.find("s3")
            >= 0
        ):
            fs.mkdir("dvc-bench")
            dproj = dvc_project(base, "dvc-push")
            make_small_files(os.path.join(dproj, "data"), n)
            sh([dvc, "add", "-q", "data"], dproj)
            sh([dvc, "remote", "add", "-d", "s3", "s3://dvc-bench/cache"], dproj)
            sh([dvc, "remote", "modify", "s3", "endpointurl", server.url], dproj)
            row["dvc_push_s"] = timed([dvc, "push", "-q"], dproj)
            row["dvc_push_nothing_new_s"] = timed([dvc, "push", "-q"], dproj)
            shutil.rmtree(os.path.join(dproj, ".dvc", "cache"))
            shutil.rmtree(os.path.join(dproj, "data"))
            row["dvc_pull_s"] = timed([dvc, "pull", "-q"], dproj)
            row["push_speedup_vs_dvc"] = row["dvc_push_s"] / t_push
            row["pull_speedup_vs_dvc"] = row["dvc_pull_s"] / t_pull
        rows.append(row)
    finally:
        server.stop()


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--size-mib", type=int, default=1024, help="large file size (MiB)")
    ap.add_argument("--files", type=int, default=100_000, help="small files in the folder")
    ap.add_argument(
        "--only",
        action="append",
        help="hashing, checkout, chain, folder, pushpull, log, report, fanout",
    )
    ap.add_argument("--json", default="benchmarks/results/latest.json")
    a = ap.parse_args()
    if a.quick:
        a.size_mib, a.files = 64, 5000
    only = set(
        a.only or ["hashing", "checkout", "chain", "folder", "pushpull", "log", "report", "fanout"]
    )
    base = tempfile.mkdtemp(prefix="repro-bench-", dir=os.environ.get("REPRO_BENCH_DIR"))
    rows: list[dict] = []
    print(f"repro benchmarks in {base}; DVC: {dvc_cmd() or 'not installed (no DVC column)'}")
    try:
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
        if "checkout" in only:
            bench_checkout(base, 20_000 if not a.quick else 2000, rows)
        if "chain" in only:
            bench_chain(base, 50, rows)
        if "folder" in only:
            bench_folder_pipeline(base, 20_000 if not a.quick else 2000, rows)
        if "pushpull" in only:
            bench_push_pull(base, 20_000 if not a.quick else 2000, rows)
        if "log" in only:
            bench_log(base, 10_000 if not a.quick else 2000, rows)
        if "report" in only:
            bench_report(base, 1000 if not a.quick else 200, rows)
        if "fanout" in only:
            bench_fanout(base, 1.0 if not a.quick else 0.3, rows)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for row in rows:
        print(f"\n{row['dataset']}")
        for k, v in row.items():
            if k != "dataset":
                print(f"  {k:28s} {fmt(v)}")
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"\nresults written to {a.json}")


if __name__ == "__main__":
    main()
