"""`plots:` in repro.yaml and `repro plots show|diff`, as a user meets them: a stage logging loss
per step, run with two learning rates; the page opened in real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from repro.project import Project
from tests.conftest import git, run_cli, snapshot_tree, write

vl_convert = pytest.importorskip("vl_convert", reason="plots need the 'report' extra")

TRAIN = """\
import csv, json, sys
lr = float(open("params.yaml").read().split(":")[1])
with open("loss.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["step", "loss"])
    for s in range(40):
        w.writerow([s, round(1 / (1 + lr * s), 6)])
json.dump({"cm": [{"actual": a, "predicted": p} for a in "ab" for p in "ab"]},
          open("cm.json", "w"))
open("chart.png", "wb").write(open("src.png", "rb").read())
"""
SPEC = """\
stages:
  train:
    cmd: python3 train.py
    deps: [train.py, src.png]
    params: [lr]
    outs: [chart.png]
    plots:
      - loss.csv: {x: step, y: loss, title: Training loss}
      - cm.json: {template: confusion, x: actual, y: predicted, cache: false}
plots:
  - chart.png
"""


def losses(lr: float) -> list[float]:
    return [round(1 / (1 + lr * s), 6) for s in range(40)]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The bundle cache in a folder of this module's own (built once, not in the home)."""
    return {"XDG_CACHE_HOME": str(tmp_path_factory.mktemp("xdg"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env) -> Path:
    """A project run at lr 0.1 (tagged v1, committed to git) and at lr 0.5 (tagged v2)."""
    root = tmp_path_factory.mktemp("plots") / "proj"
    root.mkdir()
    git(root, "init", "-q")
    Project.init(root)
    png = vl_convert.vegalite_to_png(
        {"mark": "bar", "data": {"values": [{"a": 1}]}, "encoding": {"x": {"field": "a"}}}
    )
    write(root, "src.png", png)
    write(root, "train.py", TRAIN)
    write(root, "repro.yaml", SPEC)
    write(root, "params.yaml", "lr: 0.1\n")
    run_cli(["run"], root, env=env, check=True)
    run_cli(["tag", "v1"], root, env=env, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "lr 0.1")
    write(root, "params.yaml", "lr: 0.5\n")
    run_cli(["run"], root, env=env, check=True)
    run_cli(["tag", "v2"], root, env=env, check=True)
    return root


def by_id(specs: list[dict]) -> dict[str, dict]:
    return {s["usermeta"]["repro"]["id"]: s for s in specs}


def series(spec: dict, rev: str) -> list[float]:
    return [r["y"] for r in spec["data"]["values"] if r["rev"] == rev]


def page_specs(html: str) -> list[dict]:
    m = re.search(r'<script type="application/json" id="repro-plots">(.*?)</script>', html, re.S)
    assert m, "the page carries its specs"
    return json.loads(m.group(1))


def test_show_writes_a_self_contained_page_of_the_workspace(trained, env):
    r = run_cli(["plots", "show", "-o", "out.html"], trained, env=env, check=True)
    assert "3 plots" in r.out
    html = (trained / "out.html").read_text()
    assert "window.vegaEmbed=" in html  # Vega inlined, not fetched
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # the inlined scripts
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", markup)
    specs = by_id(page_specs(html))
    assert set(specs) == {"loss.csv", "cm.json", "chart.png"}
    assert series(specs["loss.csv"], "workspace") == losses(0.5)
    assert specs["loss.csv"]["title"] == "Training loss"


def test_diff_overlays_two_versions(trained, env):
    specs = by_id(run_cli(["plots", "diff", "v1", "v2", "--json"], trained, env=env).json())
    loss = specs["loss.csv"]
    assert series(loss, "v1") == losses(0.1)
    assert series(loss, "v2") == losses(0.5)
    assert loss["encoding"]["color"]["field"] == "rev"
    # A git revision names the state its repro.lock records; the default new side is the
    # workspace; the HTML holds both.
    r = run_cli(["plots", "diff", "HEAD", "-o", "d.html"], trained, env=env, check=True)
    specs = by_id(page_specs((trained / "d.html").read_text()))
    assert series(specs["loss.csv"], "HEAD") == losses(0.1)
    assert series(specs["loss.csv"], "workspace") == losses(0.5)
    assert r.err == ""


def test_json_specs_render_and_images_are_inlined(trained, env):
    import base64

    r = run_cli(["plots", "show", "--json"], trained, env=env, check=True)
    specs = r.json()
    for spec in specs:
        assert vl_convert.vegalite_to_svg(spec).lstrip().startswith("<svg")
    image = by_id(specs)["chart.png"]
    src = image["data"]["values"][0]["src"]
    assert src == "data:image/png;base64," + base64.b64encode(
        (trained / "chart.png").read_bytes()
    ).decode("ascii")
    cm = by_id(specs)["cm.json"]
    assert sorted((v["x"], v["y"], v["count"]) for v in cm["data"]["values"]) == [
        ("a", "a", 1),
        ("a", "b", 1),
        ("b", "a", 1),
        ("b", "b", 1),
    ]


def test_page_in_headless_chromium_draws_every_plot_offline(trained, env, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    run_cli(["plots", "diff", "v1", "v2", "-o", str(tmp_path / "p.html")], trained, env=env)
    url = (tmp_path / "p.html").as_uri()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            requests: list[str] = []
            page.on("request", lambda req: requests.append(req.url))
            page.goto(url)
            page.wait_for_function(
                "document.querySelectorAll('figure.plot svg.marks').length === 3", timeout=15000
            )
            figures = page.eval_on_selector_all(
                "figure.plot",
                "fs => fs.map(f => [f.dataset.plot, f.querySelectorAll('svg.marks').length,"
                " f.querySelectorAll('svg image').length])",
            )
            page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
        finally:
            browser.close()
    # one image per version side by side; one chart per plot
    assert sorted(figures) == [["chart.png", 1, 2], ["cm.json", 1, 0], ["loss.csv", 1, 0]]
    assert [u for u in requests if u != url and not u.startswith("data:")] == []
    assert (tmp_path / "plots.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("entry", "expect"),
    [
        ("plots:\n  - loss.csv: {template: pie}\n", "key 'plots[0].template': unknown template"),
        ("plots:\n  - ../outside.csv\n", "key 'plots[0]': path '../outside.csv' is outside"),
        (
            "plots:\n  - acc: {x: {other.csv: step}, y: {loss.csv: acc}}\n",
            "key 'plots[0].x': names file 'other.csv'",
        ),
        ("plots:\n  - loss.csv: {colour: red}\n", "key 'plots[0].colour': unknown key"),
        ("plots: loss.csv\n", "key 'plots': must be a list"),
        (
            "stages:\n  s:\n    cmd: echo\n    plots:\n      - loss.csv: {template: pie}\n",
            "stage 's', key 'plots.template'",
        ),
    ],
)
def test_bad_plots_entries_are_one_sentence(project, entry, expect):
    write(project.root, "repro.yaml", entry)
    before = snapshot_tree(project.root)
    r = run_cli(["plots", "show"], project.root)
    assert r.code == 1, r
    assert r.err.startswith("error: repro.yaml, line ") and expect in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert snapshot_tree(project.root) == before


def test_bad_stage_plot_stops_run_too(project):
    write(project.root, "repro.yaml", SPEC.replace("x: step,", "x: {a.csv: step},"))
    r = run_cli(["run"], project.root)
    assert r.code == 1 and "stage 'train', key 'plots.x'" in r.err, r.err
    assert not (Path(project.root) / "repro.lock").exists()


def test_missing_extra_is_named(trained, env, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "vl_convert.py").write_text("raise ImportError('not installed')\n")
    env2 = {**env, "PYTHONPATH": str(shadow)}
    r = run_cli(["plots", "show", "-o", "x.html"], trained, env=env2)
    assert r.code == 1 and "pip install 'repro-engine[report]'" in r.err, r.err
    assert not (trained / "x.html").exists()
    assert run_cli(["plots", "show", "--json"], trained, env=env2).code == 0


def test_formats_and_thinning(project):
    """dvclive's `{key: [records]}` JSON, TSV, a many-file plot, and 20,000 points thinned
    evenly to 5,000 (first and last kept)."""
    from repro.plots import MAX_POINTS, plot_specs

    write(
        project.root,
        "live.json",
        json.dumps({"train": [{"step": i, "acc": i / 10} for i in range(5)]}),
    )
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t")
    w.writerow(["epoch", "acc"])
    w.writerows([i, 0.5 + i / 100] for i in range(20_000))
    write(project.root, "big.tsv", buf.getvalue())
    write(
        project.root,
        "repro.yaml",
        "plots:\n  - live.json: {x: step, y: acc}\n"
        "  - both: {x: {big.tsv: epoch, live.json: step}, y: {big.tsv: acc, live.json: acc},"
        " template: scatter}\n",
    )
    specs = by_id(plot_specs(project))
    assert series(specs["live.json"], "workspace") == [0.0, 0.1, 0.2, 0.3, 0.4]
    both = specs["both"]["data"]["values"]
    big = [r for r in both if r["series"] == "big.tsv: acc"]
    assert len(both) <= MAX_POINTS and len(big) == MAX_POINTS // 2
    assert big[0]["x"] == 0 and big[-1]["x"] == 19_999
    assert len([r for r in both if r["series"] == "live.json: acc"]) == 5


def test_symlink_out_of_the_project_is_not_read(project, outside):
    os.symlink(outside / "victim.txt", os.path.join(project.root, "leak.csv"))
    write(project.root, "repro.yaml", "plots:\n  - leak.csv\n")
    r = run_cli(["plots", "show", "--json"], project.root)
    assert r.code == 1 and "leak.csv: is a symlink that leads outside the project" in r.err
    assert "precious" not in r.out
