# SPDX-License-Identifier: Apache-2.0
"""test_py_calibrate.py - the package's calibration calls against
`proteus calibrate`: calibrate_model gives the statistics the command
stores (compared through the command's own --export json), update_calibration
(A, then B) the same as calibrating A + B at once, export_calibration_params
the command's tensorrt / onnxruntime / json text and a store the command
reads; errors raise the class of their status with the library's message."""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkgtest import CALIB, MODEL, fasta_records, path, run, write_fasta  # noqa: E402

import proteus  # noqa: E402

A = fasta_records(CALIB, 10)
B = fasta_records(CALIB, 16)[10:]


def cli_export(store, fmt, method="minmax"):
    return run("calibrate", "--export", store, "--format", fmt, "--method", method).stdout


def no_provenance(text):
    """The json export without the dataset names (a list is written to a
    temporary file whose name the statistics record)."""
    d = json.loads(text)
    d.pop("datasets", None)
    return d


class Calibrate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fa, cls.fb = write_fasta("a.fasta", A), write_fasta("b.fasta", B)
        cls.fab = write_fasta("ab.fasta", A + B)
        run("calibrate", "--model", MODEL, "--calibration-data", cls.fa, "--out", path("a.h5"), "-q")
        run("calibrate", "--model", MODEL, "--calibration-data", cls.fab, "--out", path("ab.h5"), "-q")

    def test_calibrate_update_export(self):
        m = proteus.QuantizationManager()
        model = proteus.ModelInterface(path=MODEL)
        stats = m.calibrate_model(model, self.fa)
        self.assertEqual(stats["n_sequences"], len(A))
        self.assertEqual(stats, json.loads(cli_export(path("a.h5"), "json")))
        for fmt in ("tensorrt", "onnxruntime"):
            self.assertEqual(m.export_calibration_params(fmt, method="entropy"),
                             cli_export(path("a.h5"), fmt, "entropy"), fmt)
        # new data as a list of sequences
        m.update_calibration(model, [s for _, s in B])
        self.assertEqual(no_provenance(m.export_calibration_params("json")),
                         no_provenance(cli_export(path("ab.h5"), "json")))
        # a store the command reads back with the same ranges
        store = m.export_calibration_params("hdf5", path=path("py_store.h5"))
        self.assertEqual(no_provenance(cli_export(store, "json", "percentile")),
                         no_provenance(cli_export(path("ab.h5"), "json", "percentile")))

    def test_static_quantization_uses_the_statistics(self):
        m = proteus.QuantizationManager(quantization_scheme="static", per_channel=True)
        m.calibrate_model(MODEL, self.fa)
        q = m.quantize_model(MODEL, out=path("st_py.h5"))
        run("quantize", "--model", MODEL, "--out", path("st_cli.h5"), "-q", "--per-channel", "--scheme", "static",
            "--calibration", path("a.h5"))
        import h5py
        with h5py.File(q.path, "r") as f, h5py.File(path("st_cli.h5"), "r") as g:
            names = [n for n in f["tensors"] if "act_scale" in f["tensors"][n]]
            self.assertEqual(len(names), 36)
            for n in names:
                self.assertEqual(f["tensors"][n]["act_scale"][()].tobytes(), g["tensors"][n]["act_scale"][()].tobytes())

    def test_errors(self):
        m = proteus.QuantizationManager()
        with self.assertRaises(proteus.ConfigurationError):
            m.get_calibration_stats()
        long_only = write_fasta("long.fasta", [("big", "M" * 1100)])
        with self.assertRaises(proteus.CalibrationError) as e:
            m.calibrate_model(MODEL, long_only)
        self.assertIn("long.fasta", str(e.exception))
        self.assertEqual(e.exception.exit_code, 6)
        m.calibrate_model(MODEL, [s for _, s in A[:2]])
        with self.assertRaises(proteus.ConfigurationError) as e:
            m.export_calibration_params("xml")
        self.assertIn("xml", str(e.exception))
        with self.assertRaises(proteus.ConfigurationError):
            m.calibrate_model(MODEL, [])
        # statistics of another model cannot be merged
        run("synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "5", "--out", path("other.safetensors"))
        with self.assertRaises(proteus.CalibrationError) as e:
            m.update_calibration(path("other.safetensors"), [s for _, s in B[:2]])
        self.assertIn("cannot be merged", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
