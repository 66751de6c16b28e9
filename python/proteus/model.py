# SPDX-License-Identifier: Apache-2.0
"""model.py - models as the package hands them around: ModelInterface (a
checkpoint the user names) and QuantizedModel (a Proteus HDF5 file), both
runnable on the C engine (embed, logits)."""
import ctypes
import os

import numpy as np

from ._lib import Array, ModelArch, enc, lib
from .data import fasta_path
from .errors import ConfigurationError


MODES = ("auto", "dequant", "weight-only")


class _Engine:
    """A model loaded by the library (pq_model), opened on first use.
    mode: how quantized Linears run: "auto" (integer kernels), "dequant"
    (fp32 on the dequantized weights) or "weight-only"."""

    def __init__(self, path, config=None, mode="auto"):
        if mode not in MODES:
            raise ConfigurationError("mode %r is unknown (%s)" % (mode, ", ".join(MODES)))
        self.path = os.fspath(path)
        self.config = config
        self.mode = mode
        self._ptr = None

    def _open(self):
        if self._ptr is None:
            ptr = ctypes.c_void_p()
            if self.config is not None:
                with self.config.to_c() as c:
                    lib().pq_model_open(enc(self.path), c.ptr, MODES.index(self.mode), ctypes.byref(ptr))
            else:
                lib().pq_model_open(enc(self.path), None, MODES.index(self.mode), ctypes.byref(ptr))
            self._ptr = ptr
        return self._ptr

    def close(self):
        """Release the loaded weights (the next call loads them again)."""
        if self._ptr is not None:
            lib().pq_model_close(self._ptr)
            self._ptr = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def arch(self):
        """The architecture: dict of num_layers, embed_dim, attention_heads,
        ffn_dim, vocab_size, layer_norm_eps, has_contact_head, has_decoder."""
        a = ModelArch()
        lib().pq_model_info(self._open(), ctypes.byref(a))
        return {name: getattr(a, name) for name, _ in ModelArch._fields_}

    @staticmethod
    def _rows(arr):
        """A pq_array as a list of per-sequence numpy arrays (copied); frees it."""
        try:
            n, w = arr.n_seqs, arr.width
            off = np.ctypeslib.as_array(arr.offsets, shape=(n + 1,)).copy()
            total = int(off[-1]) * w
            flat = np.ctypeslib.as_array(arr.data, shape=(max(total, 1),))[:total].copy().reshape(-1, w)
            return [flat[off[i]:off[i + 1]] for i in range(n)]
        finally:
            lib().pq_array_free(ctypes.byref(arr))

    def logits(self, seqs):
        """Logits of each sequence (a list of strings or a FASTA path; longer
        than 1022 residues cropped): a list of float32 arrays [T, 33], T the
        residues plus <cls> and <eos>, as fair-esm's model(tokens)["logits"]."""
        arr = Array()
        with fasta_path(seqs) as path:
            lib().pq_model_logits(self._open(), enc(path), ctypes.byref(arr))
        return self._rows(arr)

    def embed(self, seqs, layer=-1, per_residue=False):
        """Mean-pooled representation after `layer` (0 = embeddings, -1 =
        after the final LayerNorm) of each sequence: float32 [n, D]; with
        per_residue also the list of per-residue arrays [residues, D]."""
        mean, rows = Array(), Array()
        with fasta_path(seqs) as path:
            lib().pq_model_embed(self._open(), enc(path), int(layer), ctypes.byref(mean),
                                 ctypes.byref(rows) if per_residue else None)
        means = np.stack(self._rows(mean))[:, 0, :]
        return (means, self._rows(rows)) if per_residue else means


class ModelInterface(_Engine):
    """A float ESM-2 checkpoint: a safetensors file, its index.json or a
    folder of shards, or a Proteus HDF5 model. name labels it (the outputs
    are named after it); Proteus never downloads: path must exist.
    quantization_manager, when given, is the manager quantize() uses."""

    def __init__(self, name=None, path=None, quantization_manager=None, config=None, mode="auto"):
        if path is None:
            raise ConfigurationError("ModelInterface(name=%r): give path= the checkpoint (safetensors file, "
                                     "index.json or folder); Proteus does not download models" % (name,))
        if not os.path.exists(path):
            raise ConfigurationError("ModelInterface: %s: no such file or folder" % os.fspath(path))
        super().__init__(path, config, mode)
        self.name = name or os.path.splitext(os.path.basename(os.path.normpath(self.path)))[0]
        self.quantization_manager = quantization_manager

    def quantize(self, config=None, calibration_data=None, out=None):
        """quantize_model of this model's manager."""
        if self.quantization_manager is None:
            raise ConfigurationError("ModelInterface %s has no quantization_manager" % self.name)
        return self.quantization_manager.quantize_model(self, config=config, calibration_data=calibration_data,
                                                        out=out)

    def __repr__(self):
        return "ModelInterface(name=%r, path=%r)" % (self.name, self.path)


class QuantizedModel(_Engine):
    """A Proteus HDF5 model: embed/logits run its integer kernels in the C
    engine; to_torch() rebuilds it in PyTorch. source: the ModelInterface it
    was quantized from (None when opened from a file); evaluation: the
    evaluate_quantization numbers when a fallback run measured them."""

    def __init__(self, path, source=None, config=None, mode="auto"):
        if not os.path.isfile(path):
            raise ConfigurationError("QuantizedModel: %s: no such file" % os.fspath(path))
        super().__init__(path, config, mode)
        self.source = source
        self.name = os.path.splitext(os.path.basename(self.path))[0]
        self.evaluation = None
        self.fallback_trail = None  # quantize_model_with_fallback: every attempt

    def to_torch(self, flavor="hf", dynamic_int8=False):
        """The model in PyTorch with the weights dequantized as the engine
        dequantizes them: flavor "hf" gives transformers' EsmForMaskedLM
        (config built from the file), "fair-esm" fair-esm's ESM2. With
        dynamic_int8, every int8 Linear with one scale per tensor or per
        output channel becomes a torch dynamic-quantized Linear holding the
        file's very codes and scales (int4 and grouped ones stay float;
        their names are in the model's proteus_float_linears)."""
        from .torch_export import to_torch
        return to_torch(self, flavor=flavor, dynamic_int8=dynamic_int8)

    def __repr__(self):
        return "QuantizedModel(%r)" % self.path
