"""Does loading this PyTorch archive run code from it? Read before torch touches the file.

torch.export.load (a .pt2) unpickles pickled payloads with ``weights_only=False`` (and falls back to it
for sample inputs), ``pickle.loads`` opaque constants, ``sympify``s (evals) shape expressions, ``exec``s
guard code, loads AOTInductor shared libraries and calls whatever ``torch.*`` target a node names.
torch.jit.load (a TorchScript .pt) runs the archive's TorchScript ``__setstate__`` at load, and the
model runs its ``forward`` during export; TorchScript can write files (``torch.save``,
``torch.from_file(..., shared=True)``). Each check returns None when the archive holds only what a
plain ``torch.export.save`` / ``torch.jit.save`` of an nn.Module writes, else the reason, one phrase.
"""
from __future__ import annotations

import ast
import io
import json
import pickletools
import re
import zipfile
from collections import Counter

# Globals a torch.save of tensors, tuples and dicts names (what torch's weights_only loader allows).
SAFE_GLOBALS = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                ("collections", "OrderedDict")}
_STORAGE = re.compile(r"^[A-Za-z0-9]*Storage$")  # torch.FloatStorage & co. (persistent-id storage types)
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_PUT_OPS, _GET_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}, {"GET", "BINGET", "LONG_BINGET"}
_NEVER_OPS = {"INST", "OBJ", "EXT1", "EXT2", "EXT4"}  # call or look up classes outside GLOBAL

