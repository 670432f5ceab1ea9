"""The package layering, enforced: a module may import its own layer and the layers below, never above.

    _util <- llm, testing, records <- judges <- config, inputs <- workflows, mapl
          <- run, dataset, pipeline, annotate <- release <- cli, flows

Every import counts: module level, inside functions (a lazy import of a heavy package is fine when
it goes down; one that goes up is a cycle in hiding) and under `TYPE_CHECKING`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, ...]] = [
    ("factory", "factory._util"),  # `factory` itself: the package root, holding only __version__
    ("factory.llm", "factory.testing", "factory.records"),
    ("judges",),
    ("factory.config", "factory.inputs"),
    ("factory.workflows", "factory.mapl"),
    ("factory.run", "factory.dataset", "factory.pipeline", "factory.annotate"),
    ("factory.release",),
    ("factory.cli", "factory.__main__", "flows"),
]


def layer_of(module: str) -> int:
    """The layer of the longest layer prefix that names `module` or one of its packages."""
    best, depth = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS")
    return best


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a project module anywhere in `source`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from factory import x` imports the module factory.x when there is one
            for alias in node.names:
                found.append((node.lineno, f"{target}.{alias.name}"))
    return [(line, name) for line, name in found if name.split(".")[0] in ("factory", "judges", "flows")]


def known_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def upward_imports(root: Path) -> list[str]:
    problems = []
    for path in sorted(p for top in ("factory", "judges", "flows") for p in (root / top).rglob("*.py")):
        module = module_name(path, root)
        own = layer_of(module)
        for line, target in project_imports(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py"
        ):
            if not known_module(target, root):
                continue  # a name imported from a module, not a module
            if layer_of(target) > own:
                problems.append(
                    f"{path.relative_to(root)}:{line}: {module} (layer {own}) imports {target} "
                    f"(layer {layer_of(target)})"
                )
    return problems


def test_no_module_imports_a_layer_above_its_own() -> None:
    assert upward_imports(ROOT) == []


def test_every_module_has_a_layer() -> None:
    for top in ("factory", "judges", "flows"):
        for path in (ROOT / top).rglob("*.py"):
            layer_of(module_name(path, ROOT))


@pytest.mark.parametrize("where", ["module", "function", "type_checking"])
def test_an_upward_import_is_caught(tmp_path: Path, where: str) -> None:
    """The check itself can fail: a copy of the tree with one upward import added is refused."""
    for top in ("factory", "judges", "flows"):
        for path in (ROOT / top).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    victim = tmp_path / "factory" / "llm" / "cache.py"
    added = {
        "module": "from factory.pipeline.runner import run_build\n",
        "function": "def _sneaky():\n    from factory.cli import app\n    return app\n",
        "type_checking": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from judges.engine import ask\n",
    }[where]
    victim.write_text(victim.read_text(encoding="utf-8") + "\n" + added, encoding="utf-8")
    problems = upward_imports(tmp_path)
    assert problems and all(p.startswith("factory/llm/cache.py:") for p in problems), problems
