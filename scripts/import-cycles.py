#!/usr/bin/env python3
"""Lists the import edges between a crate's top-level modules (folders) and fails on a cycle,
between folders or between single modules (files). Usage: import-cycles.py [CRATE_DIR...]
(default: agent controller).

Folders: every `crate::<top>` path in agent/src/<top>/** (tests included) is an edge
<top> -> <other>. Modules: every `crate::a::b::...` path outside `#[cfg(test)]` is an edge from
the file's module to the longest module that path names. Run from anywhere.
"""
import os, re, sys, glob

def check(crate):
  root = os.path.join(os.path.dirname(__file__), "..", crate, "src")
  print(f"== {crate}")
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
      print("CYCLE between folders:", " <-> ".join(sorted(c)))

  # Module level.
  mods = {}
  for path in glob.glob(os.path.join(root, "**", "*.rs"), recursive=True):
      rel = os.path.relpath(path, root)
      if rel.startswith("bin" + os.sep) or rel == "lib.rs":
          continue
      name = rel[:-3].replace(os.sep + "mod", "").replace(os.sep, "::")
      mods[name] = open(path).read().split("#[cfg(test)]")[0]
  medges = {}
  for m, text in mods.items():
      for x in re.finditer(r"crate::([a-z_:]+)", text):
          parts = x.group(1).rstrip(":").split("::")
          for k in range(len(parts), 0, -1):
              target = "::".join(parts[:k])
              if target in mods:
                  if target != m:
                      medges.setdefault(m, set()).add(target)
                  break
  found, color = [], {}
  def dfs(v, path):
      color[v] = 1
      path.append(v)
      for w in sorted(medges.get(v, ())):
          if color.get(w) == 1:
              found.append(path[path.index(w):] + [w])
          elif not color.get(w):
              dfs(w, path)
      path.pop()
      color[v] = 2
  for v in sorted(mods):
      if not color.get(v):
          dfs(v, [])
  for c in found:
      print("CYCLE between modules:", " -> ".join(c))
  print(f"{len(mods)} modules, {sum(len(s) for s in medges.values())} module edges, "
        f"{len(cycles)} folder cycles, {len(found)} module cycles")
  return bool(cycles or found)

crates = sys.argv[1:] or ["agent", "controller"]
sys.exit(1 if any([check(c) for c in crates]) else 0)
