# SPDX-License-Identifier: Apache-2.0
"""Calibration benchmarks.

1. Statistics collection throughput per core on real activations (the fc2
   inputs of the trained t6 model on calibration proteins, dumped by
   calib_dump): Proteus (min/max + per-channel absmax + IEEE-bit histogram)
   vs PyTorch's HistogramObserver (2048 bins) on the same data, one thread.
2. `proteus calibrate` of a synthetic esm2_t30_150M on N sequences with
   mpiexec -n 1 and -n 2 (default threads: the node's cores / ranks),
   interleaved, best of --rounds, wall time and speed-up.

usage: /usr/bin/python3 scripts/bench/bench_calib.py BUILD_DIR [--seqs 256] [--max-length L] [--rounds 2]
       [--skip-mpi] [--skip-hist]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--seqs", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=1022)
    ap.add_argument("--skip-mpi", action="store_true")
    ap.add_argument("--skip-hist", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    model = os.path.join(ROOT, "data/models/esm2_t6_8M_proteus_mlm.f16.safetensors")
    fasta = os.path.join(ROOT, "data/proteins/calib_sample.fasta")
    tmp = tempfile.mkdtemp()
    if not a.skip_hist:
        bench_hist(b, model, fasta, tmp)
    if not a.skip_mpi:
        bench_mpi(a, b, fasta, tmp)


def bench_hist(b, model, fasta, tmp):
    subprocess.run([f"{b}/tests/calib/calib_dump", model, fasta, "48", tmp, "layer.2.ffn_mid"], check=True,
                   stdout=subprocess.DEVNULL)
    path = os.path.join(tmp, "layer.2.ffn_mid.f32")
    x = np.fromfile(path, dtype=np.float32).reshape(-1, 1280)
    print(f"data: {x.shape[0]} tokens x 1280 = {x.nbytes / 1e6:.1f} MB of fp32 activations (layer.2.ffn_mid)")
    res = {}
    for variant in ("avx2", "ref"):
        env = dict(os.environ, PQ_KERNELS=variant, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        out = subprocess.run([f"{b}/tests/calib/bench_hist", path, "1280", "5"], env=env, check=True,
                             capture_output=True, text=True).stdout
        res[variant] = float(out.split("GB/s")[1])
        print(f"proteus collect ({variant}): {res[variant]:.2f} GB/s per core")
    import torch
    torch.set_num_threads(1)
    t = torch.from_numpy(x)
    obs = torch.ao.quantization.HistogramObserver(bins=2048)
    obs(t[:64])  # initialise, then time a realistic stream of batches
    n_bytes = 0
    t0 = time.perf_counter()
    for i in range(0, t.shape[0], 512):
        obs(t[i:i + 512])
        n_bytes += t[i:i + 512].numel() * 4
    dt = time.perf_counter() - t0
    torch_gbs = n_bytes / dt / 1e9
    print(f"torch {torch.__version__} HistogramObserver: {torch_gbs:.3f} GB/s per core")
    print(f"speed-up vs HistogramObserver: {res['avx2'] / torch_gbs:.1f}x (avx2), {res['ref'] / torch_gbs:.1f}x (ref)")


def bench_mpi(a, b, fasta, tmp):
    syn = os.path.join(tmp, "t30.safetensors")
    subprocess.run([f"{b}/coordinator/proteus", "synth", "--arch", "t30_150M", "--seed", "1", "--out", syn], check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    wall = {1: [], 2: []}
    for r in range(a.rounds):
        for n in (1, 2):
            t0 = time.perf_counter()
            subprocess.run(["mpiexec", "--oversubscribe", "-n", str(n), f"{b}/coordinator/proteus", "calibrate",
                            "--model", syn, "--calibration-data", fasta, "--max-seqs", str(a.seqs),
                            "--max-length", str(a.max_length), "--out", os.path.join(tmp, f"c{n}.h5"), "-q"],
                           env=env, check=True)
            wall[n].append(time.perf_counter() - t0)
            print(f"round {r}: calibrate t30_150M, {a.seqs} seqs (max length {a.max_length}), -n {n}: "
                  f"{wall[n][-1]:.1f} s", flush=True)
    same = open(os.path.join(tmp, "c1.h5"), "rb").read() == open(os.path.join(tmp, "c2.h5"), "rb").read()
    print(f"best -n 1 {min(wall[1]):.1f} s, -n 2 {min(wall[2]):.1f} s: speed-up {min(wall[1]) / min(wall[2]):.2f}x; "
          f"stores byte-identical: {same}")


if __name__ == "__main__":
    sys.exit(main())
