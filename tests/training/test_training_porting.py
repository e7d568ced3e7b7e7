"""Weight porting by name: exact round trips through Keras and Flax, strict errors on any
mismatch, and the torchvision ImageNet loader."""

import numpy as np
import pytest

from shared.models import RESNET50, TINY
from training import porting
from training.parity import random_state_dict

torch = pytest.importorskip("torch")

IMAGE = 32


def assert_same_state(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


def keras_model(classes, stage_sizes=TINY):
    pytest.importorskip("keras")
    from shared.models.keras_resnet import build_keras_resnet

    return build_keras_resnet(classes, IMAGE, stage_sizes)


def flax_target(classes, stage_sizes=TINY):
    pytest.importorskip("flax")
    from shared.models.flax_resnet import build_flax_resnet, variable_shapes

    return variable_shapes(build_flax_resnet(classes, stage_sizes), IMAGE)


@pytest.fixture(scope="module")
def resnet50_state():
    return random_state_dict(RESNET50, 8, seed=1)


def test_torch_keras_torch_is_identity(tiny_state):
    model = keras_model(5)
    porting.state_dict_to_keras(tiny_state, model)
    assert_same_state(porting.keras_to_state_dict(model), tiny_state)


def test_torch_flax_torch_is_identity(tiny_state):
    variables = porting.state_dict_to_flax(tiny_state, flax_target(5))
    assert set(variables) == {"params", "batch_stats"}
    assert variables["params"]["layer1_0"]["downsample_conv"]["kernel"].shape == (1, 1, 64, 256)
    assert_same_state(porting.flax_to_state_dict(variables), tiny_state)


def test_resnet50_round_trips(resnet50_state):
    model = keras_model(8, RESNET50)
    porting.state_dict_to_keras(resnet50_state, model)
    assert_same_state(porting.keras_to_state_dict(model), resnet50_state)
    variables = porting.state_dict_to_flax(resnet50_state, flax_target(8, RESNET50))
    assert_same_state(porting.flax_to_state_dict(variables), resnet50_state)


def test_torch_module_round_trip(tiny_state):
    from shared.models.torch_resnet import build_torch_resnet

    model = build_torch_resnet(5, TINY)
    porting.state_dict_to_torch(tiny_state, model)
    assert_same_state(porting.to_numpy_state(model.state_dict()), tiny_state)


def test_bn_statistics_land_in_the_right_place(tiny_state):
    model = keras_model(5)
    porting.state_dict_to_keras(tiny_state, model)
    bn = model.get_layer("layer3_0_downsample_bn")
    np.testing.assert_array_equal(
        bn.moving_variance.numpy(), tiny_state["layer3.0.downsample.1.running_var"]
    )
    kernel = model.get_layer("conv1").kernel.numpy()  # HWIO from OIHW
    np.testing.assert_array_equal(kernel[1, 2, 0, 5], tiny_state["conv1.weight"][5, 0, 1, 2])
    dense = model.get_layer("fc").kernel.numpy()  # (in, out) from (out, in)
    np.testing.assert_array_equal(dense[7, 3], tiny_state["fc.weight"][3, 7])


def test_tiny_state_into_resnet50_names_the_key(tiny_state):
    model = keras_model(5, RESNET50)
    before = model.get_layer("conv1").kernel.numpy()
    with pytest.raises(porting.PortingError, match=r"layer1_1_|layer1\.1\."):
        porting.state_dict_to_keras(tiny_state, model)
    # nothing is written unless everything fits
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), before)
    with pytest.raises(porting.PortingError, match="no source"):
        porting.state_dict_to_flax(tiny_state, flax_target(5, RESNET50))


