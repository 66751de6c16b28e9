# SPDX-License-Identifier: Apache-2.0
"""manager.py - QuantizationManager: quantize, calibrate, evaluate and
export on this process, through the library (engine/api/proteus.h)."""
import contextlib
import ctypes
import json
import os
import tempfile

from ._lib import EvalSummary, enc, lib
from .config import QuantizationConfig
from .data import fasta_path
from .errors import ConfigurationError, ProteusError
from .model import ModelInterface, QuantizedModel


class NotAvailableError(ProteusError, NotImplementedError):
    """A call of the design the library does not offer yet."""


def _maybe_path(data, what):
    """fasta_path of data, or None when data is None."""
    return contextlib.nullcontext(None) if data is None else fasta_path(data, what)


def _path_of(model):
    if isinstance(model, (ModelInterface, QuantizedModel)):
        return model.path
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    raise ConfigurationError("expected a ModelInterface, QuantizedModel or path, got %r" % type(model).__name__)


def _config_of(config, default):
    """config as a QuantizationConfig: None gives default, a dict its keys."""
    if config is None:
        return default
    if isinstance(config, dict):
        return QuantizationConfig(**config)
    if isinstance(config, QuantizationConfig):
        return config
    raise ConfigurationError("config: expected a QuantizationConfig or a dict, got %r" % type(config).__name__)


def _as_model(model):
    return model if isinstance(model, ModelInterface) else ModelInterface(path=_path_of(model))


def _run_proteus(proteus, args):
    """Run the proteus program (default find_proteus()) with args; a
    failure raises the exception of its exit status, with its message."""
    import subprocess

    from .distributed import find_proteus
    from .errors import error_for_exit
    cmd = [proteus or find_proteus(), *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("proteus: ")]
        msg = lines[0][len("proteus: "):] if lines else (p.stderr.strip().splitlines() or ["no message"])[-1]
        raise error_for_exit(p.returncode, "%s (exit status %d of: %s)" % (msg, p.returncode, " ".join(cmd)))


