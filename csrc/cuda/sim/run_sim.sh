#!/bin/bash
# Builds and runs the CPU simulation of the CUDA kernels (no GPU needed).
#   csrc/cuda/sim/run_sim.sh [quick|full|long|grid|plans] [--tsan]
# long: T = 1000 at the GPU tests' bounds; grid: the real 128-block grid (minutes).
# --tsan builds with ThreadSanitizer: a missing barrier shows up as a data race.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode="${1:-quick}"
cuda_home="${CUDA_HOME:-/usr/local/cuda}"
flags=(-std=c++20 -O1 -g -pthread -I"$cuda_home/include" -Wall -Wno-unknown-pragmas)
out="${TMPDIR:-/tmp}/lstm_fused_sim"
if [[ "${2:-}" == "--tsan" ]]; then
  flags+=(-fsanitize=thread)
  out="${out}_tsan"
fi
${CXX:-g++} "${flags[@]}" -x c++ "$here/sim_main.cpp" -o "$out"
exec "$out" "$mode"
