# SPDX-License-Identifier: Apache-2.0
"""test_optimize_mpi.py - `proteus optimize` on 1, 2 and 3 MPI ranks and
with 2 threads: the sensitivity table (every unit measured on whichever rank
the split gives it) and the recipe written are the same bytes.

usage: test_optimize_mpi.py PROTEUS MPIEXEC MODEL CALIB.fasta EVAL.fasta"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import expect, finish, path, scratch  # noqa: E402

PROTEUS, MPIEXEC, MODEL, CALIB, EVAL = (os.path.abspath(a) for a in sys.argv[1:6])
TMP = scratch("pq_optimize_mpi_", keep_on_failure=True)
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
def optimize(name, launcher, threads):
    out, js = path(name + ".recipe.json"), path(name + ".json")
    cmd = launcher + [PROTEUS, "optimize", "--model", MODEL, "--calibration-data", CALIB, "--calibration-seqs", "3",
                      "--eval-data", EVAL, "--eval-seqs", "3", "--max-length", "48", "--threads", str(threads),
                      "--max-size", "5.5M", "--tmp-dir", TMP, "-q", "--out", out, "--json", js]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    expect(p.returncode == 0, f"{name}: exit {p.returncode}: {p.stderr[-2000:]}")
    if p.returncode:
        return None, None
    return json.load(open(js))["sensitivity"], open(out, "rb").read()


base_sens, base_recipe = optimize("r1", [], 1)
for name, launcher, threads in [("n2", [MPIEXEC, "-n", "2"], 1), ("n3", [MPIEXEC, "-n", "3"], 1),
                                ("t2", [], 2)]:
    sens, recipe = optimize(name, launcher, threads)
    if sens is None or base_sens is None:
        continue
    expect(sens == base_sens, f"{name}: the sensitivity table differs from one rank's")
    expect(recipe == base_recipe, f"{name}: the recipe differs from one rank's")
expect(base_sens is not None and any(c["kl"] > 0 for s in base_sens for c in s["candidates"]), "measured cells")
finish()
