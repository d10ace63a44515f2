"""Build of lstm_fused._C: the C++ CPU kernels always, the CUDA kernels when a
CUDA toolkit is found and torch is a CUDA build (whether or not a GPU is visible).

Environment: LSTM_FUSED_FORCE_CPU=1 skips CUDA; CUDA_HOME (or CUDA_PATH) names the
toolkit; TORCH_CUDA_ARCH_LIST and MAX_JOBS are honoured as torch defines them.
"""
import glob
import os
import platform
import shutil
import subprocess

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _toolkit_root():
    """The CUDA toolkit root, or None. An explicit CUDA_HOME/CUDA_PATH wins; else
    /usr/local/cuda; else the directory above the real (symlink-resolved) nvcc."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.path.exists(os.path.join(root, "bin", "nvcc")):
            return root
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc:
        return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    return None


# torch.utils.cpp_extension reads CUDA_HOME when it is imported: set it first,
# because its own guess from `which nvcc` can land on /usr/local instead of the toolkit.
CUDA_ROOT = _toolkit_root()
if CUDA_ROOT:
    os.environ["CUDA_HOME"] = CUDA_ROOT

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

FORCE_CPU = os.environ.get("LSTM_FUSED_FORCE_CPU", "0") not in ("", "0")
WITH_CUDA = not FORCE_CPU and torch.version.cuda is not None and CUDA_ROOT is not None
if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    # With no GPU to ask, torch would build for every architecture it knows.
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"


def _x86_flags():
    """AVX2/FMA for the vectorised pointwise code when the build machine has them;
    CPU_CAPABILITY keeps at::vec's inline code in its own namespace."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return []
    if all(f" {f}" in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq", "fma")):
        # AVX512_BF16 rounds float to bfloat16 in one instruction (the cell
        # update's stores), where the generic sequence takes eight.
        bf16 = ["-mavx512bf16"] if " avx512_bf16" in flags else []
        return ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c", *bf16,
                "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
    if all(f" {f}" in flags for f in ("avx2", "fma", "f16c")):
        return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return []


def _openmp_flags():
    """at::parallel_for runs its body on one thread unless the including code is
    built with OpenMP, when torch's own backend is OpenMP. The extension then
    shares the libgomp torch has loaded (same soname), so one thread pool."""
    if platform.system() != "Linux" or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return []
    # clang's -fopenmp links LLVM's runtime: a second thread pool beside torch's libgomp
    cxx = os.environ.get("CXX", "c++")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [] if "clang" in version.lower() else ["-fopenmp"]


def _write_build_info():
    with open(os.path.join(ROOT, "lstm_fused", "_build_info.py"), "w") as f:
        f.write("# Written by setup.py at build time.\n")
        f.write(f"TORCH_VERSION = {torch.__version__!r}\n")
        f.write(f"WITH_CUDA = {WITH_CUDA!r}\n")


def _sources(pattern):
    return sorted(glob.glob(os.path.join("csrc", pattern)))


def extension():
    version_define = f'-DLSTM_FUSED_TORCH_VERSION="{torch.__version__}"'
    link = _openmp_flags()
    cxx = ["-O3", version_define] + _x86_flags() + link
    sources = _sources("*.cpp") + _sources("cpu/*.cpp")
    if not WITH_CUDA:
        return CppExtension("lstm_fused._C", sources, extra_compile_args={"cxx": cxx},
                            extra_link_args=link)
    sources = [s for s in sources if not s.endswith("cuda_absent.cpp")]
    sources += _sources("cuda/*.cpp") + _sources("cuda/*.cu")
    include_dirs = []
    # ATen's CUDA headers want cusparse.h, which some toolkits leave to the pip package.
    for site in {os.path.dirname(os.path.dirname(torch.__file__))}:
        pip_include = os.path.join(site, "nvidia", "cu13", "include")
        if os.path.isdir(pip_include):
            include_dirs.append(pip_include)
    nvcc = ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "-std=c++17", version_define]
    return CUDAExtension(
        "lstm_fused._C",
        sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx + ["-DLSTM_FUSED_WITH_CUDA"], "nvcc": nvcc},
        extra_link_args=link,
    )


_write_build_info()
setup(
    packages=find_packages(include=["lstm_fused", "lstm_fused.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
