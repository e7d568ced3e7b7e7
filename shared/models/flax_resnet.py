"""Flax linen ResNet v1.5 in the style of google/flax examples/imagenet/models.py, changed to
match torchvision's `ResNet(Bottleneck, ...)` exactly:

- explicit symmetric padding: ((3, 3), (3, 3)) on the 7x7 stride-2 stem, ((1, 1), (1, 1)) on
  every 3x3 conv and on the 3x3 stride-2 max pool (which pads with -inf, like torch); 1x1
  convs are unpadded (Flax's default "SAME" pads asymmetrically at stride 2 in general);
- no conv bias, BatchNorm epsilon 1e-5 and momentum 0.9 (torch's 0.1), and no zero-init of
  the last BN scale in a block (torchvision's default `zero_init_residual=False`);
- projection shortcut whenever stride != 1 or the channel count changes (torchvision's rule);
- torchvision's initialisers (conv kaiming-normal fan_out, classifier U(+-1/sqrt(fan_in)));
- module names shared with Keras and mapped to torchvision keys by `training.porting`.

Variables are {"params": ..., "batch_stats": ...}; the model outputs logits. Native file
`params.msgpack` = `flax.serialization.to_bytes(variables)` (see `save_flax_variables`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import serialization, traverse_util

from shared.models import (
    BN_EPSILON,
    BN_MOMENTUM,
    EXPANSION,
    RESNET50,
    STAGE_WIDTHS,
    STEM_WIDTH,
    TINY,
    parse_stage_sizes,
)

ModuleDef = Any
Variables = dict[str, Any]

CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
"""torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu") (untruncated)."""
PAD_1 = ((1, 1), (1, 1))
PAD_3 = ((3, 3), (3, 3))


def _uniform(bound: float) -> Callable:
    """U(-bound, bound), torch.nn.Linear's default for weight and bias."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class BottleneckBlock(nn.Module):
    """torchvision's Bottleneck: 1x1 -> 3x3 (strides) -> 1x1 (x4), projection when needed."""

    width: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_channels = self.width * EXPANSION
        residual = x
        y = self.act(self.norm(name="bn1")(self.conv(self.width, (1, 1), name="conv1")(x)))
        y = self.conv(self.width, (3, 3), self.strides, padding=PAD_1, name="conv2")(y)
        y = self.act(self.norm(name="bn2")(y))
        y = self.norm(name="bn3")(self.conv(out_channels, (1, 1), name="conv3")(y))
        if self.strides != 1 or x.shape[-1] != out_channels:
            residual = self.conv(out_channels, (1, 1), self.strides, name="downsample_conv")(x)
            residual = self.norm(name="downsample_bn")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    """ResNet v1.5 over NHWC float32 images; `train` selects batch vs running BN statistics."""

    stage_sizes: Sequence[int]
    num_classes: int
    act: Callable = nn.relu
    dtype: Any = jnp.float32
    """Computation dtype (bfloat16 for mixed precision); variables stay float32."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = partial(nn.Conv, use_bias=False, padding="VALID", kernel_init=CONV_INIT,
                       dtype=self.dtype)
        norm = partial(
            nn.BatchNorm, use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
            dtype=self.dtype,
        )
        x = conv(STEM_WIDTH, (7, 7), (2, 2), padding=PAD_3, name="conv1")(x)
        x = self.act(norm(name="bn1")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=PAD_1)
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, STAGE_WIDTHS, strict=True)):
            for block in range(blocks):
                x = BottleneckBlock(
                    width, conv=conv, norm=norm, act=self.act,
                    strides=2 if stage > 0 and block == 0 else 1,
                    name=f"layer{stage + 1}_{block}",
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        bound = 1.0 / math.sqrt(x.shape[-1])
        return nn.Dense(
            self.num_classes, kernel_init=_uniform(bound), bias_init=_uniform(bound), name="fc",
            dtype=self.dtype,
        )(x)


ResNet50 = partial(ResNet, stage_sizes=RESNET50)
ResNetTiny = partial(ResNet, stage_sizes=TINY)


def build_flax_resnet(num_classes: int, stage_sizes: Sequence[int] = RESNET50, *,
                      dtype: Any = jnp.float32) -> ResNet:
    """The Flax twin of `build_torch_resnet`; call as `model.apply(variables, x, train=...)`
    (`dtype`: the computation dtype, e.g. bfloat16; the variables are float32 either way)."""
    return ResNet(stage_sizes=parse_stage_sizes(stage_sizes), num_classes=num_classes,
                  dtype=dtype)


def _dummy(image_size: int) -> jax.Array:
    return jnp.zeros((1, image_size, image_size, 3), jnp.float32)


def init_variables(model: ResNet, image_size: int, seed: int = 0) -> Variables:
    """Freshly initialised {"params", "batch_stats"} for (N, image_size, image_size, 3) input.
    Not jitted: a cold eager init costs about what compiling it does, a warm one far less."""
    return dict(model.init(jax.random.PRNGKey(seed), _dummy(image_size), train=False))


def variable_shapes(model: ResNet, image_size: int) -> Variables:
    """The variable tree as `jax.ShapeDtypeStruct`s, without computing an initialisation
    (a porting target, and cheap parameter counting)."""
    init = partial(model.init, train=False)
    return dict(jax.eval_shape(init, jax.random.PRNGKey(0), _dummy(image_size)))


def flax_parameter_count(model: ResNet, image_size: int = 64) -> int:
    """Trainable parameters (the "params" collection; batch_stats not counted)."""
    leaves = jax.tree_util.tree_leaves(variable_shapes(model, image_size)["params"])
    return sum(math.prod(leaf.shape) for leaf in leaves)


def save_flax_variables(path: str | Path, variables: Variables) -> Path:
    """Write {"params", "batch_stats"} as msgpack (`flax.serialization.to_bytes`)."""
    path = Path(path)
    state = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    path.write_bytes(serialization.to_bytes(state))
    return path


def load_flax_variables(path: str | Path, model: ResNet, image_size: int) -> Variables:
    """Read `save_flax_variables` output; ValueError naming the first variable whose presence
    or shape differs from `model`'s."""
    expected = traverse_util.flatten_dict(variable_shapes(model, image_size), sep="/")
    restored = serialization.msgpack_restore(Path(path).read_bytes())
    found = traverse_util.flatten_dict(restored, sep="/")
    for name in sorted(expected.keys() | found.keys()):
        want = expected[name].shape if name in expected else "absent"
        got = found[name].shape if name in found else "absent"
        if want != got:
            raise ValueError(f"{path}: variable {name!r} is {got}, the model expects {want} "
                             f"(stage_sizes={model.stage_sizes}, num_classes={model.num_classes})")
    return restored
