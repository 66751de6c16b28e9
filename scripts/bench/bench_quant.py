#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench_quant.py - per-channel int8 observe + quantize of a [ROWS, COLS] fp32
weight: Proteus RTN (tests/peer/bench_rtn, one thread, with and without the
error-metric pass) against PyTorch's PerChannelMinMaxObserver +
torch.quantize_per_channel on the same matrix in the same run (one thread for
the fair comparison, then all threads). Prints GB/s of fp32 input and the
ratios, and checks that both produced the same codes and scales.

usage: /usr/bin/python3 scripts/bench/bench_quant.py --build build
           [--rows 20480] [--cols 5120] [--reps 3] [--asym] [--workdir /tmp/pq_bench_quant]"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch.ao.quantization import PerChannelMinMaxObserver


def bench_torch(w, sym, threads, reps):
    torch.set_num_threads(threads)
    x = torch.from_numpy(w)
    best, q, scale = float("inf"), None, None
    for _ in range(reps):
        t0 = time.perf_counter()
        obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, quant_min=-127 if sym else -128,
                                       quant_max=127,
                                       qscheme=torch.per_channel_symmetric if sym else torch.per_channel_affine)
        obs(x)
        scale, zp = obs.calculate_qparams()
        q = torch.quantize_per_channel(x, scale.to(torch.float64), zp.to(torch.int64), 0, torch.qint8)
        best = min(best, time.perf_counter() - t0)
    return best, q, scale


def bench_ours(exe, path, rows, cols, metrics, sym, reps, out=None):
    cmd = [exe, path, str(rows), str(cols), "1", "metrics" if metrics else "nometrics",
           "sym" if sym else "asym", str(reps)] + ([out] if out else [])
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    kv = dict(zip(line[0::2], line[1::2]))
    return float(kv["seconds"]), kv["kernels"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rows", type=int, default=20480)
    ap.add_argument("--cols", type=int, default=5120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--asym", action="store_true")
    ap.add_argument("--workdir", default="/tmp/pq_bench_quant")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    exe = os.path.join(root, a.build, "tests", "peer", "bench_rtn")
    os.makedirs(a.workdir, exist_ok=True)
    sym = not a.asym
    w = (np.random.default_rng(0).standard_normal((a.rows, a.cols), dtype=np.float32) * 0.02)
    path = os.path.join(a.workdir, "w.f32")
    w.tofile(path)
    gb = w.nbytes / 1e9
    print(f"matrix {a.rows}x{a.cols} fp32 ({gb:.3f} GB), per-channel int8 {'sym' if sym else 'asym'}, "
          f"best of {a.reps}; cpu: {os.cpu_count()} logical cores")

    out = os.path.join(a.workdir, "ours")
    t_nom, kern = bench_ours(exe, path, a.rows, a.cols, False, sym, a.reps, out)
    t_met, _ = bench_ours(exe, path, a.rows, a.cols, True, sym, a.reps)
    t_t1, q, scale = bench_torch(w, sym, 1, a.reps)
    nall = os.cpu_count() or 1
    t_tn, _, _ = bench_torch(w, sym, nall, a.reps)

    codes = np.fromfile(out + ".codes", dtype=np.int8).reshape(a.rows, a.cols)
    ours_scale = np.fromfile(out + ".scale", dtype=np.float32)
    same = (np.array_equal(codes, q.int_repr().numpy()) and
            np.array_equal(ours_scale.view(np.uint32), scale.to(torch.float32).numpy().view(np.uint32)))

    def row(name, t):
        print(f"  {name:<44s} {t * 1e3:9.1f} ms  {gb / t:7.2f} GB/s")
    row(f"proteus rtn, 1 thread, kernels={kern}", t_nom)
    row(f"proteus rtn + metrics, 1 thread", t_met)
    row("torch observer + quantize_per_channel, 1 thr", t_t1)
    row(f"torch observer + quantize_per_channel, {nall} thr", t_tn)
    print(f"  speed-up vs torch 1 thread: {t_t1 / t_nom:.1f}x (with metrics {t_t1 / t_met:.1f}x); "
          f"vs torch {nall} threads: {t_tn / t_nom:.1f}x")
    print(f"  codes and scales identical to torch: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
