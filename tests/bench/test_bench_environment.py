"""bench.environment: what results.json records about the machine, without importing any
framework, and CPU time of processes from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.environment import collect_environment
from bench.proctree import process_cpu_seconds, tree_cpu_seconds

SPIN_S = 0.3
SPIN_THEN_SLEEP = (f"import time\nt = time.process_time()\n"
                   f"while time.process_time() - t < {SPIN_S}: pass\ntime.sleep(30)\n")


def test_environment_records_cpu_cores_versions_and_commit() -> None:
    env = collect_environment({"intra_op_threads_per_worker": 2})
    assert env["cpu_model"] and env["usable_cores"] and env["cpu_count"] >= 1
    assert env["threads"] == {"intra_op_threads_per_worker": 2}
    assert env["packages"]["locust"] and env["packages"]["numpy"]
    assert env["git"]["commit"] is None or len(env["git"]["commit"]) == 40


def test_versions_come_from_metadata_not_imports() -> None:
    code = ("import sys; from bench.environment import collect_environment; "
            "env = collect_environment(); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules), "
            "env['packages']['torch'] is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["[]", "True"]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_cpu_seconds_of_a_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN_THEN_SLEEP])
    try:
        deadline = time.monotonic() + 20
        while (process_cpu_seconds(child.pid) or 0) < SPIN_S and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_cpu_seconds(child.pid) >= SPIN_S * 0.9
        assert tree_cpu_seconds(os.getpid()) >= process_cpu_seconds(child.pid)
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(child.pid) is None
