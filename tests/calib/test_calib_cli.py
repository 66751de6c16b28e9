# SPDX-License-Identifier: Apache-2.0
"""`proteus calibrate` / `proteus quantize --scheme static` end to end:
  * update(A) + B gives the same statistics as calibrate(A + B)
  * 1..4 MPI ranks, any thread count and forward batch size write
    byte-identical calibration stores
  * static quantization: act_scale per Linear input, from a store, from data,
    and from the bundled sample (automatic), on a synthetic and the trained model
  * exports: the ONNX Runtime table loads through onnxruntime's own TensorData /
    TensorsData and write_calibration_table; the TensorRT cache's hex scales
    equal amax / 127 of the JSON export
  * calibration errors: exit status 6, the cause named, nothing written
usage: test_calib_cli.py PROTEUS MPIEXEC TRAINED_MODEL CALIB_FASTA"""
import atexit
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

FAIL = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        FAIL.append(msg)


def run(args, expect=0, env=None):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
        raise SystemExit(f"{args[:4]}... exited {p.returncode}, expected {expect}")
    return p


def read_fasta(path):
    recs, cur = [], None
    for line in open(path):
        if line.startswith(">"):
            cur = [line, ""]
            recs.append(cur)
        elif cur:
            cur[1] += line
    return recs


def write_fasta(path, recs):
    with open(path, "w") as f:
        for h, s in recs:
            f.write(h + s)


def calib_groups(path):
    """Every dataset and attribute under /calibration except dataset provenance."""
    out = {}
    with h5py.File(path, "r") as f:
        g = f["calibration"]
        for k, v in g.attrs.items():
            if k not in ("datasets",):
                out["@" + k] = v
        for site in g:
            for k, v in g[site].attrs.items():
                out[f"{site}@{k}"] = v
            for d in g[site]:
                out[f"{site}/{d}"] = g[site][d][()].tobytes()
    return out


