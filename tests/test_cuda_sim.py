"""The CUDA kernels' own source, compiled for the CPU by csrc/cuda/sim (one host
thread per GPU thread, real barriers, emulated mma.sync), against float64
references: indexing, fragment layouts and synchronisation, without a GPU."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "csrc", "cuda", "sim", "run_sim.sh")
CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="needs g++")
@pytest.mark.skipif(not os.path.exists(os.path.join(CUDA_HOME, "include", "cuda_fp16.h")),
                    reason="needs the CUDA headers")
def test_kernels_in_cpu_simulation(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", SCRIPT, "quick"], capture_output=True, text=True, env=env, timeout=600)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " 0 failures" in proc.stdout, tail
