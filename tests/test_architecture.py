"""The house's layout (docs/architecture.md): what imports what, and whether the map lists every module.

- The fast layer uses only public names of the reference layer and of its own modules (the seam
  must not leak: a renamed private helper would silently break a fast version).
- The reference layer (backend, autograd, ops, nn, models, optim, peft, generation) reaches into
  ``fast/`` only through ``fast/dispatch.py``, and has no import circle.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1]
PACKAGE = ROOT / "minillm"
REFERENCE = ("backend", "autograd", "ops", "nn", "models", "optim", "peft", "generation")


def _modules():
    """{dotted name: path} for every module of minillm/ (a package by its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(name):
    """(imported module, imported name or None) for every import in module ``name``, nested ones too."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = node.module if not node.level else (f"{base}.{node.module}" if node.module else base)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield (submodule, None) if submodule in MODULES else (source, alias.name)


def _private_uses(name):
    """Private names module ``name`` takes from other modules: imported, or read as ``module._x``."""
    tree = ast.parse(MODULES[name].read_text())
    uses = [f"{source}.{imported}" for source, imported in _imports(name)
            if imported and imported.startswith("_") and not imported.startswith("__")]
    uses += [f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
             and node.value.id not in ("self", "cls") and node.attr.startswith("_") and not node.attr.startswith("__")]
    return uses


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("minillm.fast.")])
def test_fast_code_uses_only_public_names(name):
    assert _private_uses(name) == []


def _owner(module):
    """The minillm module an import refers to (a name inside a module counts as the module)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module


def _in_reference_layer(module):
    return any(module == f"minillm.{top}" or module.startswith(f"minillm.{top}.") for top in REFERENCE)


def test_the_reference_layer_reaches_fast_only_through_the_dispatch():
    arrows = sorted(f"{name} -> {target}" for name in MODULES if _in_reference_layer(name)
                    for target in map(_owner, (source for source, _ in _imports(name)))
                    if target and target.startswith("minillm.fast") and target != "minillm.fast.dispatch")
    assert arrows == []


def test_the_reference_layer_has_no_import_circle():
    graph = {name: {_owner(source) for source, _ in _imports(name)} - {None, name}
             for name in MODULES if _in_reference_layer(name)}
    # a package's __init__ importing its own modules is the package assembling itself, not a circle
    graph = {name: {t for t in targets if t in graph and not t.startswith(name + ".")} for name, targets in graph.items()}
    circles = []
    for start in graph:  # depth-first search for a path back to ``start``
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in graph[node]:
                if target == start:
                    circles.append(" -> ".join(path + [start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, path + [target]))
    assert circles == []


def test_one_linear_fast_path_parameterized_by_its_gemm():
    from minillm.fast import cpu_linalg, cuda_ops
    from minillm.fast.gemm_linear import GemmLinear

    for linear in (cpu_linalg.ThreadedLinear, cuda_ops.CudaLinear):
        assert issubclass(linear, GemmLinear)
        assert (linear.forward, linear.backward) == (GemmLinear.forward, GemmLinear.backward), linear
    assert cpu_linalg.ThreadedLinear.gemm is cpu_linalg.gemm


def test_tensor_operators_are_written_in_tensor_and_nothing_attaches_more():
    source = (PACKAGE / "autograd.py").read_text()
    tensor = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == "Tensor")
    written = {target.id for node in tensor.body if isinstance(node, ast.Assign) for target in node.targets
               if isinstance(target, ast.Name)}
    written |= {elt.id for node in tensor.body if isinstance(node, ast.Assign) for target in node.targets
                if isinstance(target, ast.Tuple) for elt in target.elts}
    written |= {node.name for node in tensor.body if isinstance(node, ast.FunctionDef)}
    for name in ("__add__", "__radd__", "__matmul__", "__getitem__", "__lt__", "sum", "reshape", "view", "T"):
        assert name in written, name
    attaching = [f"{name}: {node.targets[0].value.id}.{node.targets[0].attr}"
                 for name, path in MODULES.items() for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                 and isinstance(node.targets[0].value, ast.Name) and node.targets[0].value.id in ("Tensor", "T")]
    assert attaching == []


def _long_functions(package, limit):
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")) if (PACKAGE / package).is_dir() else [PACKAGE / package]:
        for node in ast.walk(ast.parse(path.read_text())):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and length > limit:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} is {length} lines")
    return found


@pytest.mark.parametrize("package, limit", [("ops", 40), ("nn", 40), ("models", 40), ("optim", 40), ("peft", 40),
                                            ("fast", 60), ("autograd.py", 60), ("backend.py", 60)])
def test_functions_are_short_enough_to_see_whole(package, limit):
    assert _long_functions(package, limit) == []


def _map_of_the_folders():
    """The paths docs/architecture.md's map lists: a folder per ``name/`` line, a file per ``name.ext``
    line, each under the nearest less-indented folder above it."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Map of the folders", 1)[1].split("```", 2)[1]
    listed, folders = [], []  # folders: [(indent, path)] from the root down
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        indent, name = len(line) - len(line.lstrip()), line.split()[0]
        folders = [(i, path) for i, path in folders if i < indent]
        path = (f"{folders[-1][1]}/" if folders else "") + name.rstrip("/")
        listed.append(path)
        if name.endswith("/"):
            folders.append((indent, path))
    return listed


def _files_the_map_must_list():
    modules = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    benchmarks = {str(p.relative_to(ROOT)) for pattern in ("*.py", "*.sh") for p in (ROOT / "benchmarks").glob(pattern)}
    docs = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")}
    return modules | benchmarks | docs


def test_the_architecture_map_lists_every_module_benchmark_and_doc():
    listed = _map_of_the_folders()
    missing = sorted(_files_the_map_must_list() - set(listed))
    assert missing == [], f"docs/architecture.md's map does not list: {missing}"
    assert sorted(path for path in set(listed) if listed.count(path) > 1) == [], "listed twice"


def test_everything_the_architecture_map_lists_exists():
    stale = sorted(path for path in _map_of_the_folders() if not (ROOT / path).exists())
    assert stale == [], f"docs/architecture.md's map lists what is not there: {stale}"


def test_the_fast_layers_own_map_names_each_of_its_modules():
    import minillm.fast

    lines = minillm.fast.__doc__.splitlines()
    named = {line.split()[0] for line in lines if line.startswith("    ") and line.split()[0].endswith(".py")}
    modules = {path.name for path in (PACKAGE / "fast").glob("*.py") if path.name != "__init__.py"}
    assert sorted(modules - named) == []
