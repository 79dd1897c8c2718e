"""The code a stage depends on, read from the import statements of its modules (never listed by hand).

:func:`closure` follows every ``import`` / ``from ... import`` inside the ``radialog_instruct``
package, at module level and inside functions alike (a lazy import is still a dependency), starting
from a stage's entry modules; packages count with their ``__init__``. Nothing is imported: the
sources are parsed with :mod:`ast`, so computing a fingerprint costs no library start-up.
:func:`code_files` adds the data files that ship inside those packages (phrase lists, the sentence
splitter's abbreviations, report templates), which change behaviour as much as code does: a data
file counts when a module of the closure in the same package names it (or the folder it is in).

The package root is the folder that holds ``tasks/``: the checkout in an editable install, the
installed ``radialog_instruct`` folder otherwise (both have the same layout).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from .config import PROJECT_ROOT as PACKAGE_ROOT

PACKAGE = "radialog_instruct"


def module_file(name: str) -> Path | None:
    """The source file of project module ``name`` (a package's ``__init__.py``), or None."""
    if name == PACKAGE or not name.startswith(PACKAGE + "."):
        return None
    base = PACKAGE_ROOT.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a relative import ``from <level dots><target> import ...`` in ``module``."""
    if level == 0:
        return target or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


@cache
def _parsed(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(project modules that module ``name`` imports anywhere, the string constants it holds)."""
    path = module_file(name)
    if path is None:
        return frozenset(), frozenset()
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found: set[str] = set()
    strings: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, _is_package(path), node.level, node.module)
            found.add(base)
            # ``from pkg import mod`` imports the submodule when there is one
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
    return frozenset(m for m in found if module_file(m) is not None), frozenset(strings)


def direct_imports(name: str) -> frozenset[str]:
    """Project modules that module ``name`` imports anywhere in its source."""
    return _parsed(name)[0]


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def closure(entries: Iterable[str]) -> tuple[str, ...]:
    """Every project module that importing ``entries`` can execute, sorted by name."""
    seen: set[str] = set()
    todo = [m for entry in entries for m in _with_parents(entry) if module_file(m) is not None]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for dep in direct_imports(name):
            todo.extend(m for m in _with_parents(dep) if m not in seen and module_file(m) is not None)
    return tuple(sorted(seen))


def package_data(package_dir: Path) -> list[Path]:
    """Data files shipped in a package folder: its non-Python files, also in sub-folders that are
    not packages themselves (e.g. ``labeling/phrases/``)."""
    out: list[Path] = []
    for path in sorted(package_dir.iterdir()):
        if path.name.startswith(".") or path.name == "__pycache__":
            continue
        if path.is_dir():
            if not (path / "__init__.py").exists():
                out.extend(p for p in sorted(path.rglob("*"))
                           if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith("."))
        elif path.suffix not in (".py", ".pyc"):
            out.append(path)
    return out


def code_files(entries: Iterable[str]) -> list[Path]:
    """The source files of :func:`closure` plus the package data files their modules name."""
    modules = closure(entries)
    files = {module_file(name) for name in modules}
    named: dict[Path, set[str]] = {}
    for name in modules:
        path = module_file(name)
        if path is not None:
            named.setdefault(path.parent, set()).update(_parsed(name)[1])
    data = {d for folder, strings in named.items() for d in package_data(folder)
            if d.name in strings or d.relative_to(folder).parts[0] in strings}
    return sorted({p for p in files if p is not None} | data)
