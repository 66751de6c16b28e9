# SPDX-License-Identifier: Apache-2.0
"""_blas.py - one set of OpenBLAS kernels for this process and the proteus
commands it starts.

The fp32 products' last bits depend on the kernels OpenBLAS picks when it is
loaded. On a CPU with AVX-512 the proteus binary and libproteus ask for its
SkylakeX kernels (OPENBLAS_CORETYPE, engine/model/blas.c), as a release of
OpenBLAS that does not know the CPU would run its SSE3 ones. Imported before
anything loads OpenBLAS, this does the same for the process (numpy's OpenBLAS
included); when OpenBLAS is already in the process (numpy imported first),
its kernels cannot change, so the variable is set to them and every command
this process starts computes as libproteus does here."""
import ctypes
import os


def _loaded_core():
    """The kernels of the libopenblas.so.0 already in this process (the
    library libproteus loads), or None; RTLD_NOLOAD never loads it."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0", mode=os.RTLD_NOLOAD)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        name = lib.openblas_get_corename()
    except (OSError, AttributeError):
        return None
    return name.decode() if name else None


def _has_avx512():
    """The AVX-512 subsets of OpenBLAS's SkylakeX kernels (as blas.c asks)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags
    except OSError:
        pass
    return False


def choose_core():
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    core = _loaded_core()
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core
    elif _has_avx512():
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
