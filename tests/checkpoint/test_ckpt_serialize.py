"""State trees round-trip exactly through tagged JSON + safetensors; foreign objects are refused."""

from __future__ import annotations

import json
import math
import random
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors.torch import load

from caftm.checkpoint import decode_tree, encode_tree
from caftm.checkpoint.serialize import load_tensor_file, tensor_file_buffers
from caftm.errors import CheckpointError


def through_storage(tree: object) -> object:
    encoded = encode_tree(tree)
    structure = json.loads(json.dumps(encoded.structure, allow_nan=False))
    data = b"".join(bytes(b) for b in tensor_file_buffers(encoded.tensors))
    return decode_tree(structure, load_tensor_file(data, name="test"))


def assert_same(a: object, b: object) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b)
    else:
        assert a == b


def test_python_values_round_trip_with_types_intact() -> None:
    tree = {
        "ints": [0, -1, 2**80, True, False, None],
        "floats": (0.1, -0.0, 1e-310, float("inf"), float("-inf"), float("nan"), 1.0),
        "int_keys": {0: "a", 3: ("b", 4), -2: [1.5]},
        "mixed_keys": {(1, 2): "tuple key", None: 1, 2.5: "float key"},
        "text": "ünïcode $t",
        "$t": "a key that looks like a tag",
        "bytes": b"\x00\xff raw",
        "dtype": torch.bfloat16,
        "device": torch.device("cpu"),
        "empty": {"list": [], "tuple": (), "dict": {}},
    }
    assert_same(tree, through_storage(tree))


def test_numpy_and_rng_states_round_trip() -> None:
    np.random.seed(5)
    tree = {
        "np_state": np.random.get_state(legacy=True),
        "py_state": random.getstate(),
        "array": np.arange(12, dtype=np.int16).reshape(3, 4),
        "scalar64": np.float64(0.1),
        "scalar32": np.float32(1.5),
        "flag": np.bool_(True),
    }
    assert_same(tree, through_storage(tree))


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.uint32,
        torch.float8_e4m3fn,
    ],
)
def test_tensor_dtypes_round_trip_bit_exactly(dtype: torch.dtype) -> None:
    values = torch.randn(5, 7) * 100
    tensor = values.to(dtype)
    tree = {"t": tensor, "scalar": tensor[0, 0].clone(), "empty": torch.empty(0, 3, dtype=dtype)}
    out = through_storage(tree)
    assert isinstance(out, dict)
    for key in tree:
        assert out[key].dtype == dtype and out[key].shape == tree[key].shape
        assert torch.equal(
            out[key].reshape(-1).view(torch.uint8), tree[key].reshape(-1).view(torch.uint8)
        )


def test_non_contiguous_and_shared_tensors() -> None:
    base = torch.arange(24.0).reshape(4, 6)
    tree = {"transposed": base.t(), "slice": base[:, 1::2], "same": [base, base]}
    out = through_storage(tree)
    assert_same({k: v for k, v in tree.items()}, out)


def test_file_is_standard_safetensors_readable_by_the_library() -> None:
    tensors = {"a": torch.randn(3, 4), "b.weight": torch.arange(7, dtype=torch.int64)}
    data = b"".join(bytes(b) for b in tensor_file_buffers(tensors, metadata={"k": "v"}))
    loaded = load(data)
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)
    header_len = int.from_bytes(data[:8], "little")
    assert header_len % 8 == 0


def test_snapshot_copies_while_default_references() -> None:
    tensor = torch.zeros(4)
    referenced = encode_tree({"t": tensor}).tensors["state.t"]
    snapshot = encode_tree({"t": tensor}, snapshot=True).tensors["state.t"]
    tensor.add_(1)
    assert torch.equal(referenced, tensor)
    assert torch.equal(snapshot, torch.zeros(4))


def test_optimizer_and_scheduler_state_dicts_round_trip() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=10)
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    for state in (optimizer.state_dict(), scheduler.state_dict(), model.state_dict()):
        assert_same(state, through_storage(state))
    restored = through_storage(model.state_dict())
    assert getattr(restored, "_metadata", None) == model.state_dict()._metadata
    assert isinstance(restored, OrderedDict)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"fn": lambda x: x}, "state.fn"),
        ({"outer": [1, {"obj": object()}]}, "state.outer[1].obj"),
        ({"ser": np.array([object()], dtype=object)}, "state.ser"),
        ({"sparse": torch.eye(2).to_sparse()}, "state.sparse"),
    ],
)
def test_unstorable_values_are_refused_with_their_path(value: object, where: str) -> None:
    with pytest.raises(CheckpointError, match="cannot checkpoint " + re.escape(where) + ":"):
        encode_tree(value)


def test_lambda_lr_with_function_stores_and_loads() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    optimizer.step()
    scheduler.step()
    out = through_storage(scheduler.state_dict())
    fresh = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)
    fresh.load_state_dict(out)  # type: ignore[arg-type]
    assert fresh.last_epoch == scheduler.last_epoch


@pytest.mark.parametrize(
    ("structure", "message"),
    [
        ({"$t": "nope"}, "malformed checkpoint structure at state: unknown tag 'nope'"),
        ({"no": "tag"}, "malformed checkpoint structure at state: untagged object"),
        (
            {"$t": "tensor", "key": "missing", "dtype": "f", "shape": []},
            "checkpoint structure at state refers to missing tensor 'missing'",
        ),
        (
            {"$t": "np.ndarray", "dtype": "|O", "shape": [1], "b64": ""},
            "malformed checkpoint structure at state: object dtype",
        ),
    ],
)
def test_malformed_structures_raise_checkpoint_error(structure: object, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        decode_tree(structure, {})


def test_tensor_dtype_mismatch_with_structure_is_detected() -> None:
    encoded = encode_tree({"t": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="records"):
        decode_tree(encoded.structure, {"state.t": torch.zeros(3, dtype=torch.float64)})
