# SPDX-License-Identifier: Apache-2.0
"""test_eval_peer.py - `proteus evaluate`'s confidence, calibration error,
top-1 errors and top-1 disagreement against the same numbers computed with
PyTorch from fair-esm's logits of the same weights: the bundled trained t6
as the reference, and as the "quantized" model a copy of it whose Linear
weights carry seeded Gaussian noise (so the two models disagree at some
positions), on held-out sequences under the masking rule of `proteus score
--help`, written here independently.

usage: python test_eval_peer.py PROTEUS MODEL.safetensors FASTA"""
import atexit
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import fairesm_ref  # noqa: E402

PROTEUS, MODEL, FASTA = sys.argv[1:4]
N_SEQS, SEED, BINS = 10, 5, 15
torch.set_num_threads(2)
TMP = tempfile.mkdtemp(prefix="pq_eval_peer_")
atexit.register(shutil.rmtree, TMP, True)  # leave no test files behind
def first_records(path, n):
    out, cur = [], None
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            if cur is not None:
                out.append("".join(cur))
            if len(out) == n:
                return out
            cur = []
        elif line:
            cur.append(line)
    if cur is not None and len(out) < n:
        out.append("".join(cur))
    return out


def write_safetensors(path, tensors):
    """fp32 safetensors: 8-byte header length, JSON header, raw data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = struct.pack("<%df" % t.numel(), *t.float().flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def ece(p, correct):
    """Expected calibration error, 15 equal-width bins (b/15, (b+1)/15]."""
    b = (torch.ceil(p * BINS).long() - 1).clamp(0, BINS - 1)
    e = 0.0
    for k in range(BINS):
        sel = b == k
        if sel.any():
            e += abs(float(correct[sel].double().sum()) - float(p[sel].sum()))
    return e / len(p)


def main():
    failures = []
    # the "quantized" model: every Linear weight of the layers plus 15 % of its own
    # spread as seeded Gaussian noise
    w = fairesm_ref.read_safetensors(MODEL)
    g = torch.Generator().manual_seed(7)
    noisy = {}
    for k, t in w.items():
        t = t.float()
        if k.startswith("esm.encoder.layer.") and k.endswith(".weight") and t.dim() == 2:
            t = t + 0.15 * t.std() * torch.randn(t.shape, generator=g)
        noisy[k] = t
    other = os.path.join(TMP, "noisy.safetensors")
    write_safetensors(other, noisy)

    seqs = first_records(FASTA, N_SEQS)
    maxlen = max(len(s) for s in seqs)
    js = os.path.join(TMP, "e.json")
    p = subprocess.run([PROTEUS, "evaluate", "--model", other, "--reference", MODEL, "--fasta", FASTA,
                        "--max-seqs", str(N_SEQS), "--max-length", str(maxlen), "--seed", str(SEED),
                        "--threads", "2", "--json", js], capture_output=True, text=True)
    if p.returncode != 0:
        print(f"proteus evaluate failed: {p.stderr}")
        sys.exit(1)
    got = json.load(open(js))

    ref, _, _ = fairesm_ref.build_fairesm(MODEL)
    qm, _, _ = fairesm_ref.build_fairesm(other)
    bc = ref.alphabet.get_batch_converter()
    _, _, tokens = bc([(str(i), s) for i, s in enumerate(seqs)])
    masked = tokens.clone()
    where = []
    for b, s in enumerate(seqs):
        for i in fairesm_ref.mask_positions(SEED, b, len(s)):
            where.append((b, i + 1))
            masked[b, i + 1] = ref.alphabet.mask_idx
    bi = torch.tensor([b for b, _ in where])
    ti = torch.tensor([t for _, t in where])
    truth = tokens[bi, ti]
    want = {}
    with torch.no_grad():
        full = [m(tokens)["logits"].double() for m in (ref, qm)]
        for name, m in (("reference", ref), ("quantized", qm)):
            prob = torch.softmax(m(masked)["logits"].double()[bi, ti], dim=-1)
            top, arg = prob.max(dim=-1)
            correct = arg == truth
            want["confidence_" + name] = float(top.mean())
            want["ece_" + name] = ece(top, correct)
            want["top1_error_" + name] = 1.0 - float(correct.double().mean())
    n_pos, n_dis = 0, 0
    for b, s in enumerate(seqs):
        a1 = full[0][b, 1:len(s) + 1].argmax(-1)
        a2 = full[1][b, 1:len(s) + 1].argmax(-1)
        n_pos += len(s)
        n_dis += int((a1 != a2).sum())
    want["top1_disagreement"] = n_dis / n_pos
    n_masked = len(where)
    if got["n_masked"] != n_masked or got["n_positions"] != n_pos:
        failures.append(f"counts: {got['n_masked']} masked / {got['n_positions']} positions, "
                        f"torch {n_masked} / {n_pos}")
    # fp32 forwards differ in the last bits: probabilities agree to ~1e-7; a
    # top-1 flip on a near-tie may move one position
    tol = {"confidence": 1e-6, "ece": 1e-6, "top1_error": 1.0 / n_masked + 1e-12,
           "top1_disagreement": 1.0 / n_pos + 1e-12}
    for k, v in want.items():
        t = next(t for p_, t in tol.items() if k.startswith(p_))
        if abs(got[k] - v) > t:
            failures.append(f"{k}: proteus {got[k]!r}, torch {v!r} (tolerance {t:.2g})")
        print(f"{k}: proteus {got[k]:.8f}  torch {v:.8f}")
    if n_dis == 0 or got["n_disagree"] == 0:
        failures.append(f"the noisy model never disagrees ({n_dis}): the disagreement is not tested")
    if want["ece_quantized"] == want["ece_reference"]:
        failures.append("the two models have the same ECE: the noise did not reach the masked pass")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