def main():
    proteus, mpiexec, trained, fasta = (os.path.abspath(a) for a in sys.argv[1:5])
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, True)  # leave no test files behind
    os.chdir(tmp)
    recs = read_fasta(fasta)[:24]
    write_fasta("a.fasta", recs[:10])
    write_fasta("b.fasta", recs[10:24])
    write_fasta("ab.fasta", recs[:24])
    run([proteus, "synth", "--arch", "t6_8M", "--seed", "3", "--out", "syn.safetensors"])

    # update(A) + B == calibrate(A + B)
    run([proteus, "calibrate", "--model", "syn.safetensors", "--calibration-data", "a.fasta", "--out", "u.h5", "-q"])
    run([proteus, "calibrate", "--update", "u.h5", "--calibration-data", "b.fasta", "-q"])
    run([proteus, "calibrate", "--model", "syn.safetensors", "--calibration-data", "ab.fasta", "--out", "ab.h5", "-q"])
    gu, gab = calib_groups("u.h5"), calib_groups("ab.h5")
    check(gu.keys() == gab.keys() and all(np.array_equal(gu[k], gab[k]) if not isinstance(gu[k], bytes) else gu[k] == gab[k] for k in gu),
          "update(A)+B statistics identical to calibrate(A+B)")
    with h5py.File("u.h5") as f:
        check(int(f["calibration"].attrs["n_sequences"]) == 24, "update adds the sequence count")
        check(f["calibration"].attrs["datasets"].decode().count("sha256:") == 2, "update records both datasets")
        for name in ("a.fasta", "b.fasta"):
            with open(name, "rb") as fh:
                want = "sha256:" + hashlib.sha256(fh.read()).hexdigest() + " " + name
            check(want in f["calibration"].attrs["datasets"].decode(), "%s recorded by its SHA-256 (hashlib)" % name)

    # N-independence: byte-identical stores for 1..4 ranks
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    blobs = []
    for n in (1, 2, 3, 4):
        run([mpiexec, "--oversubscribe", "-n", str(n), proteus, "calibrate", "--model", "syn.safetensors",
             "--calibration-data", "ab.fasta", "--out", f"n{n}.h5", "--threads", "1", "-q"], env=env)
        blobs.append(open(f"n{n}.h5", "rb").read())
    check(all(b == blobs[0] for b in blobs), "calibration store byte-identical for 1, 2, 3, 4 ranks")
    # nor on threads per rank (default: cores / ranks) or the forward batch size
    run([mpiexec, "--oversubscribe", "-n", "2", proteus, "calibrate", "--model", "syn.safetensors",
         "--calibration-data", "ab.fasta", "--out", "n2d.h5", "-q"], env=env)
    run([proteus, "calibrate", "--model", "syn.safetensors", "--calibration-data", "ab.fasta",
         "--out", "b1.h5", "--batch-tokens", "1", "--threads", "2", "-q"])
    run([proteus, "calibrate", "--model", "syn.safetensors", "--calibration-data", "ab.fasta",
         "--out", "b600.h5", "--batch-tokens", "600", "-q"])
    check(all(open(f, "rb").read() == blobs[0] for f in ("n2d.h5", "b1.h5", "b600.h5")),
          "calibration store byte-identical for default threads, one sequence per forward, 600-token batches")
    # --hardware-target reaches the observed forward: ref through the option
    # is ref through PQ_KERNELS, and (with AVX2 here) not the default kernels
    ref_args = [proteus, "calibrate", "--model", "syn.safetensors", "--calibration-data", "ab.fasta", "-q"]
    run(ref_args + ["--out", "hw_ref.h5", "--hardware-target", "ref"])
    run(ref_args + ["--out", "hw_env.h5"], env=dict(os.environ, PQ_KERNELS="ref"))
    same_ref = open("hw_ref.h5", "rb").read() == open("hw_env.h5", "rb").read()
    avx2 = " avx2" in open("/proc/cpuinfo").read()
    check(same_ref and (not avx2 or open("hw_ref.h5", "rb").read() != blobs[0]),
          "calibrate --hardware-target ref = PQ_KERNELS=ref" + (", unlike the AVX2 default" if avx2 else ""))
    p = run(ref_args + ["--out", "hw_bad.h5", "--hardware-target", "bogus"], expect=2)
    check("bogus" in p.stderr and not os.path.exists("hw_bad.h5"), "calibrate --hardware-target bogus: config error")
    check(calib_groups("n1.h5").keys() == gab.keys() and
          all((calib_groups("n3.h5")[k] == gab[k]) if isinstance(gab[k], bytes) else np.array_equal(calib_groups("n3.h5")[k], gab[k]) for k in gab),
          "MPI statistics equal the single-process ones")

    # static quantization from the store (minmax: act_scale = max(|min|,|max|)/127)
    run([proteus, "quantize", "--model", "syn.safetensors", "--out", "q.h5", "--scheme", "static",
         "--calibration", "ab.h5", "--calibration-method", "minmax", "-q"])
    with h5py.File("q.h5") as f, h5py.File("ab.h5") as c:
        ok = True
        for name, site in (("esm.encoder.layer.0.attention.self.key.weight", "layer.0.attn_in"),
                           ("esm.encoder.layer.3.attention.output.dense.weight", "layer.3.attn_out"),
                           ("esm.encoder.layer.5.intermediate.dense.weight", "layer.5.ffn_in"),
                           ("esm.encoder.layer.1.output.dense.weight", "layer.1.ffn_mid")):
            a = c["calibration"][site].attrs
            want = np.float32(max(abs(np.float32(a["min"])), abs(np.float32(a["max"])))) / np.float32(127)
            got = f["tensors"][name]["act_scale"][()]
            ok &= got.shape == (1,) and got[0] == want and "act_zero_point" not in f["tensors"][name]
        check(ok, "static minmax act_scale = absmax/127 for q/k/v, out, fc1, fc2")
        check(f["tensors/esm.encoder.layer.0.attention.self.key.weight"].attrs["scheme"] == b"static", "scheme attr static")
        check("calibration" in f and len(f["calibration"]) == 24, "/calibration stored in the model")
    # asymmetric entropy from data: zero points present and in range
    run([proteus, "quantize", "--model", "syn.safetensors", "--out", "q2.h5", "--scheme", "static", "--asymmetric",
         "--calibration-data", "a.fasta", "--calibration-method", "entropy", "-q"])
    with h5py.File("q2.h5") as f:
        zp = [f["tensors"][n]["act_zero_point"][0] for n in f["tensors"] if "act_zero_point" in f["tensors"][n]]
        check(len(zp) == 36 and all(-128 <= z <= 127 for z in zp), "asymmetric static: 36 act zero points in int8 range")

    # automatic calibration on the trained model: the bundled sample
    p = run([proteus, "quantize", "--model", trained, "--out", "auto.h5", "--scheme", "static",
             "--calibration-method", "percentile", "-q"])
    check("bundled" in p.stdout and "128" in p.stdout, "automatic calibration says it uses the bundled data")
    with h5py.File("auto.h5") as f:
        check(int(f["calibration"].attrs["n_sequences"]) == 128, "automatic calibration used 128 sequences")
        s = f["tensors/esm.encoder.layer.2.intermediate.dense.weight/act_scale"][0]
        check(0 < s < 1, f"trained model act scale plausible ({s:.4g})")

    # exports
    run([proteus, "calibrate", "--model", trained, "--calibration-data", "a.fasta", "--out", "t.h5", "-q"])
    js = json.loads(run([proteus, "calibrate", "--export", "t.h5", "--format", "json", "--method", "entropy"]).stdout)
    trt = run([proteus, "calibrate", "--export", "t.h5", "--format", "tensorrt", "--method", "entropy"]).stdout.splitlines()
    check(trt[0] == "TRT-8601-EntropyCalibration2", "TensorRT cache header")
    ok = len(trt) == 25
    for line in trt[1:]:
        name, hexv = line.split(": ")
        v = struct.unpack(">f", bytes.fromhex(hexv))[0]
        ok &= v == np.float32(np.float32(js["sites"][name]["amax"]) / np.float32(127))
    check(ok, "TensorRT cache: 24 sites, hex fp32 scale = amax/127")
    run([proteus, "calibrate", "--export", "t.h5", "--format", "onnxruntime", "--method", "percentile",
         "--asymmetric", "--out", "ort.json"])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    venv = os.path.join(root, ".venv", "bin", "python")
    ort_check = r'''
import atexit, json, shutil, sys, os, tempfile
import numpy as np
from onnxruntime.quantization.calibrate import TensorData, TensorsData, CalibrationMethod
from onnxruntime.quantization.quant_utils import write_calibration_table
import onnxruntime.quantization.CalTableFlatBuffers.TrtTable as TrtTable
def hook(o):
    if o.get("CLS") == "numpy.array":
        return np.array(o["data"], dtype=o["dtype"])
    if o.get("CLS") == "TensorData":
        return TensorData(**{k: v for k, v in o.items() if k != "CLS"})
    if o.get("CLS") == "CalibrationMethod":
        return CalibrationMethod[o["value"].split(".")[1]]
    if o.get("CLS") == "TensorsData":
        return TensorsData(o["calibration_method"], o["data"])  # ORT validates keys and dtypes
    return o
td = json.load(open(sys.argv[1]), object_hook=hook)
assert isinstance(td, TensorsData) and td.calibration_method == CalibrationMethod.Percentile
d = tempfile.mkdtemp()
atexit.register(shutil.rmtree, d, True)
write_calibration_table(td, d)                            # ORT re-serialises it
again = json.load(open(os.path.join(d, "calibration.json")))
mine = json.load(open(sys.argv[1]))
assert again == mine, "ORT's own calibration.json differs from ours"
buf = open(os.path.join(d, "calibration.flatbuffers"), "rb").read()
t = TrtTable.TrtTable.GetRootAsTrtTable(buf, 0)
assert t.DictLength() == 24
for k, v in td.items():
    lo, hi = v.range_value
    assert lo <= hi, k
print("ORT loaded", len(td.data), "tensors")
'''
    if os.path.exists(venv):
        p = subprocess.run([venv, "-c", ort_check, "ort.json"], capture_output=True, text=True)
        print(p.stdout.strip(), p.stderr.strip()[-500:])
        check(p.returncode == 0, "ONNX Runtime table loads in onnxruntime (TensorData/TensorsData, write_calibration_table)")
    else:
        check(False, "no .venv with onnxruntime for the export check")

    # calibration errors: exit 6, named cause, nothing written
    p = run([proteus, "calibrate", "--model", "syn.safetensors", "--calibration-data", "a.fasta", "--out", "x.h5",
             "--max-length", "5"], expect=6)
    check("no usable calibration sequence" in p.stderr and not os.path.exists("x.h5") and not os.path.exists("x.h5.partial"),
          "all sequences too long: calibration error, no file")
    p = run([proteus, "quantize", "--model", trained, "--out", "bad.h5", "--scheme", "static", "--calibration", "ab.h5"], expect=6)
    check("model sha256" in p.stderr and not os.path.exists("bad.h5"), "store of another model: calibration error, no file")
    p = run([proteus, "quantize", "--model", trained, "--out", "bad.h5", "--calibration", "ab.h5"], expect=2)
    check("--scheme static" in p.stderr, "--calibration without --scheme static is a usage error")
    if FAIL:
        print(f"{len(FAIL)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
