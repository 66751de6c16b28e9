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
- bad input: a group size of 33 (exit 2), a missing FASTA (exit 3),
  --resume without a training state (exit 3); no output left behind.

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
                             (["--resume"], 3, "train.h5")):
        out = os.path.join(TMP, "bad.h5")
        p = qat("--steps", "1", "--out", out, *args)
        if p.returncode != code or what not in p.stderr:
            failures.append(f"{args}: exit {p.returncode} (want {code}), message {p.stderr.strip()!r}")
        if os.path.exists(out) or os.path.exists(out + ".partial"):
            failures.append(f"{args}: an output was left behind")
    return fail(failures)


def fail(failures):
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
