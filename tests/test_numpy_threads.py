"""NumPy's BLAS runs on the calling thread: the tool's parallelism is doit's workers and
ffmpeg's threads, and OpenBLAS's own threads (one per core, spinning after each product)
only cost CPU."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.once

COUNT_THREADS = ("import exporter.media.colour_check as check, os; check.numpy(); "
                 "print(len(os.listdir('/proc/self/task')))")


def threads_after_numpy(**env):
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("OPENBLAS_", "OMP_"))}
    result = subprocess.run([sys.executable, "-c", COUNT_THREADS], env={**base, **env},
                            capture_output=True, text=True, check=True)
    return int(result.stdout)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS starts no thread on one core")
def test_the_colour_checks_numpy_starts_no_blas_threads_unless_the_user_asks():
    assert threads_after_numpy() == 1
    assert threads_after_numpy(OPENBLAS_NUM_THREADS="2") == 2
