# SPDX-License-Identifier: Apache-2.0
"""test_grad_peer.py - the C backward pass of ESM-2 against PyTorch autograd
on Meta's fair-esm ESM2 module with the same weights and the same batch.

The batch holds held-out sequences of different lengths (fair-esm pads them
to one length; the C side packs them) with ESM-2's masking: about 15 % of
residues are targets, 80 % of those shown as <mask>, 10 % as a random
residue, 10 % unchanged. The loss is the mean cross-entropy over the targets.

Checked, for the bundled trained model and a synthetic t12_35M checkpoint
(`proteus synth`): the loss, the gradient of every parameter and of every
token's embedding row (the output of embed_tokens), each within a norm-wise
relative error ||g_C - g_torch||_2 / ||g_torch||_2 <= 1e-4; and the
same gradient bits on 1 and 2 threads.

usage: python test_grad_peer.py GRAD_DUMP PROTEUS [MODEL.safetensors [FASTA]]"""
import atexit
import os
import random
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
import fairesm_ref  # noqa: E402

DRIVER, PROTEUS = sys.argv[1], sys.argv[2]
DATA = os.path.join(HERE, "..", "..", "data")
TRAINED = sys.argv[3] if len(sys.argv) > 3 else os.path.join(DATA, "models", "esm2_t6_8M_proteus_mlm.f16.safetensors")
FASTA = sys.argv[4] if len(sys.argv) > 4 else os.path.join(DATA, "proteins", "eval_sample.fasta")
TOL = 1e-4
MASK, AA_FIRST, AA_LAST = 32, 4, 23
torch.set_num_threads(2)
TMP = tempfile.mkdtemp(prefix="pq_grad_")
atexit.register(shutil.rmtree, TMP, True)


def fasta_seqs(path, n):
    """The first n sequences of a FASTA file."""
    with open(path) as f:
        recs = f.read().split(">")[1:n + 1]
    return ["".join(r.splitlines()[1:]).replace(" ", "") for r in recs]


def make_batch(seed):
    """Sequences of varied lengths and their masking: [(seq, [(token pos, shown id)])]."""
    seqs = sorted(fasta_seqs(FASTA, 200), key=len)
    chosen = [seqs[3], seqs[len(seqs) // 3][:90], seqs[len(seqs) // 2][:140], seqs[-1][:60]]
    rng = random.Random(seed)
    batch = []
    for s in chosen:
        items = []
        for i in range(len(s)):
            if rng.random() < 0.15:
                r = rng.random()
                shown = MASK if r < 0.8 else rng.randint(AA_FIRST, AA_LAST) if r < 0.9 else None
                items.append((i + 1, shown))
        if not items:
            items.append((1, MASK))
        batch.append((s, items))
    return batch


def rel_err(c, t):
    n = float(t.double().norm())
    return float((c.double() - t.double()).norm()) / (n if n > 0 else 1.0)


def check(model_path, label):
    model, L, D = fairesm_ref.build_fairesm(model_path)
    alphabet = model.alphabet
    batch = make_batch(7)
    bc = alphabet.get_batch_converter()
    _, _, tokens = bc([(str(i), s) for i, (s, _) in enumerate(batch)])
    spec = os.path.join(TMP, "batch.txt")
    pos_b, pos_t, targets = [], [], []
    with open(spec, "w") as f:
        for b, (s, items) in enumerate(batch):
            out = [s]
            for p, shown in items:
                tgt = int(tokens[b, p])
                shown = tgt if shown is None else shown
                out.append(f"{p}:{shown}")
                pos_b.append(b)
                pos_t.append(p)
                targets.append(tgt)
                tokens[b, p] = shown
            f.write(" ".join(out) + "\n")
    assert int((tokens == alphabet.padding_idx).sum()) > 0, "the batch must contain padding"
    d = os.path.join(TMP, label)
    os.makedirs(d)
    p = subprocess.run([DRIVER, model_path, spec, d, "--threads", "2"], capture_output=True, text=True)
    if p.returncode != 0:
        return [f"{label}: grad_dump failed: {p.stderr.strip()}"]

    # the same bits on one thread
    d1 = d + "_1"
    os.makedirs(d1)
    p = subprocess.run([DRIVER, model_path, spec, d1, "--threads", "1"], capture_output=True, text=True)
    if p.returncode != 0 or open(os.path.join(d1, "grads.f32"), "rb").read() != \
            open(os.path.join(d, "grads.f32"), "rb").read():
        failures_threads = [f"{label}: gradients on 1 thread differ from 2 threads {p.stderr.strip()}"]
    else:
        failures_threads = []

    # PyTorch autograd through fair-esm, keeping the embedding rows' gradient
    emb = {}

    def hook(_mod, _inp, out):
        out.retain_grad()
        emb["out"] = out

    h = model.embed_tokens.register_forward_hook(hook)
    model.zero_grad()
    logits = model(tokens)["logits"]
    loss = torch.nn.functional.cross_entropy(logits[pos_b, pos_t], torch.tensor(targets))
    loss.backward()
    h.remove()

    failures, worst = failures_threads, {}
    c_loss = float(open(os.path.join(d, "loss.txt")).read())
    e = abs(c_loss - float(loss)) / abs(float(loss))
    worst["loss"] = e
    if e > TOL:
        failures.append(f"{label}: loss {c_loss} vs fair-esm {float(loss)}")
    flat = fairesm_ref.read_f32(os.path.join(d, "grads.f32"))
    hf = {}
    for line in open(os.path.join(d, "tensors.txt")):
        name, off, n = line.split()
        hf[name] = flat[int(off):int(off) + int(n)]
    cgrads = fairesm_ref.hf_to_fairesm(hf)
    n_checked = 0
    for name, param in model.named_parameters():
        if name.startswith("contact_head"):
            continue
        if name not in cgrads:
            failures.append(f"{label}: no C gradient for {name}")
            continue
        e = rel_err(cgrads[name].reshape(param.shape), param.grad)
        kind = name.split(".")[-2] + "." + name.split(".")[-1] if name.startswith("layers.") else name
        worst[kind] = max(worst.get(kind, 0.0), e)
        n_checked += 1
        if e > TOL:
            failures.append(f"{label}: {name}: relative error {e:.3g}")
    off = [int(x) for x in open(os.path.join(d, "offsets.txt")).read().split()]
    demb = fairesm_ref.read_f32(os.path.join(d, "dembed.f32"), D)
    gt = emb["out"].grad
    e = max(rel_err(demb[off[b]:off[b + 1]], gt[b, :off[b + 1] - off[b]]) for b in range(len(batch)))
    worst["embedding rows"] = e
    if e > TOL:
        failures.append(f"{label}: embedding-row gradients: relative error {e:.3g}")
    print(f"{label}: L={L} D={D} lengths={[off[b + 1] - off[b] for b in range(len(batch))]} "
          f"targets={len(targets)} params={n_checked} worst relative error: "
          + ", ".join(f"{k}={v:.1e}" for k, v in sorted(worst.items(), key=lambda kv: -kv[1])[:6]))
    return failures


def main():
    failures = check(TRAINED, "trained t6")
    synth = os.path.join(TMP, "synth_t12.safetensors")
    p = subprocess.run([PROTEUS, "synth", "--arch", "t12_35M", "--seed", "11", "--out", synth],
                       capture_output=True, text=True)
    if p.returncode != 0:
        failures.append(f"proteus synth failed: {p.stderr.strip()}")
    else:
        failures += check(synth, "synthetic t12")
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
