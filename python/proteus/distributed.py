# SPDX-License-Identifier: Apache-2.0
"""distributed.py - DistributedQuantizationManager: the same quantization
as QuantizationManager, run as one MPI job of the `proteus` program
(`mpirun -n num_workers proteus quantize ...`); the output is byte-identical
to a one-process run."""
import os
import shutil
import subprocess
import tempfile
import warnings

from ._lib import enc, lib
from .errors import ConfigurationError, HardwareCompatibilityError, ProteusError, error_for_exit
from .manager import QuantizationManager, _as_model, _config_of, _maybe_fasta, _uses_data
from .model import QuantizedModel


def find_proteus():
    """The `proteus` program: $PROTEUS_BIN, the checkout's build/cli/proteus
    when the package runs from python/, or `proteus` on PATH."""
    env = os.environ.get("PROTEUS_BIN")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for build in ("build", "builddir"):
        p = os.path.normpath(os.path.join(here, "..", "..", build, "cli", "proteus"))
        if os.access(p, os.X_OK):
            return p
    p = shutil.which("proteus")
    if p:
        return p
    raise ConfigurationError("the proteus program was not found: set PROTEUS_BIN or put it on PATH")


class DistributedQuantizationManager(QuantizationManager):
    """Runs quantize_model as `mpirun -n num_workers proteus quantize` (one
    SPMD job; every rank, rank 0 included, quantizes its share; rank 0
    writes the one file). Other calls (calibrate, evaluate, export) run on
    this process as in QuantizationManager.

    hardware_targets: the kernel contexts the job may use (cpu, ref, avx2,
    avx512, cuda). A Proteus job runs one context on every rank, and every
    context gives the same integers, so the job runs the first target this
    machine serves; each target it cannot serve (cuda: weight quantization
    runs on CPU kernels; avx512 on a CPU without it) is dropped with a
    warning giving the library's reason, and listed in skipped_targets.
    None served: HardwareCompatibilityError naming each target and why.
    mpirun: the launcher command (a list, default ["mpirun"]); proteus: the
    program (default find_proteus()); mpi_args: extra launcher arguments."""

    def __init__(self, num_workers=4, hardware_targets=("cpu",), mpirun=None, proteus=None, mpi_args=(),
                 **manager_args):
        super().__init__(**manager_args)
        if int(num_workers) < 1:
            raise ConfigurationError("num_workers must be at least 1, not %r" % (num_workers,))
        self.num_workers = int(num_workers)
        self.mpirun = list(mpirun or ["mpirun"])
        self.proteus = proteus
        self.mpi_args = list(mpi_args)
        self.hardware_targets = list(hardware_targets)
        self.skipped_targets = {}
        self.hardware_target = None
        for t in self.hardware_targets:
            try:
                lib().pq_hardware_check(enc(t))
            except ProteusError as e:
                self.skipped_targets[t] = e.message
                warnings.warn("proteus: hardware target %s is not served here and is skipped: %s" % (t, e.message))
                continue
            if self.hardware_target is None:
                self.hardware_target = t
        if self.hardware_target is None:
            raise HardwareCompatibilityError("none of the hardware targets %s can run here: %s"
                                             % (self.hardware_targets, "; ".join(
                                                 "%s: %s" % kv for kv in self.skipped_targets.items())))
        self.config = self.config.replace(hardware_target=self.hardware_target)
        self.last_run = None

    def command(self, model_path, out, config_file, calibration_file=None):
        """The launcher command quantize_model runs."""
        cmd = [*self.mpirun, "-n", str(self.num_workers), *self.mpi_args, self.proteus or find_proteus(),
               "quantize", "--model", model_path, "--out", out, "--config", config_file, "--quiet"]
        if calibration_file:
            cmd += ["--calibration-data", calibration_file]
        return cmd

    def quantize_model(self, model, config=None, calibration_data=None, out=None):
        """As QuantizationManager.quantize_model, run by mpirun. A failed job
        raises the exception of its exit status with the program's message
        (the line "proteus: <class>: <detail>" it printed)."""
        model = _as_model(model)
        config = _config_of(config, self.config).replace(hardware_target=self.hardware_target)
        out = self._out_path(model, config, out)
        if calibration_data is not None and not _uses_data(config):
            raise ConfigurationError("calibration_data is used by the static scheme, SmoothQuant and GPTQ only")
        with tempfile.TemporaryDirectory(prefix="proteus_") as tmp, _maybe_fasta(calibration_data) as data:
            cfg_file = os.path.join(tmp, "config.json")
            config.as_json_file(cfg_file)
            cmd = self.command(model.path, out, cfg_file, data)
            p = subprocess.run(cmd, capture_output=True, text=True)
        self.last_run = {"command": cmd, "returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
        if p.returncode != 0:
            lines = [ln for ln in p.stderr.splitlines() if ln.startswith("proteus: ")]
            msg = lines[0][len("proteus: "):] if lines else (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise error_for_exit(p.returncode, "%s (exit status %d of: %s)" % (msg, p.returncode, " ".join(cmd)))
        return QuantizedModel(out, source=model)

    def get_quantization_stats(self):
        """Not kept for a run in other processes: raises ProteusError; the
        file's metrics are in `proteus inspect OUT` and last_run['stdout']."""
        raise ProteusError("get_quantization_stats: the distributed run's statistics stay in its output file "
                           "(proteus inspect shows them) and its printed summary (last_run['stdout'])")
