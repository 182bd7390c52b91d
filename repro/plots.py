"""Plots as DVC declares them (`plots:` in repro.yaml), drawn as Vega-Lite specs.

A plot is a stage's `plots:` output (x/y/template beside `cache:`), or a top-level definition:
a path, `{PATH: {x, y, template, title, x_label, y_label}}`, or `{ID: {x: ..., y: {FILE:
FIELD}}}` drawing fields of several files. Data files are CSV, TSV or JSON (a list of records,
or `{key: [records]}` as dvclive writes); images (.png .jpg .gif .svg) are shown as they are.

Each plot becomes one plain Vega-Lite dict with its data inlined, so the spec alone draws it
(`--json`, the report, a notebook). Several states (sigs, tags, git revisions, `repro.lock`,
`workspace`) are overlaid in one chart with a `rev` field for the colour, as `dvc plots diff`
does. A file's bytes for a past state come from the cache through the snapshot that names it,
verified against its hash; every read is bounded, and a plot holds at most MAX_POINTS points
(evenly thinned beyond), so one huge log cannot make a page no browser opens.

The HTML page is self-contained: Vega, Vega-Lite and vega-embed are inlined from
`vl_convert.javascript_bundle()` (the `report` extra), cached per vl-convert version under the
user's cache folder by `vega_bundle()`, which `repro report` uses too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from repro.errors import MissingObjectError, NotFoundError, ReproError, SpecError, first_line

if TYPE_CHECKING:
    from repro.pipeline.spec_model import PlotDef
    from repro.project import Project
    from repro.snapshots import Snapshot

WORKSPACE = "workspace"
MAX_POINTS = 5_000  # per plot, all versions and series together
MAX_DATA_BYTES = 16 << 20  # a data file read for a plot
MAX_IMAGE_BYTES = 8 << 20  # an image inlined as a data: URI
VL_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
WIDTH, HEIGHT = 480, 300
_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}


# --- the Vega JavaScript, built once per vl-convert version ----------------------------------
def _user_cache_dir() -> str:
    """The user's cache folder (XDG on Linux, ~/Library/Caches on macOS, LOCALAPPDATA)."""
    import sys

    if sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    elif os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "repro")


def _vl_convert(feature: str) -> Any:
    try:
        import vl_convert
    except ImportError:
        from repro.errors import MissingExtraError

        raise MissingExtraError(feature, "report") from None
    return vl_convert


