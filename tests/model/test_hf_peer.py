# SPDX-License-Identifier: Apache-2.0
"""test_hf_peer.py - the C fp32 ESM-2 forward against Hugging Face
transformers' EsmForMaskedLM (eager attention, the classic implementation of
transformers 4.30) on the bundled trained model and a synthetic t12: logits and
hidden states on real sequences, padded in the HF batch (attention_mask), some
with <mask> tokens. Max abs logits difference <= 1e-4."""
import atexit
import os
import shutil
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import fairesm_ref  # noqa: E402
import test_fairesm_peer as peer  # noqa: E402  (shares the sequence choice and the C driver)

from transformers import EsmConfig, EsmForMaskedLM  # noqa: E402

TOL = 1e-4
VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]


def build_hf(path):
    sd = fairesm_ref.read_safetensors(path)
    D = sd["esm.embeddings.word_embeddings.weight"].shape[1]
    L = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("esm.encoder.layer."))
    hd = 2 * sd["esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq"].numel()
    cfg = EsmConfig(vocab_size=33, hidden_size=D, num_hidden_layers=L, num_attention_heads=D // hd,
                    intermediate_size=4 * D, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    max_position_embeddings=1026, layer_norm_eps=1e-5, position_embedding_type="rotary",
                    token_dropout=True, emb_layer_norm_before=False, mask_token_id=32, pad_token_id=1,
                    vocab_list=VOCAB)
    model = EsmForMaskedLM(cfg).eval()
    if "lm_head.decoder.weight" not in sd:
        sd["lm_head.decoder.weight"] = sd["esm.embeddings.word_embeddings.weight"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if "position_ids" not in k and "position_embeddings" not in k]
    assert not missing and not unexpected, (missing, unexpected)
    return model, L, D


def tokens_of(seqs):
    ids = {t: i for i, t in enumerate(VOCAB)}
    rows = []
    for s in seqs:
        toks, i = [0], 0
        while i < len(s):
            if s.startswith("<mask>", i):
                toks.append(32)
                i += 6
            else:
                toks.append(ids[s[i]])
                i += 1
        rows.append(toks + [2])
    T = max(len(r) for r in rows)
    ids_t = torch.ones(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids_t[b, :len(r)] = torch.tensor(r)
        mask[b, :len(r)] = 1
    return ids_t, mask


def check(path, label):
    model, L, D = build_hf(path)
    seqs = peer.pick_sequences()
    ids, mask = tokens_of(seqs)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    d, off = peer.run_driver(path, seqs)
    logits = peer.load(d, "logits.f32", 33)
    worst, failures = 0.0, []
    for b in range(len(seqs)):
        T = off[b + 1] - off[b]
        assert T == int(mask[b].sum()), f"{label}: seq {b}: token counts differ"
        e = peer.maxabs(out.logits[b, :T] - logits[off[b]:off[b + 1]])
        worst = max(worst, e)
        if e > TOL:
            failures.append(f"{label}: seq {b} (T={T}): logits max abs diff {e:.3g}")
        # HF hidden_states[L] is after the final LayerNorm, as representation L
        for layer in (0, L // 2, L):
            rr = out.hidden_states[layer][b, :T]
            cc = peer.load(d, f"repr_{layer}.f32", D)[off[b]:off[b + 1]]
            scale = max(1.0, peer.maxabs(rr))
            if peer.maxabs(rr - cc) > TOL * scale:
                failures.append(f"{label}: seq {b}: hidden state {layer} differs by {peer.maxabs(rr - cc):.3g}")
    print(f"{label}: HF EsmForMaskedLM vs C engine, worst logits diff {worst:.2e}")
    return failures


def main():
    results = {"trained t6": check(peer.TRAINED, "trained t6")}
    t12 = os.path.join(peer.tempfile.mkdtemp(prefix="pq_hf_"), "t12.safetensors")
    atexit.register(shutil.rmtree, os.path.dirname(t12), True)
    p = subprocess.run([peer.PROTEUS, "synth", "--arch", "esm2_t12_35M_UR50D", "--seed", "5", "--out", t12],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    results["synthetic t12"] = check(t12, "synthetic t12")
    bad = [k for k, v in results.items() if v]
    for k in bad:
        for f in results[k]:
            print("FAIL:", f)
    print(f"{len(results) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
