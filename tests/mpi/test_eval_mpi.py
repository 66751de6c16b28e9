# SPDX-License-Identifier: Apache-2.0
"""test_eval_mpi.py - `proteus evaluate` on N MPI ranks: the JSON report is
the same, timings apart, for the singleton, 1, 2 and 3 ranks under mpirun,
2 threads and another batch size, with chunks small enough that every rank
gets several; a missing model under mpirun fails with one clear message and
the I/O exit status.

The timing fields, which differ from run to run, are tokens_per_s_*,
speedup, rss_load_mib_*, peak_rss_mib and utilization; threads and ranks
say how the run was made.

usage: test_eval_mpi.py PROTEUS MPIEXEC MODEL.safetensors FASTA"""
import json
import os
import subprocess
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from checks import expect, finish, scratch  # noqa: E402

PROTEUS, MPIEXEC, MODEL, FASTA = (os.path.abspath(a) for a in sys.argv[1:5])
TMP = scratch("pq_evalmpi_")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", TMPDIR=TMP)  # where rank 0's scratch journal goes
TIMINGS = {"tokens_per_s_reference", "tokens_per_s_quantized", "speedup", "rss_load_mib_reference",
           "rss_load_mib_quantized", "peak_rss_mib", "utilization", "threads", "ranks"}
def run(ranks, *args):
    cmd = [PROTEUS, *args] if ranks is None else [MPIEXEC, "-n", str(ranks), PROTEUS, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


q8 = os.path.join(TMP, "q8.h5")
p = run(None, "quantize", "--model", MODEL, "--out", q8, "--per-channel", "-q")
expect(p.returncode == 0, f"quantize: {p.stderr}")
# 9 sequences of at most 120 residues in chunks of about 200: about 5 chunks
common = ["--model", q8, "--reference", MODEL, "--fasta", FASTA, "--max-seqs", "9", "--max-length", "120",
          "--chunk-residues", "200"]
runs = {}
for label, ranks, extra in (("singleton", None, ["--threads", "1"]), ("1 rank", 1, ["--threads", "1"]),
                            ("2 ranks", 2, ["--threads", "1"]), ("3 ranks", 3, ["--threads", "1"]),
                            ("2 threads, batch 300", None, ["--threads", "2", "--batch-tokens", "300"])):
    js = os.path.join(TMP, label.replace(" ", "_").replace(",", "") + ".json")
    p = run(ranks, "evaluate", *common, "--json", js, *extra)
    expect(p.returncode == 0, f"{label}: exit {p.returncode}: {p.stderr}")
    if p.returncode == 0:
        runs[label] = json.load(open(js))
        expect("top-1 disagreement" in p.stdout and "utilization" in p.stdout, f"{label}: table lines missing")
if "singleton" in runs:
    base = runs["singleton"]
    expect(base["n_sequences"] == 9, f"n_sequences {base['n_sequences']}")
    for k in ("confidence_reference", "confidence_quantized", "ece_reference", "ece_quantized",
              "top1_error_reference", "top1_error_quantized", "top1_disagreement"):
        expect(isinstance(base.get(k), float) and 0 <= base[k] <= 1, f"{k}: {base.get(k)}")
    expect(abs(base["top1_error_quantized"] - (1 - base["accuracy_quantized"])) < 1e-15, "top-1 error")
    u = base["utilization"]
    expect(set(u) >= {"kernel", "achieved_gops", "peak_gops", "fraction", "threads_busy", "memory_gbps"},
           f"utilization keys {sorted(u)}")
    expect("int8 (W8A8)" in u["kernel"] and u["peak_gops"] > 0 and 0 < u["fraction"], f"utilization {u}")
    want = {k: v for k, v in base.items() if k not in TIMINGS}
    for label, r in runs.items():
        got = {k: v for k, v in r.items() if k not in TIMINGS}
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k) and k not in ("fasta", "model"))
        expect(not diff, f"{label}: differs from the singleton in {[(k, want.get(k), got.get(k)) for k in diff]}")
    for label, n in (("1 rank", 1), ("2 ranks", 2), ("3 ranks", 3)):
        if label in runs:
            expect(runs[label]["ranks"] == n and runs[label]["utilization"]["threads"] == n,
                   f"{label}: ranks {runs[label]['ranks']}, threads {runs[label]['utilization']['threads']}")

leftover = [f for f in os.listdir(TMP) if f.endswith(".journal")]
expect(not leftover, f"journals left: {leftover}")

# a missing model: every rank stops, one message, the I/O status
p = run(2, "evaluate", "--model", os.path.join(TMP, "nope.h5"), "--reference", MODEL, "--fasta", FASTA,
        "--max-seqs", "2")
lines = [ln for ln in p.stderr.splitlines() if "nope.h5" in ln]
expect(p.returncode == 3 and len(lines) == 1, f"missing model under mpirun: exit {p.returncode}: {p.stderr}")
leftover = [f for f in os.listdir(TMP) if f.endswith(".journal")]
expect(not leftover, f"journals left: {leftover}")

finish()
