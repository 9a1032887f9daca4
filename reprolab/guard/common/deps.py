"""What a stage's code is made of: the static import closure of its modules inside the project.

``dvc.yaml`` must declare every file a stage imports (tests/stages/test_deps.py compares the
two), and a checkpoint's fingerprint hashes the same files, so "the code that determines the
result" means one thing everywhere. Imports are read with :mod:`ast`, without importing
anything: imports inside functions count (the library imports heavy frameworks lazily), and
so do imports under ``if TYPE_CHECKING:`` (harmless over-approximation). An ``__init__.py``
that holds nothing but its docstring carries no code and is left out.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGES = ("reprolab", "stages")  # the project's own top-level packages


def module_file(module: str, root: Path) -> Path | None:
    """The file that defines ``module`` (``a/b.py`` or ``a/b/__init__.py``), if it exists."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> list[str]:
    """Every project module that ``path`` (the file of ``module``) imports, in source order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append(target)
            # ``from pkg import name``: name may itself be a submodule.
            found.extend(f"{target}.{alias.name}" for alias in node.names)
    return [m for m in found if m.split(".")[0] in PACKAGES]


def _has_code(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return bool(body)


def import_closure(modules: Iterable[str], root: Path) -> list[Path]:
    """The project files that importing ``modules`` executes, relative to ``root``, sorted.

    Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``; those count
    when they hold code.
    """
    seen: set[str] = set()
    files: set[Path] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        path = module_file(module, root)
        if path is None:
            continue  # a name imported from a module, not a module
        if path.name != "__init__.py" or _has_code(path):
            files.add(path.relative_to(root))
        todo.extend(_imported_modules(path, module))
    return sorted(files)


def code_hash(modules: Iterable[str], root: Path) -> str:
    """sha256 over the paths and bytes of ``import_closure(modules)``: a code fingerprint."""
    digest = hashlib.sha256()
    for rel in import_closure(modules, root):
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update((root / rel).read_bytes() + b"\0")
    return digest.hexdigest()
