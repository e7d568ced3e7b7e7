"""ONNX export: one self-contained file, opset >= 17, NHWC input with a dynamic batch axis,
matching torch under onnxruntime."""

import numpy as np
import pytest

from shared.models import TINY
from training import porting

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

IMAGE = 32


@pytest.fixture(scope="module")
def exported(tiny_state, tmp_path_factory):
    from shared.models.torch_resnet import build_torch_resnet
    from training.onnx_export import export_onnx

    model = build_torch_resnet(5, TINY)
    porting.state_dict_to_torch(tiny_state, model)
    directory = tmp_path_factory.mktemp("onnx")
    return model, export_onnx(model, directory / "model.onnx", image_size=IMAGE)


def test_single_file_opset_and_dynamic_batch(exported):
    from training.onnx_export import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME

    _, path = exported
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no external data
    graph = onnx.load(str(path))
    assert max(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert ONNX_OPSET >= 17
    (input_,), (output,) = graph.graph.input, graph.graph.output
    assert (input_.name, output.name) == (INPUT_NAME, OUTPUT_NAME)
    dims = [d.dim_param or d.dim_value for d in input_.type.tensor_type.shape.dim]
    assert dims == ["batch", IMAGE, IMAGE, 3]


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_torch(exported, batch):
    from shared.models.torch_resnet import NHWCWrapper
    from training.onnx_export import INPUT_NAME, onnx_session

    model, path = exported
    images = np.random.default_rng(batch).standard_normal((batch, IMAGE, IMAGE, 3))
    images = images.astype(np.float32)
    (logits,) = onnx_session(path, threads=1).run(None, {INPUT_NAME: images})
    with torch.no_grad():
        expected = NHWCWrapper(model).eval()(torch.from_numpy(images)).numpy()
    assert logits.shape == (batch, 5)
    assert np.abs(logits - expected).max() <= 1e-4