class QuantizationManager:
    """Quantizes ESM-2 checkpoints into Proteus HDF5 files on this process.

    quantization_scheme, precision: the defaults of every quantize_model
    (overridden by a config passed to it); allow_accuracy_drop and
    fallback_scheme: quantize_model_with_fallback's budget (a fraction of
    masked-LM accuracy, as the config key: 0.005 = half a percentage point)
    and the scheme its fallback chain tries first ("dynamic" | "static" |
    "weight-only"; the config key fallback_scheme). output_dir: where outputs go when quantize_model is
    given no `out` (default: the current directory). Further keyword
    arguments are QuantizationConfig keys."""

    def __init__(self, quantization_scheme="dynamic", precision="int8", fallback_scheme=None,
                 allow_accuracy_drop=None, output_dir=None, **config):
        self.config = QuantizationConfig(scheme=quantization_scheme, precision=precision, **config)
        self.fallback_scheme = fallback_scheme
        self.allow_accuracy_drop = allow_accuracy_drop
        self.output_dir = output_dir
        self._mgr = None
        self._calib = None
        self._calib_model = None
        self.last_evaluation = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def close(self):
        """Release the library objects (statistics are then gone)."""
        if self._mgr is not None:
            lib().pq_manager_destroy(self._mgr)
            self._mgr = None
        if self._calib is not None:
            lib().pq_calibration_free(self._calib)
            self._calib = None

    # ---- quantization ----

    def _out_path(self, model, config, out):
        if out is not None:
            return os.fspath(out)
        v = config.resolved()
        name = getattr(model, "name", None) or os.path.splitext(os.path.basename(_path_of(model)))[0]
        return os.path.join(self.output_dir or os.getcwd(), "%s_%s_%s.h5" % (name, v["scheme"], v["precision"]))

    def quantize_model(self, model, config=None, calibration_data=None, out=None):
        """Quantize model (a ModelInterface or a checkpoint path) into one
        Proteus HDF5 file and return it as a QuantizedModel. config: a
        QuantizationConfig or a dict of its keys (default: the manager's). calibration_data (a
        FASTA path or a list of sequences) feeds the static scheme, GPTQ and
        SmoothQuant; without it they use the statistics of calibrate_model
        when there are some (static), else the bundled sample. Nothing is
        written at `out` unless the whole run succeeds."""
        model = _as_model(model)
        config = _config_of(config, self.config)
        out = self._out_path(model, config, out)
        v = config.resolved()
        if calibration_data is not None and not _uses_data(config):
            raise ConfigurationError("calibration_data is used by the static scheme, SmoothQuant and GPTQ; this "
                                     "configuration (scheme %s, method %s) has no use for it"
                                     % (v["scheme"], v["method"]))
        with config.to_c() as c:
            mgr = ctypes.c_void_p()
            lib().pq_manager_create(c.ptr, ctypes.byref(mgr))
        try:
            with tempfile.TemporaryDirectory(prefix="proteus_") as tmp:
                store = None
                if calibration_data is None and self._calib is not None and v["scheme"] == "static" \
                        and v["method"] != "gptq":
                    store = os.path.join(tmp, "calib.h5")
                    lib().pq_calibration_save(self._calib, enc(store))
                with _maybe_fasta(calibration_data) as data:
                    lib().pq_manager_set_calibration(mgr, enc(store), enc(data))
                    lib().pq_quantize_model(mgr, enc(model.path), enc(out))
        except BaseException:
            lib().pq_manager_destroy(mgr)
            raise
        if self._mgr is not None:
            lib().pq_manager_destroy(self._mgr)
        self._mgr = mgr
        return QuantizedModel(out, source=model)

    def get_quantization_stats(self):
        """The last quantize_model's statistics: totals and one entry per
        tensor (name, action, shape, bytes, SQNR, ...), as a dict."""
        if self._mgr is None:
            raise ConfigurationError("no quantization has run on this manager yet")
        stats, text = ctypes.c_void_p(), ctypes.c_void_p()
        lib().pq_get_quantization_stats(self._mgr, ctypes.byref(stats))
        lib().pq_stats_json(stats, ctypes.byref(text))
        return json.loads(lib().take_string(text))

    def export_quantized_model(self, model, format="hdf5", path=None):
        """Write model (a QuantizedModel or a Proteus HDF5 path) in `format`
        through the library's pq_export (its formats; "hdf5": a validated
        fresh copy) at path (default: beside the model, "<stem>_<format>",
        with ".h5" for hdf5). Returns the path written."""
        src = _path_of(model)
        if path is None:
            path = "%s_%s%s" % (os.path.splitext(src)[0], format, ".h5" if format == "hdf5" else "")
        lib().pq_export(self._mgr, enc(src), enc(path), enc(format))
        return os.fspath(path)

    def evaluate_quantization(self, model, test_data, reference=None, max_seqs=400, seed=0):
        """A quantized model against its float reference (default: the
        checkpoint it was quantized from) on test_data (a FASTA path or a
        list of sequences): `proteus evaluate`'s numbers as a dict
        (accuracy_reference, accuracy_quantized (fractions),
        accuracy_drop_points, logits_kl_mean, logits_cosine_mean,
        embedding_cosine_mean, confidence_*, ece_*, top1_error_*,
        top1_disagreement, the utilization figures, ...)."""
        if reference is None:
            reference = getattr(model, "source", None)
        if reference is None:
            raise ConfigurationError("evaluate_quantization: %s has no known source checkpoint; give reference="
                                     % _path_of(model))
        s = EvalSummary()
        with self.config.to_c() as c, fasta_path(test_data, "test_data") as fasta:
            lib().pq_evaluate(c.ptr, enc(_path_of(model)), enc(_path_of(reference)), enc(fasta),
                              int(max_seqs or 0), int(seed), ctypes.byref(s))
        self.last_evaluation = {name: getattr(s, name) for name, _ in EvalSummary._fields_}
        self.last_evaluation["utilization_kernel"] = s.utilization_kernel.decode()
        return dict(self.last_evaluation)

    def quantize_model_with_fallback(self, model, test_data=None, config=None, calibration_data=None, out=None,
                                     max_seqs=400, max_attempts=None, keep_best=False, proteus=None):
        """quantize_model with Proteus's fallback chain: `proteus quantize`
        with the config keys allow_accuracy_drop (the manager's: a fraction
        of masked-LM accuracy, 0.01 = one percentage point) and
        fallback_scheme (the manager's: a scheme, "dynamic", "static" or
        "weight-only", or None), evaluated on test_data (a FASTA path or a
        list of sequences; None: the bundled sample), first max_seqs
        sequences. The attempts go in the chain's order (the requested
        configuration, the fallback scheme, int4 -> int8, then the most
        sensitive Linear kept float, one per attempt; README "Fallback"),
        at most max_attempts (None: no limit). Returns the accepted
        QuantizedModel with .fallback_trail (every attempt, as
        /provenance fallback_trail in docs/FORMAT.md) and .evaluation (the
        accepted attempt's entry). When none is within the budget:
        AccuracyError naming the best, with no file at `out` unless
        keep_best writes the best there. proteus: the program
        (find_proteus())."""
        if self.allow_accuracy_drop is None:
            raise ConfigurationError("quantize_model_with_fallback needs allow_accuracy_drop (a fraction of "
                                     "masked-LM accuracy: 0.01 = one percentage point)")
        if self.fallback_scheme is not None and self.fallback_scheme not in ("dynamic", "static", "weight-only"):
            raise ConfigurationError("fallback_scheme %r is not a scheme (dynamic, static, weight-only)"
                                     % (self.fallback_scheme,))
        model = _as_model(model)
        config = _config_of(config, self.config)
        keys = {"allow_accuracy_drop": self.allow_accuracy_drop}
        if self.fallback_scheme is not None:
            keys["fallback_scheme"] = self.fallback_scheme
        config = config.replace(**keys)
        out = self._out_path(model, config, out)
        with tempfile.TemporaryDirectory(prefix="proteus_") as tmp, \
                _maybe_path(test_data, "test_data") as ev, _maybe_path(calibration_data, "calibration_data") as cd:
            cfg = os.path.join(tmp, "config.json")
            config.as_json_file(cfg)
            args = ["quantize", "--model", model.path, "--config", cfg, "--out", out, "-q"]
            args += ["--eval-data", ev] if ev else []
            args += ["--eval-max-seqs", str(int(max_seqs))] if max_seqs else []
            args += ["--calibration-data", cd] if cd else []
            args += ["--fallback-max-attempts", str(int(max_attempts))] if max_attempts else []
            args += ["--keep-best"] if keep_best else []
            _run_proteus(proteus, args)
        text = ctypes.c_void_p()
        lib().pq_model_provenance(enc(out), enc("fallback_trail"), ctypes.byref(text))
        q = QuantizedModel(out, source=model)
        q.fallback_trail = json.loads(lib().take_string(text))
        q.evaluation = next(a for a in q.fallback_trail if a["written"])
        return q

    def optimize_quantization(self, model, constraints, calibration_data=None, eval_data=None, out=None,
                              options=(), proteus=None):
        """`proteus optimize`: choose a recipe per Linear weight under
        constraints, a dict with any of max_size (bytes, or a string such as
        "3.5M"), max_accuracy_drop (percentage points of masked-LM accuracy;
        max_drop also works) and min_speedup (times fp32's tokens/s).
        calibration_data, eval_data: FASTA paths or lists of sequences (the
        bundled samples when None). out: the recipe file (a new temporary
        file when None). options: more `proteus optimize` arguments
        (["--eval-seqs", "50"]); proteus: the program (find_proteus()).
        Returns the command's --json result (sensitivity, front, chosen);
        result["chosen"]["recipe_file"] is for QuantizationConfig(recipe=...).
        No recipe meeting them: AccuracyError naming what was not met."""
        known = {"max_size": "--max-size", "max_accuracy_drop": "--max-drop", "max_drop": "--max-drop",
                 "min_speedup": "--min-speedup"}
        if not isinstance(constraints, dict) or not constraints:
            raise ConfigurationError("optimize_quantization: constraints must be a non-empty dict of %s"
                                     % ", ".join(sorted(known)))
        args = []
        for k, v in constraints.items():
            if k not in known:
                raise ConfigurationError("optimize_quantization: unknown constraint %r (known: %s)"
                                         % (k, ", ".join(sorted(known))))
            args += [known[k], str(v)]
        model = _as_model(model)
        made = out is None
        if made:
            fd, out = tempfile.mkstemp(prefix="proteus_", suffix=".recipe.json")
            os.close(fd)
            os.unlink(out)
        with tempfile.TemporaryDirectory(prefix="proteus_") as tmp, \
                _maybe_path(calibration_data, "calibration_data") as calib, _maybe_path(eval_data, "eval_data") as ev:
            js = os.path.join(tmp, "optimize.json")
            args = ["optimize", "--model", model.path, "--out", out, "--json", js, "--tmp-dir", tmp, "-q", *args,
                    *[str(a) for a in options]]
            args += ["--calibration-data", calib] if calib else []
            args += ["--eval-data", ev] if ev else []
            _run_proteus(proteus, args)
            with open(js) as f:
                return json.load(f)

    # ---- calibration ----

    def calibrate_model(self, model, calibration_data, max_seqs=None):
        """Collect activation statistics of model on calibration_data (a
        FASTA path or a list of sequences), as `proteus calibrate`; kept for
        the next static quantize_model. Returns get_calibration_stats()."""
        model = _as_model(model)
        ptr = ctypes.c_void_p()
        with self.config.to_c() as c, fasta_path(calibration_data, "calibration_data") as fasta:
            lib().pq_calibrate(c.ptr, enc(model.path), enc(fasta), int(max_seqs or 0), ctypes.byref(ptr))
        if self._calib is not None:
            lib().pq_calibration_free(self._calib)
        self._calib, self._calib_model = ptr, model
        return self.get_calibration_stats()

    def _need_calib(self):
        if self._calib is None:
            raise ConfigurationError("no calibration statistics on this manager yet: run calibrate_model")

    def update_calibration(self, model, new_data, max_seqs=None):
        """Add the statistics of new_data to the current ones, as
        `proteus calibrate --update` (the same model, else
        CalibrationError). Returns get_calibration_stats()."""
        self._need_calib()
        model = _as_model(model)
        with self.config.to_c() as c, fasta_path(new_data, "new_data") as fasta:
            try:
                lib().pq_calibration_update(self._calib, c.ptr, enc(model.path), enc(fasta), int(max_seqs or 0))
            except ProteusError:
                # the statistics may hold part of the new counts: they are no longer trusted
                lib().pq_calibration_free(self._calib)
                self._calib = None
                raise
        return self.get_calibration_stats()

    def _method(self, method):
        return method or self.config.resolved()["calibration_method"]

    def get_calibration_stats(self, method=None):
        """The statistics per calibration site (min, max, count, the chosen
        range, scale, saturation, KL, MSE for `method`, default the
        config's calibration_method) and their provenance, as a dict."""
        self._need_calib()
        text = ctypes.c_void_p()
        lib().pq_calibration_json(self._calib, enc(self._method(method)),
                                  bool(self.config.resolved()["symmetric"]), ctypes.byref(text))
        return json.loads(lib().take_string(text))

    def export_calibration_params(self, format="json", path=None, method=None, percentile=99.99):
        """The calibration ranges in `format`: json, tensorrt, onnxruntime, or
        hdf5 (the statistics themselves, a `proteus calibrate` store). With
        path, written there (nothing appears unless complete) and path is
        returned; without, the text is returned (not for hdf5)."""
        self._need_calib()
        if path is None and format == "hdf5":
            raise ConfigurationError("export_calibration_params: format hdf5 needs path=")
        with tempfile.TemporaryDirectory(prefix="proteus_") as tmp:
            target = os.fspath(path) if path is not None else os.path.join(tmp, "params")
            lib().pq_calibration_export(self._calib, enc(format), enc(self._method(method)),
                                        bool(self.config.resolved()["symmetric"]), float(percentile), enc(target))
            if path is not None:
                return target
            with open(target) as f:
                return f.read()


def _uses_data(config):
    v = config.resolved()
    return v["scheme"] == "static" or v["method"] == "gptq" or float(v.get("smoothquant_alpha", 0)) > 0


class _maybe_fasta:
    """fasta_path(data), or None when data is None."""

    def __init__(self, data):
        self._cm = None if data is None else fasta_path(data, "calibration_data")

    def __enter__(self):
        return None if self._cm is None else self._cm.__enter__()

    def __exit__(self, *exc):
        return None if self._cm is None else self._cm.__exit__(*exc)
