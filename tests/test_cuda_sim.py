"""The CUDA kernels' own source, compiled for the CPU by csrc/cuda/sim (one host
thread or fiber per GPU thread, real barriers, emulated mma.sync with fp32
accumulation), planned and launched through the real planner and launchers,
against float64 references: indexing, fragment layouts and synchronisation,
without a GPU. The default run includes T = 1000 cases at tests/test_cuda.py's
error bounds; the slow runs (LSTM_FUSED_SIM_SLOW=1) add every mode at both of
its T = 1000 shapes, and the real grid (H = 512 on 132 SMs: 128 forward blocks,
32768 simulated threads)."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "csrc", "cuda", "sim", "run_sim.sh")
CUDA_HOME = os.environ.get("CUDA_HOME", "/usr/local/cuda")
SLOW = os.environ.get("LSTM_FUSED_SIM_SLOW") == "1"

pytestmark = [
    pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="needs g++"),
    pytest.mark.skipif(not os.path.exists(os.path.join(CUDA_HOME, "include", "cuda_fp16.h")),
                       reason="needs the CUDA headers"),
]


def run_sim(mode, tmp_path, timeout):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(["bash", SCRIPT, mode], capture_output=True, text=True, env=env,
                          timeout=timeout)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, tail
    assert " 0 failures" in proc.stdout, tail


def test_kernels_in_cpu_simulation(tmp_path):
    run_sim("quick", tmp_path, 600)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="minutes on 2 cores: set LSTM_FUSED_SIM_SLOW=1")
@pytest.mark.parametrize("mode", ["long", "grid"])
def test_kernels_in_cpu_simulation_slow(tmp_path, mode):
    run_sim(mode, tmp_path, 1800)