# Ops that touch the file system, from torch._C._jit_get_all_schemas() (a test keeps this complete).
FILE_OPS = {"save", "from_file", "load_tensor"}
_OPERATOR_TARGETS = {"getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pos", "pow",
                     "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "abs"}
_SYM_TARGETS = {"sym_float", "sym_int", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt", "sym_sum"}
_ATEN_TARGET = re.compile(r"^torch\.ops\.(aten|prims)\.(\w+)\.(\w+)$")
# Names a shape expression may call (sympy's srepr and torch's own sympy functions); nothing else.
_SYMPY_CALLS = {"Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs",
                "floor", "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan",
                "StrictGreaterThan", "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "true",
                "false", "oo", "zoo", "nan", "Infinity", "NegativeInfinity", "int_oo", "IntInfinity",
                "NegativeIntInfinity", "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv",
                "CeilToInt", "FloorToInt", "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow",
                "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator", "TruncToFloat",
                "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity"}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_EXPR_NODES = (ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.keyword, ast.BinOp,
                    ast.UnaryOp, ast.Compare, ast.BoolOp, ast.operator, ast.unaryop, ast.cmpop, ast.boolop,
                    ast.Tuple)


def pickle_problem(data: bytes) -> str | None:
    """Why unpickling ``data`` could run code (a global outside SAFE_GLOBALS), or None. Runs nothing."""
    recent, memo = [], {}
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in _NEVER_OPS:
                return f"a pickle opcode {name} that builds arbitrary objects"
            if name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _PUT_OPS:
                memo[arg] = recent[-1] if recent else None
            elif name in _GET_OPS:
                recent.append(memo.get(arg))
            elif name in ("GLOBAL", "STACK_GLOBAL"):
                module, _, attr = arg.partition(" ") if name == "GLOBAL" else (
                    (recent[-2], "", recent[-1]) if len(recent) >= 2 else (None, "", None))
                if module is None or attr is None:
                    return "a pickled global whose name cannot be read"
                if (module, attr) not in SAFE_GLOBALS and not (module == "torch" and _STORAGE.match(attr)):
                    return f"the pickled global {module}.{attr}"
                recent.append(None)
            else:
                recent.append(None)
    except Exception as exc:  # pickletools raises ValueError and others on a malformed stream
        return f"a malformed pickle ({exc})"
    return None


def torch_save_problem(data: bytes, where: str) -> str | None:
    """A torch.save (zip) payload: every pickle in it must name only safe globals."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return f"{where} is a legacy (non-zip) torch pickle"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        if len(set(names)) != len(names):
            return f"{where} has duplicate members"
        for name in names:
            if name.endswith(".pkl") and not name.endswith(".debug_pkl"):
                problem = pickle_problem(z.read(name))
                if problem:
                    return f"{problem} in {where}"
    return None


def _members(z: zipfile.ZipFile) -> tuple[str, dict[str, str]] | str:
    """(archive prefix, {path below the prefix: zip member name}) or the reason it is not plain."""
    names = z.namelist()
    if len(set(names)) != len(names):
        return "duplicate archive members"
    prefixes = {n.split("/", 1)[0] for n in names}
    if len(prefixes) != 1 or any("/" not in n for n in names):
        return "members outside one archive folder"
    prefix = prefixes.pop()
    return prefix, {n.split("/", 1)[1]: n for n in names}


def pt2_problem(path) -> str | None:
    """Why torch.export.load of this .pt2 could run code from it, or None."""
    with zipfile.ZipFile(path) as z:
        found = _members(z)
        if isinstance(found, str):
            return found
        _, members = found
        if "archive_version" not in members:
            return "the pre-2.7 torch.export format (re-save it with torch.export.save)"
        for rel in members:
            if rel.startswith("data/aotinductor/"):
                return f"an AOTInductor library ({rel}), native code run on load"
        pickled = {r for r in members if r.endswith(".pt")}  # torch.save files: sample inputs, legacy
        for rel, name in members.items():
            if rel.endswith(("_weights_config.json", "_constants_config.json")):
                problem = _payload_config_problem(json.loads(z.read(name)), rel, pickled)
            elif rel.startswith("models/") and rel.endswith(".json"):
                problem = _program_problem(json.loads(z.read(name)), rel)
            else:
                continue
            if problem:
                return problem
        for rel in sorted(pickled):
            if rel not in members:
                return f"a pickled payload {rel} that is missing"
            problem = torch_save_problem(z.read(members[rel]), rel)
            if problem:
                return problem
    return None


def _payload_config_problem(config: dict, where: str, pickled: set) -> str | None:
    folder = "data/weights/" if where.endswith("_weights_config.json") else "data/constants/"
    for fqn, meta in (config.get("config") or {}).items():
        file = str(meta.get("path_name", ""))
        if file.startswith(("custom_obj_", "opaque_obj_")):
            return f"a pickled Python object '{fqn}' ({folder}{file})"
        if meta.get("use_pickle"):
            pickled.add(folder + file)
    return None


def _program_problem(program: dict, where: str) -> str | None:
    if program.get("guards_code"):
        return f"guard code ({where}: guards_code)"
    for node in _walk(program, "nodes"):
        for n in node:
            target = str(n.get("target", ""))
            if not _safe_target(target):
                return f"a node calling '{target}' ({where})"
    for text in _walk(program, "expr_str"):
        if not _safe_expr(str(text)):
            return f"the shape expression '{str(text)[:80]}' ({where})"
    return None


def _walk(obj, key: str):
    """Every value stored under ``key`` anywhere in a JSON document."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, v in item.items():
                if k == key:
                    yield v
                stack.append(v)
        elif isinstance(item, list):
            stack.extend(item)


def _safe_target(target: str) -> bool:
    m = _ATEN_TARGET.match(target)
    if m:
        return m.group(2) not in FILE_OPS
    module, _, name = target.rpartition(".")
    return (module == "_operator" and name in _OPERATOR_TARGETS) or (module == "torch" and name in _SYM_TARGETS)


def _safe_expr(text: str) -> bool:
    """A sympy expression that sympify may eval: only whitelisted calls, names, numbers, operators."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _SAFE_EXPR_NODES):
            return False
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS):
            return False
        if isinstance(node, ast.Name) and not (node.id in _SYMPY_CALLS or re.match(r"^[a-z]+\d+$", node.id)):
            return False
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and not _SYMBOL.match(node.value):
            return False
        if isinstance(node, ast.keyword) and not (node.arg and _SYMBOL.match(node.arg)
                                                  and isinstance(node.value, ast.Constant)
                                                  and isinstance(node.value.value, bool)):
            return False
    return True


_TS_FILE_CALL = re.compile(r"\.\s*(" + "|".join(sorted(FILE_OPS)) + r")\s*\(")


def torchscript_problem(path) -> str | None:
    """Why torch.jit.load of this archive (and running it) could touch files, or None. A file that is
    not a zip is not TorchScript for this check (torch.load's weights_only check handles pickles)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"PTMF":
        return "a TorchScript flatbuffer (mobile) archive, whose bytecode cannot be checked"
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        found = _members(z)
        if isinstance(found, str):
            return found
        _, members = found
        calls = Counter()
        for rel, name in members.items():
            if rel.startswith("code/") and rel.endswith(".py"):
                for m in _TS_FILE_CALL.finditer(z.read(name).decode("utf-8", "replace")):
                    calls[(m.group(1), rel)] += 1
        if calls:
            (op, rel), _ = sorted(calls.items())[0]
            return f"TorchScript code calling '{op}' ({rel}), which touches files"
    return None
