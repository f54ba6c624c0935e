#!/usr/bin/env python
"""The shape of a Python package, read with ``ast`` (nothing is imported or run).

    .venv/bin/python scripts/module_graph.py [SRC_PACKAGE_DIR]   # default: src/trakr

Prints:

1. the number of modules, and the largest ones by line count;
2. import cycles: strongly connected components of more than one module, first in the graph of
   the imports that run when a module is imported (module level), then with the imports made
   inside functions ("lazy" imports, often there to dodge a cycle) and ``if TYPE_CHECKING:``
   imports counted too; how many lazy and type-only imports there are;
3. stage back-references: a module of one stage of the data path importing a module of a later
   stage, in the order capture -> inference -> rules -> delivery. A module's stage is its
   sub-package (``trakr.capture.reader`` -> capture) or, in a flat layout, its name: capture,
   slot, gate, batcher, frame -> capture; detector*, onnx_detector, redis_*, worker -> inference;
   rules, alerts -> rules; outbox, cloud, thingsboard, speaker, training -> delivery.

Compare two trees, e.g. before and after a restructuring::

    git archive 69b24ec src | tar -x -C /tmp/before
    python scripts/module_graph.py /tmp/before/src/trakr; python scripts/module_graph.py
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("capture", "inference", "rules", "delivery")
FLAT_STAGES = {
    "capture": ("capture", "slot", "gate", "batcher", "frame"),
    "inference": ("detector*", "onnx_detector", "redis_*", "worker"),
    "rules": ("rules", "alerts"),
    "delivery": ("outbox", "cloud", "thingsboard", "speaker", "training"),
}
TOP = 5


@dataclass
class Import:
    source: str
    target: str
    line: int
    kind: str
    """``module`` (runs at import), ``lazy`` (inside a function) or ``typing`` (``if TYPE_CHECKING:``)."""


@dataclass
class Package:
    root: Path
    name: str
    modules: dict[str, Path] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)


def module_name(root: Path, name: str, path: Path) -> str:
    parts = [name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str | None:
    parts = module.split(".")[1:]
    for p in parts[:-1] if len(parts) > 1 else ():
        if p in STAGES:
            return p
    if len(parts) == 1:
        if parts[0] in STAGES:
            return parts[0]
        for stage, patterns in FLAT_STAGES.items():
            if any(fnmatch.fnmatch(parts[0], pat) for pat in patterns):
                return stage
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, pkg: Package, module: str, is_package: bool):
        self.pkg, self.module, self.is_package = pkg, module, is_package
        self.depth = 0
        self.typing = 0

    def _kind(self) -> str:
        return "lazy" if self.depth else "typing" if self.typing else "module"

    def _add(self, target: str, line: int) -> None:
        if target in self.pkg.modules and target != self.module:
            self.pkg.imports.append(Import(self.module, target, line, self._kind()))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.typing += 1
            for n in node.body:
                self.visit(n)
            self.typing -= 1
            for n in node.orelse:
                self.visit(n)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(self._nearest(alias.name), node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            here = self.module.split(".")
            base = here if self.is_package else here[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        for alias in node.names:
            sub = f"{prefix}.{alias.name}"
            self._add(sub if sub in self.pkg.modules else self._nearest(prefix), node.lineno)

    def _nearest(self, dotted: str) -> str:
        """``a.b.c`` -> the longest prefix that is a module of the package."""
        parts = dotted.split(".")
        while parts and ".".join(parts) not in self.pkg.modules:
            parts.pop()
        return ".".join(parts)


def scan(root: Path) -> Package:
    pkg = Package(root, root.name)
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        pkg.modules[module_name(root, pkg.name, path)] = path
    for mod, path in pkg.modules.items():
        text = path.read_text(encoding="utf-8", errors="replace")
        pkg.lines[mod] = len(text.splitlines())
        try:
            tree = ast.parse(text, str(path))
        except SyntaxError as e:
            print(f"warning: cannot parse {path}: {e}", file=sys.stderr)
            continue
        _Collector(pkg, mod, path.name == "__init__.py").visit(tree)
    return pkg


def cycles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out, key=lambda c: (-len(c), c))


def report(pkg: Package) -> None:
    short = {m: m.split(".", 1)[1] if "." in m else m for m in pkg.modules}
    n_lines = sum(pkg.lines.values())
    print(f"{pkg.root}: {len(pkg.modules)} modules, {n_lines} lines")
    print(f"largest modules (top {TOP}):")
    for m in sorted(pkg.lines, key=lambda m: -pkg.lines[m])[:TOP]:
        print(f"  {pkg.lines[m]:6d}  {short[m]}")

    by_kind: dict[str, list[Import]] = defaultdict(list)
    for imp in pkg.imports:
        by_kind[imp.kind].append(imp)
    print(
        f"internal imports: {len(by_kind['module'])} at module level, {len(by_kind['lazy'])} lazy "
        f"(inside functions), {len(by_kind['typing'])} type-only (if TYPE_CHECKING)"
    )
    nodes = sorted(pkg.modules)
    for label, kinds in (("module-level imports", {"module"}), ("all imports", {"module", "lazy", "typing"})):
        edges: dict[str, set[str]] = defaultdict(set)
        for imp in pkg.imports:
            if imp.kind in kinds:
                edges[imp.source].add(imp.target)
        found = cycles(nodes, edges)
        print(f"import cycles ({label}): {len(found)}")
        for comp in found:
            inside = {
                f"{short[i.source]}:{i.line} -> {short[i.target]} [{i.kind}]": None
                for i in pkg.imports
                if i.kind in kinds and i.source in comp and i.target in comp
            }
            links = ", ".join(inside)
            print(f"  {' <-> '.join(short[m] for m in comp)}  ({links})")

    back = []
    for imp in pkg.imports:
        s, t = stage_of(imp.source), stage_of(imp.target)
        if s and t and STAGES.index(s) < STAGES.index(t):
            back.append((imp, s, t))
    print(f"stage back-references (an earlier stage importing a later one, {' -> '.join(STAGES)}): {len(back)}")
    for imp, s, t in sorted(back, key=lambda x: (x[0].source, x[0].line)):
        print(f"  {short[imp.source]}:{imp.line} ({s}) imports {short[imp.target]} ({t}) [{imp.kind}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    default = Path(__file__).resolve().parent.parent / "src" / "trakr"
    ap.add_argument("root", nargs="?", type=Path, default=default, help="package directory (default src/trakr)")
    a = ap.parse_args()
    if not (a.root / "__init__.py").is_file():
        sys.exit(f"{a.root} is not a package directory (no __init__.py)")
    report(scan(a.root))


if __name__ == "__main__":
    main()
