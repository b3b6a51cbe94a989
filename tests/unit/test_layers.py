"""Layers only look down: an import from a lower layer to a higher one fails here, naming both modules.

Every `import roadie...` / `from roadie... import` counts, at module level or inside a function (a lazy
import is still a dependency). Modules of one layer may import each other; the order inside the
operations layer is deploy, then ops (which drains through the deploy engine), then db (whose live
restore uses maintenance mode).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cli" / "roadie"

# The first part of a module's name under roadie -> its layer; higher numbers may import lower ones.
LAYERS = {
    0: ["__init__", "errors", "events", "paths", "procs", "output"],
    1: ["commands", "model", "inventory", "aws", "confirm"],
    2: ["release", "transport", "balancer", "state", "local", "converge", "pulumi_stack"],
    3: ["environment", "hostkeys"],
    4: ["deploy"],
    5: ["ops"],
    6: ["db"],
    7: ["health"],
    8: ["cli", "main", "__main__", "testing"],  # testing: fakes of every layer's contracts, for tests
}
LAYER = {name: level for level, names in LAYERS.items() for name in names}


def part(module: str) -> str:
    """`roadie.deploy.run` -> `deploy`; `roadie` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()


def imports(path: Path) -> set[str]:
    """The roadie modules `path` imports (absolute names; `from roadie import x` gives roadie.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "roadie"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "roadie":
            found |= {f"roadie.{a.name}" if node.module == "roadie" and is_module(a.name) else node.module
                      for a in node.names}
    return found


def modules() -> dict[str, Path]:
    return {"roadie." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def upward(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if LAYER[part(target)] > LAYER[part(module)]:
                bad.append(f"{module} (layer {LAYER[part(module)]}) imports {target} "
                           f"(layer {LAYER[part(target)]})")
    return bad


def test_every_module_has_a_layer():
    assert sorted({part(m) for m in modules()} - set(LAYER)) == []


def test_no_module_imports_from_a_higher_layer():
    assert upward({m: imports(p) for m, p in modules().items()}) == []


@pytest.mark.parametrize(("module", "target"), [
    ("roadie.ops.health", "roadie.db.backups"),  # health above ops and db, not in ops
    ("roadie.deploy.status", "roadie.ops.maintenance"),  # maintenance is a balancer capability
    ("roadie.release.install", "roadie.deploy.run"),  # install is a deploy operation
    ("roadie.environment", "roadie.deploy.run"),
])
def test_an_upward_import_is_reported(module, target):
    assert upward({module: {target}}) != []


def test_the_cli_modules_import_nothing_private_from_each_other():
    """cli/ops.py reuses the deploy command's flow through its public names, not `_run` and friends."""
    private = []
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("roadie.cli"):
                private += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []


def test_yes_and_plan_are_defined_once():
    """Every command's --yes and --plan come from roadie.cli.options (they were declared 10 and 6 times)."""
    defined = sorted(p.name for p in (PACKAGE / "cli").glob("*.py")
                     if '"--yes"' in p.read_text() or '"--plan"' in p.read_text())
    assert defined == ["options.py"]
