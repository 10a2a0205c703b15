"""The project's shape: who may import whom, and one top-level name once installed.

- ``backend/`` (``labelhub.backend``) and ``sync/`` (``labelhub.sync``) never import each other; what both
  use lives in the shared ``labelhub/`` package, which imports neither (except its command group,
  :mod:`labelhub.cli`, which gathers their commands).
- No two modules import each other, counting every import statement: top level, inside functions, and
  under ``if TYPE_CHECKING:``.
- ``pyproject.toml`` lists every package folder, so the wheel holds them all; the wheel installs into a new
  virtual environment and ``labelhub --help`` runs from another folder.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # {"labelhub.backend": "backend", ...}


def _modules() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the distribution."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            name = ".".join((package, *parts))
            if name.split(".")[:2] == ["labelhub", *parts[:1]] and package == "labelhub" and parts[:1] in (
                    ("backend",), ("sync",)):
                continue  # not possible with the package-dir mapping; guards against a stray folder
            modules[name] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules that module ``name`` imports anywhere in its file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


MODULES = _modules()
GRAPH = {name: _imports(name, path, set(MODULES)) for name, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("backend", "sync") else "shared"


def test_backend_and_sync_never_import_each_other_and_the_shared_core_imports_neither():
    wrong = sorted(f"{a} imports {b}" for a, targets in GRAPH.items() for b in targets
                   if {_part(a), _part(b)} == {"backend", "sync"}
                   or (_part(a) == "shared" and _part(b) != "shared" and a != "labelhub.cli"))
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_import_each_other():
    cycles = sorted({tuple(sorted((a, b))) for a, targets in GRAPH.items() for b in targets if a in GRAPH.get(b, ())})
    assert not cycles, "\n".join(f"{a} <-> {b}" for a, b in cycles)


def test_the_graph_sees_the_imports_it_checks():
    assert "labelhub.signing" in GRAPH["labelhub.backend.files"]
    assert "labelhub.sync.ledger" in GRAPH["labelhub.sync.files.importer"]
    assert len(MODULES) > 40


def test_pyproject_lists_every_package_folder():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert listed == folders, f"missing from pyproject.toml: {sorted(folders - listed)}; stale: {sorted(listed - folders)}"


def test_every_package_says_its_stage_in_its_docstring():
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc.split()) >= 8, f"{name} has no docstring saying what it is"


@pytest.mark.timeout(900)
def test_the_wheel_installs_one_top_level_name_and_its_cli_runs_from_another_folder(tmp_path):
    source = tmp_path / "src"  # a copy: setuptools' build/ folder never lands in (or leaks stale files from) the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                               ".labelhub*", "test-artifacts", ".venv", "tests"))
    wheels = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("labelhub-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"labelhub"}, tops
    assert {"labelhub/backend/app.py", "labelhub/sync/ledger.py", "labelhub/cli.py"} <= set(names)
    # A new environment that sees this one's packages (no download), with the wheel installed on top.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    "--force-reinstall", str(wheel)], check=True, capture_output=True, timeout=300, env=clean)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(python), "-c", "import labelhub.backend.app, labelhub.sync.cli, labelhub; "
                            "print(labelhub.__file__)"], cwd=elsewhere, capture_output=True, text=True, env=clean)
    assert where.returncode == 0, where.stderr
    assert str(env_dir) in where.stdout, where.stdout  # the wheel's copy, not the checkout's
    helped = subprocess.run([str(env_dir / "bin" / "labelhub"), "--help"], cwd=elsewhere, capture_output=True,
                            text=True, env=clean)
    assert helped.returncode == 0, helped.stderr
    assert "import-labels" in helped.stdout and "sync" in helped.stdout and "backend" in helped.stdout
    for stray in ("backend", "sync"):
        found = subprocess.run([str(python), "-c", f"import {stray}"], cwd=elsewhere, capture_output=True, env=clean)
        assert found.returncode != 0, f"the wheel installed a top-level {stray!r}"
