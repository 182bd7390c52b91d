"""`repro report`, looked at as a person would: the page opened in real headless Chromium.

One project is built per module (several runs: params changed, code changed, a tag, a failed
run, a run by a user whose name is an HTML injection) and the report written by the real CLI.
The page must make no request but for its own file, show one dot per snapshot of
`repro log --json`, open a panel with a version's details on click, draw the metric charts, and
show crafted strings as text without running them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import git, one_error, run_cli, write

CRAFTED = '</script><img src=x onerror="window.__pwned=1"><b>bold</b>'
TRAIN = """import json, sys, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
if p["lr"] > 5:
    sys.exit(3)
json.dump({"acc": round(1 - p["lr"] / 10, 4), "loss": p["lr"]}, open("metrics.json", "w"))
open("model.txt", "w").write(repr(p))
rows = "".join(f"{i},{p['lr'] / (i + 1)}\\n" for i in range(5))
open("loss.csv", "w").write("step,loss\\n" + rows)
"""
PIPELINE = """stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [train.lr, train.note]
    outs: [model.txt]
    metrics: [metrics.json]
    plots:
      - loss.csv: {x: step, y: loss, title: Training loss}
  publish:
    cmd: python -c "open('pub.txt', 'w').write(open('model.txt').read())"
    deps: [model.txt]
    outs: [pub.txt]
"""


def _params(lr: float, note: str = "plain") -> str:
    return json.dumps({"train": {"lr": lr, "note": note}})  # JSON is YAML


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(root, env, sigs oldest first, report path): five runs, four of them ok."""
    base = tmp_path_factory.mktemp("report")
    root = base / "proj"
    root.mkdir()
    env = {"XDG_CACHE_HOME": str(base / "xdg-cache")}

    def cli(*args: str, ok: bool = True, **extra: str):
        return run_cli(list(args), root, env={**env, **extra}, check=ok)

    git(root, "init", "-q")
    cli("init")
    write(root, "train.py", TRAIN)
    write(root, "repro.yaml", PIPELINE)
    write(root, "params.yaml", _params(0.1))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "pipeline")
    cli("run")  # v1
    write(root, "params.yaml", _params(0.105))
    cli("run")  # v2: a params change, metrics move < 0.01 (minor)
    cli("tag", "best", "-m", "the one to ship")
    write(root, "params.yaml", _params(9.0))
    assert cli("run", ok=False).code != 0  # a failed run: no snapshot
    write(root, "params.yaml", _params(0.3, CRAFTED))
    write(root, "train.py", TRAIN + "# tuned\n")
    cli("run", USER=CRAFTED, LOGNAME=CRAFTED)  # v3: code changed (major), crafted strings
    cli("run")  # a no-op run: the same snapshot again
    log = cli("log", "--json").json()
    sigs = list(dict.fromkeys(r["snapshot"] for r in reversed(log) if r["snapshot"]))
    out = base / "out" / "report.html"
    out.parent.mkdir()
    r = cli("report", "-o", str(out))
    assert str(out) in r.out
    return root, env, sigs, out


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, built):
    """The report open in a fresh page; `page.requests` and `page.errors` as they happened."""
    _, _, _, out = built
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(out.as_uri())
    pg.wait_for_selector("body[data-rendered]", timeout=20_000)
    pg.requests, pg.errors = requests, errors  # type: ignore[attr-defined]
    yield pg
    pg.close()


def test_page_loads_nothing_and_has_one_dot_per_snapshot(page, built, tmp_path):
    _, _, sigs, out = built
    assert page.requests == [out.as_uri()]  # no script, style, font or image from anywhere
    assert page.errors == []
    dots = page.locator("[data-sig]")
    assert dots.count() == len(sigs) == 3
    assert [dots.nth(i).get_attribute("data-sig") for i in range(3)] == sigs
    # the severity markers: v2 changed a param (minor), v3 changed code (major)
    severities = [dots.nth(i).get_attribute("data-severity") for i in range(3)]
    assert severities == ["", "minor", "major"]
    assert page.locator("#timeline text.tag").all_text_contents() == ["best"]
    assert page.locator("#timeline [data-run]").count() == 1  # the failed run, as a cross
    # one chart per metric (acc, loss), each drawn
    assert page.locator("#metrics .chart").count() == 2
    assert page.locator("#metrics .chart canvas").count() == 2
    assert page.locator("#metrics canvas").first.bounding_box()["height"] > 100
    assert page.locator("#dag .node").all_text_contents() == ["train", "publish"]
    assert page.locator("#plots .chart canvas").count() == 1  # the declared plot
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_clicking_a_dot_opens_its_details(page, built, tmp_path):
    _, _, sigs, _ = built
    assert page.locator("#panel").is_hidden()
    page.locator(f'[data-sig="{sigs[1]}"]').click()
    panel = page.locator("#panel")
    assert panel.is_visible()
    text = panel.inner_text()
    assert sigs[1] in text
    assert "Version 2 of 3" in text
    assert "params.yaml:train.lr\t0.105" in text  # the param value of this version
    assert "acc\t0.9895" in text  # its metric
    assert "best" in text  # its tag
    stages = page.locator("#panel table").nth(2).inner_text()
    assert stages.index("train") < stages.index("publish")  # the pipeline's order
    changes = panel.locator("table").last.inner_text()
    assert "params.yaml:train.lr" in changes and "0.1" in changes and "minor" in changes
    page.screenshot(path=str(tmp_path / "panel.png"))
    page.keyboard.press("Escape")
    assert panel.is_hidden()