@pytest.mark.parametrize("framework", ["keras", "flax", "torch"])
def test_class_count_mismatch_names_fc(tiny_state, framework):
    with pytest.raises(porting.PortingError, match=r"'fc\.(weight|bias)'.*shape"):
        if framework == "keras":
            porting.state_dict_to_keras(tiny_state, keras_model(8))
        elif framework == "flax":
            porting.state_dict_to_flax(tiny_state, flax_target(8))
        else:
            from shared.models.torch_resnet import build_torch_resnet

            porting.state_dict_to_torch(tiny_state, build_torch_resnet(8, TINY))


def test_missing_and_unknown_keys(tiny_state):
    missing = {k: v for k, v in tiny_state.items() if k != "layer2.0.bn2.running_mean"}
    with pytest.raises(porting.PortingError, match="batch_stats/layer2_0/bn2/mean"):
        porting.state_dict_to_flax(missing, flax_target(5))
    unknown = {**tiny_state, "head.weight": np.zeros((5, 2048), np.float32)}
    with pytest.raises(porting.PortingError, match="'head.weight'"):
        porting.state_dict_to_keras(unknown, keras_model(5))
    odd_param = {**tiny_state, "layer1.0.conv1.bias": np.zeros(64, np.float32)}
    with pytest.raises(porting.PortingError, match="'layer1.0.conv1.bias'"):
        porting.state_dict_to_flax(odd_param, flax_target(5))


# --- torchvision ImageNet file ------------------------------------------------------------

@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """Stands in for torchvision's resnet50 IMAGENET1K_V2 state-dict file."""
    from shared.models.torch_resnet import build_torch_resnet

    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("imagenet") / "resnet50-imagenet.pth"
    torch.save(build_torch_resnet(1000).state_dict(), path)
    return path


def test_imagenet_backbone_with_fresh_seeded_head(imagenet_file):
    source = torch.load(imagenet_file, weights_only=True)
    state = porting.load_torchvision_imagenet(imagenet_file, 5, seed=0)
    assert state["fc.weight"].shape == (5, 2048) and state["fc.bias"].shape == (5,)
    np.testing.assert_array_equal(state["layer4.2.conv3.weight"], source["layer4.2.conv3.weight"])
    np.testing.assert_array_equal(state["bn1.running_var"], source["bn1.running_var"])
    again = porting.load_torchvision_imagenet(imagenet_file, 5, seed=0)
    other = porting.load_torchvision_imagenet(imagenet_file, 5, seed=1)
    np.testing.assert_array_equal(state["fc.weight"], again["fc.weight"])
    assert not np.array_equal(state["fc.weight"], other["fc.weight"])
    assert np.abs(state["fc.weight"]).max() <= 1 / np.sqrt(2048)
    porting.state_dict_to_flax(state, flax_target(5, RESNET50))  # fits every framework


def test_imagenet_file_without_batch_counters(imagenet_file, tmp_path):
    source = torch.load(imagenet_file, weights_only=True)
    older = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    torch.save(older, tmp_path / "v1.pth")
    state = porting.load_torchvision_imagenet(tmp_path / "v1.pth", 8)
    assert state["bn1.num_batches_tracked"] == 0


def test_corrupt_imagenet_file(imagenet_file, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(imagenet_file.read_bytes()[: 1 << 20])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"<html>404 Not Found</html>")
    for path in (truncated, garbage):
        with pytest.raises(porting.PortingError, match="not a readable torch state-dict"):
            porting.load_torchvision_imagenet(path, 5)
    with pytest.raises(porting.PortingError, match="no such file"):
        porting.load_torchvision_imagenet(tmp_path / "absent.pth", 5)


def test_mismatched_imagenet_file(tiny_state, tmp_path):
    tiny = tmp_path / "tiny.pth"
    torch.save(porting.to_torch_state(tiny_state), tiny)
    with pytest.raises(porting.PortingError, match=r"tiny\.pth.*(no source|shape)"):
        porting.load_torchvision_imagenet(tiny, 5)
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], not_a_dict)
    with pytest.raises(porting.PortingError, match="expected a state dict"):
        porting.load_torchvision_imagenet(not_a_dict, 5)
