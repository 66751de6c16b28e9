# SPDX-License-Identifier: Apache-2.0
"""test_embed_peer.py - `proteus embed`'s fair-esm `extract` options against
Meta's fair-esm (PyTorch, fp32) with the same weights, on real sequences,
one of them longer than --truncation-seq-length (cropped to its first L
residues, as extract crops): the chosen layers' (--repr-layers 0,3,-1)
per-token rows, their mean over the residues and the <cls> row
(--include mean,per_tok,bos), and the contact map (--contacts), all within
1e-4 of the larger of 1 and the reference's magnitude (the tolerance of
test_fairesm_peer.py).

usage: python test_embed_peer.py PROTEUS MODEL.safetensors FASTA"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fairesm_ref  # noqa: E402

PROTEUS, MODEL, FASTA = sys.argv[1:4]
TOL = 1e-4
TRUNC = 100
torch.set_num_threads(2)


def fasta_seqs(path, n):
    """The first n sequences of a FASTA file."""
    text = open(path).read().split(">")[1:n + 1]
    return ["".join(rec.splitlines()[1:]).replace(" ", "") for rec in text]


def tensor(ds):
    """An HDF5 float32 dataset as a torch tensor (no numpy bridge)."""
    a = ds[()]
    return torch.frombuffer(bytearray(a.astype("<f4").tobytes()), dtype=torch.float32).reshape(a.shape)


def main():
    seqs = sorted(fasta_seqs(FASTA, 100), key=len)
    chosen = [seqs[0], seqs[len(seqs) // 3], seqs[len(seqs) // 2]] + [s for s in seqs if len(s) > TRUNC + 40][:1]
    tmp = tempfile.mkdtemp(prefix="pq_embed_peer_")
    try:
        fa = os.path.join(tmp, "in.fasta")
        with open(fa, "w") as f:
            for i, s in enumerate(chosen):
                f.write(f">s{i}\n{s}\n")
        out = os.path.join(tmp, "e.h5")
        p = subprocess.run([PROTEUS, "embed", "--model", MODEL, "--fasta", fa, "--out", out, "--quiet",
                            "--repr-layers", "0,3,-1", "--include", "mean,per_tok,bos", "--contacts",
                            "--truncation-seq-length", str(TRUNC), "--threads", "2"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(f"proteus embed failed: {p.stderr}")
            return 1
        model, L, D = fairesm_ref.build_fairesm(MODEL)
        layers = [0, 3, L]
        bc = model.alphabet.get_batch_converter()
        _, _, tokens = bc([(str(i), s[:TRUNC]) for i, s in enumerate(chosen)])
        with torch.no_grad():
            ref = model(tokens, repr_layers=layers, return_contacts=True)
        failures, worst = [], {}

        def check(what, r, c, tol_scale=True):
            scale = max(1.0, float(r.abs().max())) if tol_scale else 1.0
            e = float((r - c).abs().max())
            worst[what] = max(worst.get(what, 0.0), e / scale)
            if e > TOL * scale:
                failures.append(f"{what}: max abs diff {e:.3g} (scale {scale:.3g})")

        with h5py.File(out, "r") as h:
            lengths = [int(x) for x in h["lengths"][()]]
            if lengths != [min(len(s), TRUNC) for s in chosen]:
                failures.append(f"lengths {lengths}")
                lengths = []
            offs = [int(x) for x in h["offsets"][()]] if lengths else []
            coff = [int(x) for x in h["contact_offsets"][()]] if lengths else []
            contacts = tensor(h["contacts"]) if lengths else None
            for li in layers:
                tok, mean, bos = (tensor(h[f"layer_{li}/{k}"]) for k in ("tokens", "mean", "bos"))
                for b, n in enumerate(lengths):
                    rr = ref["representations"][li][b]
                    check(f"layer {li} per_tok", rr[1:n + 1], tok[offs[b]:offs[b + 1]])
                    check(f"layer {li} mean", rr[1:n + 1].mean(0), mean[b])
                    check(f"layer {li} bos", rr[0], bos[b])
            for b, n in enumerate(lengths):
                check("contacts", ref["contacts"][b, :n, :n], contacts[coff[b]:coff[b + 1]].reshape(n, n), False)
        print(f"lengths {lengths}; worst relative: " + ", ".join(f"{k}={v:.2e}" for k, v in worst.items()))
        for f in failures:
            print("FAIL:", f)
        return 1 if failures else 0
    finally:
        shutil.rmtree(tmp, True)


if __name__ == "__main__":
    sys.exit(main())