def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script that sets `window.vegaEmbed`, for inlining
    in a page that must load nothing from elsewhere. Building it takes vl-convert about a
    second, so it is kept under the user's cache folder, keyed by vl-convert's version (which
    fixes the bundled library versions); a cache that cannot be written is only slower."""
    vl_convert = _vl_convert("drawing charts (repro plots, repro report)")
    version = getattr(vl_convert, "__version__", "0")
    path = os.path.join(_user_cache_dir(), f"vega-bundle-{version}.js")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if "window.vegaEmbed=" in text[-4096:]:
            return text
    except (OSError, UnicodeDecodeError):
        pass
    text = vl_convert.javascript_bundle()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        pass
    return text


# --- which plots -------------------------------------------------------------------------
def plot_defs(project: Project, targets: list[str] | None = None) -> list[PlotDef]:
    """The plots repro.yaml declares (stage outputs first, in stage order; a top-level
    definition of the same id wins), or those `targets` name by id or file."""
    from repro.pipeline.parsecache import cached_parse
    from repro.pipeline.spec import load_spec

    spec = load_spec(project)  # refuses a bad stage `plots:` with the rest of repro.yaml
    defs: dict[str, PlotDef] = {p.id: p for st in spec.stages.values() for p in st.plots}
    path = project.spec_path
    top = cached_parse(project.tmp_dir, path, lambda: _parse_top(project), "plots")
    defs.update({p.id: p for p in top})
    if not targets:
        return list(defs.values())
    chosen: list[PlotDef] = []
    for t in targets:
        rel = os.path.normpath(t).replace(os.sep, "/")
        found = [p for p in defs.values() if rel == p.id or rel in p.files]
        if not found:
            known = ", ".join(defs) or "none"
            raise NotFoundError("plot", t, where="repro.yaml", hint=f"plots declared: {known}")
        chosen += [p for p in found if p not in chosen]
    return chosen


def _parse_top(project: Project) -> tuple[PlotDef, ...]:
    from repro.pipeline.spec_model import _Problems
    from repro.pipeline.spec_stage import parse_plots_section
    from repro.pipeline.specio import load_yaml_text, read_text

    label = os.path.relpath(project.spec_path, project.root)
    doc = load_yaml_text(read_text(project.spec_path, label), label, typ="rt")
    problems = _Problems(label)
    defs = parse_plots_section(doc, project.root, problems)
    if problems.items:
        raise SpecError("\n".join(problems.items))
    return defs


# --- reading a file as it was in one state ------------------------------------------------
@dataclass
class Version:
    """One state to draw: its label (the `rev` field) and how to read a file in it (None:
    the state has no such file, or its content is not here)."""

    name: str
    read: Callable[[str, int], bytes | None]
    notes: list[str] = field(default_factory=list)


def _workspace(project: Project) -> Version:
    """The files as they are now. A symlink that leads out of the project is refused, as
    hashing refuses it (a cloned repository's link to ~/.ssh must not end up in a page)."""
    from repro.readfile import read_bytes

    follow = bool((project.config.get("core") or {}).get("follow_symlinks", False))
    root = os.path.realpath(project.root)

    def read(rel: str, limit: int) -> bytes | None:
        path = project.abs(rel)
        real = os.path.realpath(path)
        if not follow and real != root and not real.startswith(root + os.sep):
            from repro.hashing.walk import outside_link_error

            raise outside_link_error(path, real, project.root)
        try:
            return read_bytes(path, rel, limit)
        except FileNotFoundError:
            return None

    return Version(WORKSPACE, read)


def _stored(project: Project, name: str, snap: Snapshot) -> Version:
    """A state from a snapshot (or a lock): files come from the cache, verified."""
    entries: dict[str, dict[str, Any]] = {**snap.files, **snap.data, **snap.outputs()}
    version = Version(name, lambda rel, limit: None)

    def locate(rel: str) -> tuple[str, int] | None:
        for top, d in entries.items():
            if rel == top and not d.get("isdir"):
                return d["hash"], int(d.get("size", 0))
            if rel.startswith(top + "/") and d.get("isdir"):
                tree = project.cache.get_tree(d["hash"])
                inner = rel[len(top) + 1 :]
                for e in tree.entries:
                    if e.path == inner:
                        return e.hash, e.size
        return None

    def read(rel: str, limit: int) -> bytes | None:
        label = f"{rel} ({name})"
        try:
            found = locate(rel)
            if found is None:
                return None
            h, size = found
            if size > limit:
                raise SpecError(f"{label}: is {size:,} bytes; plots read files up to {limit:,}.")
            return project.cache.get_bytes(h)  # packed or loose; its size checked above
        except MissingObjectError:
            version.notes.append(f"{label}: not in the cache ('repro pull' may fetch it)")
            return None

    version.read = read
    return version


def versions(project: Project, refs: list[str] | None) -> list[Version]:
    """The states named by `refs` (default: the workspace), each with its reader."""
    from repro.refs import resolve_state

    out: list[Version] = []
    for ref in refs or [WORKSPACE]:
        if ref == WORKSPACE:
            out.append(_workspace(project))
            continue
        _, snap = resolve_state(project, ref)
        name = ref if all(v.name != ref for v in out) else f"{ref} ({len(out) + 1})"
        out.append(_stored(project, name, snap))
    return out


# --- data files to records ----------------------------------------------------------------
def _scalar(v: Any) -> Any:
    """A value Vega can draw and JSON can carry (NaN and infinities become null)."""
    if isinstance(v, bool) or v is None or isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else None
    if isinstance(v, str):
        for cast in (int, float):
            try:
                return _scalar(cast(v))
            except ValueError:
                continue
        return v
    return None if isinstance(v, dict | list) else str(v)


def parse_records(
    rel: str, data: bytes, label: str, limit: int | None = MAX_POINTS
) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a CSV/TSV file (header first) or a JSON one (a list of records, or the
    first list of records among an object's values, as dvclive writes), each with its position
    in the file (the `step` when a plot has no x). Beyond `limit` rows, every k-th row is kept
    (and the last), before any row becomes a dict: a 16 MiB log costs its text, not millions
    of dicts."""
    from repro.readfile import decode_text

    text = decode_text(data, label)
    if rel.lower().endswith(".json"):
        import json

        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SpecError(f"{label}: is not valid JSON ({first_line(exc)}).") from None
        if isinstance(doc, dict):
            doc = next((v for v in doc.values() if _is_records(v)), None)
        if not _is_records(doc):
            raise SpecError(f"{label}: holds no list of records to plot.")
        keep = _every(len(doc), limit)
        return [
            (i, {str(k): _scalar(v) for k, v in r.items()}) for i, r in enumerate(doc) if keep(i)
        ]
    import csv
    import io

    delimiter = "\t" if rel.lower().endswith(".tsv") else ","
    keep = _every(text.count("\n"), limit)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = next(reader, [])
        rows = [
            (i, {k: _scalar(v) for k, v in zip(header, r, strict=False)})
            for i, r in enumerate(reader)
            if keep(i) and r
        ]
    except csv.Error as exc:
        raise SpecError(f"{label}: is not valid CSV ({exc}).") from None
    return rows


def _every(n: int, limit: int | None) -> Callable[[int], bool]:
    """Which of `n` rows to keep so at most about `limit` remain, evenly (the last one too)."""
    if limit is None or n <= limit:
        return lambda i: True
    step = -(-n // limit)
    return lambda i: i % step == 0 or i >= n - 2


def _is_records(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(r, dict) for r in v)


def thin(rows: list, limit: int) -> list:
    """At most `limit` rows, evenly spread, first and last kept."""
    n = len(rows)
    if n <= limit:
        return rows
    if limit <= 1:
        return rows[:limit]
    return [rows[round(i * (n - 1) / (limit - 1))] for i in range(limit)]


# --- specs --------------------------------------------------------------------------------
@dataclass
class PlotsResult:
    """The specs, and what could not be drawn (one line each: a missing file, a version whose
    content is not in the cache)."""

    specs: list[dict[str, Any]]
    notes: list[str]


def collect(
    project: Project, refs: list[str] | None = None, targets: list[str] | None = None
) -> PlotsResult:
    """One Vega-Lite spec per declared plot (or per target) over the states `refs` names."""
    defs = plot_defs(project, targets)
    vers = versions(project, refs)
    specs: list[dict[str, Any]] = []
    notes: list[str] = []
    for plot in defs:
        spec, missing = _plot_spec(plot, vers)
        notes += missing
        if spec is not None:
            specs.append(spec)
    for v in vers:
        notes += v.notes
    return PlotsResult(specs, list(dict.fromkeys(notes)))


def plot_specs(project: Project, refs: list[str] | None = None) -> list[dict[str, Any]]:
    """One Vega-Lite spec (a plain dict, data inlined) per plot repro.yaml declares, for the
    workspace or overlaying the states `refs` names (a `rev` field tells them apart)."""
    return collect(project, refs).specs


def _plot_spec(plot: PlotDef, vers: list[Version]) -> tuple[dict[str, Any] | None, list[str]]:
    missing: list[str] = []
    if plot.image:
        images = []
        for v in vers:
            data = v.read(plot.files[0], MAX_IMAGE_BYTES)
            if data is None:
                missing.append(f"{plot.files[0]}: not in {v.name}")
            else:
                images.append({"rev": v.name, "src": _data_uri(plot.files[0], data)})
        return (_image_spec(plot, images) if images else None), missing
    tables: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in vers:
        for f in plot.files:
            data = v.read(f, MAX_DATA_BYTES)
            if data is None:
                missing.append(f"{f}: not in {v.name}")
            else:
                limit = None if plot.template.startswith("confusion") else MAX_POINTS
                tables[(v.name, f)] = parse_records(f, data, f"{f} ({v.name})", limit)
    if not tables:
        return None, missing
    return _data_spec(plot, vers, tables), missing


def _data_uri(rel: str, data: bytes) -> str:
    import base64

    mime = _MIME[os.path.splitext(rel)[1].lower()]
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _meta(plot: PlotDef, revs: list[str]) -> dict[str, Any]:
    return {"repro": {"id": plot.id, "files": list(plot.files), "revs": revs}}


def _image_spec(plot: PlotDef, images: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": VL_SCHEMA,
        "title": plot.title or plot.id,
        "usermeta": _meta(plot, [i["rev"] for i in images]),
        "data": {"values": images},
        "width": WIDTH,
        "height": HEIGHT,
        "mark": {
            "type": "image",
            "width": WIDTH,
            "height": HEIGHT,
            "align": "left",
            "baseline": "top",
        },
        "encoding": {
            "url": {"field": "src", "type": "nominal"},
            "column": {"field": "rev", "type": "nominal", "title": None},
        },
    }


def _series(plot: PlotDef, tables: dict) -> list[tuple[str, str]]:
    """(file, y field) pairs: as declared, or each file's last field that is not its x."""
    if plot.y:
        return list(plot.y)
    xs = dict(plot.x)
    out = []
    for f in plot.files:
        rows = next((t for (_, tf), t in tables.items() if tf == f and t), [])
        fields = [k for k in (rows[0][1] if rows else {}) if k != xs.get(f)]
        if fields:
            out.append((f, fields[-1]))
    return out


def _data_spec(plot: PlotDef, vers: list[Version], tables: dict) -> dict[str, Any]:
    xs = dict(plot.x)
    pairs = _series(plot, tables)
    several_files = len({f for f, _ in pairs}) > 1
    revs = [v.name for v in vers if any(k[0] == v.name for k in tables)]
    confusion = plot.template.startswith("confusion")
    groups: list[list[dict[str, Any]]] = []
    for rev in revs:
        for f, yf in pairs:
            table = tables.get((rev, f))
            if table is None:
                continue
            label = f"{f}: {yf}" if several_files else yf
            rows = [
                {"x": r.get(xs[f]) if f in xs else i, "y": r[yf], "rev": rev, "series": label}
                for i, r in table
                if yf in r
            ]
            groups.append(rows)
    if confusion:
        values = _confusion(groups, plot.template == "confusion_normalized")
    else:
        per = max(1, MAX_POINTS // max(1, len(groups)))
        values = [r for g in groups for r in thin(g, per)]
    x_title = plot.x_label or (plot.x[0][1] if plot.x else "step")
    y_title = plot.y_label or (pairs[0][1] if len({y for _, y in pairs}) == 1 else "value")
    spec: dict[str, Any] = {
        "$schema": VL_SCHEMA,
        "title": plot.title or plot.id,
        "usermeta": _meta(plot, revs),
        "data": {"values": values},
        "width": WIDTH,
        "height": HEIGHT,
    }
    nseries = len({r.get("series") for r in values})
    spec.update(_encode(plot.template, values, x_title, y_title, len(revs) > 1, nseries > 1))
    return spec


def _confusion(groups: list[list[dict[str, Any]]], normalized: bool) -> list[dict[str, Any]]:
    """Counts per (rev, actual, predicted), computed here so no row is thinned away; the
    normalized template divides by the count of each actual class."""
    counts: dict[tuple[str, str, str], int] = {}
    for g in groups:
        for r in g:
            key = (r["rev"], str(r["x"]), str(r["y"]))
            counts[key] = counts.get(key, 0) + 1
    totals: dict[tuple[str, str], int] = {}
    for (rev, x, _), n in counts.items():
        totals[(rev, x)] = totals.get((rev, x), 0) + n
    return [
        {"rev": rev, "x": x, "y": y, "count": n / totals[(rev, x)] if normalized else n}
        for (rev, x, y), n in sorted(counts.items())
    ]


def _kind(values: list[dict[str, Any]], key: str) -> str:
    numbers = all(
        isinstance(r[key], int | float) and not isinstance(r[key], bool)
        for r in values
        if r[key] is not None
    )
    return "quantitative" if numbers else "ordinal"


def _encode(
    template: str, values: list, x_title: str, y_title: str, by_rev: bool, by_series: bool
) -> dict[str, Any]:
    """Mark and encoding for one of DVC's templates over rows {x, y, rev, series}."""
    if template.startswith("confusion"):
        enc: dict[str, Any] = {
            "x": {"field": "x", "type": "nominal", "title": x_title},
            "y": {"field": "y", "type": "nominal", "title": y_title},
            "color": {"field": "count", "type": "quantitative"},
            "tooltip": [{"field": f} for f in ("rev", "x", "y", "count")],
        }
        if by_rev:
            enc["column"] = {"field": "rev", "type": "nominal"}
        return {"mark": "rect", "encoding": enc}
    colour: dict[str, Any] = {}
    if by_rev:
        colour["color"] = {"field": "rev", "type": "nominal"}
        if by_series:
            colour["strokeDash"] = {"field": "series", "type": "nominal"}
    elif by_series:
        colour["color"] = {"field": "series", "type": "nominal"}
    tooltip = [{"field": f} for f in ("rev", "series", "x", "y")]
    if template.startswith("bar_horizontal"):
        enc = {
            "x": {"field": "y", "type": "quantitative", "title": y_title},
            "y": {"field": "x", "type": "nominal", "title": x_title},
            "tooltip": tooltip,
            **colour,
        }
        if template.endswith("sorted"):
            enc["y"]["sort"] = "-x"
        if by_rev:
            enc["yOffset"] = {"field": "rev"}
        return {"mark": "bar", "encoding": enc}
    enc = {
        "x": {"field": "x", "type": _kind(values, "x"), "title": x_title},
        "y": {"field": "y", "type": "quantitative", "title": y_title},
        "tooltip": tooltip,
        **colour,
    }
    if template == "scatter":
        return {"mark": {"type": "point", "filled": True}, "encoding": enc}
    if template == "smooth":
        groupby = ["rev", "series"]
        return {
            "encoding": enc,
            "layer": [
                {"mark": {"type": "point", "opacity": 0.3}},
                {"mark": "line", "transform": [{"loess": "y", "on": "x", "groupby": groupby}]},
            ],
        }
    return {"mark": {"type": "line", "point": template == "linear"}, "encoding": enc}


# --- the page -----------------------------------------------------------------------------
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data:; font-src data:"
)


def _script_json(doc: Any) -> str:
    """JSON safe inside a <script> element: no '<' can close it or open a comment."""
    import json

    return json.dumps(doc, allow_nan=False).replace("<", "\\u003c")


def render_html(specs: list[dict[str, Any]], title: str = "repro plots") -> str:
    """One self-contained page drawing `specs`: every script inlined, and a Content Security
    Policy that forbids loading anything from anywhere (a file:// page with no network works
    the same)."""
    from html import escape

    bundle = vega_bundle()
    divs = "\n".join(
        f'<figure class="plot" id="plot-{i}" data-plot="{escape(_plot_id(s))}"></figure>'
        for i, s in enumerate(specs)
    )
    empty = "" if specs else "<p>No plots: repro.yaml declares none, or none has data yet.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}
figure.plot{{display:inline-block;margin:0 2em 2em 0;vertical-align:top}}</style>
<script>{bundle}</script>
</head><body>
<h1>{escape(title)}</h1>
{empty}{divs}
<script type="application/json" id="repro-plots">{_script_json(specs)}</script>
<script>
const specs = JSON.parse(document.getElementById("repro-plots").textContent);
specs.forEach((s, i) => vegaEmbed("#plot-" + i, s, {{actions: false, renderer: "svg"}})
  .catch(e => {{ document.getElementById("plot-" + i).textContent = String(e); }}));
</script>
</body></html>
"""


def _plot_id(spec: dict[str, Any]) -> str:
    return str(spec.get("usermeta", {}).get("repro", {}).get("id", ""))


def write_html(path: str, specs: list[dict[str, Any]], title: str = "repro plots") -> str:
    """Write the page to `path` (atomically) and return its absolute path."""
    text = render_html(specs, title)
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise ReproError(f"{path}: cannot be written ({exc.strerror or exc}).") from None
    return path
