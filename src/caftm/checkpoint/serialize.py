"""State tree <-> (JSON structure, named tensors), and the safetensors byte layout.

A *state tree* is what ``state_dict()`` methods return: nested dicts, lists and tuples of
tensors, numbers, strings, ``None``, numpy arrays and numpy scalars. :func:`encode_tree` splits
it into a JSON-able *structure* (every non-JSON value carries a ``"$t"`` type tag, so tuples,
int-keyed dicts, NaN/inf floats, bytes and numpy values round-trip exactly) and a flat mapping
of tensors stored in one safetensors file. Nothing is ever pickled; an object the encoder does
not know (a lambda, a custom class) is refused with :class:`~caftm.errors.CheckpointError`
naming where in the tree it sits.

The safetensors file is written by :func:`tensor_file_buffers`: the header plus zero-copy
byte views of each tensor, so the store can write and hash them in a single pass. Reading uses
the ``safetensors`` library itself.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from caftm.errors import CheckpointError

__all__ = [
    "EncodedTree",
    "decode_tree",
    "encode_tree",
    "load_tensor_file",
    "tensor_file_buffers",
]

TAG = "$t"
_MAX_INT_BITS = 13_000  # about 3900 digits: JSON parsers refuse over 4300

_SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.complex64: "C64",
}
_TORCH_DTYPES_BY_NAME: dict[str, torch.dtype] = {
    str(dtype).removeprefix("torch."): dtype for dtype in _SAFETENSORS_DTYPES
}


@dataclass
class EncodedTree:
    """A state tree split into a JSON-able structure and CPU tensors.

    Attributes:
        structure: JSON-able value; tensors appear as ``{"$t": "tensor", "key": ...}``.
        tensors: Contiguous CPU tensors by key, in the order they were met.
    """

    structure: Any
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def tensor_bytes(self) -> int:
        """Total size of the tensor data in bytes."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def encode_tree(tree: Any, *, snapshot: bool = False) -> EncodedTree:
    """Split ``tree`` into a tagged JSON structure and a flat mapping of tensors.

    Args:
        tree: The state tree (see the module docstring for what it may hold).
        snapshot: Copy every tensor (to CPU, contiguous), so the result stays valid while
            training mutates the originals; needed for asynchronous saves. Without it, CPU
            contiguous tensors are referenced, not copied.

    Raises:
        CheckpointError: A value cannot be stored without pickling; the message names its path.
    """
    encoder = _Encoder(snapshot=snapshot)
    try:
        structure = encoder.encode(tree, "state")
    except RecursionError:
        raise CheckpointError(
            "cannot checkpoint the state: it is nested too deeply or contains itself"
        ) from None
    return EncodedTree(structure=structure, tensors=encoder.tensors)


