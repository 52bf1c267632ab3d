"""Can the target's runtime run this .tflite? Every op outside the target's op resolver, or computing
in a dtype its kernels do not have (MCU profiles: int8 only), is named with the tensor it produces."""
from __future__ import annotations

from .profile import TargetProfile
from .tflite_file import TfliteModel

EDGE_CONVERTERS = ("QUANTIZE", "DEQUANTIZE")  # float <-> int8 at the model's edges are meant to be float


def unsupported_ops(model: TfliteModel, profile: TargetProfile) -> list[dict]:
    """[{op, node, reason}] for every operator the target cannot run (empty list: all supported)."""
    problems = []
    all_ops = "*" in profile.supported_ops
    for op in model.ops:
        node = model.tensors[op.outputs[0]].name if op.outputs else f"op {op.index}"
        if not all_ops and op.op not in profile.supported_ops:
            problems.append({"op": op.op, "node": node,
                             "reason": f"not in the {profile.name} op resolver ({profile.runtime})"})
            continue
        if op.op in EDGE_CONVERTERS:
            continue
        dtypes = {model.tensors[i].dtype for i in op.inputs + op.outputs
                  if i >= 0 and not model.tensors[i].is_const}
        foreign = sorted(d for d in dtypes if d not in profile.dtypes and d not in ("int32", "int64", "bool"))
        if foreign:
            problems.append({"op": op.op, "node": node,
                             "reason": f"{'/'.join(foreign)} tensors; {profile.name} runs "
                                       f"{'/'.join(profile.dtypes)} kernels"})
    return problems
