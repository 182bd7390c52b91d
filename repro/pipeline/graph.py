"""The pipeline graph: which stage feeds which, in what order, and the structural errors.

An edge runs from the stage that writes a path to every stage that reads that path, a path inside
it, or a folder holding it. Order and cycle detection use the standard library's `graphlib`, so
`repro status` and no-op runs never pay networkx's ~150 ms import; `to_networkx()` gives the same
graph as a networkx DiGraph for drawing and analysis (`repro dag`).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any

from repro.errors import SpecError
from repro.pipeline.spec import Spec, Stage


def _parents(path: str):
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


@dataclass
class Graph:
    spec: Spec
    upstream: dict[str, set[str]]
    downstream: dict[str, set[str]]
    order: list[str]

    @property
    def stages(self) -> dict[str, Stage]:
        return self.spec.stages

    def ancestors(self, names: list[str]) -> set[str]:
        """`names` and every stage they need."""
        return _reach(names, self.upstream)

    def descendants(self, names: list[str]) -> set[str]:
        """`names` and every stage that needs them."""
        return _reach(names, self.downstream)

    def to_networkx(self) -> Any:
        import networkx as nx

        g = nx.DiGraph()
        for name in self.order:
            g.add_node(name, cmd=self.stages[name].cmd)
        for name, ups in self.upstream.items():
            for u in ups:
                g.add_edge(u, name)
        return g


def _reach(names: list[str], edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(edges[n])
    return seen


def build_graph(spec: Spec, root: str, check_missing: bool = True) -> Graph:
    """Build and check the graph; every problem is reported at once as a SpecError."""
    problems: list[str] = []
    f = spec.path

    def where(st: Stage, key: str) -> str:
        return (
            f"{f}, line {st.line}: stage '{st.name}', key '{key}'"
            if st.line
            else f"{f}: stage '{st.name}', key '{key}'"
        )

    outs: dict[str, str] = {}
    for st in spec.stages.values():
        for o in st.outs:
            if o.path in outs:
                other = outs[o.path]
                problems.append(
                    f"{where(st, 'outs')}: '{o.path}' is also an output of stage "
                    f"'{other}'; two stages cannot write one path."
                )
                continue
            outs[o.path] = st.name
    sorted_outs = sorted(outs)
    for path in sorted_outs:
        for parent in _parents(path):
            if parent in outs:
                st = spec.stages[outs[path]]
                if outs[parent] == st.name and _report_file(st, path):
                    continue  # dvclive's layout: `outs: [eval]`, `metrics: [eval/metrics.json]`
                problems.append(
                    f"{where(st, 'outs')}: '{path}' lies inside '{parent}', an "
                    f"output of stage '{outs[parent]}'; outputs cannot nest."
                )
                break
    for d in spec.data:
        owner = next((o for o in [d, *_parents(d)] if o in outs), None) or next(
            (
                o
                for o in sorted_outs[bisect.bisect_left(sorted_outs, d + "/") :]
                if o.startswith(d + "/")
            ),
            None,
        )
        if owner:
            problems.append(
                f"{f}: key 'data': '{d}' overlaps '{owner}', an output of stage '{outs[owner]}'."
            )

    def producers_of(dep: str) -> set[str]:
        found = {outs[p] for p in [dep, *_parents(dep)] if p in outs}
        i = bisect.bisect_left(sorted_outs, dep + "/")
        while i < len(sorted_outs) and sorted_outs[i].startswith(dep + "/"):
            found.add(outs[sorted_outs[i]])
            i += 1
        return found

    data_set = set(spec.data)
    upstream: dict[str, set[str]] = {n: set() for n in spec.stages}
    for st in spec.stages.values():
        own = set(st.out_paths)
        for dep in (
            st.deps
            + [p.file for p in st.params]
            + list(st.environment.lockfiles if st.environment else ())
        ):
            prod = producers_of(dep)
            if st.name in prod:
                clash = next(
                    o for o in own if o == dep or o.startswith(dep + "/") or dep.startswith(o + "/")
                )
                problems.append(
                    f"{where(st, 'deps')}: '{dep}' is also this stage's own output "
                    f"'{clash}'; a stage cannot read what it writes."
                )
                continue
            if prod:
                upstream[st.name] |= prod
            elif (
                check_missing
                and not os.path.lexists(os.path.join(root, dep))
                and not (dep in data_set or any(p in data_set for p in _parents(dep)))
            ):
                key = (
                    "deps"
                    if dep in st.deps
                    else "params"
                    if any(p.file == dep for p in st.params)
                    else "environment"
                )
                problems.append(
                    f"{where(st, key)}: dependency '{dep}' does not exist and no stage makes it."
                )
    if problems:
        raise SpecError("\n".join(problems))
    downstream: dict[str, set[str]] = {n: set() for n in spec.stages}
    for n, ups in upstream.items():
        for u in ups:
            downstream[u].add(n)
    ts = TopologicalSorter({n: sorted(upstream[n]) for n in spec.stages})
    try:
        order = list(ts.static_order())
    except CycleError as exc:
        cycle = exc.args[1]
        raise SpecError(f, f"the stages form a cycle: {' -> '.join(cycle)}") from None
    # Keep declaration order among independent stages, for stable output.
    rank = {n: i for i, n in enumerate(spec.stages)}
    order = _stable_topo(order, upstream, rank)
    return Graph(spec, upstream, downstream, order)


def _stable_topo(
    order: list[str], upstream: dict[str, set[str]], rank: dict[str, int]
) -> list[str]:
    import heapq

    indeg = {n: len(upstream[n]) for n in order}
    down: dict[str, list[str]] = {n: [] for n in order}
    for n, ups in upstream.items():
        for u in ups:
            down[u].append(n)
    heap = [(rank[n], n) for n in order if indeg[n] == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        _, n = heapq.heappop(heap)
        out.append(n)
        for m in down[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                heapq.heappush(heap, (rank[m], m))
    return out


def _report_file(st: Stage, path: str) -> bool:
    """Whether `path` is one of the stage's metrics or plots: the only outputs that may lie
    inside another output of the same stage."""
    return any(o.path == path and o.metric for o in st.outs) or any(p.id == path for p in st.plots)
