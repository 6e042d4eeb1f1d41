"""The inputs and outputs of an ONNX model, read from the file without onnxruntime (and without reading its weights).

An ONNX file is one protobuf ``ModelProto``; its ``graph`` (field 7) lists ``input`` (11) and ``output`` (12) as
``ValueInfoProto`` (name 1, type 2 -> tensor_type 1 -> elem_type 1, shape 2 -> dim 1 -> dim_value 1 / dim_param 2)
and the weights as ``initializer`` (5, name 8), which old exporters also list as inputs. Walking the wire format
(varints and length-delimited fields, https://protobuf.dev/programming-guides/encoding/) over a memory map touches
only those headers, so listing a 200 MB LaMa export costs milliseconds.

``classify`` names the conventions this project runs (``engine.onnx.pipeline``): LaMa-style (float image + mask),
the MI-GAN pipeline export (uint8 image + mask, mask 255 = keep) and the bare MI-GAN generator (one 4-channel input).
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

ELEM = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


class OnnxError(ValueError):
    pass


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple  # ints for fixed sizes, strings (or None) for dynamic ones


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def describe(self) -> str:
        def one(t: Tensor) -> str:
            dims = "x".join(str(d) if isinstance(d, int) else "?" for d in t.shape)
            return f"{t.name} {t.dtype}[{dims}]"
        return ", ".join(one(t) for t in self.inputs) + " -> " + ", ".join(one(t) for t in self.outputs)


def _varint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxError("truncated")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 70:
            raise OnnxError("bad varint")


def _fields(buf, start: int, end: int):
    """(field number, wire type, value) of one message: ints for varints, (start, end) for length-delimited."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = (pos, pos + n), pos + n
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise OnnxError(f"unsupported wire type {wire}")
        if pos > end:
            raise OnnxError("truncated")
        yield field, wire, value


def _text(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _value_info(buf, span) -> Tensor:
    name, dtype, shape = "", "?", []
    for f, w, v in _fields(buf, *span):
        if f == 1 and w == 2:
            name = _text(buf, v)
        elif f == 2 and w == 2:
            for f2, w2, v2 in _fields(buf, *v):
                if f2 == 1 and w2 == 2:  # tensor_type
                    for f3, w3, v3 in _fields(buf, *v2):
                        if f3 == 1 and w3 == 0:
                            dtype = ELEM.get(v3, f"type{v3}")
                        elif f3 == 2 and w3 == 2:
                            for f4, w4, v4 in _fields(buf, *v3):
                                if f4 == 1 and w4 == 2:
                                    dim = None
                                    for f5, w5, v5 in _fields(buf, *v4):
                                        if f5 == 1 and w5 == 0:
                                            dim = v5
                                        elif f5 == 2 and w5 == 2:
                                            dim = _text(buf, v5)
                                    shape.append(dim if dim != 0 else None)
    return Tensor(name, dtype, tuple(shape))


def read_signature(path: str | Path) -> Signature:
    """The graph's inputs (weights excluded) and outputs; OnnxError when the file is not a readable ONNX model."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if path.stat().st_size == 0:
                raise OnnxError("empty file")
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                return _parse(buf)
            finally:
                buf.close()
    except OSError as exc:
        raise OnnxError(exc.strerror or str(exc)) from None


def _parse(buf) -> Signature:
    graph = None
    for f, w, v in _fields(buf, 0, len(buf)):
        if f == 7 and w == 2:
            graph = v
    if graph is None:
        raise OnnxError("no graph inside")
    inputs, outputs, weights = [], [], set()
    for f, w, v in _fields(buf, *graph):
        if f == 11 and w == 2:
            inputs.append(_value_info(buf, v))
        elif f == 12 and w == 2:
            outputs.append(_value_info(buf, v))
        elif f == 5 and w == 2:
            for f2, w2, v2 in _fields(buf, *v):
                if f2 == 8 and w2 == 2:
                    weights.add(_text(buf, v2))
    if not inputs or not outputs:
        raise OnnxError("the graph has no inputs or outputs")
    return Signature(tuple(t for t in inputs if t.name not in weights), tuple(outputs))


def classify(sig: Signature) -> tuple[str, int | None]:
    """(convention, fixed working side or None): "lama", "migan-pipeline" or "migan"; OnnxError otherwise."""
    ins = [t for t in sig.inputs if len(t.shape) == 4]
    if len(sig.inputs) == 2 and len(ins) == 2:
        by_channels = {t.shape[1]: t for t in ins}
        image, mask = by_channels.get(3), by_channels.get(1)
        if image is None or mask is None:
            names = {t.name.lower(): t for t in ins}
            image, mask = names.get("image"), names.get("mask")
        if image is not None and mask is not None:
            side = _side(image)
            if image.dtype == "uint8":
                return "migan-pipeline", side
            if image.dtype in ("float32", "float16"):
                return "lama", side
    if len(sig.inputs) == 1 and len(ins) == 1 and ins[0].shape[1] == 4 and ins[0].dtype in ("float32", "float16"):
        return "migan", _side(ins[0])
    raise OnnxError(f"inputs {sig.describe()}: not a LaMa-style (image + mask) or MI-GAN inpainting export")


def _side(t: Tensor) -> int | None:
    h, w = t.shape[2], t.shape[3]
    return int(h) if isinstance(h, int) and h == w and h > 0 else None
