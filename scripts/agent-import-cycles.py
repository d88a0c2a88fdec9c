#!/usr/bin/env python3
"""Lists the import edges between the agent's top-level modules (folders) and fails on a cycle.

Every `crate::<top>` path in agent/src/<top>/** (outside `#[cfg(test)]` blocks is not
distinguished: tests count too) is an edge <top> -> <other>. Run from the repository root.
"""
import os, re, sys, glob

root = os.path.join(os.path.dirname(__file__), "..", "agent", "src")
edges = {}
for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
    rel = os.path.relpath(path, root)
    if rel.startswith("bin" + os.sep) or rel == "lib.rs":
        continue
    top = rel.split(os.sep)[0].removesuffix(".rs")
    text = open(path).read()
    for m in re.finditer(r"crate::([a-z_]+)", text):
        other = m.group(1)
        if other != top:
            edges.setdefault(top, set()).add(other)
    # `use crate::{a, b::c}` groups
    for m in re.finditer(r"crate::\{([^}]*)\}", text):
        for part in m.group(1).split(","):
            other = part.strip().split("::")[0]
            if other and other != top:
                edges.setdefault(top, set()).add(other)

for top in sorted(set(edges) | {o for s in edges.values() for o in s}):
    print(f"{top:10} -> {', '.join(sorted(edges.get(top, ())))}")

# Tarjan's strongly connected components: any component of more than one node is a cycle.
index, low, stack, on, sccs = {}, {}, [], set(), []
def strong(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in list(edges):
    if v not in index:
        strong(v)
cycles = [c for c in sccs if len(c) > 1]
for c in cycles:
    print("CYCLE:", " <-> ".join(sorted(c)))
sys.exit(1 if cycles else 0)
