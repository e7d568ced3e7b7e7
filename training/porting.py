"""Weight porting between torch state dicts, Keras models and Flax variables, by name.

The interchange format is a *numpy state dict*: torchvision's keys and layouts (conv OIHW,
Linear (out, in)), values as numpy arrays. Every framework converts to and from it:

    torch key                     Keras layer / weight            Flax variable
    conv1.weight (OIHW)           conv1/kernel (HWIO)             params/conv1/kernel
    bn1.weight / bias             bn1/gamma / beta                params/bn1/scale / bias
    bn1.running_mean / var        bn1/moving_mean / variance      batch_stats/bn1/mean / var
    layer2.0.conv2.weight         layer2_0_conv2/kernel           params/layer2_0/conv2/kernel
    layer2.0.downsample.0.weight  layer2_0_downsample_conv/kernel params/layer2_0/downsample_conv/..
    layer2.0.downsample.1.*       layer2_0_downsample_bn/*        .../layer2_0/downsample_bn/..
    fc.weight (out, in) / bias    fc/kernel (in, out) / bias      params/fc/kernel / bias

Nothing is matched by position: each source tensor is translated to exactly one target name,
every target must be filled exactly once, and shapes must agree; otherwise `PortingError` names
the offending key (e.g. a TINY state dict into a RESNET50 model, or 5 vs 8 classes). Targets are
written only after every check passed. `num_batches_tracked` (torch only) is dropped on export
and comes back as 0.

Pretrained start: `load_torchvision_imagenet(path, num_classes)` reads torchvision's ResNet-50
ImageNet state-dict file and swaps the 1000-class classifier for a fresh seeded head. On an online
machine the file comes from `torchvision.models.ResNet50_Weights.IMAGENET1K_V2.get_state_dict()`
(saved with `torch.save(state_dict, path)`) or its URL
https://download.pytorch.org/models/resnet50-11ad3fa6.pth .
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shared.models import EXPANSION, RESNET50, STAGE_WIDTHS

StateDict = dict[str, np.ndarray]
LayerPath = tuple[str, ...]

NUM_BATCHES_TRACKED = "num_batches_tracked"
IMAGENET_CLASSES = 1000
FC_IN_FEATURES = STAGE_WIDTHS[-1] * EXPANSION
OIHW_TO_HWIO = (2, 3, 1, 0)
HWIO_TO_OIHW = (3, 2, 0, 1)

_TORCH_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(conv\d|bn\d|downsample\.[01])$")
_NEUTRAL_BLOCK = re.compile(r"^(layer\d+_\d+)_(conv\d|bn\d|downsample_conv|downsample_bn)$")
_TOP_LEVEL = {"conv1", "bn1", "fc"}
_DOWNSAMPLE = {"downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}

KERAS_NAMES: dict[str, dict[str, str]] = {
    "conv": {"weight": "kernel"},
    "bn": {"weight": "gamma", "bias": "beta",
           "running_mean": "moving_mean", "running_var": "moving_variance"},
    "dense": {"weight": "kernel", "bias": "bias"},
}
FLAX_NAMES: dict[str, dict[str, tuple[str, str]]] = {
    "conv": {"weight": ("params", "kernel")},
    "bn": {"weight": ("params", "scale"), "bias": ("params", "bias"),
           "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")},
    "dense": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
}


class PortingError(ValueError):
    """Weights do not fit the target: unknown/missing/extra key, shape mismatch, bad file."""


# --- names -------------------------------------------------------------------------------

def _kind(path: LayerPath) -> str:
    leaf = path[-1]
    if leaf == "fc":
        return "dense"
    return "bn" if leaf.startswith("bn") or leaf == "downsample_bn" else "conv"


def _torch_module_to_path(module: str) -> LayerPath:
    """'layer2.0.downsample.0' -> ('layer2_0', 'downsample_conv'); 'conv1' -> ('conv1',)."""
    if module in _TOP_LEVEL:
        return (module,)
    match = _TORCH_BLOCK.match(module)
    if match is None:
        raise PortingError(f"{module!r} is not a ResNet layer name")
    stage, block, child = match.groups()
    return (f"layer{stage}_{block}", _DOWNSAMPLE.get(child, child))


def _path_to_torch_module(path: LayerPath) -> str:
    if len(path) == 1 and path[0] in _TOP_LEVEL:
        return path[0]
    match = _NEUTRAL_BLOCK.match("_".join(path)) if len(path) == 2 else None
    if match is None:
        raise PortingError(f"{'/'.join(path)!r} is not a ResNet layer name")
    block, child = match.groups()
    child = {v: k for k, v in _DOWNSAMPLE.items()}.get(child, child)
    return f"{block.replace('_', '.')}.{child}"


def _keras_layer_to_path(name: str) -> LayerPath:
    match = _NEUTRAL_BLOCK.match(name)
    return match.groups() if match else (name,)


def _parse_torch_key(key: str) -> tuple[LayerPath, str, str]:
    """'layer1.0.bn2.running_var' -> (('layer1_0', 'bn2'), 'bn', 'running_var')."""
    module, _, param = key.rpartition(".")
    try:
        path = _torch_module_to_path(module)
    except PortingError as error:
        raise PortingError(f"state-dict key {key!r}: {error}") from None
    return path, _kind(path), param


# --- layouts -----------------------------------------------------------------------------

def _to_channels_last(kind: str, param: str, array: np.ndarray) -> np.ndarray:
    if kind == "conv" and array.ndim == 4:
        return array.transpose(OIHW_TO_HWIO)
    if kind == "dense" and param == "weight" and array.ndim == 2:
        return array.T
    return array


def _to_torch_layout(kind: str, param: str, array: np.ndarray) -> np.ndarray:
    if kind == "conv" and array.ndim == 4:
        return array.transpose(HWIO_TO_OIHW)
    if kind == "dense" and param == "weight" and array.ndim == 2:
        return array.T
    return array


def _numpy(value: Any) -> np.ndarray:
    """A torch tensor, jax/keras array or numpy array -> numpy (a contiguous copy)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.array(value, copy=True, order="C")


