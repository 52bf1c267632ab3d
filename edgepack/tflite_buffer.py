"""The one TFLite flatbuffer detail both the exporter (writing a .tflite) and the targets (re-packing one
with an offline memory plan) need: a weight buffer whose bytes start on a 16-byte boundary, since TFLite
Micro and XNNPACK read weights in place. A leaf module, like errors.py: it imports nothing of edgepack."""
from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

ALIGN = 16


class AlignedBufferT(tfl.BufferT):
    """A BufferT whose data vector starts on an ALIGN-byte boundary (``data``: uint8 array or bytes)."""

    def Pack(self, builder):
        data = None
        if self.data is not None:
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), ALIGN)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head: builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        tfl.BufferStart(builder)
        if data is not None:
            tfl.BufferAddData(builder, data)
        return tfl.BufferEnd(builder)
