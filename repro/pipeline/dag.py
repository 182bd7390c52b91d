"""`repro dag`: the pipeline graph as text, Mermaid, Graphviz dot or JSON (via networkx)."""

from __future__ import annotations

import json

from repro.pipeline.graph import build_graph
from repro.pipeline.spec import load_spec
from repro.project import Project


def render(project: Project, fmt: str = "text") -> str:
    import networkx as nx

    graph = build_graph(load_spec(project), project.root, check_missing=False)
    g = graph.to_networkx()
    if fmt == "json":
        return json.dumps(
            {"nodes": list(graph.order), "edges": sorted([list(e) for e in g.edges])}, indent=2
        )
    if fmt == "mermaid":
        ids = {n: f"s{i}" for i, n in enumerate(graph.order)}
        lines = ["flowchart TD"]
        lines += [f'    {ids[n]}["{n}"]' for n in graph.order]
        lines += [f"    {ids[a]} --> {ids[b]}" for a, b in sorted(g.edges)]
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph repro {", "    rankdir=TB;"]
        lines += [f'    "{n}";' for n in graph.order]
        lines += [f'    "{a}" -> "{b}";' for a, b in sorted(g.edges)]
        return "\n".join([*lines, "}"])
    if not graph.order:
        return "(no stages)"
    # networkx draws each stage under its first parent and names the others beside it
    # (`train ╾ prep_b`), so several roots and shared children are drawn right.
    sources = [n for n in graph.order if g.in_degree(n) == 0]
    out: list[str] = []
    nx.write_network_text(g, path=out.append, sources=sources, end="")
    return "\n".join(out)
