"""The house's layers, kept by a test (issue 23, item 6): no upward import, no import circle, and
packages that share a row stand apart.

Every ``import`` / ``from ... import`` of sonoseg's own modules counts, lazy ones inside functions too
(they are circles all the same, only deferred). Packages sit on the rows of LAYERS, lowest first; a module
may import its own package and packages on lower rows, never one on a higher row and never another package
of its own row (``export`` and ``infer`` share one: neither imports the other). docs/architecture.md
says what each row holds and where new code goes; it shows the same table.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sonoseg"
LAYERS = [  # lowest first; packages on one row are peers that do not import each other
    ["__init__", "errors"],  # the version; error types
    ["redact", "_compat", "progress", "system"],  # primitives: redaction, shims, progress, threads/CPU/seeding
    ["io"],  # reading/writing DICOM, NIfTI, images; budgets; spacing
    ["metrics"],  # segmentation, surface and class metrics (numpy)
    ["outputs"],  # DICOM SEG / SC writers, label tables, overlays
    ["preprocess"],
    ["config"],
    ["data"],
    ["models"],  # architectures + registry, factory, checkpoint format, weight storage, sliding window
    ["runtime"],  # ONNX/TorchScript conversion, int8 scheme, backend sessions, fast-model cache
    ["train", "export", "infer"],  # the three stages, each on runtime/models, none importing another
    ["evaluate", "bench"],  # jobs that run the predictor: evaluation, benchmark harness
    ["experiments", "store"],
    ["serve", "pacs"],
    ["cli"],
    ["__main__"],
]
LAYER = {pkg: i for i, row in enumerate(LAYERS) for pkg in row}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> sonoseg modules it imports (resolved relative imports; ``from pkg import name`` counts
    as an import of ``pkg.name`` when that is a module, else of ``pkg``)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps: set[str] = set()
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for n in names:
                while n and n not in files:
                    n = n.rsplit(".", 1)[0] if "." in n else ""
                if n.startswith("sonoseg") and n != mod:
                    deps.add(n)
        graph[mod] = deps
    return graph


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(graph: dict[str, set[str]]) -> set[str]:
    """Imports of a package on a higher row, or of another package on the same row."""
    out = set()
    for mod, deps in graph.items():
        for d in deps:
            a, b = _package(mod), _package(d)
            if LAYER[b] > LAYER[a] or (LAYER[b] == LAYER[a] and a != b):
                out.add(f"{mod} -> {d}")
    return out


def module_circles(graph: dict[str, set[str]]) -> set[str]:
    """Strongly connected components of more than one module (Tarjan), each as its sorted members."""
    index, low, on, stack, out, counter = {}, {}, set(), [], set(), [0]

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
                out.add(" ".join(sorted(comp)))

    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(old)
    return out


def test_every_package_has_a_layer():
    pkgs = {_package(m) for m in import_graph()}
    assert not pkgs - set(LAYER), f"give these packages a layer in LAYERS: {sorted(pkgs - set(LAYER))}"


def test_no_upward_import():
    up = sorted(upward_imports(import_graph()))
    assert not up, "upward or sideways import(s) (docs/architecture.md says where things go): " + "; ".join(up)


def test_no_import_circle():
    circles = sorted(module_circles(import_graph()))
    assert not circles, "import circle(s): " + "; ".join(circles)


def test_the_checker_sees_an_upward_import_and_a_circle():
    """The checker itself, on made-up graphs: io importing infer is upward, export importing infer is
    sideways (one row); a <-> b is a circle."""
    g = {"sonoseg.io.x": {"sonoseg.infer.y"}, "sonoseg.infer.y": {"sonoseg.io.x"}}
    assert upward_imports(g) == {"sonoseg.io.x -> sonoseg.infer.y"}
    assert module_circles(g) == {"sonoseg.infer.y sonoseg.io.x"}
    assert upward_imports({"sonoseg.export": {"sonoseg.infer.run"}}) == {"sonoseg.export -> sonoseg.infer.run"}
    assert upward_imports({"sonoseg.infer.run": {"sonoseg.infer.frames", "sonoseg.runtime.backends"}}) == set()


def test_docs_show_the_same_rows():
    """docs/architecture.md's table lists the packages of LAYERS, row by row (``sonoseg`` = ``__init__``)."""
    import re

    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    rows = [re.findall(r"`([\w.]+)`", line.split("|")[2]) for line in doc.splitlines() if re.match(r"\| \d+ \|", line)]
    rows = [["__init__" if p == "sonoseg" else p for p in row] for row in rows]
    assert rows == LAYERS, "docs/architecture.md's layer table differs from LAYERS in tests/test_import_layers.py"