def test_crafted_strings_show_as_text_and_run_nothing(page, built):
    _, _, sigs, out = built
    html = out.read_text()
    assert "</script><img" not in html and "<b>bold</b>" not in html
    page.locator(f'[data-sig="{sigs[2]}"]').click()
    text = page.locator("#panel").inner_text()
    assert CRAFTED in text  # the user's name and the param, shown as typed
    assert "major" in text and "train.py" in text  # the code change and its severity
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0 and page.locator("#panel b").count() == 0
    assert page.requests == [out.as_uri()]  # the `src=x` was never requested
    assert page.errors == []


def test_json_data_has_the_versions(built):
    root, env, sigs, _ = built
    doc = run_cli(["report", "--json-data"], root, env=env, check=True).json()
    assert [v["sig"] for v in doc["versions"]] == sigs
    assert doc["versions"][2]["user"] == CRAFTED
    assert doc["summary"]["failed"] == 1 and doc["summary"]["runs"] == 5
    assert [v["severity"] for v in doc["versions"]] == [None, "minor", "major"]


def test_the_bundle_is_cached_per_user(built, tmp_path):
    """The second report reads the Vega bundle from the user's cache folder."""
    root, env, _, _ = built
    cache = Path(env["XDG_CACHE_HOME"]) / "repro"
    bundles = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 500_000]
    assert len(bundles) == 1
    with bundles[0].open("a") as f:
        f.write("\n/* from-the-cache */\n")
    out = tmp_path / "again.html"
    doc = run_cli(["report", "-o", str(out), "--json"], root, env=env, check=True).json()
    assert "/* from-the-cache */" in out.read_text()
    assert doc["path"] == str(out) and doc["bytes"] == out.stat().st_size
    assert (doc["snapshots"], doc["runs"]) == (3, 5)


def test_without_the_extra_one_sentence(built, tmp_path):
    """vl_convert shadowed by a package that fails to import, as when it is not installed."""
    root, env, _, _ = built
    fake = tmp_path / "path" / "vl_convert"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named vl_convert')\n")
    out = tmp_path / "r.html"
    pythonpath = os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    r = run_cli(["report", "-o", str(out)], root, env={**env, "PYTHONPATH": pythonpath})
    assert "repro-engine[report]" in one_error(r)
    assert not out.exists()


def test_bad_output_paths_are_refused(built, tmp_path):
    root, env, _, _ = built
    lock = (root / "repro.lock").read_bytes()
    for target, words in (
        ("repro.lock", "owns this path"),
        (".repro/report.html", "owns this path"),
        (str(tmp_path), "is a folder"),
        (str(tmp_path / "no" / "such" / "r.html"), "does not exist"),
    ):
        r = run_cli(["report", "-o", target], root, env=env)
        assert words in one_error(r), target
    assert (root / "repro.lock").read_bytes() == lock
    assert not (root / ".repro" / "report.html").exists()


def test_a_project_without_runs_gets_an_empty_timeline(browser, tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    run_cli(["init"], root, env=env, check=True)
    out = tmp_path / "r.html"
    run_cli(["report", "-o", str(out)], root, env=env, check=True)
    pg = browser.new_page()
    pg.goto(out.as_uri())
    pg.wait_for_selector("body[data-rendered]", timeout=20_000)
    assert pg.locator("[data-sig]").count() == 0
    assert "No runs recorded yet" in pg.locator("#timeline").inner_text()
    pg.close()
    shutil.rmtree(root)
