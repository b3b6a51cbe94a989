"""roadie's dependency locks, pyproject.toml and the code's imports agree.

requirements.lock is what roadie needs to run (the CLI, the fabfile, the Ansible filter plugins and
the Pulumi program and policy pack in infra/); requirements-dev.lock is the developers' whole set
(that plus tests, lint, bench and moto), at the same versions. Both are pip-compile outputs of
pyproject.toml, every pin with its sha256 hashes, installed with --require-hashes (make venv).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

# Code that runs from an operator's venv, and code only developers run.
RUNTIME_SOURCES = [ROOT / "cli" / "roadie", ROOT / "infra", ROOT / "fabfile.py", ROOT / "filter_plugins"]
DEV_SOURCES = [ROOT / "tests", ROOT / "bench", ROOT / "loadkit"]
# Where roadie's own top-level modules live (sys.path entries of the CLI, the Pulumi programs, the tests).
LOCAL_ROOTS = [ROOT, ROOT / "cli", ROOT / "infra", ROOT / "infra" / "policies", ROOT / "tests",
               ROOT / "tests" / "infra", *(p for p in (ROOT / "services").iterdir() if p.is_dir())]

# Never in the runtime lock: test runners, linters, plotting, the AWS emulator.
DEV_ONLY = {"moto", "pytest", "pytest-xdist", "pytest-testinfra", "ruff", "ansible-lint", "matplotlib",
            "numpy", "flask", "psycopg", "werkzeug", "filelock", "gunicorn", "pandas", "scipy", "scikit-learn"}
# Declared though no module imports them: what each is for.
USED_WITHOUT_IMPORT = {
    "ansible": "ansible-playbook's collections (amazon.aws: the aws_ec2 inventories, the ssm_parameter lookups)",
    "ansible-lint": "make lint",
    "ruff": "make lint",
    "pytest-xdist": "pytest -n (make test-unit)",
    "gunicorn": "the service tests run the services under python -m gunicorn",
    "scipy": "the recommender's tests run its code (services/recommender: scipy.sparse), which has its own lock",
    "scikit-learn": "the recommender's tests run its code (services/recommender: sklearn), which has its own lock",
}
# pip-compile leaves these out of a lock (the venv brings its own).
NOT_PINNED = {"pip", "setuptools"}


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: tuple[str, ...]


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> Pin of a hashed requirements file; fails on anything but `name==version --hash=...`."""
    text = path.read_text()
    assert "://" not in text, f"{path.name} names a URL (an index, a host): locks name packages only"
    pins: dict[str, Pin] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        first, *options = line.split()
        assert not first.startswith("-"), f"{path.name}: option line '{line[:60]}' (no index, find-links or -r/-c)"
        req = Requirement(first)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.url and not req.marker, (
            f"{path.name}: '{first}' is not pinned as name==version")
        assert options and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o) for o in options), (
            f"{path.name}: '{first}' has no --hash=sha256:... (or an option that is not one)")
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(specs[0].version, tuple(sorted(options)))
    assert pins, f"{path.name} pins nothing"
    return pins


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(group: str) -> list[Requirement]:
    project = pyproject()
    specs = project["dependencies"] if group == "runtime" else project["optional-dependencies"][group]
    return [Requirement(s) for s in specs]


def python_files(roots: list[Path]):
    for root in roots:
        yield from ([root] if root.is_file() else sorted(root.rglob("*.py")))


