"""Suite-wide test settings: quiet framework logs and keep numerical libraries to the
machine's cores, so parallel framework imports do not oversubscribe the CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
