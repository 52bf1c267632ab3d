"""What TensorFlow Lite Micro puts in its arena, in bytes, as measured on the Python wheel's build:
allocator objects, per-tensor and per-node structs, and what each reference kernel keeps (parameter
struct, OpData, per-channel arrays, temporary tensors read in Prepare, scratch buffers).
memory.py replays TFLM's allocation with these numbers."""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16  # MicroArenaBufferAlignment(): planned buffers and kernel persistent buffers
ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2,
             "int8": 1, "float64": 8}

# TFLM structs in the wheel (x86-64, TF_LITE_STATIC_MEMORY), bytes.
ALLOCATOR_OBJECTS = 456  # RecordingSingleArenaBufferAllocator + GreedyMemoryPlanner + RecordingMicroAllocator
BUILTIN_DATA_ALLOCATOR = 16  # MicroBuiltinDataAllocator: vtable + pointer
SUBGRAPH_ALLOCATIONS = 16  # per subgraph: eval tensors + node array pointers
EVAL_TENSOR = 24  # TfLiteEvalTensor: data, dims, type
NODE_AND_REGISTRATION = 64  # TfLiteNode (7 words) + registration pointer
TFLITE_TENSOR = 64  # TfLiteTensor
AFFINE_QUANTIZATION = 24  # TfLiteAffineQuantization: scale*, zero_point*, quantized_dimension
SCRATCH_REQUEST = 16  # internal::ScratchBufferRequest: bytes, node_idx, subgraph_idx
MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp: request slots kept free while an op prepares
SCRATCH_HANDLE = 8  # ScratchBufferHandle: data pointer
ALLOCATION_INFO = 32  # AllocationInfo: bytes, output_ptr, first_created, last_used, offline_offset, flag
PLANNER_PER_BUFFER = 40  # GreedyMemoryPlanner::per_buffer_size(): requirements 16 + 2 ints + entry 12 + int


@dataclass(frozen=True)
class Kernel:
    """What one op's reference kernel puts in the arena."""

    params: tuple[int, int] = (0, 1)  # builtin parameter struct (sizeof, alignof); 0: the parser keeps none
    init: int = 0  # OpData allocated in Init
    per_channel: bool = False  # Prepare keeps int32 multiplier + shift arrays, one entry per output channel
    per_channel_filter: bool = False  # ... only when the filter (input 1) has per-channel scales
    temp: str = "I O"  # temp TfLiteTensors of Prepare in order: I/O all inputs/outputs, i1 input 1, o0 ...
    scratch: str = ""  # rule of _scratch_requests


# Parameter structs are builtin_op_data.h's (the wheel's FULLY_CONNECTED one is 32 bytes, 8-aligned);
# OpData sizes are the kernels' Init allocations; temp lists follow each Prepare.
KERNELS = {
    # ConvPrepare reads output, input, filter, then CalculateOpDataConv reads all four again
    "CONV_2D": Kernel((28, 4), 80, per_channel=True, temp="o0 i0 i1 I O"),
    "DEPTHWISE_CONV_2D": Kernel((28, 4), 80, per_channel=True, temp="o0 i0 i1 I O"),
    # per-channel weights (axis 0): 2 x 4 B per output channel, measured: +8 B x 312 channels on 10 layers
    "FULLY_CONNECTED": Kernel((32, 8), 72, per_channel_filter=True),
    "AVERAGE_POOL_2D": Kernel((40, 4), 32),
    "MAX_POOL_2D": Kernel((40, 4), 32),
    "ADD": Kernel((8, 4), 60),
    "SUB": Kernel((8, 4), 52),
    "MUL": Kernel((4, 4), 36),
    "DIV": Kernel((4, 4), 28),
    "MAXIMUM": Kernel((0, 1), 0, temp=""),
    "MINIMUM": Kernel((0, 1), 0, temp=""),
    "CONCATENATION": Kernel((8, 4), 80, temp="i0 o0 I"),
    "SOFTMAX": Kernel((4, 4), 80),
    "RESHAPE": Kernel((36, 4), 0, temp="i0 o0"),
    "TRANSPOSE": Kernel((0, 1), 0),
    "PAD": Kernel((0, 1), 56),
    "PADV2": Kernel((0, 1), 56),
    "MIRROR_PAD": Kernel((4, 4), 20, scratch="mirror_pad"),
    "MEAN": Kernel((1, 1), 44, temp="i0 o0 i1 i0 i1 o0", scratch="mean"),
    "RESIZE_NEAREST_NEIGHBOR": Kernel((2, 1), 0),
    "RESIZE_BILINEAR": Kernel((2, 1), 0),
    "BATCH_MATMUL": Kernel((3, 1), 32),
    "TRANSPOSE_CONV": Kernel((20, 4), 88, per_channel=True, temp="o0 i2 i1 i3", scratch="transpose_conv"),
    "SLICE": Kernel((0, 1), 0),
    "RSQRT": Kernel((0, 1), 28, temp="i0 o0"),
    "RELU": Kernel((0, 1), 28),
    "RELU6": Kernel((0, 1), 8, temp="i0"),
    "LEAKY_RELU": Kernel((4, 4), 24),
    "PRELU": Kernel((0, 1), 28, temp="i0 i1 o0"),  # PreluParams: 3 offsets, 2 multipliers + shifts
    "HARD_SWISH": Kernel((0, 1), 20),
    "TANH": Kernel((0, 1), 16, temp="I O i0"),
    "LOGISTIC": Kernel((0, 1), 16),
    "QUANTIZE": Kernel((0, 1), 32),
    "DEQUANTIZE": Kernel((0, 1), 32),
}
# An op we have not measured: large parameters and OpData, per-channel arrays, every tensor read twice
# in Prepare and a scratch buffer as large as its largest tensor.
UNKNOWN_KERNEL = Kernel((64, 8), 128, per_channel=True, temp="I O I O", scratch="unknown")
