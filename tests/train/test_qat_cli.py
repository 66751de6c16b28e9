# SPDX-License-Identifier: Apache-2.0
"""test_qat_cli.py - `proteus qat` end to end on the bundled model:

- with a learning rate too small to move any fp32 value (1e-30), one QAT
  step leaves the RTN steps where they started: the codes, scales and zero
  points of every quantized tensor equal those `proteus quantize` writes
  with the same precision and groups (int4, group 32, asymmetric), bit for
  bit, and the other tensors equal the checkpoint's;
- a real run (int8 per channel, int8 activations; and fp32) writes a file
  `proteus score` reads, with /provenance qat_curve holding one loss per
  step (those printed), qat_recipe and qat_eval;
- --init gptq --steps 0: the codes and scales of every quantized tensor
  equal `proteus quantize --method gptq`'s on the same calibration data,
  and /provenance says steps_init "gptq";
- --act int8 --act-scheme static: with --steps 0 every Linear's act_scale
  equals `proteus quantize --scheme static`'s on the same calibration data
  (the starting ranges); after 2 steps the file's act_scale are the trained
  input steps of the training state (bit for bit), moved from the start,
  the scheme "static", and `proteus score` runs the file;
- bad input: a group size of 33 (exit 2), a missing FASTA (exit 3),
  --resume without a training state (exit 3), --act-scheme static without
  --act int8 (exit 2); no output left behind.

usage: python test_qat_cli.py PROTEUS MODEL.safetensors TRAIN.fasta EVAL.fasta"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fasta_crop import write_cropped  # noqa: E402

PROTEUS, MODEL, TRAIN, EVAL = sys.argv[1:5]
TMP = tempfile.mkdtemp(prefix="pq_qatcli_")
atexit.register(shutil.rmtree, TMP, True)
SMALL = ["--batch-size", "2", "--micro-batch", "1", "--max-residues", "64", "--threads", "2"]


def qat(*args):
    return subprocess.run([PROTEUS, "qat", "--model", MODEL, "--data", TRAIN, *SMALL, *args],
                          capture_output=True, text=True)


def main():
    failures = []
    ev = os.path.join(TMP, "ev.fasta")
    with open(EVAL) as f, open(ev, "w") as g:
        n = 0
        for line in f:
            n += line.startswith(">")
            if n > 4:
                break
            g.write(line)

    # 1. no movement: the file equals RTN from `proteus quantize`
    rtn = os.path.join(TMP, "rtn.h5")
    p = subprocess.run([PROTEUS, "quantize", "--model", MODEL, "--out", rtn, "--precision", "int4",
                        "--group-size", "32", "--asymmetric"], capture_output=True, text=True)
    if p.returncode != 0:
        return fail([f"proteus quantize failed: {p.stderr.strip()}"])
    still = os.path.join(TMP, "still.h5")
    p = qat("--precision", "int4", "--group-size", "32", "--asymmetric", "--steps", "1", "--lr", "1e-30",
            "--out", still)
    if p.returncode != 0:
        return fail([f"proteus qat (lr 1e-30) failed: {p.stderr.strip()}"])
    with h5py.File(rtn) as a, h5py.File(still) as b:
        names = sorted(a["tensors"])
        if names != sorted(b["tensors"]):
            failures.append("the QAT file's tensors differ from the quantize file's")
        n_q = 0
        for name in names:
            ga, gb = a["tensors"][name], b["tensors"][name]
            for ds in ga:
                if ds not in gb or not np.array_equal(ga[ds][()], gb[ds][()]):
                    failures.append(f"{name}/{ds} differs from proteus quantize's")
            n_q += "qweight" in ga
            if "qweight" in gb and gb.attrs["method"] != b"qat" and gb.attrs["method"] != "qat":
                failures.append(f"{name}: method {gb.attrs['method']!r}, not qat")
        print(f"lr 1e-30: {len(names)} tensors, {n_q} quantized, equal to proteus quantize: "
              f"{not failures}")

    failures += init_checks(ev)

    # 2. real runs
    for label, args in (("int8 a8", ["--precision", "int8", "--act", "int8"]), ("fp32", ["--precision", "fp32"])):
        out = os.path.join(TMP, label.replace(" ", "_") + ".h5")
        p = qat(*args, "--steps", "3", "--lr", "1e-4", "--eval-data", ev, "--out", out)
        if p.returncode != 0:
            failures.append(f"{label}: proteus qat failed: {p.stderr.strip()}")
            continue
        printed = [float(line.split()[-1]) for line in p.stdout.splitlines() if line.startswith("step ")]
        with h5py.File(out) as h:
            prov = h["provenance"].attrs
            curve = json.loads(prov["qat_curve"])
            recipe = json.loads(prov["qat_recipe"])
            evj = json.loads(prov["qat_eval"])
            n_quant = sum("qweight" in h["tensors"][k] for k in h["tensors"])
        if len(curve) != 3 or any(abs(a - b) > 1e-4 for a, b in zip(curve, printed)):
            failures.append(f"{label}: qat_curve {curve} vs printed {printed}")
        if recipe["precision"] != args[1] or "loss_after" not in evj:
            failures.append(f"{label}: provenance recipe/eval wrong: {recipe} {evj}")
        if (n_quant == 0) != (label == "fp32"):
            failures.append(f"{label}: {n_quant} quantized tensors")
        s = subprocess.run([PROTEUS, "score", "--model", out, "--fasta", ev, "--threads", "2"],
                           capture_output=True, text=True)
        if s.returncode != 0:
            failures.append(f"{label}: proteus score cannot read the file: {s.stderr.strip()}")
        print(f"{label}: curve {curve}, eval {evj}, quantized tensors {n_quant}, score exit {s.returncode}")

    # 3. bad input
    for args, code, what in ((["--group-size", "33"], 2, "group-size"),
                             (["--data", os.path.join(TMP, "none.fasta")], 3, "none.fasta"),
                             (["--resume"], 3, "train.h5"),
                             (["--act-scheme", "static"], 2, "act-scheme")):
        out = os.path.join(TMP, "bad.h5")
        p = qat("--steps", "1", "--out", out, *args)
        if p.returncode != code or what not in p.stderr:
            failures.append(f"{args}: exit {p.returncode} (want {code}), message {p.stderr.strip()!r}")
        if os.path.exists(out) or os.path.exists(out + ".partial"):
            failures.append(f"{args}: an output was left behind")
    return fail(failures)


def short_calibration():
    """The first 6 sequences of TRAIN, cropped to 80 residues: GPTQ in seconds."""
    return write_cropped(TRAIN, os.path.join(TMP, "cal.fasta"), 6, 80)


def quantized(path):
    """{name: {dataset: value}} of the quantized tensors, and the scheme attrs."""
    out, schemes = {}, set()
    with h5py.File(path) as h:
        for name in h["tensors"]:
            g = h["tensors"][name]
            if "qweight" in g:
                out[name] = {k: g[k][()] for k in g}
                sc = g.attrs["scheme"]
                schemes.add(sc.decode() if isinstance(sc, bytes) else sc)
        recipe = json.loads(h["provenance"].attrs["qat_recipe"]) if "qat_recipe" in h["provenance"].attrs else {}
    return out, schemes, recipe


def init_checks(ev):
    failures = []
    cal = short_calibration()
    base = [PROTEUS, "quantize", "--model", MODEL, "--precision", "int4", "--per-channel", "--calibration-data", cal,
            "--threads", "2"]
    gq, sq = os.path.join(TMP, "gptq.h5"), os.path.join(TMP, "static.h5")
    for args, out in ((["--method", "gptq", "--scheme", "weight-only"], gq), (["--scheme", "static"], sq)):
        p = subprocess.run(base + args + ["--out", out], capture_output=True, text=True)
        if p.returncode != 0:
            return [f"proteus quantize {args} failed: {p.stderr.strip()}"]
    # GPTQ starting point
    g0 = os.path.join(TMP, "qat_gptq0.h5")
    p = qat("--precision", "int4", "--init", "gptq", "--calibration-data", cal, "--steps", "0", "--out", g0)
    if p.returncode != 0:
        return [f"qat --init gptq --steps 0 failed: {p.stderr.strip()}"]
    ref, _, _ = quantized(gq)
    got, _, recipe = quantized(g0)
    diff = [f"{n}/{k}" for n in ref for k in ("qweight", "scale")
            if n not in got or not np.array_equal(ref[n][k], got[n][k])]
    if diff or not ref:
        failures.append(f"--init gptq --steps 0: {len(diff)} of {2 * len(ref)} datasets differ from quantize "
                        f"--method gptq's: {diff[:4]}")
    if recipe.get("steps_init") != "gptq":
        failures.append(f"--init gptq: qat_recipe steps_init {recipe.get('steps_init')!r}")
    print(f"--init gptq --steps 0: {len(ref)} tensors' codes and scales equal quantize --method gptq's: {not diff}")
    # static activations: the start, then trained
    s0 = os.path.join(TMP, "qat_static0.h5")
    p = qat("--precision", "int4", "--act", "int8", "--act-scheme", "static", "--calibration-data", cal,
            "--steps", "0", "--out", s0)
    if p.returncode != 0:
        return failures + [f"qat --act-scheme static --steps 0 failed: {p.stderr.strip()}"]
    ref, _, _ = quantized(sq)
    got, schemes, _ = quantized(s0)
    diff = [n for n in ref if "act_scale" not in got.get(n, {}) or ref[n]["act_scale"] != got[n]["act_scale"]]
    if diff or not all("act_scale" in ref[n] for n in ref):
        failures.append(f"--act-scheme static --steps 0: act_scale of {diff[:4]} differ from quantize --scheme "
                        f"static's")
    s2 = os.path.join(TMP, "qat_static2.h5")
    p = qat("--precision", "int4", "--act", "int8", "--act-scheme", "static", "--calibration-data", cal,
            "--steps", "2", "--lr", "1e-3", "--out", s2)
    if p.returncode != 0:
        return failures + [f"qat --act-scheme static --steps 2 failed: {p.stderr.strip()}"]
    got2, schemes, _ = quantized(s2)
    with h5py.File(s2 + ".train.h5") as t:
        steps = t["train"]["scale"][()]
    layers = 1 + max(int(n.split(".layer.")[1].split(".")[0]) for n in got2)
    trained = steps[-4 * layers:]
    kind = {"query": 0, "key": 0, "value": 0, "attention.output": 1, "intermediate": 2}
    bad, moved = [], 0
    for n, d in got2.items():
        layer = int(n.split(".layer.")[1].split(".")[0])
        k = next((v for key, v in kind.items() if key in n), 3)
        want = trained[4 * layer + k]
        if d.get("act_scale", np.zeros(1))[0] != want:
            bad.append(n)
        moved += want != got[n]["act_scale"][0]
    if bad or schemes != {"static"} or not moved:
        failures.append(f"--act-scheme static: act_scale of {bad[:4]} differ from the trained steps, schemes "
                        f"{schemes}, {moved} moved from the start")
    sc = subprocess.run([PROTEUS, "score", "--model", s2, "--fasta", ev, "--threads", "2"], capture_output=True,
                        text=True)
    if sc.returncode != 0:
        failures.append(f"--act-scheme static: proteus score cannot run the file: {sc.stderr.strip()}")
    print(f"--act-scheme static: start equals quantize --scheme static's act_scale: {not diff}; after 2 steps "
          f"{len(got2)} act_scale equal the trained steps: {not bad}, {moved} moved; score exit {sc.returncode}")
    return failures


def fail(failures):
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