def to_numpy_state(state_dict: Mapping[str, Any]) -> StateDict:
    """A torch state dict (tensors) -> numpy state dict with the same keys."""
    return {key: _numpy(value) for key, value in state_dict.items()}


def to_torch_state(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """numpy state dict -> torch tensors, ready for `load_state_dict`."""
    import torch

    return {key: torch.from_numpy(np.array(value, copy=True)) for key, value in state.items()}


# --- the one checked assignment ------------------------------------------------------------

def _label(target: Any) -> str:
    """'layer1_0_conv1/kernel' stays; ('params', 'fc', 'bias') -> 'params/fc/bias'."""
    return "/".join(target) if isinstance(target, tuple) else str(target)


def _match(
    sources: Iterable[tuple[str, Any, np.ndarray]], targets: Mapping[Any, tuple[int, ...]],
    framework: str,
) -> dict[Any, np.ndarray]:
    """Pair (source key, target name, value) triples with `targets` (name -> shape): every
    target filled exactly once with the right shape, or PortingError naming the key."""
    filled: dict[Any, np.ndarray] = {}
    origin: dict[Any, str] = {}
    for key, target, value in sources:
        if target not in targets:
            raise PortingError(
                f"{key!r}: the {framework} model has no variable {_label(target)!r}"
            )
        if target in filled:
            raise PortingError(f"{key!r} and {origin[target]!r} both map to {_label(target)!r}")
        if tuple(value.shape) != tuple(targets[target]):
            raise PortingError(
                f"{key!r}: shape {tuple(value.shape)} does not fit {framework} "
                f"{_label(target)!r} of shape {tuple(targets[target])}"
            )
        filled[target], origin[target] = value, key
    missing = [_label(target) for target in targets if target not in filled]
    if missing:
        raise PortingError(f"{len(missing)} {framework} variable(s) have no source in the "
                           f"state dict, e.g. {', '.join(map(repr, missing[:3]))}")
    return filled


def _weights(state: Mapping[str, Any]) -> Iterable[tuple[str, LayerPath, str, str, np.ndarray]]:
    for key, value in state.items():
        if key.endswith("." + NUM_BATCHES_TRACKED):
            continue
        path, kind, param = _parse_torch_key(key)
        yield key, path, kind, param, _numpy(value)


def _name(names: dict[str, dict[str, Any]], key: str, kind: str, param: str) -> Any:
    try:
        return names[kind][param]
    except KeyError:
        raise PortingError(f"state-dict key {key!r}: no {param!r} in a {kind} layer") from None


# --- torch -------------------------------------------------------------------------------

def state_dict_to_torch(state: Mapping[str, Any], model: Any) -> None:
    """Load a numpy (or torch) state dict into a torch module, strictly and shape-checked.
    `num_batches_tracked` absent from `state` keeps the model's value."""
    target = model.state_dict()
    shapes = {key: tuple(value.shape) for key, value in target.items()}
    sources = [(key, key, _numpy(value)) for key, value in state.items()]
    sources += [(key, key, _numpy(value)) for key, value in target.items()
                if key.endswith(NUM_BATCHES_TRACKED) and key not in state]
    model.load_state_dict(to_torch_state(_match(sources, shapes, "torch")), strict=True)


def _with_batch_counters(state: StateDict) -> StateDict:
    for key in [key for key in state if key.endswith(".running_mean")]:
        state[key.removesuffix("running_mean") + NUM_BATCHES_TRACKED] = np.zeros((), np.int64)
    return state


# --- Keras -------------------------------------------------------------------------------

def _keras_variables(model: Any) -> dict[str, Any]:
    return {f"{layer.name}/{v.name}": v for layer in model.layers for v in layer.weights}


def state_dict_to_keras(state: Mapping[str, Any], model: Any) -> None:
    """Set a Keras ResNet's weights (moving statistics included) from a state dict."""
    variables = _keras_variables(model)
    sources = [
        (key, f"{'_'.join(path)}/{_name(KERAS_NAMES, key, kind, param)}",
         _to_channels_last(kind, param, value))
        for key, path, kind, param, value in _weights(state)
    ]
    shapes = {name: tuple(variable.shape) for name, variable in variables.items()}
    for name, value in _match(sources, shapes, "Keras").items():
        variables[name].assign(value.astype(variables[name].dtype))


def keras_to_state_dict(model: Any) -> StateDict:
    """A Keras ResNet's weights as a numpy state dict with torchvision keys and layouts."""
    inverse = {kind: {v: k for k, v in names.items()} for kind, names in KERAS_NAMES.items()}
    state: StateDict = {}
    for name, variable in _keras_variables(model).items():
        layer, _, weight = name.rpartition("/")
        path = _keras_layer_to_path(layer)
        kind = _kind(path)
        param = inverse[kind].get(weight)
        if param is None:
            raise PortingError(f"Keras variable {name!r} has no torch counterpart")
        key = f"{_path_to_torch_module(path)}.{param}"
        state[key] = _to_torch_layout(kind, param, _numpy(variable))
    return _with_batch_counters(state)


# --- Flax --------------------------------------------------------------------------------

def _flatten(tree: Mapping[str, Any], prefix: LayerPath = ()) -> dict[LayerPath, Any]:
    flat: dict[LayerPath, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _unflatten(flat: Mapping[LayerPath, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def state_dict_to_flax(state: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """Flax variables {"params", "batch_stats"} from a state dict; `variables` (e.g. from
    `init_variables` or `jax.eval_shape`) gives the expected tree and shapes."""
    sources = []
    for key, path, kind, param, value in _weights(state):
        collection, leaf = _name(FLAX_NAMES, key, kind, param)
        sources.append((key, (collection, *path, leaf), _to_channels_last(kind, param, value)))
    shapes = {path: tuple(leaf.shape) for path, leaf in _flatten(variables).items()}
    filled = _match(sources, shapes, "Flax")
    return _unflatten({path: value.astype(np.float32) for path, value in filled.items()})


def flax_to_state_dict(variables: Mapping[str, Any]) -> StateDict:
    """Flax ResNet variables as a numpy state dict with torchvision keys and layouts."""
    inverse = {kind: {v: k for k, v in names.items()} for kind, names in FLAX_NAMES.items()}
    state: StateDict = {}
    for (collection, *path, leaf), value in _flatten(variables).items():
        kind = _kind(tuple(path))
        param = inverse[kind].get((collection, leaf))
        if param is None:
            raise PortingError(f"Flax variable {'/'.join((collection, *path, leaf))!r} "
                               "has no torch counterpart")
        key = f"{_path_to_torch_module(tuple(path))}.{param}"
        state[key] = _to_torch_layout(kind, param, _numpy(value))
    return _with_batch_counters(state)


# --- pretrained ImageNet backbone ----------------------------------------------------------

def load_torchvision_imagenet(path: str | Path, num_classes: int, *, seed: int = 0) -> StateDict:
    """torchvision ResNet-50 ImageNet weights with a fresh `num_classes` head (torch.nn.Linear's
    default init under `seed`), as a numpy state dict every framework can load. A missing,
    unreadable or non-ResNet-50 file raises PortingError naming the file (and key)."""
    import torch

    from shared.models.torch_resnet import build_torch_resnet

    path = Path(path)
    if not path.is_file():
        raise PortingError(f"{path}: no such file (a torchvision ResNet-50 state dict)")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and unpickling errors all mean "corrupt"
        raise PortingError(
            f"{path}: not a readable torch state-dict file ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise PortingError(f"{path}: expected a state dict (name -> tensor), "
                           f"got {type(loaded).__name__}")
    with torch.device("meta"):
        reference = build_torch_resnet(IMAGENET_CLASSES, RESNET50).state_dict()
    shapes = {key: tuple(value.shape) for key, value in reference.items()
              if not key.endswith(NUM_BATCHES_TRACKED)}
    sources = [(key, key, _numpy(value)) for key, value in loaded.items()
               if not key.endswith(NUM_BATCHES_TRACKED)]
    try:
        state = _match(sources, shapes, "torchvision resnet50")
    except PortingError as error:
        raise PortingError(f"{path}: {error}") from None
    bad = [key for key, value in state.items() if not np.isfinite(value).all()]
    if bad:
        raise PortingError(f"{path}: non-finite values in {bad[0]!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Linear(FC_IN_FEATURES, num_classes)
    state["fc.weight"], state["fc.bias"] = _numpy(head.weight), _numpy(head.bias)
    return _with_batch_counters(state)
