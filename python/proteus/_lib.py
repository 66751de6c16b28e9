# SPDX-License-Identifier: Apache-2.0
"""_lib.py - libproteus through ctypes: finding the library, the C types of
engine/api/proteus.h, and one call wrapper that turns a failed pq_status
into the matching Python exception with the library's message."""
import ctypes
import ctypes.util
import os

from .errors import error_for

# pq_status values (engine/base/pq_err.h)
PQ_OK = 0


def _candidates():
    env = os.environ.get("PROTEUS_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    # the checkout's build folder, when the package is used from python/
    for build in ("build", "builddir"):
        yield os.path.join(here, "..", "..", build, "engine", "api", "libproteus.so")
    found = ctypes.util.find_library("proteus")
    if found:
        yield found
    yield "libproteus.so"


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("proteus: libproteus.so was not found; set PROTEUS_LIBRARY to its path "
                      "(build/engine/api/libproteus.so in a built checkout). Tried: " + "; ".join(tried))


class EvalSummary(ctypes.Structure):
    """pq_eval_summary."""
    _fields_ = [(n, ctypes.c_int64) for n in ("n_sequences", "n_tokens", "n_masked")] + \
        [(n, ctypes.c_double) for n in (
            "accuracy_reference", "accuracy_quantized", "accuracy_drop_points", "perplexity_reference",
            "perplexity_quantized", "logits_kl_mean", "logits_kl_max", "logits_cosine_mean",
            "embedding_cosine_mean")] + \
        [(n, ctypes.c_int64) for n in ("file_bytes_reference", "file_bytes_quantized",
                                       "weight_bytes_reference", "weight_bytes_quantized")] + \
        [(n, ctypes.c_double) for n in (
            "confidence_reference", "confidence_quantized", "ece_reference", "ece_quantized",
            "top1_error_reference", "top1_error_quantized", "top1_disagreement", "achieved_gops", "peak_gops",
            "utilization_fraction", "threads_busy", "memory_gbps")] + \
        [("utilization_kernel", ctypes.c_char * 64)]


class Array(ctypes.Structure):
    """pq_array."""
    _fields_ = [("n_seqs", ctypes.c_int64), ("width", ctypes.c_int64),
                ("offsets", ctypes.POINTER(ctypes.c_int64)), ("data", ctypes.POINTER(ctypes.c_float))]


class ModelArch(ctypes.Structure):
    """pq_model_arch."""
    _fields_ = [(n, ctypes.c_int) for n in ("num_layers", "embed_dim", "attention_heads", "ffn_dim",
                                           "vocab_size")] + \
        [("layer_norm_eps", ctypes.c_float), ("has_contact_head", ctypes.c_bool), ("has_decoder", ctypes.c_bool)]


class TensorInfo(ctypes.Structure):
    """pq_tensor_info."""
    _fields_ = [("name", ctypes.c_char_p), ("ndim", ctypes.c_int), ("shape", ctypes.c_int64 * 8),
                ("bits", ctypes.c_int), ("granularity", ctypes.c_int), ("group_size", ctypes.c_int),
                ("symmetric", ctypes.c_bool), ("n_scales", ctypes.c_int64)]


P = ctypes.c_void_p
S = ctypes.c_char_p
PP = ctypes.POINTER(ctypes.c_void_p)
CFG = ctypes.c_void_p  # pq_config *, opaque (pq_config_new)
# name: (argument types, result type); a result of None means pq_status
_SIGNATURES = {
    "pq_config_new": ([], CFG, False),
    "pq_config_delete": ([CFG], None, False),
    "pq_config_set": ([CFG, S, S], ctypes.c_int, True),
    "pq_config_add_pattern": ([CFG, ctypes.c_bool, S], ctypes.c_int, True),
    "pq_config_validate": ([CFG], ctypes.c_int, True),
    "pq_config_to_json": ([CFG], P, False),
    "pq_manager_create": ([CFG, PP], ctypes.c_int, True),
    "pq_manager_destroy": ([P], None, False),
    "pq_manager_set_calibration": ([P, S, S], ctypes.c_int, True),
    "pq_quantize_model": ([P, S, S], ctypes.c_int, True),
    "pq_get_quantization_stats": ([P, PP], ctypes.c_int, True),
    "pq_stats_json": ([P, PP], ctypes.c_int, True),
    "pq_export": ([P, S, S, S], ctypes.c_int, True),
    "pq_free": ([P], None, False),
    "pq_model_provenance": ([S, S, PP], ctypes.c_int, True),
    "pq_calibrate": ([CFG, S, S, ctypes.c_int64, PP], ctypes.c_int, True),
    "pq_calibration_update": ([P, CFG, S, S, ctypes.c_int64], ctypes.c_int, True),
    "pq_calibration_load": ([S, PP], ctypes.c_int, True),
    "pq_calibration_save": ([P, S], ctypes.c_int, True),
    "pq_calibration_export": ([P, S, S, ctypes.c_bool, ctypes.c_double, S], ctypes.c_int, True),
    "pq_calibration_json": ([P, S, ctypes.c_bool, PP], ctypes.c_int, True),
    "pq_calibration_free": ([P], None, False),
    "pq_evaluate": ([CFG, S, S, S, ctypes.c_int64, ctypes.c_uint64, ctypes.POINTER(EvalSummary)],
                    ctypes.c_int, True),
    "pq_model_open": ([S, CFG, ctypes.c_int, PP], ctypes.c_int, True),
    "pq_model_close": ([P], None, False),
    "pq_model_info": ([P, ctypes.POINTER(ModelArch)], None, False),
    "pq_model_logits": ([P, S, ctypes.POINTER(Array)], ctypes.c_int, True),
    "pq_model_embed": ([P, S, ctypes.c_int, ctypes.POINTER(Array), ctypes.POINTER(Array)], ctypes.c_int, True),
    "pq_array_free": ([ctypes.POINTER(Array)], None, False),
    "pq_tensors_open": ([S, PP], ctypes.c_int, True),
    "pq_tensors_close": ([P], None, False),
    "pq_tensors_count": ([P], ctypes.c_int64, False),
    "pq_tensor_info_at": ([P, ctypes.c_int64, ctypes.POINTER(TensorInfo)], ctypes.c_int, True),
    "pq_tensor_read_f32": ([P, ctypes.c_int64, P], ctypes.c_int, True),
    "pq_tensor_read_int8": ([P, ctypes.c_int64, P, P, P], ctypes.c_int, True),
    "pq_hardware_check": ([S], ctypes.c_int, True),
    "pq_err_detail": ([], S, False),
    "pq_err_clear": ([], None, False),
    "pq_strerror": ([ctypes.c_int], S, False),
    "pq_status_exit_code": ([ctypes.c_int], ctypes.c_int, False),
}


class _Lib:
    """The loaded library: lib.NAME(...) calls the C function; those that
    return a pq_status raise on failure."""

    def __init__(self):
        self._dll = _load()
        for name, (args, res, checked) in _SIGNATURES.items():
            fn = getattr(self._dll, name)
            fn.argtypes = args
            fn.restype = res
            setattr(self, name, self._checked(fn) if checked else fn)

    def _checked(self, fn):
        def call(*args):
            self._dll.pq_err_clear()
            st = fn(*args)
            if st != PQ_OK:
                detail = (self.pq_err_detail() or b"").decode("utf-8", "replace")
                cls = (self.pq_strerror(st) or b"").decode()
                raise error_for(st, detail or cls, cls, self.pq_status_exit_code(st))
        call.__name__ = fn.__name__
        return call

    def take_string(self, ptr):
        """A library-owned C string as str, freed."""
        try:
            return ctypes.string_at(ptr).decode("utf-8")
        finally:
            self.pq_free(ptr)


_LIB = None


def lib():
    """The library, loaded on first use."""
    global _LIB
    if _LIB is None:
        _LIB = _Lib()
    return _LIB


def enc(s):
    """A path or string argument as bytes (None stays NULL)."""
    return None if s is None else os.fsencode(s) if isinstance(s, os.PathLike) else str(s).encode("utf-8")
