# SPDX-License-Identifier: Apache-2.0
"""test_train_mpi.py - `proteus qat` data-parallel over MPI ranks, the update
sharded over the ranks: 20 steps of int4 QAT (6 micro-batches a step) on 1, 2
and 3 ranks and on one rank with 2 threads leave the same training state bit
for bit (weights, both AdamW moments gathered from the ranks that own them,
LSQ steps and their moments, curve, recipe); so do 8 steps of int4 grouped
(32) asymmetric QAT with int8 activations and the norm clipped to 0.05 (5
micro-batches: ranks owning 2 and 1) on 1 and 3 ranks; so do 3 steps of
int4 QAT with static int8 activations (learned input steps) started from
GPTQ on a few short calibration sequences, on 1, 2 and 3 ranks and on one
rank with 2 threads (input steps and their moments included, and the
written files' act_scale); a diverging run on 2
ranks stops every rank with exit status 13 and the message naming the step.

The states are compared dataset by dataset (values and attributes): HDF5
files holding the same data may differ in a few bytes of metadata padding.

usage: python test_train_mpi.py PROTEUS MPIEXEC MODEL.safetensors TRAIN.fasta"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fasta_crop import write_cropped  # noqa: E402

PROTEUS, MPIEXEC, MODEL, DATA = sys.argv[1:5]
TMP = tempfile.mkdtemp(prefix="pq_trainmpi_")
atexit.register(shutil.rmtree, TMP, True)
ENV = dict(os.environ)
for k, v in (("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
             ("OMPI_MCA_rmaps_base_oversubscribe", "1"), ("PMIX_MCA_psec", "native"), ("OMPI_MCA_pml", "ob1"),
             ("PMIX_MCA_gds", "hash"), ("HWLOC_COMPONENTS", "-pci,-linuxio"),
             ("HWLOC_PLUGINS_BLACKLIST", "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml")):
    ENV.setdefault(k, v)
ARGS = ["--model", MODEL, "--data", DATA, "--precision", "int4", "--steps", "20", "--batch-size", "6",
        "--micro-batch", "1", "--max-residues", "32", "--lr", "1e-3", "-q"]


GROUPED = ["--steps", "8", "--batch-size", "5", "--group-size", "32", "--asymmetric", "--act", "int8",
           "--clip", "0.05"]


def static_args():
    """3 steps, static activations from GPTQ on 4 sequences of 48 residues."""
    cal = write_cropped(DATA, os.path.join(TMP, "cal.fasta"), 4, 48)
    return ["--steps", "3", "--batch-size", "3", "--act", "int8", "--act-scheme", "static", "--init", "gptq",
            "--calibration-data", cal]


def act_scales(path):
    with h5py.File(path) as h:
        return {n: h["tensors"][n]["act_scale"][()] for n in h["tensors"] if "act_scale" in h["tensors"][n]}


def run(n, threads, out, *extra):
    return subprocess.run([MPIEXEC, "-n", str(n), PROTEUS, "qat", *ARGS, "--threads", str(threads),
                           "--out", out, *extra], capture_output=True, text=True, env=ENV)


def same_states(label, runs, extra, failures):
    """Train with each (ranks, threads) of runs; every training state must
    equal the first's."""
    states = {}
    for n, threads in runs:
        out = os.path.join(TMP, f"{label}_n{n}t{threads}.h5")
        p = run(n, threads, out, *extra)
        if p.returncode != 0:
            failures.append(f"{label} -n {n} --threads {threads}: exit {p.returncode}: {p.stderr.strip()}")
            continue
        print(p.stdout.strip())
        with h5py.File(out + ".train.h5") as h:
            g = h["train"]
            states[(n, threads)] = ({k: g[k][()] for k in g}, dict(g.attrs))
        if "--act-scheme" in extra:
            scales = act_scales(out)
            if not scales:
                failures.append(f"{label} -n {n}: the file has no act_scale")
            for name, v in scales.items():
                states[(n, threads)][0]["act_scale " + name] = v
    ref = states.get(runs[0])
    for k, (data, attrs) in states.items():
        if ref is None:
            break
        bad = [name for name in ref[0] if name not in data or not np.array_equal(ref[0][name], data[name])]
        if bad or attrs != ref[1] or set(data) != set(ref[0]):
            failures.append(f"{label} -n {k[0]} --threads {k[1]}: the training state differs from -n 1 "
                            f"in {bad or 'its attributes'}")
        elif k != runs[0]:
            print(f"{label} -n {k[0]} --threads {k[1]}: {len(data)} datasets equal to -n 1 --threads 1")
    if ref is not None and not {"adam_m", "adam_v", "scale", "scale_m", "scale_v"} <= set(ref[0]):
        failures.append(f"{label}: the training state lacks moments or steps: {sorted(ref[0])}")


def main():
    failures = []
    same_states("int4", ((1, 1), (2, 1), (3, 1), (1, 2)), [], failures)
    same_states("int4-g32-asym-a8", ((1, 1), (3, 1)), GROUPED, failures)
    same_states("int4-a8-static-gptq", ((1, 1), (2, 1), (3, 1), (1, 2)), static_args(), failures)
    p = run(2, 1, os.path.join(TMP, "nan.h5"), "--lr", "1e30")
    print(f"divergence on 2 ranks: exit {p.returncode}: {p.stderr.strip()}")
    if p.returncode != 13 or "step" not in p.stderr or "overflowed" not in p.stderr:
        failures.append(f"divergence on 2 ranks: exit {p.returncode}, message {p.stderr.strip()!r}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
