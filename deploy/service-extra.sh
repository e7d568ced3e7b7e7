#!/bin/sh
# The pyproject extra a service image installs for its runtime (deploy/Dockerfile runs this
# with its build args; fails with a usage line on an unknown value):
#
#   deploy/service-extra.sh FRAMEWORK ACCELERATOR
#
# FRAMEWORK: torch | tensorflow | jax | onnx;  ACCELERATOR: gpu | cpu.
# jax and onnx have separate GPU builds (extras jax-gpu, onnx-gpu: CUDA 13 from nvidia-*
# wheels). torch's PyPI Linux wheels are CUDA builds and TensorFlow loads CUDA from the base
# image, so both use one extra on either accelerator.
set -eu

framework=${1-}
accelerator=${2-}

case "$accelerator" in
  gpu|cpu) ;;
  *) echo "build with --build-arg ACCELERATOR=gpu|cpu (got '$accelerator')" >&2; exit 1 ;;
esac

case "$framework:$accelerator" in
  jax:gpu|onnx:gpu) echo "$framework-gpu" ;;
  torch:*|tensorflow:*|jax:*|onnx:*) echo "$framework" ;;
  *) echo "build with --build-arg FRAMEWORK=torch|tensorflow|jax|onnx (got '$framework')" >&2
     exit 1 ;;
esac
