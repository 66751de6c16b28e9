# SPDX-License-Identifier: Apache-2.0
"""bench_qat.py - figures of `proteus qat` (docs/PERFORMANCE.md, "Quantization-aware
training"), each measured against its reference in the same run:

  kl        int4 per-channel: RTN and GPTQ (`proteus quantize`, weight-only and
            W4A8) vs QAT after --steps steps (cross-entropy, --distill, and
            --distill --act int8 = W4A8), trained (and GPTQ calibrated) on the
            bundled calibration sample, each evaluated against the fp32 model
            with `proteus evaluate` on --eval-seqs held-out sequences;
  accuracy  the accuracy table: int4 per-channel W4A16, W4A8 dynamic and W4A8
            static, each as RTN, GPTQ, QAT from RTN and QAT from GPTQ (--distill,
            --steps steps; static: --act-scheme static, ranges learned from the
            static scheme's minmax calibration), trained on the bundled
            calibration sample; GPTQ, the static ranges and the QAT starting
            points from its first --calib-seqs sequences; each model evaluated
            with `proteus evaluate` on the first --eval-seqs sequences of --eval
            (masked-LM accuracy, logits KL and embedding cosine against fp32).
            RTN and GPTQ are one `quantize --scheme static` file each, run as
            W4A16, W4A8 dynamic and W4A8 static by evaluate's --mode;
  speed     training tokens/s (forward + backward + AdamW, fp32) of `proteus qat
            --precision fp32` vs PyTorch fair-esm training of the same model on
            batches of the same shape and thread count, interleaved;
  ranks     `mpirun -n 2` vs `-n 1` on the same global batch, one thread per rank,
            interleaved: the loop time, and the busiest rank's CPU time in the
            steps (printed by `proteus qat`): the wall time the loop takes when
            each rank has a core to itself, which a
            loaded machine that shares the CPUs fairly between sessions does not
            give (the two ranks then share the one session's share).

usage: .venv/bin/python scripts/bench/bench_qat.py [kl] [accuracy] [speed] [ranks] [--threads T]
       [--steps N] [--rounds N] [--eval-seqs N] [--eval-length L] [--calib-seqs N] [--model M]
       [--eval F]"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTEUS = os.path.join(ROOT, "build", "cli", "proteus")
MODEL = os.path.join(ROOT, "data", "models", "esm2_t6_8M_proteus_mlm.f16.safetensors")
CALIB = os.path.join(ROOT, "data", "proteins", "calib_sample.fasta")
EVAL = os.path.join(ROOT, "..", "shared", "data", "proteins", "dev_eval.fasta")
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PMIX_MCA_psec": "native", "OMPI_MCA_pml": "ob1",
           "PMIX_MCA_gds": "hash", "HWLOC_COMPONENTS": "-pci,-linuxio",
           "HWLOC_PLUGINS_BLACKLIST": "hwloc_gl,hwloc_opencl,hwloc_pci,hwloc_xml_libxml"}


def sh(cmd, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=e)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
    return p.stdout


def evaluate(q, a, tmp, mode="auto"):
    js = os.path.join(tmp, os.path.basename(q) + mode + ".json")
    sh([PROTEUS, "evaluate", "--model", q, "--reference", a.model, "--fasta", a.eval, "--max-seqs",
        str(a.eval_seqs), "--max-length", str(a.eval_length), "--threads", str(a.threads), "--mode", mode,
        "--json", js])
    return json.load(open(js))


def first_seqs(src, n, dst):
    with open(src) as f, open(dst, "w") as g:
        k = 0
        for line in f:
            k += line.startswith(">")
            if k > n:
                break
            g.write(line)
    return dst


def bench_accuracy(a, tmp):
    t_all = time.time()
    cal = first_seqs(CALIB, a.calib_seqs, os.path.join(tmp, "cal.fasta"))
    q = [PROTEUS, "quantize", "--model", a.model, "--precision", "int4", "--per-channel", "--scheme", "static",
         "--calibration-data", cal, "--threads", str(a.threads)]
    made = {}
    for init, extra in (("RTN", []), ("GPTQ", ["--method", "gptq"])):
        out = os.path.join(tmp, init + ".h5")
        t0 = time.time()
        sh(q + extra + ["--out", out])
        made[init] = (out, time.time() - t0)
    common = ["--model", a.model, "--data", CALIB, "--precision", "int4", "--steps", str(a.steps), "--distill",
              "--batch-size", str(a.batch), "--micro-batch", str(a.batch), "--max-residues", str(a.max_res),
              "--lr", str(a.lr), "--threads", str(a.threads), "-q"]
    schemes = (("W4A16", "weight-only", []), ("W4A8 dynamic", "dynamic", ["--act", "int8"]),
               ("W4A8 static", "auto", ["--act", "int8", "--act-scheme", "static"]))
    rows = []
    for scheme, mode, act in schemes:
        for init in ("RTN", "GPTQ"):
            rows.append((scheme, init, made[init][0], mode, made[init][1]))
        for init in ("rtn", "gptq"):
            out = os.path.join(tmp, f"qat_{init}_{len(rows)}.h5")
            t0 = time.time()
            cal_arg = ["--calibration-data", cal] if init == "gptq" or "static" in act else []
            sh([PROTEUS, "qat", *common, *act, *cal_arg, "--init", init, "--out", out])
            rows.append((scheme, f"QAT {a.steps} steps from {init.upper()}", out, "auto", time.time() - t0))
    print(f"| int4 per-channel | method | time | masked-LM accuracy (fp32) | logits KL vs fp32 | KL max | "
          f"embedding cosine |\n|---|---|---|---|---|---|---|")
    for scheme, label, path, mode, secs in rows:
        r = evaluate(path, a, tmp, mode)
        print(f"| {scheme} | {label} | {secs:.0f} s | {100 * r['accuracy_quantized']:.2f} % "
              f"({100 * r['accuracy_reference']:.2f} %) | {r['logits_kl_mean']:.3g} | {r['logits_kl_max']:.3g} | "
              f"{r['embedding_cosine_mean']:.6f} |", flush=True)
    print(f"accuracy: {time.time() - t_all:.0f} s wall in all (load average {os.getloadavg()[0]:.1f})")


def bench_kl(a, tmp):
    rows = []
    q = [PROTEUS, "quantize", "--model", a.model, "--precision", "int4", "--per-channel"]
    gptq = ["--method", "gptq", "--calibration-data", CALIB]
    for label, extra in (("RTN, W4A16", ["--scheme", "weight-only"]), ("RTN, W4A8 (dynamic)", []),
                         ("GPTQ, W4A16", gptq + ["--scheme", "weight-only"]), ("GPTQ, W4A8 (dynamic)", gptq)):
        out = os.path.join(tmp, "q%d.h5" % len(rows))
        t0 = time.time()
        sh(q + extra + ["--out", out])
        rows.append((label, out, time.time() - t0))
    common = ["--model", a.model, "--data", CALIB, "--precision", "int4", "--steps", str(a.steps),
              "--batch-size", str(a.batch), "--micro-batch", str(a.batch), "--max-residues", str(a.max_res),
              "--lr", str(a.lr), "--threads", str(a.threads), "-q"]
    for label, extra in ((f"QAT {a.steps} steps, masked-LM loss, W4A16", []),
                         (f"QAT {a.steps} steps, --distill, W4A16", ["--distill"]),
                         (f"QAT {a.steps} steps, --distill --act int8, W4A8 (dynamic)", ["--distill", "--act", "int8"])):
        out = os.path.join(tmp, "qat%d.h5" % len(rows))
        t0 = time.time()
        sh([PROTEUS, "qat", *common, *extra, "--out", out])
        rows.append((label, out, time.time() - t0))
    print("| int4 per-channel | time | masked-LM accuracy (fp32) | logits KL vs fp32 | KL max |\n|---|---|---|---|---|")
    for label, path, secs in rows:
        r = evaluate(path, a, tmp)
        print(f"| {label} | {secs:.0f} s | {100 * r['accuracy_quantized']:.2f} % "
              f"({100 * r['accuracy_reference']:.2f} %) | {r['logits_kl_mean']:.3g} | {r['logits_kl_max']:.3g} |",
              flush=True)


def torch_tokens_per_s(a, n_steps, seqs_len, batch):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "model"))
    import fairesm_ref
    torch.set_num_threads(a.threads)
    model, L, D = fairesm_ref.build_fairesm(a.model)
    model.train()
    opt = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("contact_head")], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    T = seqs_len + 2
    tokens = torch.randint(4, 24, (batch, T), generator=gen)
    tokens[:, 0], tokens[:, -1] = 0, 2
    sel = torch.rand(batch, T, generator=gen) < 0.15
    sel[:, 0] = sel[:, -1] = False
    target = tokens[sel]
    inp = tokens.clone()
    inp[sel] = 32
    best = 1e30
    for i in range(n_steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(inp)["logits"]
        loss = torch.nn.functional.cross_entropy(logits[sel], target)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i:
            best = min(best, dt)
    return batch * T / best


def proteus_tokens_per_s(a, tmp, n_steps, seqs_len, batch, ranks=1, precision="fp32", threads=None):
    # sequences at least seqs_len long, all cropped to seqs_len: the same tokens per step
    fa = os.path.join(tmp, "long.fasta")
    with open(CALIB) as f:
        recs, cur = [], None
        for line in f:
            if line.startswith(">"):
                cur = [line, ""]
                recs.append(cur)
            else:
                cur[1] += line.strip()
    with open(fa, "w") as g:
        for h, s in recs:
            if len(s) >= seqs_len:
                g.write(h + s + "\n")
    out = os.path.join(tmp, f"speed_{ranks}.h5")
    cmd = [PROTEUS, "qat", "--model", a.model, "--data", fa, "--precision", precision, "--steps", str(n_steps),
           "--batch-size", str(batch), "--micro-batch", str(max(1, batch // 2)), "--max-residues", str(seqs_len),
           "--checkpoint-every", "1000000", "--out", out, "-q",
           "--threads", str(threads or (a.threads if ranks == 1 else max(1, a.threads // ranks)))]
    if ranks > 1 or precision != "fp32":
        # no binding: other jobs' ranks 0 are bound to the same first core
        cmd = ["mpirun", "--bind-to", "none", "-n", str(ranks)] + cmd
    o = sh(cmd, MPI_ENV)
    secs = float(re.search(r"([0-9.]+) s for", o).group(1))
    cpu = float(re.search(r"CPU time in the steps ([0-9.]+) s", o).group(1))
    return n_steps * batch * (seqs_len + 2) / secs, secs, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="*", default=["kl", "accuracy", "speed", "ranks"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved -n 1 / -n 2 rounds (ranks)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-res", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--eval-seqs", type=int, default=400)
    ap.add_argument("--calib-seqs", type=int, default=128, help="accuracy: calibration sequences (GPTQ, static)")
    ap.add_argument("--eval-length", type=int, default=300)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--eval", default=EVAL)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pq_bench_qat_")
    try:
        if "kl" in a.what:
            bench_kl(a, tmp)
        if "accuracy" in a.what:
            bench_accuracy(a, tmp)
        if "speed" in a.what:
            for rep in range(2):  # interleaved: C, torch, C, torch
                c, _, _ = proteus_tokens_per_s(a, tmp, 5, 256, 4)
                t = torch_tokens_per_s(a, 4, 256, 4)
                print(f"speed rep {rep}: proteus {c:.0f} tokens/s, torch {t:.0f} tokens/s, ratio {c / t:.2f}x",
                      flush=True)
        if "ranks" in a.what:
            for rep in range(a.rounds):
                _, s1, c1 = proteus_tokens_per_s(a, tmp, 5, 256, 8, ranks=1, precision="int4", threads=1)
                _, s2, c2 = proteus_tokens_per_s(a, tmp, 5, 256, 8, ranks=2, precision="int4", threads=1)
                print(f"ranks rep {rep} (load {os.getloadavg()[0]:.1f}): loop -n 1 {s1:.1f} s, -n 2 {s2:.1f} s, "
                      f"{s1 / s2:.2f}x; busiest rank's CPU -n 1 {c1:.1f} s, -n 2 {c2:.1f} s, {c1 / c2:.2f}x",
                      flush=True)
    finally:
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
