"""Keras 3 ResNet v1.5, written to match torchvision's `ResNet(Bottleneck, ...)` layer for layer.

`keras.applications.ResNet50` is ResNet v1 with conv biases (a different model), hence this
file. Differences from TF defaults that matter for parity with torch:

- padding is explicit (`ZeroPadding2D` + "valid") wherever TF "same" would pad asymmetrically:
  the 7x7 stride-2 stem (pad 3), the 3x3 stride-2 max pool (pad 1) and the stride-2 3x3 conv of
  a bottleneck (pad 1). torch pads max pooling with -inf; zero padding is equivalent there
  because the pool follows a ReLU (inputs >= 0). Stride-1 3x3 convs use "same" (= pad 1).
- convs have no bias; BatchNorm epsilon 1e-5, momentum 0.9 (torch's momentum 0.1);
- stride on the 3x3 conv (v1.5), 1x1 stride-s conv + BN on the projection shortcut;
- initialisers follow torchvision: conv kaiming-normal (fan_out, relu), the classifier
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for kernel and bias.

Layer names are deterministic and shared with Flax (`training.porting` maps them to
torchvision's state-dict keys): conv1, bn1, layer{stage}_{block}_{conv1,bn1,...,conv3,bn3,
downsample_conv,downsample_bn}, fc. Blocks are tensor -> tensor functions as in
keras/applications/resnet.py. Seed with `keras.utils.set_random_seed` before building for a
reproducible init. The model outputs logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import layers

from shared.models import (
    BN_EPSILON,
    BN_MOMENTUM,
    EXPANSION,
    RESNET50,
    STAGE_WIDTHS,
    STEM_WIDTH,
    parse_stage_sizes,
)

CONV_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")
"""torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")."""


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    """Conv without bias, padded like torch's Conv2d(padding=kernel // 2)."""
    pad = kernel // 2
    padding = "valid"
    if pad and stride > 1:
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    elif pad:
        padding = "same"
    return layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=False,
        kernel_initializer=CONV_INIT, name=name,
    )(x)


def _bn(x, name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def bottleneck(x, width: int, stride: int, name: str):
    """torchvision's Bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4), projection when needed."""
    out_channels = width * EXPANSION
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = _conv(x, out_channels, 1, stride, f"{name}_downsample_conv")
        shortcut = _bn(shortcut, f"{name}_downsample_bn")
    y = _conv(x, width, 1, 1, f"{name}_conv1")
    y = layers.ReLU(name=f"{name}_relu1")(_bn(y, f"{name}_bn1"))
    y = _conv(y, width, 3, stride, f"{name}_conv2")
    y = layers.ReLU(name=f"{name}_relu2")(_bn(y, f"{name}_bn2"))
    y = _bn(_conv(y, out_channels, 1, 1, f"{name}_conv3"), f"{name}_bn3")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def build_keras_resnet(
    num_classes: int, image_size: int, stage_sizes: Sequence[int] = RESNET50
) -> keras.Model:
    """Functional Keras ResNet taking (N, image_size, image_size, 3) float32, returning logits."""
    stage_sizes = parse_stage_sizes(stage_sizes)
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = _conv(inputs, STEM_WIDTH, 7, 2, "conv1")
    x = layers.ReLU(name="relu")(_bn(x, "bn1"))
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (blocks, width) in enumerate(zip(stage_sizes, STAGE_WIDTHS, strict=True)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = bottleneck(x, width, stride, name=f"layer{stage + 1}_{block}")
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    bound = 1.0 / math.sqrt(x.shape[-1])
    outputs = layers.Dense(
        num_classes, name="fc",
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
    )(x)
    name = "resnet-" + "-".join(map(str, stage_sizes))
    return keras.Model(inputs, outputs, name=name)


def keras_parameter_count(model: keras.Model) -> int:
    """Trainable parameters (BatchNorm moving statistics are non-trainable, not counted)."""
    return sum(math.prod(variable.shape) for variable in model.trainable_weights)
