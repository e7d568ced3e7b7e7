"""One architecture in three frameworks: equal parameter counts, torch-matching layer settings,
native save/load, and a framework-free `shared.models` import."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.models import (
    RESNET50,
    TINY,
    architecture_dict,
    avoid_llvm_clash,
    parse_stage_sizes,
)

REPO = Path(__file__).resolve().parents[2]
SMALL_IMAGE = 32  # parameter counts do not depend on the image size

PARAMETERS = {
    (RESNET50, 1000): 25_557_032,
    (RESNET50, 5): 23_518_277,
    (RESNET50, 8): 23_524_424,
    (TINY, 5): 8_026_181,
}
COUNT_CASES = list(PARAMETERS)
COUNT_IDS = [f"{'x'.join(map(str, sizes))}-{classes}" for sizes, classes in PARAMETERS]


def test_package_imports_without_frameworks():
    code = (
        "import sys, shared.models, training.porting\n"
        "loaded = {'torch', 'tensorflow', 'keras', 'jax', 'flax'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO), "PATH": ""})


def test_llvm_guard_blocks_triton_only_after_tensorflow(monkeypatch):
    """TF then Triton (via torchvision) aborts the process: two LLVMs. See avoid_llvm_clash."""
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    avoid_llvm_clash()
    assert "triton" not in sys.modules
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    avoid_llvm_clash()
    assert sys.modules["triton"] is None  # `import triton` now raises ImportError
    with pytest.raises(ImportError):
        import triton  # noqa: F401


def test_parse_stage_sizes_and_architecture():
    assert parse_stage_sizes("3,4,6,3") == RESNET50
    assert parse_stage_sizes("tiny") == TINY
    assert architecture_dict(RESNET50) == {"name": "resnet50", "stage_sizes": [3, 4, 6, 3]}
    assert architecture_dict((2, 2, 2, 2))["name"] == "resnet-2-2-2-2"
    for bad in ("3,4,6", "a,b,c,d", "0,1,1,1"):
        with pytest.raises(ValueError, match="stage sizes"):
            parse_stage_sizes(bad)


def test_torch_matches_torchvision_resnet50():
    torch = pytest.importorskip("torch")
    from shared.models.torch_resnet import build_torch_resnet, torch_parameter_count

    resnet50 = pytest.importorskip("torchvision.models").resnet50  # after avoid_llvm_clash

    with torch.device("meta"):
        ours = build_torch_resnet(1000)
        reference = resnet50()
    assert torch_parameter_count(ours) == torch_parameter_count(reference) == 25_557_032
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize(("stage_sizes", "classes"), COUNT_CASES, ids=COUNT_IDS)
def test_torch_parameter_count(stage_sizes, classes):
    torch = pytest.importorskip("torch")
    from shared.models.torch_resnet import build_torch_resnet, torch_parameter_count

    with torch.device("meta"):
        model = build_torch_resnet(classes, stage_sizes)
    assert torch_parameter_count(model) == PARAMETERS[stage_sizes, classes]


@pytest.mark.parametrize(("stage_sizes", "classes"), COUNT_CASES, ids=COUNT_IDS)
def test_keras_parameter_count(stage_sizes, classes):
    pytest.importorskip("keras")
    from shared.models.keras_resnet import build_keras_resnet, keras_parameter_count

    model = build_keras_resnet(classes, SMALL_IMAGE, stage_sizes)
    assert keras_parameter_count(model) == PARAMETERS[stage_sizes, classes]


@pytest.mark.parametrize(("stage_sizes", "classes"), COUNT_CASES, ids=COUNT_IDS)
def test_flax_parameter_count(stage_sizes, classes):
    pytest.importorskip("flax")
    from shared.models.flax_resnet import build_flax_resnet, flax_parameter_count

    model = build_flax_resnet(classes, stage_sizes)
    assert flax_parameter_count(model, SMALL_IMAGE) == PARAMETERS[stage_sizes, classes]


def test_keras_layers_follow_torch_conventions():
    pytest.importorskip("keras")
    from keras import layers

    from shared.models.keras_resnet import build_keras_resnet

    model = build_keras_resnet(5, SMALL_IMAGE, TINY)
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert {(layer.epsilon, layer.momentum) for layer in norms} == {(1e-5, 0.9)}
    assert not any(layer.use_bias for layer in convs)
    # v1.5: the stride sits on the 3x3 conv, padded symmetrically by an explicit layer
    assert model.get_layer("layer2_0_conv2").strides == (2, 2)
    assert model.get_layer("layer2_0_conv1").strides == (1, 1)
    assert model.get_layer("layer2_0_conv2_pad").padding == ((1, 1), (1, 1))
    assert model.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert model.output_shape == (None, 5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras saving
def test_keras_native_file_round_trip(tmp_path):
    keras = pytest.importorskip("keras")
    from shared.models.keras_resnet import build_keras_resnet

    model = build_keras_resnet(5, SMALL_IMAGE, TINY)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # no custom objects needed
    batch = np.random.default_rng(0).standard_normal((2, SMALL_IMAGE, SMALL_IMAGE, 3))
    np.testing.assert_array_equal(
        np.asarray(loaded(batch, training=False)), np.asarray(model(batch, training=False))
    )


@pytest.mark.slow  # ~30 s cold: JAX compiles every op of an eager init once per process
def test_flax_init_and_native_file_round_trip(tmp_path):
    pytest.importorskip("flax")
    from shared.models.flax_resnet import (
        build_flax_resnet,
        init_variables,
        load_flax_variables,
        save_flax_variables,
    )

    model = build_flax_resnet(5, TINY)
    variables = init_variables(model, SMALL_IMAGE, seed=0)
    assert set(variables) == {"params", "batch_stats"}
    stats = variables["batch_stats"]["layer1_0"]["bn3"]
    np.testing.assert_array_equal(stats["mean"], 0)
    np.testing.assert_array_equal(stats["var"], 1)
    kernel = np.asarray(variables["params"]["layer3_0"]["conv2"]["kernel"])  # 3x3x256x256
    assert np.std(kernel) == pytest.approx(np.sqrt(2 / (3 * 3 * 256)), rel=0.05)  # fan_out
    fc = np.asarray(variables["params"]["fc"]["bias"])
    assert np.abs(fc).max() <= 1 / np.sqrt(2048)

    path = save_flax_variables(tmp_path / "params.msgpack", variables)
    restored = load_flax_variables(path, model, SMALL_IMAGE)
    flat = dict(zip(*_flat(variables), strict=True))
    for name, value in zip(*_flat(restored), strict=True):
        np.testing.assert_array_equal(value, flat[name], err_msg=name)
    with pytest.raises(ValueError, match=r"params/fc/bias.*expects \(8,\)"):
        load_flax_variables(path, build_flax_resnet(8, TINY), SMALL_IMAGE)


def _flat(tree, prefix=""):
    """(names, leaves) of a nested dict, names like 'params/fc/bias'."""
    names, leaves = [], []
    for key, value in tree.items():
        if isinstance(value, dict):
            sub_names, sub_leaves = _flat(value, f"{prefix}{key}/")
            names += sub_names
            leaves += sub_leaves
        else:
            names.append(prefix + key)
            leaves.append(np.asarray(value))
    return names, leaves