def imported_modules(roots: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> files importing it, lazy imports and importlib.util.find_spec("x") included."""
    found: dict[str, set[str]] = {}
    for path in python_files(roots):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  in ("find_spec", "import_module") and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)):
                names = [node.args[0].value]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def is_local(module: str) -> bool:
    return any((r / f"{module}.py").is_file() or (r / module).is_dir() for r in LOCAL_ROOTS)


def third_party_imports(roots: list[Path]) -> dict[str, tuple[set[str], set[str]]]:
    """module -> (distributions providing it here, files importing it), roadie's and the stdlib's left out."""
    providers = md.packages_distributions()
    out = {}
    for module, files in imported_modules(roots).items():
        if module in sys.stdlib_module_names or module == "__future__" or is_local(module):
            continue
        out[module] = ({canonicalize_name(d) for d in providers.get(module, [])}, files)
    return out


def closure(reqs: list[Requirement]) -> tuple[set[str], list[str]]:
    """Every distribution `reqs` pull in, from the installed metadata (markers and extras applied)."""
    seen: dict[str, set[str]] = {}
    missing, todo = [], list(reqs)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen and set(req.extras) <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | set(req.extras)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        for spec in dist.requires or []:
            dep = Requirement(spec)
            if dep.marker and not any(dep.marker.evaluate({"extra": e}) for e in seen[name] or {""}):
                continue
            todo.append(dep)
    return set(seen), missing


def drift(pins: dict[str, Pin]) -> list[str]:
    """Pins this environment does not have at the lock's version (the closure reads installed metadata)."""
    out = []
    for name, pin in pins.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = "not installed"
        if have != pin.version:
            out.append(f"{name} {have} (lock: {pin.version})")
    return out


@pytest.fixture(scope="module")
def runtime() -> dict[str, Pin]:
    return read_lock(RUNTIME_LOCK)


@pytest.fixture(scope="module")
def dev() -> dict[str, Pin]:
    return read_lock(DEV_LOCK)


def test_every_lock_line_is_an_exact_pin_with_hashes(runtime, dev):
    assert runtime and dev  # read_lock refuses unpinned, unhashed and option lines


def test_read_lock_refuses_a_pin_without_hash(tmp_path):
    lock = tmp_path / "r.lock"
    lock.write_text("click==8.5.1 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via roadie\njinja2==3.1.6\n")
    with pytest.raises(AssertionError, match="'jinja2==3.1.6' has no --hash"):
        read_lock(lock)
    lock.write_text("--index-url https://example.invalid/simple\n")
    with pytest.raises(AssertionError, match="URL"):
        read_lock(lock)


def test_the_runtime_lock_has_nothing_dev_only(runtime):
    assert not DEV_ONLY & set(runtime), f"dev-only packages in {RUNTIME_LOCK.name}: {sorted(DEV_ONLY & set(runtime))}"


def test_the_dev_lock_holds_the_runtime_lock_at_the_same_pins(runtime, dev):
    """make venv installs both locks in one pip run: one version (and one set of hashes) per package."""
    differ = {name: (pin.version, dev[name].version if name in dev else None)
              for name, pin in runtime.items() if dev.get(name) != pin}
    assert not differ, f"pinned differently in the two locks (runtime, dev): {differ}"


def test_runtime_imports_are_declared_and_in_the_runtime_lock(runtime):
    deps = {canonicalize_name(r.name) for r in declared("runtime")}
    optional = {canonicalize_name(r.name) for r in declared("local")}  # looked for at run time (roadie[local])
    problems = []
    for module, (dists, files) in sorted(third_party_imports(RUNTIME_SOURCES).items()):
        where = sorted(files)[0]
        if not dists:
            problems.append(f"{module} ({where}): no installed distribution provides it")
        elif dists & optional:
            continue
        elif not dists & set(runtime):
            problems.append(f"{module} ({where}): {sorted(dists)} not in {RUNTIME_LOCK.name}")
        elif not dists & deps:
            problems.append(f"{module} ({where}): {sorted(dists)} not in pyproject's dependencies")
    assert not problems, "\n".join(problems)


def test_test_and_bench_imports_are_declared_and_in_the_dev_lock(dev):
    deps = {canonicalize_name(r.name) for r in declared("runtime") + declared("dev")}
    problems = []
    for module, (dists, files) in sorted(third_party_imports(DEV_SOURCES).items()):
        where = sorted(files)[0]
        if not dists:
            problems.append(f"{module} ({where}): no installed distribution provides it")
        elif not dists & set(dev):
            problems.append(f"{module} ({where}): {sorted(dists)} not in {DEV_LOCK.name}")
        elif not dists & deps:
            problems.append(f"{module} ({where}): {sorted(dists)} declared neither in dependencies nor in dev")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("group,sources", [("runtime", RUNTIME_SOURCES), ("dev", DEV_SOURCES)])
def test_every_declared_dependency_is_used(group, sources):
    used = set().union(*(dists for dists, _ in third_party_imports(sources).values()))
    unused = [r.name for r in declared(group)
              if canonicalize_name(r.name) not in used and canonicalize_name(r.name) not in USED_WITHOUT_IMPORT]
    assert not unused, f"declared in pyproject ({group}) but never imported nor otherwise used: {unused}"


@pytest.mark.parametrize("group", ["runtime", "dev"])
def test_pyproject_declares_what_the_lock_pins(group, runtime, dev):
    """Each declared range admits its pin, and the lock is exactly what the declared packages pull in."""
    pins = runtime if group == "runtime" else dev
    reqs = declared("runtime") + ([] if group == "runtime" else declared("dev"))
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is declared but not pinned in the {group} lock"
        assert req.specifier.contains(pins[name].version, prereleases=True), f"{req} does not admit {pins[name]}"
    wanted, missing = closure(reqs)
    wanted -= NOT_PINNED
    assert not missing, f"not installed here, so the closure is unknown: {missing}"
    extra, absent = sorted(set(pins) - wanted), sorted(wanted - set(pins))
    assert not extra and not absent, (
        f"{group} lock pins what pyproject does not pull in: {extra}; misses what it does: {absent}"
        + (f" (this venv is not the lock's: {drift(pins)})" if drift(pins) else ""))
