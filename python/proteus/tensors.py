# SPDX-License-Identifier: Apache-2.0
"""tensors.py - the tensors of a Proteus HDF5 model through the library's
one reader: fp32 (dequantized as the engine does) or an int8 tensor's codes
and scales."""
import ctypes

import numpy as np

from ._lib import TensorInfo, enc, lib

GRANULARITY = ("tensor", "channel", "group")


class Tensors:
    """Open a model file; use as a context manager or close()."""

    def __init__(self, path):
        self._ptr = ctypes.c_void_p()
        lib().pq_tensors_open(enc(path), ctypes.byref(self._ptr))
        self.info = {}
        self._index = {}
        for i in range(lib().pq_tensors_count(self._ptr)):
            t = TensorInfo()
            lib().pq_tensor_info_at(self._ptr, i, ctypes.byref(t))
            name = t.name.decode("utf-8")
            self._index[name] = i
            self.info[name] = {
                "shape": tuple(t.shape[d] for d in range(t.ndim)), "bits": t.bits,
                "granularity": GRANULARITY[t.granularity] if t.bits else None,
                "group_size": t.group_size, "symmetric": bool(t.symmetric), "n_scales": t.n_scales}

    def close(self):
        if self._ptr:
            lib().pq_tensors_close(self._ptr)
            self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def f32(self, name):
        """Tensor `name` as float32 (quantized ones dequantized)."""
        out = np.empty(self.info[name]["shape"], dtype=np.float32)
        lib().pq_tensor_read_f32(self._ptr, self._index[name], out.ctypes.data_as(ctypes.c_void_p))
        return out

    def int8(self, name):
        """An int8 tensor's codes [out, in], scales and zero points."""
        info = self.info[name]
        codes = np.empty(info["shape"], dtype=np.int8)
        scale = np.empty(info["n_scales"], dtype=np.float32)
        zp = np.empty(info["n_scales"], dtype=np.int32)
        lib().pq_tensor_read_int8(self._ptr, self._index[name], codes.ctypes.data_as(ctypes.c_void_p),
                                  scale.ctypes.data_as(ctypes.c_void_p), zp.ctypes.data_as(ctypes.c_void_p))
        return codes, scale, zp
