"""Suite-wide test settings: quiet framework logs and keep numerical libraries to the
machine's cores, so parallel framework imports do not oversubscribe the CPU.

SIGINT is made deliverable again when the suite was started with it ignored (a shell without
job control, e.g. ``nohup make test &``, starts background jobs that way, and children inherit
it): the Ctrl-C tests send SIGINT to the code under test and its subprocesses.
"""

import os
import signal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
