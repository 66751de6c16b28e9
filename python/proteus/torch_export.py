# SPDX-License-Identifier: Apache-2.0
"""torch_export.py - a Proteus model rebuilt in PyTorch: transformers'
EsmForMaskedLM or fair-esm's ESM2, weights dequantized by the library,
int8 Linears optionally as torch dynamic-quantized Linears."""
import numpy as np

from .errors import ConfigurationError
from .tensors import Tensors

VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]

# Hugging Face ESM names inside a layer -> fair-esm's (docs/esm2.md 4.2)
_FAIR_LAYER = {
    "attention.LayerNorm": "self_attn_layer_norm", "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj", "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj", "LayerNorm": "final_layer_norm",
    "intermediate.dense": "fc1", "output.dense": "fc2",
}


def fair_name(hf):
    """fair-esm's state-dict name of a Hugging Face ESM-2 tensor name, None
    for tensors fair-esm has no place for."""
    if hf.startswith("esm.encoder.layer."):
        idx, sub = hf[len("esm.encoder.layer."):].split(".", 1)
        if sub == "attention.self.rotary_embeddings.inv_freq":
            return "layers.%s.self_attn.rot_emb.inv_freq" % idx
        mod, kind = sub.rsplit(".", 1)
        return "layers.%s.%s.%s" % (idx, _FAIR_LAYER[mod], kind) if mod in _FAIR_LAYER else None
    if hf == "esm.embeddings.word_embeddings.weight":
        return "embed_tokens.weight"
    if hf.startswith("esm.encoder.emb_layer_norm_after."):
        return "emb_layer_norm_after." + hf.rsplit(".", 1)[1]
    if hf == "lm_head.decoder.weight":
        return "lm_head.weight"
    if hf == "lm_head.bias" or hf.startswith(("lm_head.dense.", "lm_head.layer_norm.")):
        return hf
    if hf.startswith("esm.contact_head.regression."):
        return "contact_head.regression." + hf.rsplit(".", 1)[1]
    return None


def _hf_model(arch):
    from transformers import EsmConfig, EsmForMaskedLM
    cfg = EsmConfig(vocab_size=arch["vocab_size"], hidden_size=arch["embed_dim"],
                    num_hidden_layers=arch["num_layers"], num_attention_heads=arch["attention_heads"],
                    intermediate_size=arch["ffn_dim"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                    max_position_embeddings=1026, layer_norm_eps=float(np.float32(arch["layer_norm_eps"])),
                    position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                    mask_token_id=32, pad_token_id=1, vocab_list=VOCAB, tie_word_embeddings=True)
    return EsmForMaskedLM(cfg).eval()


def _fair_model(arch):
    import esm
    return esm.model.esm2.ESM2(num_layers=arch["num_layers"], embed_dim=arch["embed_dim"],
                               attention_heads=arch["attention_heads"],
                               alphabet=esm.data.Alphabet.from_architecture("ESM-1b"), token_dropout=True).eval()


def _dynamic_linear(linear, codes, scale, zp, granularity):
    """A torch dynamic-quantized Linear holding these int8 codes."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynLinear
    q = DynLinear(linear.in_features, linear.out_features, bias_=linear.bias is not None, dtype=torch.qint8)
    c = torch.from_numpy(codes.copy())
    if granularity == "tensor":
        w = torch._make_per_tensor_quantized_tensor(c, float(scale[0]), int(zp[0]))
    else:
        w = torch._make_per_channel_quantized_tensor(c, torch.from_numpy(scale.astype(np.float64)),
                                                     torch.from_numpy(zp.astype(np.int64)), 0)
    q.set_weight_bias(w, None if linear.bias is None else linear.bias.detach().clone())
    return q


def _swap_module(model, dotted, new):
    parent_name, _, leaf = dotted.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)


def to_torch(qmodel, flavor="hf", dynamic_int8=False):
    """See QuantizedModel.to_torch."""
    import torch
    if flavor not in ("hf", "fair-esm"):
        raise ConfigurationError("to_torch: flavor %r is unknown (hf, fair-esm)" % (flavor,))
    arch = qmodel.arch
    model = _hf_model(arch) if flavor == "hf" else _fair_model(arch)
    rename = (lambda n: n) if flavor == "hf" else fair_name
    sd, int8 = {}, {}
    with Tensors(qmodel.path) as t:
        for name, info in t.info.items():
            target = rename(name)
            if target is None:
                continue
            sd[target] = torch.from_numpy(t.f32(name))
            if dynamic_int8 and info["bits"] == 8 and info["granularity"] in ("tensor", "channel"):
                int8[target] = (t.int8(name), info["granularity"])
    tied_src = "esm.embeddings.word_embeddings.weight" if flavor == "hf" else "embed_tokens.weight"
    tied_dst = "lm_head.decoder.weight" if flavor == "hf" else "lm_head.weight"
    sd.setdefault(tied_dst, sd[tied_src])
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # position_embeddings: unused with rotary positions (transformers keeps the module)
    missing = [k for k in missing if "position_ids" not in k and "inv_freq" not in k
               and "position_embeddings" not in k
               and not k.startswith(("contact_head", "esm.contact_head"))]
    if missing or unexpected:
        raise ConfigurationError("%s: the file does not fill the %s model: missing %s, unexpected %s"
                                 % (qmodel.path, flavor, missing, unexpected))
    kept_float = []
    for mod_name, mod in list(model.named_modules()):
        if not isinstance(mod, torch.nn.Linear):
            continue
        key = mod_name + ".weight"
        if key in int8:
            (codes, scale, zp), gran = int8[key]
            _swap_module(model, mod_name, _dynamic_linear(mod, codes, scale, zp, gran))
        elif dynamic_int8:
            kept_float.append(mod_name)
    model.proteus_float_linears = kept_float
    return model.eval()
