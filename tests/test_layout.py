"""The library's layout: wings in the order of dependence, no private reaching across them."""

import ast
from pathlib import Path

import pytest

import cnnlib

PACKAGE = Path(cnnlib.__file__).parent
# The wings, in the order of dependence: a module may import from its own wing
# and from wings before it, never from a wing after it.  The shared private
# helpers (_validate, _random, _timing) come first; the tools (checks,
# plotting, bench) last, beside the widgets.
ORDER = ["_validate", "_random", "_timing", "ops", "functional", "nn", "optim", "data", "models", "training",
         "analysis", "search", "hardware", "quant", "theory", "experiments", "widgets", "checks", "plotting",
         "bench"]
SHARED_PRIVATE = {"_validate", "_random", "_timing"}


def wing_of(module):
    """'cnnlib.analysis.receptive' -> 'analysis'; 'cnnlib' -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), path, is_package


def imports(module, path, is_package):
    """(imported module, names, line) for every cnnlib import of a module."""
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "cnnlib" or target.startswith("cnnlib."):
                names = [a.name for a in node.names]
                if target == "cnnlib":   # from cnnlib import nn  ->  cnnlib.nn
                    for name in names:
                        yield f"cnnlib.{name}", [], node.lineno
                else:
                    yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("cnnlib."):
                    yield a.name, [], node.lineno


ALL = list(modules())


def test_every_wing_is_in_the_order():
    wings = {wing_of(m) for m, _, _ in ALL} - {None}
    assert wings <= set(ORDER), f"wings missing from ORDER: {sorted(wings - set(ORDER))}"


@pytest.mark.parametrize("module, path, is_package", ALL, ids=[m for m, _, _ in ALL])
def test_imports_point_down_the_list_and_keep_privates_in_their_wing(module, path, is_package):
    own = wing_of(module)
    if own is None:       # cnnlib/__init__.py imports every wing
        return
    for target, names, line in imports(module, path, is_package):
        wing = wing_of(target)
        if wing is None:
            continue
        assert ORDER.index(wing) <= ORDER.index(own), (
            f"{module} (line {line}) imports {target}: wing {wing!r} comes after {own!r}")
        if wing != own and wing not in SHARED_PRIVATE:
            private = [n for n in names if n.startswith("_")]
            assert not private, (f"{module} (line {line}) imports private {private} from "
                                 f"another wing's {target}")
            assert not any(p.startswith("_") for p in target.split(".")[2:]), (
                f"{module} (line {line}) imports the private module {target}")


def test_public_modules_declare_their_public_names():
    missing = [m for m, path, is_package in ALL
               if not any(p.startswith("_") for p in m.split(".")[1:]) and m.split(".")[1:2] != ["ops"]
               and "__all__" not in path.read_text(encoding="utf-8") and not path.name == "__main__.py"]
    assert not missing, f"modules without __all__: {missing}"
