#!/usr/bin/env python3
"""bench_gptq_accuracy.py - what GPTQ buys over round-to-nearest on the bundled
trained ESM-2 (esm2_t6_8M architecture): each recipe quantized with RTN and with
GPTQ (calibrated on the bundled sample, its first 128 sequences), then
`proteus evaluate` against the fp32 model on held-out sequences: masked-LM
accuracy, logits KL and embedding cosine.

    scripts/bench/bench_gptq_accuracy.py [--build build] [--fasta F] [--max-seqs N]

--fasta defaults to ../shared/data/proteins/dev_eval.fasta beside the checkout
(its first --max-seqs, default 400) and falls back to the repository's
data/proteins/eval_sample.fasta (200 sequences)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "data", "models", "esm2_t6_8M_proteus_mlm.f16.safetensors")
RECIPES = [("int4 per-channel", ["--precision", "int4", "--per-channel"]),
           ("int4 group 128", ["--precision", "int4", "--group-size", "128"]),
           ("int8 per-channel", ["--precision", "int8", "--per-channel"])]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"bench_gptq_accuracy: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return p


def held_out(path, n, tmp):
    with open(path) as f:
        recs = f.read().split(">")[1:]
    out = os.path.join(tmp, "held_out.fasta")
    with open(out, "w") as f:
        f.write("".join(">" + r for r in recs[:n]))
    return out, min(n, len(recs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--fasta", default=None)
    ap.add_argument("--max-seqs", type=int, default=400)
    a = ap.parse_args()
    proteus = os.path.join(a.build, "cli", "proteus")
    fasta = a.fasta or os.path.join(ROOT, "..", "shared", "data", "proteins", "dev_eval.fasta")
    if not os.path.exists(fasta):
        fasta = os.path.join(ROOT, "data", "proteins", "eval_sample.fasta")
    with tempfile.TemporaryDirectory(prefix="pq_gptq_acc.") as tmp:
        ev, n = held_out(fasta, a.max_seqs, tmp)
        print(f"bench_gptq_accuracy: {os.path.basename(MODEL)}, {n} held-out sequences of {fasta}, "
              f"GPTQ on the bundled calibration sample (128), {os.cpu_count()} cores")
        print(f"{'recipe':18s} {'method':6s} {'quantize s':>10s} {'accuracy':>9s} {'fp32':>7s} "
              f"{'logits KL':>10s} {'emb cosine':>11s}")
        for name, args in RECIPES:
            for method in ("rtn", "gptq"):
                out = os.path.join(tmp, f"{method}.h5")
                t0 = time.perf_counter()
                run([proteus, "quantize", "--model", MODEL, "--out", out, "--method", method, "-q", *args])
                secs = time.perf_counter() - t0
                js = os.path.join(tmp, "eval.json")
                run([proteus, "evaluate", "--model", out, "--reference", MODEL, "--fasta", ev, "--json", js])
                with open(js) as f:
                    r = json.load(f)
                print(f"{name:18s} {method:6s} {secs:10.1f} {100 * r['accuracy_quantized']:8.2f}% "
                      f"{100 * r['accuracy_reference']:6.2f}% {r['logits_kl_mean']:10.3g} "
                      f"{r['embedding_cosine_mean']:11.7f}")


if __name__ == "__main__":
    main()
