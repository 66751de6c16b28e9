# SPDX-License-Identifier: Apache-2.0
"""test_train.py - the training loop end to end (tests/train/train_run):

- resume: 4 steps in one run on 1 thread give the same master weights (and
  LSQ steps) bit for bit as 2 steps, a checkpoint, and 2 resumed steps on 2
  threads; for fp32 training and for int4 grouped asymmetric QAT with int8
  activations;
- on the bundled model every step's loss is finite and below ln 33 (the
  cross-entropy of uniform predictions);
- divergence: a learning rate of 1e30 overflows; the run stops with exit
  status 13 (accuracy) and a message naming the step and what overflowed,
  and the checkpoint of the last good step stays readable, at that step;
- resuming with another batch size is refused (exit status 2) naming it.

usage: python3 test_train.py TRAIN_RUN MODEL.safetensors TRAIN.fasta"""
import atexit
import math
import os
import shutil
import subprocess
import sys
import tempfile

RUN, MODEL, FASTA = sys.argv[1:4]
TMP = tempfile.mkdtemp(prefix="pq_train_")
atexit.register(shutil.rmtree, TMP, True)
BASE = ["--batch", "4", "--micro", "2", "--lr", "1e-4"]


def run(ckpt, weights, steps, now, *extra):
    p = subprocess.run([RUN, MODEL, FASTA, ckpt, weights, str(steps), str(now), *BASE, *extra],
                       capture_output=True, text=True)
    return p


def resume_case(label, extra):
    d = os.path.join(TMP, label)
    os.makedirs(d)
    a = run(os.path.join(d, "a.h5"), os.path.join(d, "a.f32"), 4, 4, "--threads", "1", *extra)
    if a.returncode != 0:
        return [f"{label}: uninterrupted run failed: {a.stderr.strip()}"], []
    b1 = run(os.path.join(d, "b.h5"), os.path.join(d, "b0.f32"), 4, 2, "--threads", "2", *extra)
    b2 = run(os.path.join(d, "b.h5"), os.path.join(d, "b.f32"), 4, 2, "--threads", "2", "--resume", *extra)
    if b1.returncode or b2.returncode:
        return [f"{label}: interrupted run failed: {b1.stderr.strip()} {b2.stderr.strip()}"], []
    losses = [float(line.split()[3]) for line in a.stdout.splitlines() if line.startswith("step")]
    resumed = [line for line in b2.stdout.splitlines() if line.startswith("step")]
    fails = []
    if [r.split()[1] for r in resumed] != ["3", "4"]:
        fails.append(f"{label}: the resumed run did steps {resumed}, not 3 and 4")
    same = open(os.path.join(d, "a.f32"), "rb").read() == open(os.path.join(d, "b.f32"), "rb").read()
    if not same:
        fails.append(f"{label}: resumed weights (2 threads) differ from the uninterrupted run (1 thread)")
    print(f"{label}: losses {['%.4f' % x for x in losses]}, resumed run identical: {same}")
    return fails, losses


def main():
    failures = []
    f, losses = resume_case("fp32", [])
    failures += f
    if losses and not all(math.isfinite(x) and x < math.log(33) for x in losses):
        failures.append(f"fp32 losses {losses} not finite or above ln 33")
    f, _ = resume_case("qat_int4_g32_asym_a8", ["--qat", "4", "32", "0", "1"])
    failures += f

    d = os.path.join(TMP, "nan")
    os.makedirs(d)
    ck = os.path.join(d, "c.h5")
    p = run(ck, os.path.join(d, "w.f32"), 10, 10, "--lr", "1e30")
    print(f"divergence: exit {p.returncode}: {p.stderr.strip()}")
    if p.returncode != 13 or "step" not in p.stderr or "overflowed" not in p.stderr:
        failures.append(f"divergence: exit {p.returncode}, message {p.stderr.strip()!r}")
    else:
        bad = int(p.stderr.split("step ")[1].split(":")[0].split()[0])
        good = [line for line in p.stdout.splitlines() if line.startswith("step")]
        if len(good) != bad - 1:
            failures.append(f"divergence at step {bad} but {len(good)} steps reported done")
        # the checkpoint holds the last good step and resumes
        q = run(ck, os.path.join(d, "w2.f32"), 10, 0, "--lr", "1e30", "--resume")
        if q.returncode != 0:
            failures.append(f"the kept checkpoint does not load: {q.stderr.strip()}")
        elif f"resumed at step {bad - 1}" not in q.stdout:
            failures.append(f"the kept checkpoint is not at step {bad - 1}: {q.stdout.strip()}")
        if os.path.exists(ck + ".tmp"):
            failures.append("a temporary checkpoint was left behind")
    q = run(ck, os.path.join(d, "w3.f32"), 10, 1, "--lr", "1e30", "--resume", "--batch", "2")
    if q.returncode != 2 or "batch_size" not in q.stderr:
        failures.append(f"a resume with another batch size: exit {q.returncode}: {q.stderr.strip()}")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
