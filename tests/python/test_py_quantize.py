# SPDX-License-Identifier: Apache-2.0
"""test_py_quantize.py - the Python package's quantization calls against
the `proteus` program: quantize_model writes the datasets and attributes
`proteus quantize` writes with the same options (dynamic, int4 grouped,
static on sequences given as a list), DistributedQuantizationManager the
same under mpirun -n 2, get_quantization_stats the file's own metrics,
export_quantized_model pq_export's copy, evaluate_quantization
`proteus evaluate --json`'s numbers, the fallback the C chain with its trail,
optimize_quantization `proteus optimize`'s recipe and its refusal."""
import json
import os
import struct
import sys
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkgtest import CALIB, EVAL, MODEL, assert_same_model, fasta_records, path, run, write_fasta  # noqa: E402

import h5py  # noqa: E402

import proteus  # noqa: E402

N_EVAL = 8  # sequences evaluated: enough to tell recipes apart (~300 masked positions), quick on a loaded machine


class Quantize(unittest.TestCase):
    def both(self, tag, cli_args, as_dict=False, **config):
        """The package's file and the command's for the same options (given
        to the manager, or to quantize_model as a dict)."""
        m = proteus.QuantizationManager() if as_dict else proteus.QuantizationManager(**config)
        q = m.quantize_model(proteus.ModelInterface(name="t6", path=MODEL), config=config if as_dict else None,
                             out=path(tag + "_py.h5"))
        run("quantize", "--model", MODEL, "--out", path(tag + "_cli.h5"), "-q", *cli_args)
        n = assert_same_model(q.path, path(tag + "_cli.h5"))
        self.assertGreater(n, 100)
        return m, q

    def test_dynamic_int8_per_channel(self):
        m, q = self.both("dyn8", ["--per-channel"], per_channel=True)
        stats = m.get_quantization_stats()
        with h5py.File(q.path, "r") as f:
            quantized = [n for n, g in f["tensors"].items() if "qweight" in g]
            self.assertEqual(stats["n_quantized"], len(quantized))
            self.assertEqual(stats["n_quantized"], 36)  # esm2.md: 6 layers x q, k, v, out, fc1, fc2
            by_name = {t["name"]: t for t in stats["tensors"]}
            for name in quantized:
                self.assertEqual(by_name[name]["action"], "quantized")
                self.assertAlmostEqual(by_name[name]["sqnr_db"], float(f["metrics"][name].attrs["sqnr_db"]),
                                       places=9)
        self.assertEqual(stats["bytes_after"] < stats["bytes_before"], True)

    def test_int4_grouped_asymmetric(self):
        self.both("g4", ["--precision", "int4", "--group-size", "64", "--asymmetric"],
                  as_dict=True, precision="int4", group_size=64, symmetric=False)

    def test_static_with_sequence_list(self):
        recs = fasta_records(CALIB, 24)
        m = proteus.QuantizationManager(quantization_scheme="static", per_channel=True)
        q = m.quantize_model(proteus.ModelInterface(path=MODEL), calibration_data=[s for _, s in recs],
                             out=path("st_py.h5"))
        # the package names list items seq0, seq1, ...: the command reads the same records
        fa = write_fasta("st.fasta", [("seq%d" % i, s) for i, (_, s) in enumerate(recs)])
        run("quantize", "--model", MODEL, "--out", path("st_cli.h5"), "-q", "--per-channel", "--scheme", "static",
            "--calibration-data", fa)
        # /calibration records the dataset's file name (a temporary one for a list)
        a = path("st_py.h5")
        for f in (a, path("st_cli.h5")):
            with h5py.File(f, "r+") as h:
                if "datasets" in h["calibration"].attrs:
                    del h["calibration"].attrs["datasets"]
        assert_same_model(a, path("st_cli.h5"))
        with h5py.File(q.path, "r") as f:
            self.assertIn("act_scale", f["tensors/esm.encoder.layer.0.attention.self.query.weight"])

    def test_distributed_two_ranks(self):
        d = proteus.DistributedQuantizationManager(num_workers=2, hardware_targets=["cpu"], per_channel=True)
        q = d.quantize_model(proteus.ModelInterface(path=MODEL), out=path("mpi.h5"))
        self.assertIn("-n", d.last_run["command"])
        single = proteus.QuantizationManager(per_channel=True).quantize_model(MODEL, out=path("one.h5"))
        assert_same_model(q.path, single.path, ignore_attrs=("num_ranks",))
        with h5py.File(q.path, "r") as f:
            self.assertEqual(int(f.attrs["num_ranks"]), 2)

    def test_distributed_unserved_target(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            d = proteus.DistributedQuantizationManager(num_workers=2, hardware_targets=["cuda", "cpu"])
        self.assertEqual(d.hardware_target, "cpu")
        self.assertIn("cuda", d.skipped_targets)
        self.assertTrue(any("cuda" in str(x.message) for x in w))
        with self.assertRaises(proteus.HardwareCompatibilityError) as e:
            proteus.DistributedQuantizationManager(num_workers=2, hardware_targets=["cuda"])
        self.assertIn("cuda", str(e.exception))

    def test_distributed_failure_maps_exit_status(self):
        d = proteus.DistributedQuantizationManager(num_workers=2)
        bad = write_fasta("bad.safetensors", [("x", "NOTACHECKPOINT")])
        with self.assertRaises(proteus.ProteusError) as e:
            d.quantize_model(bad, out=path("never.h5"))
        self.assertEqual(e.exception.exit_code, 4)  # format error
        self.assertIn("bad.safetensors", str(e.exception))
        self.assertFalse(os.path.exists(path("never.h5")))

    def test_export(self):
        m = proteus.QuantizationManager()
        q = m.quantize_model(MODEL, out=path("ex.h5"))
        out = m.export_quantized_model(q, "hdf5", path=path("ex_copy.h5"))
        assert_same_model(q.path, out)
        self.assertEqual(m.export_quantized_model(q, "hdf5"), path("ex_hdf5.h5"))  # the design's two arguments
        assert_same_model(q.path, path("ex_hdf5.h5"))
        with self.assertRaises(proteus.ConfigurationError) as e:
            m.export_quantized_model(q, "no-such-format", path=path("ex_bad"))
        self.assertIn("no-such-format", str(e.exception))
        self.assertFalse(os.path.exists(path("ex_bad")))

    def test_evaluate_equals_command(self):
        m = proteus.QuantizationManager(precision="int4", per_channel=True)
        q = m.quantize_model(proteus.ModelInterface(path=MODEL), out=path("ev.h5"))
        got = m.evaluate_quantization(q, EVAL, max_seqs=N_EVAL, seed=3)
        run("evaluate", "--model", q.path, "--reference", MODEL, "--fasta", EVAL, "--max-seqs", str(N_EVAL), "--seed", "3",
            "--json", path("ev.json"))
        with open(path("ev.json")) as f:
            want = json.load(f)
        for k in ("n_sequences", "n_tokens", "n_masked", "file_bytes_quantized", "weight_bytes_quantized"):
            self.assertEqual(got[k], want[k], k)
        for k in ("accuracy_reference", "accuracy_quantized", "accuracy_drop_points", "logits_kl_mean",
                  "logits_cosine_mean", "embedding_cosine_mean", "confidence_reference", "confidence_quantized",
                  "ece_reference", "ece_quantized", "top1_error_reference", "top1_error_quantized",
                  "top1_disagreement"):
            self.assertAlmostEqual(got[k], want[k], places=12, msg=k)
        self.assertEqual(got["utilization_kernel"], want["utilization"]["kernel"])
        self.assertGreater(got["peak_gops"], 0)

    def test_fallback(self):
        """The C fallback chain through the package: every 2-D tensor at
        int4 per tensor loses more masked-LM accuracy than at int8 (as
        `proteus evaluate` measures both); with the allowance between the two drops the
        requested int4 is refused and the chain's "int4 -> int8" kept, the
        trail naming both with evaluate's drops and the file holding the
        tensors `proteus quantize` (int8) writes. Stopped after the first attempt:
        AccuracyError, and no file."""
        drops = {}
        for tag, args in (("all4", ["--precision", "int4"]), ("all8", [])):
            run("quantize", "--model", MODEL, "--out", path(tag + ".h5"), "-q", "--include", "*", *args)
            run("evaluate", "--model", path(tag + ".h5"), "--reference", MODEL, "--fasta", EVAL, "--max-seqs",
                str(N_EVAL), "--json", path(tag + ".json"))
            with open(path(tag + ".json")) as f:
                drops[tag] = json.load(f)["accuracy_drop_points"]
        if drops["all4"] <= drops["all8"]:
            self.skipTest("int4 loses no more than int8 here (%r)" % drops)
        allow = (drops["all4"] + drops["all8"]) / 2
        m = proteus.QuantizationManager(allow_accuracy_drop=allow / 100)
        int4 = proteus.QuantizationConfig(precision="int4", include=["*"])
        q = m.quantize_model_with_fallback(MODEL, EVAL, config=int4, out=path("fb.h5"), max_seqs=N_EVAL)
        t = q.fallback_trail
        self.assertEqual([(a["what"], a["accepted"], a["written"]) for a in t],
                         [("requested", False, False), ("int4 -> int8", True, True)])
        self.assertAlmostEqual(100 * t[0]["drop"], drops["all4"], places=9)
        self.assertAlmostEqual(100 * t[1]["drop"], drops["all8"], places=9)
        self.assertEqual(q.evaluation, t[1])
        assert_same_model(q.path, path("all8.h5"), ignore_attrs=("config_json",))  # it holds the chain's keys
        with self.assertRaises(proteus.AccuracyError) as e:
            m.quantize_model_with_fallback(MODEL, EVAL, config=int4, out=path("fb_none.h5"), max_seqs=N_EVAL,
                                           max_attempts=1)
        self.assertIn("no fallback attempt", str(e.exception))
        self.assertFalse(os.path.exists(path("fb_none.h5")))


def nan_checkpoint():
    """A synthetic t6 whose layer-1 query weight holds a NaN."""
    ck = path("nan.safetensors")
    run("synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "2", "--out", ck)
    with open(ck, "r+b") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(hlen))["esm.encoder.layer.1.attention.self.query.weight"]
        assert info["dtype"] == "F32", info
        f.seek(8 + hlen + info["data_offsets"][0] + 4 * 17)
        f.write(struct.pack("<f", float("nan")))
    return ck


class Errors(unittest.TestCase):
    def test_each_class_with_its_message(self):
        m = proteus.QuantizationManager()
        with self.assertRaises(proteus.QuantizationError) as e:
            m.quantize_model(nan_checkpoint(), out=path("nan.h5"))
        self.assertIn("layer.1.attention.self.query", str(e.exception))
        self.assertEqual((e.exception.status_name, e.exception.exit_code), ("quantization error", 5))
        self.assertFalse(os.path.exists(path("nan.h5")))
        cuda = proteus.QuantizationManager(hardware_target="cuda")
        with self.assertRaises(proteus.HardwareCompatibilityError) as e:
            cuda.quantize_model(MODEL, out=path("cuda.h5"))
        self.assertEqual(e.exception.exit_code, 7)
        self.assertIn("cuda", str(e.exception))
        with self.assertRaises(proteus.ConfigurationError) as e:
            proteus.QuantizationManager(precision="int3")
        self.assertIn("int3", str(e.exception))
        with self.assertRaises(proteus.ConfigurationError) as e:
            proteus.QuantizationConfig(bogus_key=1)
        self.assertIn("bogus_key", str(e.exception))
        with self.assertRaises(proteus.ProteusError) as e:
            m.quantize_model(path("missing.safetensors"), out=path("m.h5"))
        self.assertIn("missing.safetensors", str(e.exception))
        with self.assertRaises(proteus.ConfigurationError):
            m.quantize_model(MODEL, calibration_data=["MKT"], out=path("dyn_data.h5"))  # dynamic uses no data
        with self.assertRaises(proteus.ConfigurationError) as e:
            m.optimize_quantization(MODEL, {"max_accuracy": 0.5})
        self.assertIn("max_accuracy", str(e.exception))
        with self.assertRaises(proteus.ConfigurationError):
            proteus.ModelInterface(name="esm2_t33_650M_UR50D")
        for err in (proteus.QuantizationError, proteus.CalibrationError, proteus.HardwareCompatibilityError):
            self.assertTrue(issubclass(err, proteus.ProteusError))


class Optimize(unittest.TestCase):
    def test_optimize_quantization(self):
        """optimize_quantization runs `proteus optimize`: its recipe, given to
        QuantizationConfig(recipe=...), makes a file under the size asked
        for; a size nothing meets raises AccuracyError naming it."""
        m = proteus.QuantizationManager()
        small = ["--calibration-seqs", "2", "--eval-seqs", "2", "--max-length", "48", "--threads", "1"]
        r = m.optimize_quantization(MODEL, {"max_size": "6M"}, eval_data=EVAL, out=path("opt.recipe.json"),
                                    options=small)
        self.assertTrue(r["chosen"]["met"])
        self.assertEqual(r["chosen"]["recipe_file"], path("opt.recipe.json"))
        self.assertEqual(len(r["sensitivity"]), 36)
        q = m.quantize_model(MODEL, config=proteus.QuantizationConfig(recipe=path("opt.recipe.json")),
                             out=path("opt.h5"))
        self.assertLessEqual(os.path.getsize(q.path), 6 << 20)
        with open(path("opt.json"), "w") as f:
            json.dump(r, f)
        with self.assertRaises(proteus.AccuracyError) as e:
            m.optimize_quantization(MODEL, {"max_size": 1000}, options=small + ["--sensitivity-in", path("opt.json")])
        self.assertIn("--max-size 1000 bytes", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