def decode_tree(structure: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Rebuild the state tree from :func:`encode_tree`'s structure and the stored tensors.

    Raises:
        CheckpointError: The structure is malformed or refers to a tensor that is absent or
            whose dtype/shape differ from what the structure records.
    """
    try:
        return _decode(structure, tensors, "state")
    except RecursionError:
        raise CheckpointError("malformed checkpoint structure: nested too deeply") from None


class _Encoder:
    def __init__(self, *, snapshot: bool) -> None:
        self.snapshot = snapshot
        self.tensors: dict[str, torch.Tensor] = {}

    def encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.ndarray | np.generic):  # before int/float: np.float64 is a float
            return _numpy(value, path)
        if isinstance(value, int):
            if value.bit_length() > _MAX_INT_BITS:
                raise CheckpointError(f"cannot checkpoint {path}: integer too large to store")
            return int(value)
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return {TAG: "float", "v": repr(value)}
            return float(value)
        if isinstance(value, torch.Tensor):
            return self._tensor(value, path)
        if type(value) is list:
            return [self.encode(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if type(value) is tuple:
            return {
                TAG: "tuple",
                "v": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)],
            }
        if type(value) in (dict, OrderedDict):
            return self._dict(value, path)
        if isinstance(value, bytes):
            return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
        if isinstance(value, torch.dtype):
            return {TAG: "torch.dtype", "v": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {TAG: "torch.device", "v": str(value)}
        raise CheckpointError(
            f"cannot checkpoint {path}: values of type {type(value).__qualname__} are not "
            "supported (only tensors, numbers, str, bytes, None, lists, tuples, dicts and numpy "
            "values; nothing is pickled) — keep functions and objects out of state_dict()"
        )

    def _dict(self, value: Mapping[Any, Any], path: str) -> dict[str, Any]:
        out: dict[str, Any]
        if all(isinstance(k, str) for k in value):
            out = {TAG: "dict", "v": {k: self.encode(v, f"{path}.{k}") for k, v in value.items()}}
        else:
            out = {
                TAG: "map",
                "v": [
                    [self.encode(k, f"{path}<key>"), self.encode(v, f"{path}[{k!r}]")]
                    for k, v in value.items()
                ],
            }
        if type(value) is OrderedDict:
            out["ordered"] = True
            metadata = getattr(value, "_metadata", None)
            if metadata is not None:
                out["meta"] = self.encode(metadata, f"{path}._metadata")
        return out

    def _tensor(self, value: torch.Tensor, path: str) -> dict[str, Any]:
        if value.layout != torch.strided or value.is_quantized:
            raise CheckpointError(f"cannot checkpoint {path}: only dense tensors are supported")
        if value.dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"cannot checkpoint {path}: dtype {value.dtype} not supported")
        if value.is_meta:
            raise CheckpointError(f"cannot checkpoint {path}: a meta tensor holds no data")
        tensor = value.detach()
        device = str(tensor.device)
        if self.snapshot and tensor.device.type == "cpu":
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        else:  # a device tensor is copied to the CPU either way
            tensor = tensor.to("cpu").contiguous()
        key = path if path not in self.tensors else f"{path}#{len(self.tensors)}"
        self.tensors[key] = tensor
        return {
            TAG: "tensor",
            "key": key,
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "shape": list(tensor.shape),
            "device": device,
        }


def _numpy(value: np.ndarray[Any, Any] | np.generic, path: str) -> dict[str, Any]:
    if value.dtype.hasobject:
        raise CheckpointError(f"cannot checkpoint {path}: numpy object arrays need pickling")
    if value.dtype.names is not None:  # dtype.str would drop the fields
        raise CheckpointError(f"cannot checkpoint {path}: structured numpy dtype {value.dtype}")
    array = np.ascontiguousarray(value)
    payload = base64.b64encode(array.tobytes()).decode("ascii")
    if isinstance(value, np.generic):
        return {TAG: "np.scalar", "dtype": array.dtype.str, "b64": payload}
    return {TAG: "np.ndarray", "dtype": array.dtype.str, "shape": list(array.shape), "b64": payload}


def _decode(value: Any, tensors: Mapping[str, torch.Tensor], path: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_decode(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict) or not isinstance(value.get(TAG), str):
        raise CheckpointError(f"malformed checkpoint structure at {path}: untagged object")
    tag = value[TAG]
    try:
        if tag == "dict":
            items = [(k, _decode(v, tensors, f"{path}.{k}")) for k, v in value["v"].items()]
            return _make_dict(items, value, tensors, path)
        if tag == "map":
            pairs = [
                (_decode(k, tensors, f"{path}<key>"), _decode(v, tensors, f"{path}[{k!r}]"))
                for k, v in value["v"]
            ]
            return _make_dict(pairs, value, tensors, path)
        if tag == "tuple":
            return tuple(_decode(v, tensors, f"{path}[{i}]") for i, v in enumerate(value["v"]))
        if tag == "tensor":
            return _decode_tensor(value, tensors, path)
        if tag == "float":
            return float(value["v"])
        if tag == "bytes":
            return base64.b64decode(value["v"], validate=True)
        if tag in ("np.ndarray", "np.scalar"):
            dtype = np.dtype(value["dtype"])
            if dtype.hasobject:
                raise CheckpointError(f"malformed checkpoint structure at {path}: object dtype")
            raw = base64.b64decode(value["b64"], validate=True)
            if tag == "np.scalar":
                return np.frombuffer(raw, dtype=dtype)[0]
            return np.frombuffer(raw, dtype=dtype).reshape(value["shape"]).copy()
        if tag == "torch.dtype":
            return _TORCH_DTYPES_BY_NAME[value["v"]]
        if tag == "torch.device":
            return torch.device(value["v"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"malformed checkpoint structure at {path} ({tag}): {e}") from e
    raise CheckpointError(f"malformed checkpoint structure at {path}: unknown tag {tag!r}")


def _make_dict(
    items: list[tuple[Any, Any]],
    node: dict[str, Any],
    tensors: Mapping[str, torch.Tensor],
    path: str,
) -> dict[Any, Any]:
    if not node.get("ordered"):
        return dict(items)
    ordered: OrderedDict[Any, Any] = OrderedDict(items)
    if "meta" in node:
        ordered._metadata = _decode(node["meta"], tensors, f"{path}._metadata")  # type: ignore[attr-defined]
    return ordered


def _decode_tensor(node: dict[str, Any], tensors: Mapping[str, torch.Tensor], path: str) -> Any:
    key = node["key"]
    if key not in tensors:
        raise CheckpointError(f"checkpoint structure at {path} refers to missing tensor {key!r}")
    tensor = tensors[key]
    if str(tensor.dtype).removeprefix("torch.") != node["dtype"] or list(tensor.shape) != list(
        node["shape"]
    ):
        raise CheckpointError(
            f"tensor {key!r} has dtype {tensor.dtype} shape {list(tensor.shape)}, but the "
            f"checkpoint structure records {node['dtype']} {node['shape']}"
        )
    return tensor


def tensor_file_buffers(
    tensors: Mapping[str, torch.Tensor], *, metadata: Mapping[str, str] | None = None
) -> list[memoryview]:
    """The bytes of a safetensors file as a list of buffers, without copying tensor data.

    The first buffer is the 8-byte header length plus the JSON header (padded with spaces to
    8 bytes, as the format recommends); then one zero-copy view per tensor, in order.

    Args:
        tensors: Contiguous CPU tensors (as in :attr:`EncodedTree.tensors`).
        metadata: Optional string-to-string ``__metadata__`` for the header.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    views: list[memoryview] = []
    offset = 0
    for key, tensor in tensors.items():
        view = _byte_view(tensor)
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + view.nbytes],
        }
        offset += view.nbytes
        views.append(view)
    header_json = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_json += b" " * (-len(header_json) % 8)
    return [memoryview(struct.pack("<Q", len(header_json)) + header_json), *views]


