"""`repro report`: one self-contained HTML page of the pipeline's versions, metrics and runs.

Why one file: it is mailed, attached to CI jobs and opened from file:// on machines without
internet, so it makes no request to any other origin. Every script, style and datum is inlined
(Vega-Lite's JavaScript from `vl_convert.javascript_bundle()`, ~0.9 MB, cached per version),
fonts are the system's, and a Content-Security-Policy forbids the page any fetch at all.

Why the timeline is our own SVG: Vega draws marks on a canvas (or anonymous SVG paths), but each
snapshot must be an element carrying `data-sig="<full sig>"` that a person (and a test) can
click. A small inlined script draws one `<circle>` per snapshot from the embedded data; 1,000
of them take a few milliseconds. The other charts (metric trends, runs per day, failure rate,
stage durations, the project's plots) are Vega-Lite specs written as plain dicts.

Trust: records, tags and snapshots come from shared remotes, so every string in them is
untrusted. The data is embedded as JSON in a `<script type="application/json">` with `<`, `>`
and `&` escaped (a value cannot close the script), the page's script only ever sets
`textContent`, and the CSP allows only the page's own two scripts by hash (an injected inline
handler would not run even if markup got in).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from repro.errors import ReproError, UsageError
from repro.project import Project
from repro.records import RunRecord, StageRecord

VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an id, never fetched
OUTCOME_COLOURS = {"ok": "#2e7d32", "failed": "#c62828"}
_OWNED = ("repro.yaml", "repro.lock", ".gitignore")


@dataclass
class ReportResult:
    """What `repro report` wrote: the file, its size, and how much history it covers."""

    path: str
    bytes: int
    snapshots: int
    runs: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the Vega bundle ----------------------------------------------------------------------------
def vega_bundle() -> str:
    """The Vega JavaScript to inline: the one `repro plots` uses, from the same cache (the
    user's cache folder, keyed by vl-convert's version); without the extra, one sentence
    naming `repro-engine[report]`."""
    from repro.plots import vega_bundle as shared

    return shared()


# -- the data -----------------------------------------------------------------------------------
def _short(v: Any, limit: int = 160) -> Any:
    """A change's old/new value as the panel shows it: a file by its hash, else short JSON."""
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, dict) and "hash" in v:
        h = str(v.get("hash"))[:12]
        return f"{h} ({v['size']:,} bytes)" if isinstance(v.get("size"), int) else h
    text = v if isinstance(v, str) else json.dumps(v, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _change_row(c: dict[str, Any]) -> dict[str, Any]:
    row = {
        "stage": c.get("stage"),
        "kind": c.get("kind"),
        "target": c.get("target"),
        "old": _short(c.get("old")),
        "new": _short(c.get("new")),
        "severity": c.get("severity"),
    }
    notes = []
    if c.get("note"):
        notes.append(str(c["note"]))
    if isinstance(c.get("lines"), int):
        notes.append(f"{c['lines']} lines")
    for key, m in (c.get("metrics") or {}).items():
        if isinstance(m, dict):
            delta = m.get("delta")
            tail = f" ({delta:+.4g})" if isinstance(delta, int | float) else ""
            notes.append(f"{key}: {_short(m.get('old'))} → {_short(m.get('new'))}{tail}")
    if notes:
        row["note"] = "; ".join(notes)
    return row


def _changes(project: Project, prev: Any, snap: Any, commits: tuple) -> tuple[str | None, list]:
    """The changes from the previous version under the severity policy (what `diff` shows)."""
    from repro.policy import diff_snapshots, flat_changes, worst

    try:
        stages, data = diff_snapshots(project, prev, snap, commits=commits)
    except ReproError as exc:
        return None, [{"kind": "error", "target": "", "note": str(exc), "severity": None}]
    changes = flat_changes(stages, data)
    return worst(c["severity"] for c in changes), [_change_row(c) for c in changes]


def _stage_rows(snap: Any, rec: RunRecord, order: list[str]) -> list[dict[str, Any]]:
    ran: dict[str, StageRecord] = {s.name: s for s in rec.stages}
    names = list(snap.stages) if snap is not None else list(ran)
    rank = {n: i for i, n in enumerate(order)}
    names.sort(key=lambda n: (rank.get(n, len(rank)), n))  # the pipeline's order
    rows = []
    for name in names:
        entry = (snap.stages.get(name) if snap is not None else None) or {}
        s = ran.get(name)
        rows.append(
            {
                "name": name,
                "signature": entry.get("signature") or (s.signature if s else None),
                "status": s.status if s else None,
                "seconds": round(s.seconds, 3) if s else None,
                "image": entry.get("image"),
            }
        )
    return rows


def _params(snap: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in snap.stages.values() if snap is not None else []:
        for key, value in (entry.get("params") or {}).items():
            out[key] = _short(value, 300)
    return dict(sorted(out.items()))


def _metrics_of(runs: list[RunRecord]) -> dict[str, dict[str, Any]]:
    """The headline metrics of the first run of a version that recorded some."""
    return next((r.metrics for r in runs if r.metrics), {})


def _load_snapshot(backend: Any, sig: str) -> tuple[Any, str | None]:
    from repro.snapshots import load_snapshot

    try:
        return load_snapshot(backend, sig), None
    except ReproError as exc:
        return None, str(exc)


def _version(
    project: Project,
    sig: str,
    runs: list[RunRecord],
    prev: Any,
    prev_commit: str | None,
    tags: list[str],
    order: list[str],
) -> tuple[dict[str, Any], Any]:
    first = runs[0]
    snap, problem = _load_snapshot(project.cache.backend, sig)
    severity, changes = (None, [])
    if snap is not None and prev is not None:
        severity, changes = _changes(project, prev, snap, (prev_commit, first.git_commit))
    v = {
        "sig": sig,
        "time": first.started,
        "status": first.status,
        "kind": first.kind,
        "run_id": first.run_id,
        "runs": len(runs),
        "user": first.user,
        "host": first.host,
        "git_commit": first.git_commit,
        "git_dirty": first.git_dirty,
        "ci": dict(first.ci),
        "python": first.python,
        "platform": first.platform,
        "tags": tags,
        "severity": severity,
        "changes": changes,
        "env_changes": [c for c in changes if c.get("kind") == "env"],
        "stages": _stage_rows(snap, first, order),
        "params": _params(snap),
        "metrics": _metrics_of(runs),
        "images": dict(snap.images) if snap is not None else {},
        "note": problem,
    }
    return v, snap


def _failed_runs(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Failed runs that made no snapshot (a failed run records no result): drawn as crosses
    on the timeline, so a failure is seen where it happened."""
    return [
        {
            "run_id": r.run_id,
            "time": r.started,
            "status": r.status,
            "user": r.user,
            "host": r.host,
            "git_commit": r.git_commit,
            "stages": [
                {"name": s.name, "status": s.status, "message": s.message} for s in r.stages
            ],
        }
        for r in records
        if not r.snapshot and r.status != "ok"
    ]


def collect(project: Project) -> dict[str, Any]:
    """Everything the page shows, pre-computed: one entry per snapshot (oldest first, in the
    order of the run that first made it) with its details and its changes from the one before,
    the failed runs, the charts' specs and the pipeline graph."""
    from repro.records import list_records
    from repro.tags import list_tags

    backend = project.cache.backend
    # list_records answers from the run index (repro/runindex.py) when the cache is local.
    records = list(reversed(list_records(backend)))  # oldest first
    tags: dict[str, list[str]] = {}
    for t in sorted(list_tags(backend), key=lambda t: t.time):
        tags.setdefault(t.sig, []).append(t.name)
    runs_of: dict[str, list[RunRecord]] = {}
    for rec in records:
        if rec.snapshot:
            runs_of.setdefault(rec.snapshot, []).append(rec)
    dag = _dag(project)
    order = [n["name"] for n in sorted(dag["nodes"], key=lambda n: (n["y"], n["x"]))]
    versions: list[dict[str, Any]] = []
    prev, prev_commit = None, None
    for sig, runs in runs_of.items():  # insertion order: first made, oldest first
        v, snap = _version(project, sig, runs, prev, prev_commit, tags.get(sig, []), order)
        versions.append(v)
        if snap is not None:
            prev, prev_commit = snap, runs[0].git_commit
    return {
        "v": 1,
        "project": os.path.basename(project.root),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions,
        "failed_runs": _failed_runs(records),
        "summary": _summary(records),
        "dag": dag,
        "charts": _charts(versions, records),
        "plots": _plots(project),
    }


def _summary(records: list[RunRecord]) -> dict[str, Any]:
    runs = [r for r in records if r.kind == "run"]
    failed = sum(1 for r in runs if r.status != "ok")
    return {
        "runs": len(runs),
        "failed": failed,
        "failure_rate": round(failed / len(runs), 4) if runs else None,
        "records": len(records),
    }


# -- charts (Vega-Lite specs as plain dicts) ------------------------------------------------------
def _spec(title: str, values: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    return {
        "$schema": VEGA_LITE_SCHEMA,
        "title": title,
        "width": "container",
        "height": 180,
        "data": {"values": values},
        **body,
    }


def _metric_series(versions: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per metric (`file:key`, or `key` when one file holds them all), its value per version."""
    files = {f for v in versions for f in v["metrics"]}
    series: dict[str, list[dict[str, Any]]] = {}
    for i, v in enumerate(versions):
        for f, values in v["metrics"].items():
            for key, value in values.items():
                name = key if len(files) == 1 else f"{f}:{key}"
                series.setdefault(name, []).append(
                    {"version": i + 1, "time": v["time"], "value": value, "sig": v["sig"][:12]}
                )
    return dict(sorted(series.items()))


def metric_spec(name: str, values: list[dict[str, Any]]) -> dict[str, Any]:
    tooltip = [
        {"field": "value", "type": "quantitative", "title": name, "format": ".6~g"},
        {"field": "sig", "type": "nominal", "title": "sig"},
        {"field": "version", "type": "ordinal", "title": "version"},
        {"field": "time", "type": "temporal", "title": "made", "format": "%Y-%m-%d %H:%M:%S"},
    ]
    return _spec(
        name,
        values,
        mark={"type": "line", "point": {"size": 50}, "tooltip": True},
        encoding={
            "x": {
                "field": "version",
                "type": "quantitative",
                "title": "version",
                "axis": {"tickMinStep": 1, "format": "d"},
            },
            "y": {
                "field": "value",
                "type": "quantitative",
                "title": name,
                "scale": {"zero": False},
            },
            "tooltip": tooltip,
        },
    )


def _runs_per_day(records: list[RunRecord]) -> list[dict[str, Any]]:
    days: dict[str, dict[str, int]] = {}
    for r in records:
        if r.kind != "run":
            continue
        d = days.setdefault(r.started[:10], {"ok": 0, "failed": 0})
        d["ok" if r.status == "ok" else "failed"] += 1
    return [
        {"day": day, "status": status, "runs": n, "rate": round(c["failed"] / sum(c.values()), 4)}
        for day, c in sorted(days.items())
        for status, n in c.items()
    ]


def _durations(records: list[RunRecord]) -> list[dict[str, Any]]:
    return [
        {
            "n": n,
            "time": r.started,
            "stage": s.name,
            "seconds": round(s.seconds, 3),
            "run": r.run_id,
            "status": s.status,
        }
        for n, r in enumerate(records, 1)
        for s in r.stages
        if s.status in ("ran", "failed")
    ]


def _charts(versions: list[dict[str, Any]], records: list[RunRecord]) -> dict[str, Any]:
    colour = {"domain": list(OUTCOME_COLOURS), "range": list(OUTCOME_COLOURS.values())}
    per_day = _runs_per_day(records)
    day = {"field": "day", "type": "ordinal", "title": "day"}
    runs = _spec(
        "Runs per day",
        per_day,
        mark={"type": "bar", "tooltip": True},
        encoding={
            "x": day,
            "y": {"field": "runs", "type": "quantitative", "stack": True, "title": "runs"},
            "color": {"field": "status", "type": "nominal", "scale": colour},
        },
    )
    rate = _spec(
        "Failure rate per day",
        [r for r in per_day if r["status"] == "ok"] or per_day,
        mark={"type": "line", "point": True, "tooltip": True},
        encoding={
            "x": day,
            "y": {
                "field": "rate",
                "type": "quantitative",
                "title": "failed runs",
                "axis": {"format": "%"},
                "scale": {"domain": [0, 1]},
            },
        },
    )
    durations = _spec(
        "Stage durations (runs that executed the stage)",
        _durations(records),
        mark={"type": "point", "filled": True, "tooltip": True},
        encoding={
            "x": {
                "field": "n",
                "type": "quantitative",
                "title": "run (oldest first)",
                "axis": {"tickMinStep": 1, "format": "d"},
            },
            "y": {"field": "seconds", "type": "quantitative", "title": "seconds"},
            "tooltip": [
                {"field": "stage"},
                {"field": "seconds", "type": "quantitative"},
                {"field": "status"},
                {"field": "run"},
                {"field": "time", "type": "temporal", "format": "%Y-%m-%d %H:%M:%S"},
            ],
            "color": {"field": "stage", "type": "nominal"},
            "shape": {"field": "status", "type": "nominal"},
        },
    )
    metrics = [metric_spec(n, vals) for n, vals in _metric_series(versions).items()]
    return {"metrics": metrics, "runs": [runs, rate], "durations": [durations]}


def _plots(project: Project) -> dict[str, Any]:
    """The project's declared plots (`plots:` in repro.yaml) for the workspace; a plot that
    cannot be read leaves the section with its reason instead of failing the report."""
    from repro.plots import plot_specs

    try:
        return {"specs": plot_specs(project, None), "note": None}
    except ReproError as exc:
        return {"specs": [], "note": str(exc)}


# -- the pipeline graph ------------------------------------------------------------------------
def _dag(project: Project) -> dict[str, Any]:
    """Stages placed in layers (a stage sits one below its deepest upstream stage)."""
    from repro.pipeline.graph import build_graph
    from repro.pipeline.spec import load_spec

    try:
        graph = build_graph(load_spec(project), project.root, check_missing=False)
    except ReproError as exc:
        return {"nodes": [], "edges": [], "error": str(exc)}
    edges = sorted([u, n] for n, ups in graph.upstream.items() for u in ups)
    layer: dict[str, int] = {}
    for n in graph.order:  # topological order: upstream stages first
        layer[n] = 1 + max((layer[u] for u in graph.upstream.get(n, ()) if u in layer), default=-1)
    rows: dict[int, list[str]] = {}
    for n in graph.order:
        rows.setdefault(layer[n], []).append(n)
    nodes = [
        {"name": n, "x": 20 + col * 190, "y": 20 + depth * 70}
        for depth, names in rows.items()
        for col, n in enumerate(names)
    ]
    width = 100 + 190 * max((len(v) for v in rows.values()), default=0)
    return {"nodes": nodes, "edges": edges, "width": width, "height": 40 + 70 * len(rows)}


# -- the page -----------------------------------------------------------------------------------
def embed_json(doc: Any) -> str:
    """JSON that is safe inside `<script type="application/json">`: `<`, `>` and `&` are
    escaped, so no value can close the script or open a comment; JSON.parse gives them back."""
    text = json.dumps(doc, default=str, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _script_hash(code: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"


def render_html(data: dict[str, Any], bundle: str) -> str:
    """The page: styles, the data, the Vega bundle and the page's script, all inline."""
    bundle = bundle.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    csp = (
        "default-src 'none'; "
        f"script-src {_script_hash(bundle)} {_script_hash(_PAGE_JS)} 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    return (
        _PAGE_HTML.replace("@CSP@", csp)
        .replace("@CSS@", _PAGE_CSS)
        .replace("@DATA@", embed_json(data))
        .replace("@BUNDLE@", bundle)
        .replace("@JS@", _PAGE_JS)
    )


def _check_output(project: Project, out: str) -> Path:
    path = Path(os.path.abspath(out))
    if path.is_dir():
        raise UsageError(f"{out}: is a folder; give a file name for the report (-o report.html).")
    try:
        rel = os.path.relpath(path, os.path.realpath(project.root))
    except ValueError:
        rel = ".."
    first = rel.split(os.sep, 1)[0]
    if rel in _OWNED or first in (".repro", ".git"):
        raise UsageError(f"{out}: repro or git owns this path; write the report elsewhere.")
    if not path.parent.is_dir():
        raise UsageError(f"{out}: its folder {path.parent} does not exist.")
    return path


def write_report(project: Project, out: str = "report.html") -> ReportResult:
    """Write the report to `out` (atomically: a reader never sees half a page)."""
    started = time.perf_counter()
    path = _check_output(project, out)
    bundle = vega_bundle()  # before the work: a missing extra is said at once
    data = collect(project)
    html = render_html(data, bundle)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"{out}: cannot write the report ({exc.strerror}).") from None
    return ReportResult(
        path=str(path),
        bytes=path.stat().st_size,
        snapshots=len(data["versions"]),
        runs=data["summary"]["records"],
        seconds=round(time.perf_counter() - started, 3),
    )


_PAGE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>repro report</title>
<style>@CSS@</style>
</head><body>
<header><h1>repro report <span id="proj"></span></h1><p id="summary"></p></header>
<main>
<section id="timeline-section"><h2>Versions</h2>
<p class="legend"><span class="key ok"></span> ok <span class="key failed"></span> failed
<span class="key other"></span> other kind (add, rollback) · <span class="ring major"></span>
major change <span class="ring minor"></span> minor change · ✕ failed run (no snapshot) ·
click a dot for its details</p>
<div id="timeline" class="scroll"></div></section>
<section id="metrics-section"><h2>Metrics over versions</h2><div id="metrics" class="grid">
</div></section>
<section id="plots-section" hidden><h2>Plots</h2><div id="plots" class="grid"></div></section>
<section><h2>Pipeline</h2><div id="dag" class="scroll"></div></section>
<section><h2>Runs</h2><div id="runs" class="grid"></div></section>
<section><h2>Stage durations</h2><div id="durations" class="grid wide"></div></section>
</main>
<aside id="panel" hidden aria-live="polite"><button id="close" type="button"
aria-label="close">×</button><div id="panel-body"></div></aside>
<script type="application/json" id="repro-data">@DATA@</script>
<script>@BUNDLE@</script>
<script>@JS@</script>
</body></html>
"""

_PAGE_CSS = """
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
background:#fafafa}
body{margin:0}header{padding:12px 24px;background:#263238;color:#fff}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#cfd8dc}
main{padding:8px 24px 40px}h2{font-size:16px;margin:20px 0 8px}
.scroll{overflow-x:auto;background:#fff;border:1px solid #ddd;border-radius:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.grid.wide{grid-template-columns:1fr}
.chart{background:#fff;border:1px solid #ddd;border-radius:4px;padding:8px;min-height:60px}
.legend{font-size:13px;color:#555}.key{display:inline-block;width:10px;height:10px;
border-radius:50%}.key.ok{background:#2e7d32}.key.failed{background:#c62828}
.key.other{background:#1565c0}.ring{display:inline-block;width:10px;height:10px;
border-radius:50%;border:2px solid}.ring.major{border-color:#e65100}
.ring.minor{border-color:#f9a825}
svg .dot{cursor:pointer}svg .dot:focus{outline:none;stroke:#000;stroke-width:3}
svg .dot.selected{stroke:#000;stroke-width:3}svg text{font-size:11px;fill:#333}
svg .tag{font-weight:600;fill:#4a148c}svg .axis{stroke:#999}
svg .node rect{fill:#e3f2fd;stroke:#1565c0;rx:4}svg .edge{stroke:#78909c;fill:none}
aside{position:fixed;top:0;right:0;width:min(640px,100vw);height:100vh;overflow:auto;
background:#fff;border-left:1px solid #bbb;box-shadow:-4px 0 12px rgba(0,0,0,.15);
padding:12px 18px;box-sizing:border-box;font-size:13px}
aside h3{margin:4px 0 8px;font-size:15px;word-break:break-all}
aside h4{margin:14px 0 4px;font-size:13px}#close{float:right;font-size:20px;border:0;
background:none;cursor:pointer}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #eee;padding:2px 6px;text-align:left;vertical-align:top;
word-break:break-word}th{color:#555;font-weight:600}code{font-family:ui-monospace,monospace}
.sev-major{color:#e65100;font-weight:700}.sev-minor{color:#9e7700}.muted{color:#777}
"""

_PAGE_JS = r"""
"use strict";
(function () {
  const t0 = performance.now();
  const DATA = JSON.parse(document.getElementById("repro-data").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = {ok: "#2e7d32", failed: "#c62828"};
  const RINGS = {major: "#e65100", minor: "#f9a825"};
  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  $("proj").textContent = "· " + DATA.project;
  const s = DATA.summary;
  $("summary").textContent = DATA.versions.length + " versions · " + s.runs + " runs · " +
    s.failed + " failed" + (s.failure_rate === null ? "" :
    " (" + (100 * s.failure_rate).toFixed(1) + "%)") + " · generated " + DATA.generated;

  // -- the timeline: one circle per snapshot, lanes so that none hides another --
  function drawTimeline() {
    const vs = DATA.versions, fails = DATA.failed_runs;
    const box = $("timeline");
    if (!vs.length && !fails.length) {
      box.appendChild(el("p", "No runs recorded yet: 'repro run' makes the first version.",
        "muted"));
      return;
    }
    const times = vs.map((v) => Date.parse(v.time)).concat(fails.map((f) => Date.parse(f.time)));
    const lo = Math.min(...times), hi = Math.max(...times);
    const W = Math.max(box.clientWidth - 2, Math.min(16000, 14 * (vs.length + fails.length)));
    const R = 7, left = 70, right = 70, lanes = 6, laneH = 2 * R + 6, top = 34;
    const x = (t) => hi === lo ? left + (W - left - right) / 2 :
      left + (t - lo) / (hi - lo) * (W - left - right);
    const laneEnd = new Array(lanes).fill(-Infinity);
    function place(px) {
      let best = 0;
      for (let l = 0; l < lanes; l++) {
        if (laneEnd[l] < px - 2 * R - 2) { best = l; laneEnd[l] = px; return best; }
        if (laneEnd[l] < laneEnd[best]) best = l;
      }
      laneEnd[best] = px;
      return best;
    }
    const items = vs.map((v, i) => ({t: Date.parse(v.time), v: v, i: i}))
      .concat(fails.map((f) => ({t: Date.parse(f.time), f: f})))
      .sort((a, b) => a.t - b.t);
    let used = 1;
    for (const it of items) {
      it.px = x(it.t);
      it.lane = place(it.px);
      used = Math.max(used, it.lane + 1);
    }
    const H = top + used * laneH + 34;
    const root = svg("svg", {width: W, height: H, role: "list"});
    root.appendChild(svg("line", {x1: left, x2: W - right, y1: H - 26, y2: H - 26,
      class: "axis"}));
    const ticks = hi === lo ? 0 : Math.max(1, Math.min(8, Math.floor(W / 220)));
    for (let i = 0; i <= ticks; i++) {
      const t = lo + (hi - lo) * i / Math.max(ticks, 1);
      const label = svg("text", {x: x(t), y: H - 10, "text-anchor": "middle"});
      label.textContent = new Date(t).toISOString().slice(0, 19).replace("T", " ");
      root.appendChild(label);
    }
    const frag = document.createDocumentFragment();
    for (const it of items) {
      const px = it.px, py = top + it.lane * laneH + R;
      if (it.f) {
        const g = svg("g", {class: "dot failed-run", "data-run": it.f.run_id, tabindex: 0,
          transform: "translate(" + px + "," + py + ")"});
        g.appendChild(svg("path", {d: "M-5,-5L5,5M5,-5L-5,5", stroke: COLOURS.failed,
          "stroke-width": 3}));
        const tip = svg("title", {}); tip.textContent = "failed run " + it.f.run_id;
        g.appendChild(tip);
        g.addEventListener("click", () => showRun(it.f, g));
        frag.appendChild(g);
        continue;
      }
      const v = it.v;
      if (v.severity) {
        frag.appendChild(svg("circle", {cx: px, cy: py, r: R + 3, fill: "none",
          stroke: RINGS[v.severity] || "#999", "stroke-width": v.severity === "major" ? 3 : 2,
          "pointer-events": "none"}));
      }
      const dot = svg("circle", {cx: px, cy: py, r: R, class: "dot", tabindex: 0,
        fill: v.status !== "ok" ? COLOURS.failed : v.kind === "run" ? COLOURS.ok : "#1565c0",
        "data-sig": v.sig, "data-severity": v.severity || "", role: "listitem"});
      const tip = svg("title", {});
      tip.textContent = v.sig.slice(0, 12) + " · " + v.time + (v.tags.length ?
        " · " + v.tags.join(", ") : "") + (v.severity ? " · " + v.severity + " change" : "");
      dot.appendChild(tip);
      dot.addEventListener("click", () => showVersion(it.i, dot));
      dot.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); showVersion(it.i, dot); }
      });
      frag.appendChild(dot);
      if (v.tags.length) {
        const label = svg("text", {x: px, y: py - R - 5, "text-anchor": "middle",
          class: "tag"});
        label.textContent = v.tags.join(", ");
        frag.appendChild(label);
      }
    }
    root.appendChild(frag);
    box.appendChild(root);
  }

  // -- the panel: built from text nodes only (every value is untrusted) --
  function table(rows, head) {
    const t = el("table");
    if (head) {
      const tr = el("tr");
      head.forEach((h) => tr.appendChild(el("th", h)));
      t.appendChild(tr);
    }
    for (const r of rows) {
      const tr = el("tr");
      r.forEach((c) => {
        const td = el("td");
        if (c instanceof Node) td.appendChild(c); else td.textContent = fmt(c);
        tr.appendChild(td);
      });
      t.appendChild(tr);
    }
    return t;
  }
  function section(body, title, content) {
    body.appendChild(el("h4", title));
    body.appendChild(content);
  }
  function sev(s) { return el("span", s || "—", s ? "sev-" + s : "muted"); }
  let selected = null;
  function openPanel(node) {
    if (selected) selected.classList.remove("selected");
    selected = node; node.classList.add("selected");
    const body = $("panel-body");
    body.replaceChildren();
    $("panel").hidden = false;
    return body;
  }
  function showVersion(i, node) {
    const v = DATA.versions[i];
    const body = openPanel(node);
    body.appendChild(el("h3", "Version " + (i + 1) + " of " + DATA.versions.length));
    body.appendChild(table([["sig", el("code", v.sig)], ["tags", v.tags.join(", ") || "—"],
      ["change", sev(v.severity)], ["outcome", v.status + " (" + v.kind + ")"],
      ["made by run", v.run_id], ["runs with this state", v.runs]]));
    if (v.note) body.appendChild(el("p", v.note, "sev-major"));
    const ci = Object.entries(v.ci).map(([k, val]) => k + "=" + val).join(" ") || "—";
    section(body, "Execution", table([["who", v.user], ["host", v.host], ["when", v.time],
      ["commit", v.git_commit], ["dirty", v.git_dirty], ["CI", ci],
      ["python", v.python], ["platform", v.platform]]));
    section(body, "Stages", table(v.stages.map((st) => [st.name, el("code", st.signature),
      st.status, st.seconds === null ? "—" : st.seconds + " s"]),
      ["stage", "signature", "status", "time"]));
    const params = Object.entries(v.params);
    section(body, "Params", params.length ? table(params) : el("p", "none", "muted"));
    const metrics = [];
    for (const [f, vals] of Object.entries(v.metrics))
      for (const [k, val] of Object.entries(vals)) metrics.push([f, k, val]);
    section(body, "Metrics", metrics.length ? table(metrics, ["file", "metric", "value"]) :
      el("p", "none recorded", "muted"));
    const images = Object.entries(v.images);
    const imageRows = images.concat(v.stages.filter((st) => st.image)
      .map((st) => [st.name, st.image]));
    section(body, "Image digests", imageRows.length ? table(imageRows) :
      el("p", "no container images", "muted"));
    section(body, "Environment changes", v.env_changes.length ?
      table(v.env_changes.map((c) => [c.target, c.old, c.new, sev(c.severity)]),
        ["what", "old", "new", "severity"]) : el("p", "none", "muted"));
    const prev = i === 0 ? "first version: nothing to compare with" : "no change recorded";
    section(body, "Changes from the previous version", v.changes.length ?
      table(v.changes.map((c) => [sev(c.severity),
        (c.stage || "data") + " · " + c.kind + " · " + c.target,
        fmt(c.old) + " → " + fmt(c.new) + (c.note ? " (" + c.note + ")" : "")]),
        ["severity", "what", "old → new"]) :
      el("p", prev, "muted"));
    history.replaceState(null, "", "#" + v.sig);
  }
  function showRun(f, node) {
    const body = openPanel(node);
    body.appendChild(el("h3", "Failed run " + f.run_id));
    body.appendChild(table([["who", f.user], ["host", f.host], ["when", f.time],
      ["commit", f.git_commit]]));
    section(body, "Stages", table(f.stages.map((st) => [st.name, st.status, st.message || ""]),
      ["stage", "status", "message"]));
  }
  $("close").addEventListener("click", () => {
    $("panel").hidden = true;
    if (selected) selected.classList.remove("selected");
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("close").click(); });

  // -- the pipeline graph --
  function drawDag() {
    const d = DATA.dag, box = $("dag");
    if (d.error || !d.nodes.length) {
      box.appendChild(el("p", d.error || "(no stages)", "muted"));
      return;
    }
    const root = svg("svg", {width: d.width, height: d.height});
    const at = {};
    d.nodes.forEach((n) => { at[n.name] = n; });
    const defs = svg("defs", {});
    const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse"});
    marker.appendChild(svg("path", {d: "M0,0L10,5L0,10z", fill: "#78909c"}));
    defs.appendChild(marker); root.appendChild(defs);
    for (const [a, b] of d.edges) {
      const p = at[a], q = at[b];
      if (!p || !q) continue;
      // an edge that skips a layer bends right, around the stages between
      const side = q.y - p.y > 70 && p.x === q.x ? 110 : 0;
      root.appendChild(svg("path", {class: "edge", "marker-end": "url(#arrow)",
        d: "M" + (p.x + 80 + side * 0.6) + "," + (p.y + 30) + " C" + (p.x + 80 + side) + "," +
          (p.y + 50) + " " + (q.x + 80 + side) + "," + (q.y - 20) + " " +
          (q.x + 80 + side * 0.6) + "," + q.y}));
    }
    for (const n of d.nodes) {
      const g = svg("g", {class: "node", transform: "translate(" + n.x + "," + n.y + ")"});
      g.appendChild(svg("rect", {width: 160, height: 30}));
      const t = svg("text", {x: 80, y: 19, "text-anchor": "middle"});
      t.textContent = n.name.length > 24 ? n.name.slice(0, 23) + "…" : n.name;
      g.appendChild(t);
      root.appendChild(g);
    }
    box.appendChild(root);
  }

  // -- the charts --
  const pending = [];
  function chart(parent, spec) {
    const box = el("div", null, "chart");
    parent.appendChild(box);
    pending.push(vegaEmbed(box, spec, {actions: false, renderer: "canvas",
      config: {font: "system-ui, sans-serif"}}).catch((e) => {
        box.replaceChildren(el("p", "chart failed: " + e.message, "sev-major"));
      }));
  }
  drawTimeline();
  drawDag();
  const c = DATA.charts;
  if (!c.metrics.length) $("metrics").appendChild(el("p", "No metrics recorded.", "muted"));
  c.metrics.forEach((spec) => chart($("metrics"), spec));
  c.runs.forEach((spec) => chart($("runs"), spec));
  c.durations.forEach((spec) => chart($("durations"), spec));
  if (DATA.plots.specs.length || DATA.plots.note) {
    $("plots-section").hidden = false;
    if (DATA.plots.note) $("plots").appendChild(el("p", DATA.plots.note, "sev-major"));
    DATA.plots.specs.forEach((spec) => chart($("plots"), spec));
  }
  const wanted = location.hash.slice(1);
  if (wanted) {
    const i = DATA.versions.findIndex((v) => v.sig === wanted);
    const dot = document.querySelector('[data-sig="' + CSS.escape(wanted) + '"]');
    if (i >= 0 && dot) showVersion(i, dot);
  }
  Promise.all(pending).then(() => {
    document.body.dataset.rendered = (performance.now() - t0).toFixed(0);
  });
})();
"""
