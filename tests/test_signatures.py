"""No public library function takes more than MAX_PARAMS parameters (issue 23): a job with many knobs
takes a typed options object instead (``SegWriteOptions``, ``GridOptions``, ...). Checked on the source
(AST), so a new 27-argument function fails here, naming its file and line.

Counted: every parameter (positional, keyword-only, ``*args``, ``**kwargs``), less ``self``/``cls`` of
methods. Public: a module-level function or a method of a public class whose name does not start with
``_`` (dunders such as ``__init__`` count: they are called by users too). Functions nested in other
functions are not reachable from outside and are not checked. ``cli/`` is exempt: a typer command's
parameters are its flags.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sonoseg"
EXEMPT = ("cli",)  # sub-packages of sonoseg not checked
MAX_PARAMS = 10

# Over the limit today and taken to an options object on other branches (issue 23); tolerated here by
# name so that those branches can merge in any order. The lead empties this set at merge.
PENDING: set[str] = set()


@dataclass(frozen=True)
class Offender:
    where: str  # file:line
    name: str  # qualified: Class.method or function
    count: int

    def __str__(self) -> str:
        return f"{self.where} {self.name}: {self.count} parameters (limit {MAX_PARAMS})"


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _count(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> int:
    a = fn.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if method and not static and (a.posonlyargs or a.args):
        n -= 1  # self / cls
    return n


def offenders_in(source: str, where: str) -> list[Offender]:
    """Public functions and methods of one module's source over the limit."""
    out: list[Offender] = []

    def visit(node: ast.AST, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _public(child.name):
                    n = _count(child, cls is not None)
                    if n > MAX_PARAMS:
                        name = f"{cls}.{child.name}" if cls else child.name
                        out.append(Offender(f"{where}:{child.lineno}", name, n))
                # nested functions are private to their function: not visited
            elif isinstance(child, ast.ClassDef):
                if _public(child.name) and (cls is None or _public(cls.rsplit(".", 1)[-1])):
                    visit(child, f"{cls}.{child.name}" if cls else child.name)
            else:  # if / try / with blocks at module or class level
                visit(child, cls)

    visit(ast.parse(source), None)
    return out


def scan(root: Path = SRC) -> list[Offender]:
    out: list[Offender] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in EXEMPT:
            continue
        out += offenders_in(path.read_text(encoding="utf-8"), f"src/sonoseg/{rel.as_posix()}")
    return out


def test_no_public_function_takes_more_than_the_limit():
    new = [o for o in scan() if o.name.rsplit(".", 1)[-1] not in PENDING]
    assert not new, ("take an options object (a small typed dataclass) instead of many parameters:\n"
                     + "\n".join(map(str, new)))


def test_pending_entries_are_still_over_the_limit():
    over = {o.name.rsplit(".", 1)[-1] for o in scan()}
    stale = sorted(PENDING - over)
    assert not stale, f"no longer over the limit, remove from PENDING in {Path(__file__).name}: {', '.join(stale)}"


def test_the_counter_counts_what_it_says():
    src = '''
def eleven(a, b, c, d, e, f, g, h, i, *args, k=1, **kw): pass
def ten(a, b, c, d, e, f, g, h, i, j): pass
def _private(a, b, c, d, e, f, g, h, i, j, k, l): pass
async def coro(a, b, c, d, e, f, g, h, i, *, j, k): pass
def outer():
    def nested(a, b, c, d, e, f, g, h, i, j, k): pass
class Public:
    def method(self, a, b, c, d, e, f, g, h, i, j): pass
    def wide(self, a, b, c, d, e, f, g, h, i, j, k): pass
    def __init__(self, a, b, c, d, e, f, g, h, i, j, k): pass
    @staticmethod
    def static(a, b, c, d, e, f, g, h, i, j, k): pass
    class Inner:
        @classmethod
        def make(cls, a, b, c, d, e, f, g, h, i, j, k): pass
class _Hidden:
    def wide(self, a, b, c, d, e, f, g, h, i, j, k): pass
if True:
    def guarded(a, b, c, d, e, f, g, h, i, j, k): pass
'''
    got = {(o.name, o.count, o.where) for o in offenders_in(src, "m.py")}
    assert got == {("eleven", 12, "m.py:2"), ("coro", 11, "m.py:5"), ("Public.wide", 11, "m.py:10"),
                   ("Public.__init__", 11, "m.py:11"), ("Public.static", 11, "m.py:13"),
                   ("Public.Inner.make", 11, "m.py:16"), ("guarded", 11, "m.py:20")}
    assert "limit 10" in str(next(iter(offenders_in(src, "m.py"))))