def _byte_view(tensor: torch.Tensor) -> memoryview:
    if not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise CheckpointError("internal error: tensor must be contiguous on the CPU to write")
    if tensor.numel() == 0:
        return memoryview(b"")
    flat = tensor.reshape(-1).view(torch.uint8)
    return memoryview(flat.numpy()).cast("B")  # type: ignore[arg-type]


_DTYPES_BY_SAFETENSORS_NAME = {code: dtype for dtype, code in _SAFETENSORS_DTYPES.items()}


def load_tensor_view(
    view: memoryview, *, name: str, shared: Callable[[str], bool] | None = None
) -> dict[str, torch.Tensor]:
    """Parse a safetensors file in memory (and verified): each tensor is copied out once,
    straight from ``view``, except those whose key ``shared`` accepts: they are views of
    ``view`` (which must then stay unchanged while they live; they keep it alive).

    ``view`` must be writable (e.g. a private ``mmap.ACCESS_COPY`` mapping); nothing is written.

    Raises:
        CheckpointError: The bytes are not a valid safetensors file; ``name`` says which.
    """
    try:
        (header_len,) = struct.unpack_from("<Q", view, 0)
        if header_len > view.nbytes - 8:
            raise ValueError(f"header of {header_len} bytes in a file of {view.nbytes}")
        header = json.loads(bytes(view[8 : 8 + header_len]))
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        start, size = 8 + header_len, view.nbytes - 8 - header_len
        tensors: dict[str, torch.Tensor] = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = _DTYPES_BY_SAFETENSORS_NAME[info["dtype"]]
            shape = [int(n) for n in info["shape"]]
            begin, end = (int(n) for n in info["data_offsets"])
            itemsize = torch.empty((), dtype=dtype).element_size()
            if not 0 <= begin <= end <= size or end - begin != math.prod(shape) * itemsize:
                raise ValueError(f"{key}: data_offsets {[begin, end]} do not fit its shape")
            if begin == end:
                tensors[key] = torch.empty(shape, dtype=dtype)
                continue
            raw = torch.frombuffer(view, dtype=torch.uint8, count=end - begin, offset=start + begin)
            aligned = (start + begin) % itemsize == 0
            keep = shared is not None and aligned and shared(key)
            tensors[key] = (raw if keep else raw.clone()).view(dtype).reshape(shape)
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{name} is not a valid safetensors file: {e!r}") from e
    return tensors


def load_tensor_file(data: bytes, *, name: str) -> dict[str, torch.Tensor]:
    """Parse a safetensors file already read into memory (and verified).

    Raises:
        CheckpointError: The bytes are not a valid safetensors file; ``name`` says which.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError, KeyError) as e:
        raise CheckpointError(f"{name} is not a valid safetensors file: {e}") from e
