"""The engine's floors hold: every module has one, imports only point down (or stay on the floor),
and nothing in engine/ imports Qt, pyqtgraph or the workstation. docs/architecture.md has the table."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"

FLOORS = {  # a package's floor holds every module inside it
    "engine": 1,  # the package itself: __version__
    "engine.config": 1, "engine.atomic": 1, "engine.events": 1, "engine.checkpoint": 1,
    "engine.store": 1, "engine.regime": 1, "engine.device": 1, "engine.data": 1,
    "engine.models": 2, "engine.losses": 2,
    "engine.portfolio": 3,
    "engine.forecast": 3, "engine.policy": 3, "engine.backtest": 3, "engine.evaluation": 3, "engine.explain": 3,
    "engine.baselines": 3, "engine.ledger": 3, "engine.factors": 3,
    "engine.training": 4,
    "engine.jobs": 5,
    "engine.cli": 6, "engine.__main__": 6,
}
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6", "workstation")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    """The package relative imports in this file start from."""
    return module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]


def owner(name: str) -> str | None:
    """The longest FLOORS entry naming this module or a package above it."""
    owners = [k for k in FLOORS if name == k or name.startswith(k + ".")]
    return max(owners, key=len) if owners else None


def floor_of(name: str) -> int | None:
    key = owner(name)
    return FLOORS[key] if key else None


def imports(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in source, lazy ones inside functions too;
    `from a import b` gives a.b, since b may be a module on another floor than a."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[:len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *filter(None, [node.module])])
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]  # may be a module
    return found


def engine_imports() -> list[tuple[Path, int, str]]:
    return [(path, line, name) for path in sorted(ENGINE.rglob("*.py"))
            for line, name in imports(path.read_text(encoding="utf-8"), package_of(path))]


def test_every_engine_module_has_a_floor():
    unplaced = [str(p.relative_to(ROOT)) for p in sorted(ENGINE.rglob("*.py"))
                if p != ENGINE / "__init__.py" and owner(module_name(p)) == "engine"]
    assert not unplaced, f"give these a floor here and in docs/architecture.md: {unplaced}"


def test_engine_imports_only_point_down_the_floors():
    upward = [f"{path.relative_to(ROOT)}:{line} (floor {floor_of(module_name(path))}) imports {name} "
              f"(floor {floor_of(name)})" for path, line, name in engine_imports()
              if name.split(".")[0] == "engine" and floor_of(name) > floor_of(module_name(path))]
    assert not upward, "\n".join(upward)


def test_engine_never_imports_qt_or_the_workstation():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name}" for path, line, name in engine_imports()
                 if name.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_an_upward_import_is_seen_even_lazy_or_relative():
    source = "def f():\n    from engine.training.trainer import fit\n    from . import io\n    from .. import jobs\n"
    found = [name for _, name in imports(source, "engine.data")]
    assert found == ["engine.training.trainer.fit", "engine.data.io", "engine.jobs"]
    assert [floor_of(n) for n in found] == [4, 1, 5] and floor_of("engine.data.fake") == 1
