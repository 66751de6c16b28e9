# SPDX-License-Identifier: Apache-2.0
"""test_recipe.py - `proteus quantize --recipe` end to end on the bundled
trained t6 model:

- a mixed recipe: every tensor's /recipe entry, its own attributes and its
  datasets' types are what the rules give it, worked out here from the rule
  text (first match wins); inspect lists the recipes with their counts;
- a recipe that restates a uniform run's options gives the uniform file's
  datasets and attributes (only /provenance differs); one that sets int4
  groups on every Linear over int8 defaults gives the uniform int4 file's
  tensors (config_json, which records the global options, differs);
- GPTQ with a recipe: each Linear its own bits and groups, recorded as gptq;
- bad recipe files: each a config error (exit 2; a missing file: I/O, 3)
  naming the file and the rule, and no output, .partial or journal.

usage: test_recipe.py PROTEUS MODEL.safetensors"""
import fnmatch
import json
import os
import re
import subprocess
import sys
import unittest

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import path, scratch  # noqa: E402

PROTEUS = os.path.abspath(sys.argv.pop(1))
MODEL = os.path.abspath(sys.argv.pop(1))
TMP = scratch("pq_recipe_")
LINEARS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
           "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense"}


def recipe_file(name, obj):
    p = path(name)
    with open(p, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def quantize(out, *extra, want=0):
    p = subprocess.run([PROTEUS, "quantize", "--model", MODEL, "--out", out, "-q", "--threads", "1", *extra],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != want:
        raise AssertionError(f"quantize {' '.join(extra)}: exit {p.returncode}, expected {want}\n{p.stderr}")
    return p


def contents(fn, skip=("provenance",)):
    """{path: value} of every dataset (bytes) and attribute of a file, outside `skip`."""
    out = {}
    with h5py.File(fn, "r") as f:
        for k, v in f.attrs.items():
            out["/@" + k] = np.asarray(v).tobytes()

        def visit(name, obj):
            if name.split("/")[0] in skip:
                return
            if isinstance(obj, h5py.Dataset):
                out[name] = (str(obj.dtype), obj.shape, np.ascontiguousarray(obj[()]).tobytes())
            for k, v in obj.attrs.items():
                out[name + "@" + k] = np.asarray(v).tobytes()
        f.visititems(visit)
    return out


def layer_and_kind(name):
    m = re.match(r"esm\.encoder\.layer\.(\d+)\.(.*)\.weight$", name)
    if not m:
        return None, None
    kind = [k for k, v in LINEARS.items() if v == m.group(2)]
    return int(m.group(1)), kind[0] if kind else None


class Mixed(unittest.TestCase):
    RULES = [
        {"layers": "0-1", "linears": ["q", "k", "v"], "precision": "fp16"},
        {"linears": "fc1", "precision": "int4", "group_size": 64},
        {"tensors": ["esm.encoder.layer.5.*"], "precision": "int8", "symmetric": False},
        {"layers": 3, "linears": "o", "per_channel": False},
        {"tensors": "esm.embeddings.word_embeddings.weight", "precision": "int4", "per_channel": True},
    ]

    def expected(self, name, ndim):
        """The recipe of tensor `name` under RULES over --per-channel int8
        symmetric defaults, worked out from the rules' text."""
        layer, kind = layer_and_kind(name)
        default = "int8 channel symmetric rtn" if kind else "fp32"
        if name == "esm.embeddings.word_embeddings.weight":
            return "int4 channel symmetric rtn"
        if kind in ("q", "k", "v") and layer in (0, 1):
            return "fp16"
        if kind == "fc1":
            return "int4 group 64 symmetric rtn"
        if fnmatch.fnmatch(name, "esm.encoder.layer.5.*") and ndim == 2:
            return "int8 channel asymmetric rtn"
        if layer == 3 and kind == "o":
            return "int8 tensor symmetric rtn"
        return default

    def test_table_attributes_and_inspect(self):
        out = path("mixed.h5")
        quantize(out, "--per-channel", "--recipe", recipe_file("mixed.json", {"rules": self.RULES}))
        counts = {}
        with h5py.File(out, "r") as f:
            self.assertEqual(int(f.attrs["format_version"]), 5)
            table = {k: v.decode() for k, v in f["recipe"].attrs.items()}
            self.assertEqual(set(table), set(f["tensors"]))
            for name, g in f["tensors"].items():
                ndim = len(g.attrs["shape"]) if "qweight" in g else g["data"].ndim
                want = self.expected(name, ndim)
                self.assertEqual(table[name], want, name)
                counts[want] = counts.get(want, 0) + 1
                if want.startswith("fp"):
                    self.assertEqual(g["data"].dtype, np.float16 if want == "fp16" else np.float32, name)
                    continue
                bits, gran = int(want[3]), want.split()[1]
                self.assertEqual(int(g.attrs["bits"]), bits, name)
                self.assertEqual(g.attrs["granularity"].decode(), gran, name)
                self.assertEqual(g["qweight"].dtype, np.int8 if bits == 8 else np.uint8, name)
                self.assertEqual("zero_point" in g, "asymmetric" in want, name)
                if gran == "group":
                    self.assertEqual(int(g.attrs["group_size"]), 64)
                    self.assertEqual(g["scale"].shape[1], g.attrs["shape"][1] // 64)
        p = subprocess.run([PROTEUS, "inspect", out], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        line = [x for x in p.stdout.splitlines() if x.startswith("recipes:")][0]
        for want, n in counts.items():
            self.assertIn(f"{n} x {want}", line)
        self.assertIn("int4 group64 sym rtn", p.stdout)
        # the engine runs the mixed file (the peer suite checks its logits)
        p = subprocess.run([PROTEUS, "score", "--model", out, "--fasta", MODEL.replace(
            os.path.join("models", os.path.basename(MODEL)), os.path.join("proteins", "eval_sample.fasta")),
            "--max-seqs", "2", "--threads", "1"], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("accuracy", p.stdout)

    def test_reader_refuses_a_wrong_table(self):
        out = path("wrong.h5")
        quantize(out, "--per-channel")
        with h5py.File(out, "r+") as f:
            a = f["recipe"].attrs
            name = "esm.encoder.layer.2.intermediate.dense.weight"
            # same fixed-length string type, another recipe
            a.create(name, np.bytes_(b"int4 channel symmetric rtn"), dtype=h5py.string_dtype("utf-8", 27))
        p = subprocess.run([PROTEUS, "inspect", out], capture_output=True, text=True)
        self.assertEqual(p.returncode, 4, p.stdout + p.stderr)
        self.assertIn("/recipe says tensor " + name + " is 'int4 channel symmetric rtn'", p.stderr)


class Uniform(unittest.TestCase):
    ALL = ["q", "k", "v", "o", "fc1", "fc2"]

    def test_restated_options_same_file(self):
        a, b = path("uni.h5"), path("uni_recipe.h5")
        quantize(a, "--per-channel", "--asymmetric")
        r = recipe_file("restate.json", {"rules": [
            {"linears": self.ALL, "precision": "int8", "per_channel": True, "symmetric": False},
            {"tensors": "*", "precision": "fp32"}]})
        quantize(b, "--per-channel", "--asymmetric", "--recipe", r)
        ca, cb = contents(a), contents(b)
        self.assertEqual(sorted(ca), sorted(cb))
        diff = [k for k in ca if ca[k] != cb[k]]
        self.assertEqual(diff, [], "datasets and attributes outside /provenance")

    def test_int4_everywhere_over_int8_defaults(self):
        a, b = path("u4.h5"), path("u4_recipe.h5")
        quantize(a, "--precision", "int4", "--group-size", "64", "--asymmetric")
        r = recipe_file("int4.json", {"rules": [
            {"linears": self.ALL, "precision": "int4", "group_size": 64, "symmetric": False}]})
        quantize(b, "--recipe", r)
        ca, cb = contents(a), contents(b)
        self.assertEqual(sorted(ca), sorted(cb))
        diff = [k for k in ca if ca[k] != cb[k]]
        self.assertEqual(diff, ["/@config_json"], "only the recorded global options differ")


class Gptq(unittest.TestCase):
    def test_each_linear_its_own_bits(self):
        out = path("gptq.h5")
        r = recipe_file("gptq.json", {"rules": [
            {"linears": "fc1", "precision": "int4", "group_size": 64},
            {"layers": "0", "linears": ["q", "k"], "precision": "fp16"}]})
        quantize(out, "--method", "gptq", "--per-channel", "--recipe", r)
        with h5py.File(out, "r") as f:
            t = {k: v.decode() for k, v in f["recipe"].attrs.items()}
        self.assertEqual(t["esm.encoder.layer.3.intermediate.dense.weight"], "int4 group 64 symmetric gptq")
        self.assertEqual(t["esm.encoder.layer.3.output.dense.weight"], "int8 channel symmetric gptq")
        self.assertEqual(t["esm.encoder.layer.0.attention.self.key.weight"], "fp16")
        self.assertEqual(t["esm.encoder.layer.0.attention.self.value.weight"], "int8 channel symmetric gptq")


class BadRecipes(unittest.TestCase):
    def refused(self, name, text, needle, status=2):
        r = recipe_file(name, text) if text is not None else path(name)
        out = path("bad.h5")
        p = quantize(out, "--per-channel", "--recipe", r, want=status)
        self.assertIn("recipe " + r, p.stderr)
        self.assertIn(needle, p.stderr)
        for leftover in (out, out + ".partial", out + ".journal"):
            self.assertFalse(os.path.exists(leftover), leftover)

    def test_bad_json(self):
        self.refused("json.json", '{"rules": [', "line 1")

    def test_not_rules(self):
        self.refused("top.json", {"rule": []}, 'one key, "rules"')

    def test_unknown_key(self):
        self.refused("key.json", {"rules": [{"linears": "fc1", "bits": 4}]}, "rule 1 (")
        self.refused("key.json", {"rules": [{"linears": "fc1", "bits": 4}]}, "unknown key 'bits'")

    def test_unknown_precision(self):
        self.refused("prec.json", {"rules": [{"linears": "q", "precision": "int3"}]},
                     "precision: int3 is not one of int8, int4, fp16, fp32")

    def test_unknown_linear(self):
        self.refused("lin.json", {"rules": [{"linears": ["q", "qq"]}]}, "'qq' is not one of q, k, v, o, fc1, fc2")

    def test_bad_layers(self):
        self.refused("lay.json", {"rules": [{"layers": "2-x", "precision": "fp16"}]}, "layers: '2-x'")

    def test_matches_nothing(self):
        self.refused("none.json", {"rules": [{"linears": "q", "precision": "fp16"},
                                             {"tensors": "esm.decoder.*", "precision": "int4"}]},
                     "rule 2 (")
        self.refused("none.json", {"rules": [{"tensors": "nope.*", "precision": "int4"}]}, "matches no tensor")

    def test_shadowed(self):
        self.refused("shadow.json", {"rules": [{"linears": "fc1", "precision": "fp16"},
                                               {"layers": "0", "linears": "fc1", "precision": "int4"}]},
                     "rule 2 (")

    def test_group_size_does_not_divide(self):
        self.refused("gs.json", {"rules": [{"linears": "q", "group_size": 96}]},
                     "group_size 96 does not divide the 320 columns of esm.encoder.layer.0.attention.self.query.weight")

    def test_group_size_out_of_range(self):
        self.refused("gs2.json", {"rules": [{"linears": "q", "group_size": 33}]}, "even number in [32, 256]")

    def test_float_with_quant_keys(self):
        self.refused("fq.json", {"rules": [{"linears": "q", "precision": "fp16", "group_size": 64}]},
                     "no meaning")

    def test_no_selector(self):
        self.refused("sel.json", {"rules": [{"precision": "int4"}]}, "no selector")

    def test_gptq_per_tensor(self):
        r = recipe_file("gptq_t.json", {"rules": [{"linears": "o", "per_channel": False}]})
        out = path("bad.h5")
        p = quantize(out, "--method", "gptq", "--per-channel", "--recipe", r, want=2)
        self.assertIn("method gptq needs per-channel or group scales", p.stderr)
        self.assertFalse(os.path.exists(out))

    def test_missing_file(self):
        self.refused("absent.json", None, "cannot read it", status=3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
