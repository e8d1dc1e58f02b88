#!/usr/bin/env python3
"""Checks the core's module graph: no import cycle between the top-level modules of `src/`, and
no module importing from a layer above its own.

Reads every `crate::<module>` path in the core's sources (comments and doc comments ignored;
`src/bin/` is the command line, a client of the library, and is not read). Exits 1 with the
offending edges named. Run by `.ci/run`; `--graph` prints every edge.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"

# Lowest first. A module may import from any layer below, and from its own layer's modules
# where that makes no cycle; never from a layer above. The intake sources never import each
# other: each goes through the pipeline and the actions.
LAYERS = [
    ("domain", ["domain", "envelope", "verify", "config", "logging"]),
    ("store", ["store"]),
    ("pipeline", ["intake", "outbox", "details", "events", "refusals", "notify", "secrets"]),
    ("actions", ["actions"]),
    ("sources", ["receiver", "relay", "console"]),
    ("app", ["panel", "control", "about", "app"]),
]
LAYER_OF = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}

PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)


def top_module(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".rs")


def strip_comments(text: str) -> str:
    """The code without comments and without its unit tests (`#[cfg(test)] mod tests`), which
    may use anything."""
    tests = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests\b", text, re.M)
    if tests:
        text = text[: tests.start()]
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def edges():
    found = {}
    for path in sorted(ROOT.rglob("*.rs")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "bin" or rel.name == "lib.rs":
            continue
        here = top_module(path)
        text = strip_comments(path.read_text())
        names = set(PATH.findall(text))
        for group in USE_GROUP.findall(text):
            names.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
        for there in names:
            is_module = (ROOT / f"{there}.rs").exists() or (ROOT / there).is_dir()
            if there != here and is_module:
                found.setdefault((here, there), str(rel))
    return found


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    found = edges()
    graph = {}
    for (a, b) in found:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    if "--graph" in sys.argv:
        for (a, b), where in sorted(found.items()):
            print(f"{a} -> {b}    ({where})")
    problems = []
    for comp in cycles(graph):
        inside = [f"{a} -> {b} ({found[(a, b)]})" for (a, b) in sorted(found) if a in comp and b in comp]
        problems.append("import cycle between " + ", ".join(comp) + ":\n    " + "\n    ".join(inside))
    for (a, b), where in sorted(found.items()):
        la, lb = LAYER_OF.get(a), LAYER_OF.get(b)
        if la is None or lb is None:
            unknown = a if la is None else b
            problems.append(f"`{unknown}` is in no layer: name it in scripts/check-layers.py ({where})")
        elif lb > la:
            problems.append(
                f"{a} ({LAYERS[la][0]}) imports {b} ({LAYERS[lb][0]}), a layer above it ({where})"
            )
        elif la == lb and LAYERS[la][0] == "sources":
            problems.append(f"the source {a} imports the source {b} ({where})")
    for p in dict.fromkeys(problems):
        print(p)
    if problems:
        return 1
    print(f"module layers: {len(graph)} modules, {len(found)} imports, no cycle, nothing points up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
