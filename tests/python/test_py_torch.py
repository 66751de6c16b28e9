# SPDX-License-Identifier: Apache-2.0
"""test_py_torch.py - the package's models against independent engines:
logits of the float checkpoint (ModelInterface) against fair-esm's ESM2
built by the peer tests' own loader (tests/model/fairesm_ref.py); a
quantized model's to_torch() (Hugging Face and fair-esm) against the C
engine's logits on the same dequantized weights (mode dequant); with
dynamic_int8, torch dynamic-quantized Linears holding the file's codes and
scales (read with h5py) whose logits stay near the C engine's int8 ones;
embed() against `proteus embed`'s file."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pkgtest import EVAL, MODEL, ROOT, fasta_records, path, run  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "model"))
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import esm  # noqa: E402
import fairesm_ref  # noqa: E402  (the peer suites' fair-esm loader)

import proteus  # noqa: E402

TOL = 1e-4       # fp32 forwards of the same weights (as the hf/fair-esm peer tests)
TOL_INT8 = 0.1   # torch's dynamic int8 (per-tensor uint8 activations) vs Proteus's W8A8 kernels
SEQS = [s[:120] for _, s in fasta_records(EVAL, 5)] + ["MKT<mask>YIAKQR"]


CONVERT = esm.data.Alphabet.from_architecture("ESM-1b").get_batch_converter()


def torch_logits(model, seqs, hf=True):
    """Logits of each sequence alone, tokenized by fair-esm's alphabet (the
    33 tokens Hugging Face's ESM-2 vocabulary lists in the same order)."""
    out = []
    for s in seqs:
        ids = CONVERT([("s", s)])[2]
        with torch.no_grad():
            out.append((model(input_ids=ids).logits if hf else model(ids)["logits"])[0].numpy())
    return out


def maxdiff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


class Torch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.q = proteus.QuantizationManager(per_channel=True).quantize_model(MODEL, out=path("q8.h5"))

    def test_float_checkpoint_logits_against_fairesm(self):
        fair, _, _ = fairesm_ref.build_fairesm(MODEL)
        got = proteus.ModelInterface(path=MODEL).logits(SEQS)
        self.assertEqual([g.shape for g in got], [(len(s.replace("<mask>", "X")) + 2, 33) for s in SEQS])
        self.assertLess(maxdiff(got, torch_logits(fair, SEQS, hf=False)), TOL)

    def test_to_torch_matches_engine_dequant(self):
        engine = proteus.QuantizedModel(self.q.path, mode="dequant").logits(SEQS)
        hf = self.q.to_torch()
        self.assertEqual(type(hf).__name__, "EsmForMaskedLM")
        self.assertLess(maxdiff(engine, torch_logits(hf, SEQS)), TOL)
        fair = self.q.to_torch(flavor="fair-esm")
        self.assertEqual(type(fair).__name__, "ESM2")
        self.assertLess(maxdiff(engine, torch_logits(fair, SEQS, hf=False)), TOL)
        # the quantized weights differ from the float ones: the test can tell them apart
        self.assertGreater(maxdiff(engine, proteus.ModelInterface(path=MODEL).logits(SEQS)), 10 * TOL)

    def test_dynamic_int8(self):
        from torch.ao.nn.quantized.dynamic import Linear as DynLinear
        m = self.q.to_torch(dynamic_int8=True)
        q = m.esm.encoder.layer[2].intermediate.dense
        self.assertIsInstance(q, DynLinear)
        w = q.weight()
        name = "esm.encoder.layer.2.intermediate.dense.weight"
        with h5py.File(self.q.path, "r") as f:
            g = f["tensors"][name]
            self.assertTrue(np.array_equal(w.int_repr().numpy(), g["qweight"][()].astype(np.int8)))
            self.assertTrue(np.array_equal(w.q_per_channel_scales().numpy().astype(np.float32),
                                           g["scale"][()].astype(np.float32).reshape(-1)))
        n_dyn = sum(isinstance(x, DynLinear) for x in m.modules())
        self.assertEqual(n_dyn, 36)
        self.assertNotIn("esm.encoder.layer.0.attention.self.query", m.proteus_float_linears)
        engine = self.q.logits(SEQS)  # the integer kernels
        self.assertLess(maxdiff(engine, torch_logits(m, SEQS)), TOL_INT8)

    def test_embed_against_command(self):
        seqs = fasta_records(EVAL, 4)
        fa = path("emb.fasta")
        with open(fa, "w") as f:
            f.writelines(">%s\n%s\n" % r for r in seqs)
        run("embed", "--model", self.q.path, "--fasta", fa, "--out", path("emb.h5"), "--layers", "3,-1",
            "--per-token")
        with h5py.File(path("emb.h5"), "r") as f:
            for layer, key in ((3, "layer_3"), (-1, "layer_6")):
                mean, rows = self.q.embed(fa, layer=layer, per_residue=True)
                self.assertTrue(np.array_equal(mean, f[key]["mean"][()]))
                self.assertTrue(np.array_equal(np.concatenate(rows), f[key]["tokens"][()]))
        with self.assertRaises(proteus.ConfigurationError):
            self.q.embed(fa, layer=7)


if __name__ == "__main__":
    unittest.main(verbosity=2)
