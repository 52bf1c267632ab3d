"""The package layout rules of DESIGN.md: one-way imports and a line budget per file."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "edgepack"
STAGES = ("frontends", "calibration", "exporter", "targets")
LEAVES = ("errors", "tflite_buffer", "input_files", "input_batch")  # shared by every stage, import nothing of ours but errors
TOP = ("api", "cli", "report", "demo", "config", "artifacts")


def _imports(path: Path) -> set[str]:
    """Absolute edgepack module names imported by a file (relative imports resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edgepack"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("edgepack"):
                if node.module:  # `from .. import ir` imports edgepack.ir, not the package's __init__
                    found.add(mod)
                if not node.module or mod.count(".") == 0:
                    found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_import_rule_one_direction():
    bad = []
    for path in PKG.rglob("*.py"):
        area = path.relative_to(PKG).parts[0].removesuffix(".py")
        for mod in _imports(path):
            target = _area(mod)
            if target in ("", area):
                continue
            if area == "ir":
                bad.append(f"{path.name}: ir must import nothing of ours, imports {mod}")
            elif area in STAGES and target not in ("ir",) + LEAVES:
                bad.append(f"{path.relative_to(PKG)}: {area} may import only ir and the leaf modules, "
                           f"imports {mod}")
            elif area in LEAVES and target != "errors":
                bad.append(f"{path.name}: a leaf module imports {mod}")
    assert not bad, "\n".join(bad)


def _module_graph() -> dict[str, set[str]]:
    """module -> the edgepack modules it imports (a name imported from a module counts as the module)."""
    files = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        files[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    graph = {}
    for name, p in files.items():
        deps = set()
        for mod in _imports(p):
            while mod and mod not in files:
                mod = mod.rpartition(".")[0]
            if mod and mod != name:
                deps.add(mod)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, cycles, counter = {}, {}, set(), [], [], 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def test_no_import_cycles():
    cycles = import_cycles(_module_graph())
    assert not cycles, "import cycles (lazy imports count too): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_check_finds_a_cycle():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_import_rule_is_enforced_on_a_violation(tmp_path):
    # The checker itself must catch a stage importing another stage.
    fake = PKG / "frontends" / "_probe_violation.py"
    fake.write_text("from ..exporter import passes\n")
    try:
        assert any("exporter" in m for m in _imports(fake))
    finally:
        fake.unlink()


def test_files_stay_small():
    long = [f"{p.relative_to(PKG)}: {n} lines" for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450]
    assert not long, "split these files: " + ", ".join(long)
