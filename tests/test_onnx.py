"""The ONNX family on tiny ONNX graphs built here with the LaMa and MI-GAN signatures (no real weights reachable)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from engine.api import Cancelled, CancelToken, InpaintError, Request, drive  # noqa: E402


def _save(graph, path, opset=13):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def lama_like(path, side=None, out_255=False):
    """image [1,3,H,W] in [0,1], mask [1,1,H,W] 1 = hole -> image with the hole painted mid-grey (a 1x1 conv keeps
    an initializer in the graph, as real exports have weights)."""
    from onnx import TensorProto, helper, numpy_helper

    h = side if side else "height"
    w = side if side else "width"
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])
    mask = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, h, w])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, h, w])
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "conv.weight")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    scale = numpy_helper.from_array(np.array(255.0 if out_255 else 1.0, np.float32), "scale")
    nodes = [helper.make_node("Sub", ["one", "mask"], ["keep"]),
             helper.make_node("Mul", ["image", "keep"], ["kept"]),
             helper.make_node("Conv", ["kept", "conv.weight"], ["conv"]),
             helper.make_node("Mul", ["mask", "half"], ["grey"]),
             helper.make_node("Add", ["conv", "grey"], ["filled"]),
             helper.make_node("Mul", ["filled", "scale"], ["output"])]
    graph = helper.make_graph(nodes, "lama_like", [image, mask], [out], [weight, half, one, scale])
    return _save(graph, path)


def migan_pipeline_like(path):
    """uint8 image [1,3,H,W] + uint8 mask [1,1,H,W] (255 keep) -> uint8 result with the hole set to 200."""
    from onnx import TensorProto, helper, numpy_helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 3, "h", "w"])
    mask = helper.make_tensor_value_info("mask", TensorProto.UINT8, [1, 1, "h", "w"])
    out = helper.make_tensor_value_info("result", TensorProto.UINT8, [1, 3, "h", "w"])
    inits = [numpy_helper.from_array(np.array(1 / 255, np.float32), "inv"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(200.0, np.float32), "fill")]
    nodes = [helper.make_node("Cast", ["image"], ["imgf"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["maskf", "inv"], ["keep"]),
             helper.make_node("Sub", ["one", "keep"], ["hole"]),
             helper.make_node("Mul", ["imgf", "keep"], ["a"]),
             helper.make_node("Mul", ["hole", "fill"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["c"]),
             helper.make_node("Cast", ["c"], ["result"], to=TensorProto.UINT8)]
    return _save(helper.make_graph(nodes, "migan_like", [image, mask], [out], inits), path)


def not_inpainting(path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    return _save(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y]), path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx-models")
    lama_like(d / "lama_dynamic.onnx")
    lama_like(d / "lama_fp32.onnx", side=32, out_255=True)
    (d / "erase").mkdir()
    migan_pipeline_like(d / "erase" / "migan_pipeline_v2.onnx")
    not_inpainting(d / "classifier.onnx")
    (d / "half.onnx").write_bytes((d / "lama_dynamic.onnx").read_bytes()[:40])
    return d


@pytest.fixture
def registry_with(models_dir):
    from engine import registry

    problems = registry.set_models_dir(models_dir)
    yield registry, problems
    registry.set_models_dir(None)


def test_signatures_are_read_without_onnxruntime(models_dir):
    from engine.onnx.signature import OnnxError, classify, read_signature

    sig = read_signature(models_dir / "lama_dynamic.onnx")
    assert [t.name for t in sig.inputs] == ["image", "mask"]  # the initializers are not inputs
    assert sig.inputs[0].dtype == "float32" and sig.inputs[0].shape == (1, 3, "height", "width")
    assert classify(sig) == ("lama", None)
    assert classify(read_signature(models_dir / "lama_fp32.onnx")) == ("lama", 32)
    assert classify(read_signature(models_dir / "erase" / "migan_pipeline_v2.onnx")) == ("migan-pipeline", None)
    with pytest.raises(OnnxError, match="not a LaMa-style"):
        classify(read_signature(models_dir / "classifier.onnx"))
    with pytest.raises(OnnxError):
        read_signature(models_dir / "half.onnx")


def test_models_folder_lists_onnx_models_and_one_line_per_problem(registry_with):
    registry, problems = registry_with
    names = {m.name: m for m in registry.all_models()}
    assert {"lama_dynamic.onnx", "lama_fp32.onnx", "erase/migan_pipeline_v2.onnx"} <= set(names)
    info = names["lama_fp32.onnx"]
    assert info.category == "yours" and info.family == "onnx" and "LaMa" in info.title and "32 px" in info.title
    assert info.geometry.size == 32 and names["lama_dynamic.onnx"].geometry.multiple == 8
    assert any(p.startswith("classifier.onnx:") for p in problems)
    assert any(p.startswith("half.onnx:") for p in problems)
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("name,fill", [("lama_dynamic.onnx", 128), ("lama_fp32.onnx", 128),
                                       ("erase/migan_pipeline_v2.onnx", 200)])
def test_onnx_fill_keeps_pixels_outside_the_mask(registry_with, rng, name, fill):
    from engine.runner import run_job

    registry, _ = registry_with
    img = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
    mask = np.zeros((300, 420), bool)
    mask[100:140, 200:260] = True
    previews = []
    res = drive(run_job(registry.load(name), Request(img, mask, seed=0)), previews.append)
    assert [p.step for p in previews] == [1] and previews[0].total == 1
    assert np.array_equal(res.image[~mask], img[~mask])
    inner = res.image[110:130, 215:245]
    assert np.abs(inner.astype(int) - fill).max() <= 2, "the model's fill, converted from its value range"


def test_onnx_cancel_and_missing_file(registry_with, tmp_path, rng):
    from engine.onnx.pipeline import OnnxInpainter
    from engine.runner import run_job

    registry, _ = registry_with
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        drive(run_job(registry.load("lama_dynamic.onnx"), Request(img, mask), token))
    gone = OnnxInpainter(registry.get_info("lama_dynamic.onnx"), path=str(tmp_path / "gone.onnx"))
    with pytest.raises(InpaintError, match="not found"):
        drive(run_job(gone, Request(img, mask)))
