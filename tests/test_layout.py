"""The house rules that code review alone would let slip: the import graph is
pipeline -> transforms -> glcm, transforms/io is Beam-free, the records import no I/O
library, and no package writes the process environment."""

import ast
import re
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What each package may not import (its own dependants, and for glcm the I/O stack).
FORBIDDEN = {
    "glcm": {"transforms", "pipeline", "apache_beam", "rasterio", "google", "gcsfs"},
    "transforms": {"pipeline"},
    "transforms/io": {"pipeline", "apache_beam"},
    "transforms/records.py": {"pipeline", "apache_beam", "rasterio", "google", "gcsfs",
                              "affine", "transforms.io", "transforms.layout"},
    "pipeline": {"glcm"},
}


def modules(package):
    """The modules of a package folder (and its subfolders), or one module file."""
    target = os.path.join(ROOT, package)
    paths = [target] if target.endswith(".py") else sorted(
        os.path.join(folder, name) for folder, _, names in os.walk(target)
        for name in names if name.endswith(".py"))
    for path in paths:
        with open(path) as f:
            yield path, ast.parse(f.read(), path)


def imported(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_graph(package):
    found = [(os.path.relpath(path, ROOT), name) for path, tree in modules(package)
             for name in imported(tree) if any(name == bad or name.startswith(bad + ".")
                                               for bad in FORBIDDEN[package])]
    assert found == []


def writes_environment(tree):
    """Assignments to os.environ[...] and calls of its mutating methods."""
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if isinstance(target, ast.Subscript) and ast.unparse(target.value) == "os.environ":
                yield node.lineno
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                ast.unparse(node.func.value) == "os.environ" and node.func.attr in (
                    "setdefault", "update", "pop", "clear", "popitem"):
            yield node.lineno
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.putenv",
                                                                    "os.unsetenv"):
            yield node.lineno


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_writes_the_environment(package):
    found = [(os.path.relpath(path, ROOT), line) for path, tree in modules(package)
             for line in writes_environment(tree)]
    assert found == []


def test_every_module_is_covered():
    covered = {os.path.relpath(path, ROOT) for package in FORBIDDEN
               for path, _ in modules(package)}
    assert "transforms/io/storage.py" in covered and "transforms/records.py" in covered
    assert {"glcm/texture.py", "pipeline/launch.py", "transforms/finish.py"} <= covered


def test_the_checks_see_what_they_look_for():
    tree = ast.parse("import os\nimport glcm.texture\nos.environ['A'] = '1'\n"
                     "os.environ.setdefault('B', '2')\n")
    assert list(imported(tree)) == ["os", "glcm.texture"]
    assert list(writes_environment(tree)) == [3, 4]


# Beam-free code speaks its own arguments; flag names live in pipeline/, which adds
# them to messages about a parameter.
FLAG_FREE = ("glcm", "transforms/io", "transforms/records.py", "transforms/layout.py")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z_-]+")


def strings_outside_docstrings(tree):
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node.lineno, node.value


@pytest.mark.parametrize("package", FLAG_FREE)
def test_library_messages_name_no_flag(package):
    found = [(os.path.relpath(path, ROOT), line, FLAG.search(text).group())
             for path, tree in modules(package)
             for line, text in strings_outside_docstrings(tree) if FLAG.search(text)]
    assert found == []


def test_the_flag_check_sees_flags():
    tree = ast.parse('"""Takes --input."""\nx = f"{a} --bands asks"\ny = "e.g. -45,0"\n')
    assert [FLAG.search(t).group() for _, t in strings_outside_docstrings(tree)
            if FLAG.search(t)] == ["--bands"]
