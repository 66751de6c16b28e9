#!/usr/bin/env python3
"""bench_ab.py - two builds of Proteus, A (before a change) and B (after), on
the same work, interleaved round by round so that a slow spell of a shared
machine hits both alike; prints each configuration's median and the B/A ratio.

    scripts/bench/bench_ab.py OLD_PROTEUS NEW_PROTEUS [--rounds N]

Configurations: `quantize` of a synthetic ESM-2 150M (int8 per-channel) on
-n 1 x 1 thread, -n 2 x 1 thread and -n 1 x 2 threads (wall time of the whole
mpirun), and `bench` of the t33 (650M) int8 per-channel forward on 8 x 256
tokens (the median forward time `bench` reports). Both builds quantize the same
checkpoint and their files' datasets must be identical (checked with h5py)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
for kv in ("PMIX_MCA_psec=native", "OMPI_MCA_pml=ob1", "PMIX_MCA_gds=hash", "HWLOC_COMPONENTS=-pci,-linuxio",
           "HWLOC_PLUGINS_BLACKLIST=hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml"):
    k, v = kv.split("=", 1)
    ENV.setdefault(k, v)

QUANT = [("quantize -n 1 x 1 thread", 1, 1, []), ("quantize -n 2 x 1 thread", 2, 1, []),
         ("quantize -n 1 x 2 threads", 1, 2, ["--bind-to", "none"])]


def run(cmd):
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"bench_ab: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p


def quantize(proteus, n, threads, place, model, out):
    if os.path.exists(out):
        os.remove(out)
    t0 = time.perf_counter()
    run(["mpirun", "-n", str(n), *place, proteus, "quantize", "--model", model, "--out", out,
         "--per-channel", "--precision", "int8", "--threads", str(threads), "-q"])
    return time.perf_counter() - t0


def forward(proteus, model, js):
    run([proteus, "bench", "--model", model, "--batch", "8", "--length", "256", "--threads", "2",
         "--reps", "3", "--warmup", "1", "--json", js])
    with open(js) as f:
        return float(json.load(f)["median_s"])


def same_datasets(a, b):
    import h5py
    import numpy as np
    diff = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and (name not in fb or not np.array_equal(obj[()], fb[name][()])):
                diff.append(name)
        fa.visititems(visit)
    return diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    builds = {"A": a.old, "B": a.new}
    times = {(cfg, k): [] for cfg in [q[0] for q in QUANT] + ["t33 int8 forward 8 x 256"] for k in builds}
    with tempfile.TemporaryDirectory(prefix="pq_bench_ab.") as tmp:
        t30, t33 = os.path.join(tmp, "t30.safetensors"), os.path.join(tmp, "t33.safetensors")
        run([a.new, "synth", "--arch", "esm2_t30_150M_UR50D", "--seed", "1", "--out", t30])
        run([a.new, "synth", "--arch", "esm2_t33_650M_UR50D", "--seed", "1", "--out", t33])
        q33 = {}
        for k, p in builds.items():
            q33[k] = os.path.join(tmp, f"t33_{k}.h5")
            quantize(p, 1, 2, ["--bind-to", "none"], t33, q33[k])
        bad = same_datasets(q33["A"], q33["B"])
        if bad:
            sys.exit(f"bench_ab: the builds' t33 files differ in {len(bad)} datasets, e.g. {bad[:3]}")
        print(f"bench_ab: A = {a.old}\n          B = {a.new}\n{a.rounds} rounds, {os.cpu_count()} cores, "
              f"load average {open('/proc/loadavg').read().split()[:3]}; the t33 int8 files of A and B are identical")
        for _ in range(a.rounds):
            for name, n, t, place in QUANT:
                for k, p in builds.items():
                    times[(name, k)].append(quantize(p, n, t, place, t30, os.path.join(tmp, f"q_{k}.h5")))
            for k, p in builds.items():
                times[("t33 int8 forward 8 x 256", k)].append(forward(p, q33[k], os.path.join(tmp, f"f_{k}.json")))
        print(f"{'configuration':32s} {'A median s':>11s} {'B median s':>11s} {'B/A':>6s}")
        for name in [q[0] for q in QUANT] + ["t33 int8 forward 8 x 256"]:
            ma, mb = statistics.median(times[(name, "A")]), statistics.median(times[(name, "B")])
            print(f"{name:32s} {ma:11.3f} {mb:11.3f} {mb / ma:6.3f}")


if __name__ == "__main__":
    main()
