"""ResNet-50 in PyTorch, Keras and Flax, weight porting between them, ONNX export and the
cross-framework parity check. Importing this package imports no framework."""
