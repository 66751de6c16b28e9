# SPDX-License-Identifier: Apache-2.0
"""test_smoothquant_cli.py - `proteus quantize --smoothquant ALPHA` end to end
on a synthetic t6 with planted activation outliers: identical datasets for
the singleton, mpirun -n 1, 2, 3 and --threads 2 (static and dynamic); the
file holds the folded tensors (LayerNorm / s, Linear columns * s) and the
factors; the static act scales of smoothed sites are the rescaled maxima;
config errors exit 2 and write nothing.

usage: test_smoothquant_cli.py PROTEUS MPIEXEC CALIB_FASTA [unittest args]"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import h5py
import numpy as np

PROTEUS = os.path.abspath(sys.argv.pop(1))
MPIEXEC = sys.argv.pop(1)
CALIB = sys.argv.pop(1)
TMP = tempfile.mkdtemp(prefix="pq_sq_")
atexit.register(shutil.rmtree, TMP, True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
MODEL = os.path.join(TMP, "t6o.safetensors")
DATA = os.path.join(TMP, "calib12.fasta")


def setUpModule():
    subprocess.run([PROTEUS, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "3", "--outliers", "4",
                    "--out", MODEL], check=True, capture_output=True)
    recs = open(CALIB).read().split(">")[1:13]  # 12 sequences keep it quick
    with open(DATA, "w") as f:
        f.write("".join(">" + r for r in recs))


def quantize(n, out, *extra, check=True):
    cmd = [PROTEUS, "quantize", "--model", MODEL, "--out", out, "-q", "--unit-bytes", "64k", *extra]
    if n:
        cmd = [MPIEXEC, "-n", str(n), "--oversubscribe"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def datasets(path):
    """Every dataset's bytes and every attribute outside /provenance and the root."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if name.startswith("provenance"):
                return
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tobytes()
            for k, v in obj.attrs.items():
                out[name + "@" + k] = repr(v)
        f.visititems(visit)
    return out


def st_tensors(path):
    """The checkpoint's tensors as float32, read by the tests' own reader."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
    import stref
    return {k: v.astype(np.float32) for k, v in stref.read_safetensors(path).items()}


class SmoothQuant(unittest.TestCase):
    def test_same_bytes_for_any_ranks_and_threads(self):
        for scheme in ("static", "dynamic"):
            base = os.path.join(TMP, f"{scheme}_s.h5")
            flags = ["--scheme", scheme, "--smoothquant", "0.5", "--calibration-data", DATA, "--per-channel"]
            quantize(0, base, *flags, "--threads", "1")
            ref = datasets(base)
            self.assertTrue(any(k.startswith("smoothquant/") for k in ref))
            runs = [(1, []), (2, []), (3, []), (0, ["--threads", "2"])] if scheme == "static" else [(2, [])]
            for n, extra in runs:
                out = os.path.join(TMP, f"{scheme}_{n}_{len(extra)}.h5")
                quantize(n, out, *flags, *extra)
                got = datasets(out)
                self.assertEqual(sorted(got), sorted(ref), (scheme, n, extra))
                diff = [k for k in ref if got[k] != ref[k] and not k.endswith("@num_ranks")
                        and not k.endswith("@config_json")]
                self.assertEqual(diff, [], (scheme, n, extra))

    def test_folded_tensors_and_act_scales(self):
        out = os.path.join(TMP, "fold.h5")
        quantize(0, out, "--scheme", "static", "--smoothquant", "0.8", "--calibration-data", DATA,
                 "--exclude", "*attention.self.key.weight")
        src = st_tensors(MODEL)
        with h5py.File(out, "r") as f:
            g = f["smoothquant"]
            self.assertEqual(g.attrs["method"], b"smoothquant")
            self.assertEqual(float(g.attrs["alpha"]), 0.8)
            for layer in range(6):
                for site, ln, lins in (("attn_in", "attention.LayerNorm", ["attention.self.query",
                                        "attention.self.key", "attention.self.value"]),
                                       ("ffn_in", "LayerNorm", ["intermediate.dense"])):
                    sg = g[f"layer.{layer}.{site}"]
                    s = sg["scale"][()]
                    pre = f"esm.encoder.layer.{layer}."
                    act = sg["act_absmax"][()]
                    wmax = np.max([np.abs(src[pre + l + ".weight"]).max(axis=0) for l in lins], axis=0)
                    np.testing.assert_array_equal(sg["weight_absmax"][()], wmax)
                    want = np.maximum(act ** np.float32(0.8) / np.maximum(wmax, np.float32(1e-5)) ** np.float32(0.2),
                                      np.float32(1e-5))
                    np.testing.assert_allclose(s, want, rtol=2e-6)
                    for part in ("weight", "bias"):
                        np.testing.assert_array_equal(f[f"tensors/{pre}{ln}.{part}/data"][()],
                                                      src[f"{pre}{ln}.{part}"] / s)
                    # the float-kept key weight carries the factors too
                    if site == "attn_in":
                        np.testing.assert_array_equal(f[f"tensors/{pre}attention.self.key.weight/data"][()],
                                                      src[pre + "attention.self.key.weight"] * s[None, :])
                    # static act scale of the smoothed site: rescaled per-channel maxima
                    amax = np.max(act / s)
                    q = f[f"tensors/{pre}{lins[0]}.weight"]
                    self.assertAlmostEqual(float(q["act_scale"][0]), float(np.float32(amax) / np.float32(127)),
                                           delta=float(amax) * 1e-6)
            # the site without a LayerNorm in front keeps its own statistics
            self.assertNotIn(f"layer.0.attn_out", g)

    def test_config_errors(self):
        for extra in (["--smoothquant", "0"], ["--smoothquant", "1.5"], ["--smoothquant", "abc"],
                      ["--smoothquant", "0.5", "--precision", "int4", "--group-size", "128"],
                      ["--smoothquant", "0.5", "--precision", "int4"],
                      ["--smoothquant", "0.5", "--group-size", "64"],
                      ["--smoothquant", "0.5", "--scheme", "static", "--calibration-method", "entropy"]):
            out = os.path.join(TMP, "bad.h5")
            p = quantize(0, out, *extra, check=False)
            self.assertEqual(p.returncode, 2, (extra, p.stdout, p.stderr))
            self.assertFalse(os.path.exists(out))
            self.assertIn("smoothquant", (p.stdout + p.stderr).lower())

    def test_runs_in_evaluate(self):
        out = os.path.join(TMP, "eval.h5")
        quantize(0, out, "--scheme", "static", "--smoothquant", "0.5", "--calibration-data", DATA)
        p = subprocess.run([PROTEUS, "evaluate", "--model", out, "--reference", MODEL, "--fasta", DATA,
                            "--max-seqs", "4", "--threads", "1"], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = subprocess.run([PROTEUS, "inspect", out], capture_output=True, text=True)
        self.assertIn("smoothquant: alpha 0.5", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
