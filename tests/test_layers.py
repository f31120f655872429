"""The package's imports run one way, down its layers (docs/architecture.md).

Every ``import`` and ``from ... import`` in ``sarlang_data/`` (module level and inside
functions, relative and absolute) is read with ``ast``; an import of a module in a higher layer
than the importer's fails the test, naming both. Same-layer imports are allowed (``stream/``
reads ``format/``'s neighbours, ``hub/downloads`` uses ``hub/exact``) as long as no cycle forms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "sarlang_data"

#: layer of each top-level part of the package (a module or a subpackage); higher may import
#: lower, never the reverse. Top-level re-export modules (torch.py, wds.py, hf.py) sit with cli.
LAYERS = {
    "_version": 0, "schema": 0, "errors": 0, "configs": 0, "remote": 0,
    "format": 1,
    "stream": 2, "ingest": 2,
    "adapters": 3, "hub": 3, "benchmark": 3, "viz": 3,
    "cli": 4, "torch": 4, "wds": 4, "hf": 4, "ray": 4, "__init__": 4, "_preview": 4,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _part(module: str) -> str | None:
    """Return the top-level part of a ``sarlang_data...`` module name, or None if outside."""
    parts = module.split(".")
    if parts[0] != "sarlang_data":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    """Return ``(line, absolute module)`` for every import of a package module in a file."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or node.level and not node.module:
                # `from . import x`: x may be a module of that package
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return [(line, m) for line, m in out if m.split(".")[0] == "sarlang_data"]


def _files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "_preview" not in p.parts)


def test_every_part_has_a_layer():
    parts = {_part(_module_name(p)) for p in _files()}
    assert parts <= set(LAYERS), f"give these a layer in LAYERS: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_go_down(path):
    me = _part(_module_name(path))
    bad = []
    for line, mod in _imports(path):
        other = _part(mod)
        if other is not None and LAYERS.get(other, 99) > LAYERS[me]:
            bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod} "
                       f"(layer {LAYERS.get(other)} > {me}'s {LAYERS[me]})")
    assert not bad, "imports reaching up a layer:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    """Module-level imports form no cycle (lazy imports inside functions may)."""
    graph: dict[str, set[str]] = {}
    names = {_module_name(p): p for p in _files()}
    for name, path in names.items():
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        lines = {n.lineno for n in top}
        deps = set()
        for line, mod in _imports(path):
            if line not in lines:
                continue
            while mod not in names and "." in mod:  # `from pkg import name` -> pkg
                mod = mod.rsplit(".", 1)[0]
            if mod in names and mod != name and not names[mod].name == "__init__.py":
                deps.add(mod)
        graph[name] = deps
    seen: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        seen[n] = 1
        for d in graph.get(n, ()):
            if seen.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, n, d]))
            if d not in seen:
                visit(d, [*stack, n])
        seen[n] = 2

    for n in graph:
        if n not in seen:
            visit(n, [])


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself fails on a lower module importing a higher one."""
    fake = tmp_path / "sarlang_data"
    (fake / "format").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "format" / "__init__.py").write_text("")
    bad = fake / "format" / "bad.py"
    bad.write_text("def f():\n    from ..adapters.hf import load_dataset\n")
    globals()["PKG"] = fake
    try:
        with pytest.raises(AssertionError, match=r"format/bad.py:2 imports "
                                                 r"sarlang_data.adapters.hf"):
            test_imports_only_go_down(bad)
    finally:
        globals()["PKG"] = Path(__file__).resolve().parent.parent / "sarlang_data"
