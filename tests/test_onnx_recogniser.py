"""ONNX recognisers loaded through insightface's ``model_zoo.get_model``, on the shared
MobileFaceNet export (``../shared/weights/mobilefacenet/MobileFaceNet.onnx``).

Equality with the PyTorch MobileFaceNet is tested in test_mobilefacenet.py (1e-4); here the
insightface-loaded path is checked against a plain onnxruntime session — what fsr-bench ran before
the switch — with ImageNet normalisation written out independently. Tolerance: 1e-6 relative to
the largest raw embedding value (the same graph on the same provider; only the feeding differs).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fsr_bench.face import create_recogniser
from fsr_bench.weights import WeightsUnavailable

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def onnx_file(shared_dir):
    return shared_dir / "weights/mobilefacenet/MobileFaceNet.onnx"


def test_get_model_path_equals_a_plain_onnxruntime_session(onnx_file):
    import onnxruntime as ort

    rec = create_recogniser(f"onnx:{onnx_file}")
    assert type(rec.model).__name__ == "ArcFaceONNX"  # insightface routed it as a recogniser
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ref = np.concatenate([session.run(None, {name: ((xi - mean) / std)[None].astype(np.float32)})[0]
                          for xi in x.numpy()])
    got = rec.forward_raw(x).numpy()
    assert got.shape == ref.shape == (3, 128)
    assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    torch.testing.assert_close(
        rec.embed(x, flip=False), torch.nn.functional.normalize(torch.from_numpy(ref), dim=1)
    )


def test_insightface_normalisation_rule_is_read_from_the_graph(onnx_file):
    import onnx

    # insightface's rule: a Sub and a Mul among the first eight nodes mean "normalises internally"
    first = [n.name for n in onnx.load(str(onnx_file)).graph.node[:8]]
    internal = any(n.startswith(("Sub", "_minus")) for n in first) and any(
        n.startswith(("Mul", "_mul")) for n in first)
    rec = create_recogniser(f"onnx:{onnx_file}", normalization="insightface")
    assert rec.normalization_key == ("raw255" if internal else "arcface")
    assert "insightface's rule" in rec.describe()["normalization"]
    with pytest.raises(ValueError, match="unknown normalization"):
        create_recogniser(f"onnx:{onnx_file}", normalization="imagenet-ish")


def test_missing_file_names_it_and_where_it_comes_from(tmp_path):
    missing = tmp_path / "w600k_mbf.onnx"
    with pytest.raises(WeightsUnavailable) as err:
        create_recogniser(f"onnx:{missing}")
    message = str(err.value)
    for needle in (str(missing), "buffalo_s/w600k_mbf.onnx", "buffalo_l", "FaceAnalysis"):
        assert needle in message, (needle, message)


def test_a_graph_that_is_no_recogniser_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(ValueError, match="not a face-recognition"):
        create_recogniser(f"onnx:{path}", normalization="arcface")
