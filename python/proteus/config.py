# SPDX-License-Identifier: Apache-2.0
"""config.py - QuantizationConfig: the keys of Proteus's configuration (the
JSON keys of `proteus quantize --config`), checked by the library itself."""
import json

from ._lib import enc, lib

# keys in the order the design lists them, then the rest the library knows
_KEYS = ("scheme", "precision", "per_channel", "symmetric", "calibration_method", "hardware_target",
         "optimize_memory", "enable_fusion", "threading", "threads", "group_size", "method",
         "smoothquant_alpha", "nan_policy", "float_dtype", "gptq_damp", "gptq_block_size", "act_order",
         "recipe", "allow_accuracy_drop", "fallback_scheme")


def _text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class QuantizationConfig:
    """A quantization configuration. Every argument left None keeps
    Proteus's default (dynamic, int8, per tensor, symmetric, minmax, cpu,
    optimize_memory, enable_fusion, threading). Values are checked by the
    library when the config is built: a bad one raises ConfigurationError
    naming the key and the values allowed.

    scheme: "dynamic" | "static"; precision: "int8" | "int4";
    per_channel, symmetric: bool; calibration_method: "minmax" | "entropy" |
    "percentile" | "mse"; hardware_target: "cpu" | "ref" | "avx2" | "avx512"
    | "cuda"; optimize_memory, enable_fusion, threading: bool; further keys
    (group_size, method ("rtn" | "gptq"), smoothquant_alpha, threads,
    nan_policy, float_dtype, gptq_damp, gptq_block_size, act_order, recipe:
    the path of a recipe file of per-tensor precisions, docs/FORMAT.md;
    allow_accuracy_drop, fallback_scheme: the fallback chain's, read by
    QuantizationManager.quantize_model_with_fallback) as keyword
    arguments; include / exclude: lists of name patterns."""

    def __init__(self, scheme=None, precision=None, per_channel=None, symmetric=None, calibration_method=None,
                 hardware_target=None, optimize_memory=None, enable_fusion=None, threading=None,
                 include=None, exclude=None, **more):
        unknown = sorted(set(more) - set(_KEYS))
        if unknown:
            from .errors import ConfigurationError
            raise ConfigurationError("unknown configuration key%s %s (known: %s, include, exclude)"
                                     % ("s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(_KEYS)))
        given = dict(scheme=scheme, precision=precision, per_channel=per_channel, symmetric=symmetric,
                     calibration_method=calibration_method, hardware_target=hardware_target,
                     optimize_memory=optimize_memory, enable_fusion=enable_fusion, threading=threading, **more)
        self.values = {k: given[k] for k in _KEYS if given.get(k) is not None}
        self.include = list(include or [])
        self.exclude = list(exclude or [])
        self.to_c().close()  # validate now, so a bad value fails where it is written

    def to_c(self):
        """A _CConfig holding the library's pq_config (close() it)."""
        c = _CConfig()
        try:
            for k, v in self.values.items():
                lib().pq_config_set(c.ptr, enc(k), enc(_text(v)))
            for inc, pats in ((True, self.include), (False, self.exclude)):
                for p in pats:
                    lib().pq_config_add_pattern(c.ptr, inc, enc(p))
            lib().pq_config_validate(c.ptr)
        except BaseException:
            c.close()
            raise
        return c

    def resolved(self):
        """Every key with its value after defaults, as the library resolves
        them (the JSON a quantized file records as its config)."""
        with self.to_c() as c:
            return json.loads(lib().take_string(lib().pq_config_to_json(c.ptr)))

    def as_json_file(self, path):
        """Write the given keys as a `proteus quantize --config` file."""
        d = dict(self.values)
        if self.include:
            d["include"] = self.include
        if self.exclude:
            d["exclude"] = self.exclude
        with open(path, "w") as f:
            json.dump(d, f)

    def replace(self, **changes):
        """A copy with some keys changed."""
        d = dict(self.values, include=self.include, exclude=self.exclude)
        d.update(changes)
        return QuantizationConfig(**d)

    def __repr__(self):
        return "QuantizationConfig(%s)" % ", ".join("%s=%r" % kv for kv in self.values.items())


class _CConfig:
    def __init__(self):
        self.ptr = lib().pq_config_new()
        if not self.ptr:
            raise MemoryError("pq_config_new")

    def close(self):
        if self.ptr:
            lib().pq_config_delete(self.ptr)
            self.ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
