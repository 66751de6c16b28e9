# SPDX-License-Identifier: Apache-2.0
"""`proteus calibrate --pipeline-stages P` under mpiexec: the layers split
into P stages over consecutive ranks, N / P data-parallel replicas. The
stores must be identical, dataset by dataset and attribute by attribute (and
byte for byte), to the single-process store for (N, P) = (1, 1), (2, 2),
(3, 3), (4, 2), (4, 4), with several micro-batches per replica in flight;
P not dividing N or above the layer count is a config error (exit 2, no
file).
usage: test_calib_pipeline.py PROTEUS MPIEXEC CALIB_FASTA"""
import atexit
import os
import shutil
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
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
        raise SystemExit(f"{args[:6]}... exited {p.returncode}, expected {expect}")
    return p


def contents(path):
    """Every dataset (values, dtype, shape) and attribute of the file."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                out[f"{name}@{k}"] = np.asarray(v)
            if isinstance(obj, h5py.Dataset):
                out[name] = np.asarray(obj[()])
        for k, v in f.attrs.items():
            out[f"/@{k}"] = np.asarray(v)
        f.visititems(visit)
    return out


def same(a, b):
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a)


def main():
    proteus, mpiexec, fasta = (os.path.abspath(a) for a in sys.argv[1:4])
    tmp = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, tmp, True)  # leave no test files behind
    os.chdir(tmp)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run([proteus, "synth", "--arch", "esm2_t6_8M_UR50D", "--seed", "1", "--out", "syn.safetensors"])
    # 600-token micro-batches: each replica streams several through its stages
    common = ["calibrate", "--model", "syn.safetensors", "--calibration-data", fasta,
              "--max-seqs", "20", "--batch-tokens", "600", "--threads", "1", "-q"]
    run([proteus] + common + ["--out", "ref.h5"])
    ref = contents("ref.h5")
    check(len([k for k in ref if k.endswith("/chan_absmax")]) == 24 and
          int(ref["calibration@n_sequences"]) == 20, "reference store: 24 sites, 20 sequences")
    for n, p in ((1, 1), (2, 2), (3, 3), (4, 2), (4, 4)):
        out = f"n{n}p{p}.h5"
        run([mpiexec, "--oversubscribe", "-n", str(n), proteus] + common +
            ["--pipeline-stages", str(p), "--out", out], env=env)
        got = contents(out)
        check(same(got, ref), f"N={n} P={p}: every dataset and attribute identical to one process")
        check(open(out, "rb").read() == open("ref.h5", "rb").read(), f"N={n} P={p}: store byte-identical")
    # bad layouts: config error on every rank, nothing written
    for n, p, why in ((4, 3, "does not divide"), (7, 7, "exceeds the 6 layers")):
        r = run([mpiexec, "--oversubscribe", "-n", str(n), proteus] + common +
                ["--pipeline-stages", str(p), "--out", "bad.h5"], expect=2, env=env)
        check(why in r.stderr and not os.path.exists("bad.h5") and not os.path.exists("bad.h5.partial"),
              f"N={n} P={p}: config error ({why}), no file")
    if FAIL:
        print(f"{len(FAIL)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
