"""The folder listing is the architecture: the model at the top of minibert/, every other concern in a
named subpackage, no import circle, and a teaching core that reads without the machinery."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minibert"
# What a learner reads: these five files, next to the paper, in an afternoon.
TEACHING_CORE = ("config", "embeddings", "attention", "encoder", "model")
TEACHING_CORE_MAX_LINES = 700
# The only modules outside the top level that the model files may import: the base classes they inherit.
BASE_CLASS_MODULES = {"minibert.loading.pretrained", "minibert.loading.config_file"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every minibert module -> the minibert modules it imports, at any depth of its code (lazy imports
    inside functions count too: they are a dependency all the same)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
                # "from . import varlen" imports the submodule, not the package's own __init__
                imported |= submodules if submodules else ({target} & modules.keys())
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                imported |= {name for name in names if name in modules}
        graph[name] = imported - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for dependency in sorted(graph[node]):
            if state.get(dependency) == "open":
                return path[path.index(dependency):] + [dependency]
            if dependency not in state:
                found = visit(dependency, path + [dependency])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checker_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_top_level_holds_the_model_and_the_concerns_are_subpackages():
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    packages = sorted(path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file())
    assert len(modules) <= 10, modules
    assert {"config.py", "embeddings.py", "attention.py", "encoder.py", "model.py", "heads.py"} <= set(modules)
    assert {"loading", "fast", "tokenizer", "cli"} <= set(packages), packages


def test_teaching_core_is_short_and_free_of_machinery():
    graph = import_graph()
    lines = 0
    for name in TEACHING_CORE:
        lines += len((PACKAGE / f"{name}.py").read_text(encoding="utf-8").splitlines())
        outside = {dep for dep in graph[f"minibert.{name}"] if dep.count(".") > 1} - BASE_CLASS_MODULES
        assert not outside, f"{name}.py imports {sorted(outside)}: the model files import only the model and their base class"
    assert lines <= TEACHING_CORE_MAX_LINES, f"the teaching core is {lines} lines"


def test_model_py_opens_with_the_model():
    tree = ast.parse((PACKAGE / "model.py").read_text(encoding="utf-8"))
    first_class = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    assert first_class.name == "BertModel"
    defined = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    assert not defined & {"from_pretrained", "save_pretrained", "PreTrainedBert", "parse_dtype"}
