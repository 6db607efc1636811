"""An independent float64 NumPy implementation of the Kimi Linear model.

Written from the model math alone (docs/design/model.md), in the plainest form: tokens one at a time, the KDA
recurrence (not the chunkwise form), MLA with explicitly expanded keys and values, the MoE
router in float64. It loads a Hugging Face checkpoint folder by tensor name and serves as the
independent check of the C++ engine (test_reference.py).

    python3 kimi_reference.py MODEL_DIR 1,2,3     # prints the argmax token after each prefix
"""

import json
import os
import struct
import sys

import numpy as np


# ---- checkpoint ----------------------------------------------------------------------------

def _read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[base + begin:base + end]
        dtype = entry["dtype"]
        if dtype == "F32":
            values = np.frombuffer(raw, dtype="<f4")
        elif dtype == "F16":
            values = np.frombuffer(raw, dtype="<f2")
        elif dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            values = bits.view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        tensors[name] = values.astype(np.float64).reshape(entry["shape"])
    return tensors


def load_tensors(model_dir):
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    tensors = {}
    for name in files:
        tensors.update(_read_safetensors(os.path.join(model_dir, name)))
    return tensors


class Config:
    def __init__(self, raw):
        self.hidden = raw["hidden_size"]
        self.n_layers = raw["num_hidden_layers"]
        self.vocab = raw["vocab_size"]
        self.eps = raw["rms_norm_eps"]
        self.mla_heads = raw["num_attention_heads"]
        self.rank = raw["kv_lora_rank"]
        self.nope = raw["qk_nope_head_dim"]
        self.rope = raw["qk_rope_head_dim"]
        self.v_dim = raw["v_head_dim"]
        linear = raw["linear_attn_config"]
        self.kda_heads = linear["num_heads"]
        self.kda_dim = linear["head_dim"]
        self.conv = linear["short_conv_kernel_size"]
        self.kda_layers = {n - 1 for n in linear["kda_layers"]}  # the file is 1-based
        self.n_experts = raw["num_experts"]
        self.top_k = raw["num_experts_per_token"]
        self.n_shared = raw.get("num_shared_experts") or 0
        self.renormalize = raw.get("moe_renormalize", True)
        self.scaling = raw.get("routed_scaling_factor", 1.0)
        self.grouped = raw.get("use_grouped_topk", False)
        self.n_groups = raw.get("num_expert_group") or 1
        self.topk_groups = raw.get("topk_group") or 1
        self.first_dense = raw.get("first_k_dense_replace", 0)
        self.moe_freq = raw.get("moe_layer_freq", 1)
        self.tied = raw.get("tie_word_embeddings", False)

    def is_moe(self, layer):
        return self.n_experts > 0 and layer >= self.first_dense and layer % self.moe_freq == 0


# ---- math ----------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)


def mlp(x, gate, up, down):
    return down @ (silu(gate @ x) * (up @ x))


class KdaLayer:
    """Recurrent state: S [H, K, V] and the last conv-1 projected inputs of q, k, v."""

    def __init__(self, cfg, w, prefix):
        self.cfg = cfg
        self.w = {name: w[prefix + name] for name in (
            "q_proj.weight", "k_proj.weight", "v_proj.weight", "q_conv1d.weight",
            "k_conv1d.weight", "v_conv1d.weight", "f_a_proj.weight", "f_b_proj.weight",
            "b_proj.weight", "A_log", "dt_bias", "g_a_proj.weight", "g_b_proj.weight",
            "o_norm.weight", "o_proj.weight")}
        H, D = cfg.kda_heads, cfg.kda_dim
        self.S = np.zeros((H, D, D))
        self.conv_in = {n: np.zeros((cfg.conv - 1, H * D)) for n in "qkv"}

    def _conv(self, name, projected):
        weight = self.w[f"{name}_conv1d.weight"][:, 0, :]  # [channels, kernel]
        window = np.vstack([self.conv_in[name], projected[None, :]])  # oldest first
        self.conv_in[name] = window[1:]
        return silu(np.sum(weight.T * window, axis=0))

    def step(self, x):
        cfg, w = self.cfg, self.w
        H, D = cfg.kda_heads, cfg.kda_dim
        q = self._conv("q", w["q_proj.weight"] @ x).reshape(H, D)
        k = self._conv("k", w["k_proj.weight"] @ x).reshape(H, D)
        v = self._conv("v", w["v_proj.weight"] @ x).reshape(H, D)
        q = q / np.sqrt(np.sum(q * q, axis=1, keepdims=True) + 1e-6)
        k = k / np.sqrt(np.sum(k * k, axis=1, keepdims=True) + 1e-6)
        a = -np.exp(w["A_log"].reshape(H))
        g = a[:, None] * softplus((w["f_b_proj.weight"] @ (w["f_a_proj.weight"] @ x)
                                   + w["dt_bias"]).reshape(H, D))
        beta = sigmoid(w["b_proj.weight"] @ x)
        gate = sigmoid((w["g_b_proj.weight"] @ (w["g_a_proj.weight"] @ x)).reshape(H, D))
        out = np.zeros((H, D))
        for h in range(H):
            S = self.S[h] * np.exp(g[h])[:, None]              # decay each key row
            S = S + beta[h] * np.outer(k[h], v[h] - k[h] @ S)  # delta rule on the decayed S
            self.S[h] = S
            o = (q[h] * D ** -0.5) @ S
            out[h] = rms_norm(o, w["o_norm.weight"], cfg.eps) * gate[h]
        return w["o_proj.weight"] @ out.reshape(-1)


class MlaLayer:
    """Cache: the normalised latent c and the shared, un-rotated k_pe of every token."""

    def __init__(self, cfg, w, prefix):
        self.cfg = cfg
        self.w = {name: w[prefix + name] for name in (
            "q_proj.weight", "kv_a_proj_with_mqa.weight", "kv_a_layernorm.weight",
            "kv_b_proj.weight", "o_proj.weight")}
        self.latents, self.k_pes = [], []

    def step(self, x):
        cfg, w = self.cfg, self.w
        Hm, nope, rope, vd, rank = cfg.mla_heads, cfg.nope, cfg.rope, cfg.v_dim, cfg.rank
        q = (w["q_proj.weight"] @ x).reshape(Hm, nope + rope)
        kv = w["kv_a_proj_with_mqa.weight"] @ x
        self.latents.append(rms_norm(kv[:rank], w["kv_a_layernorm.weight"], cfg.eps))
        self.k_pes.append(kv[rank:])
        C = np.array(self.latents)                   # [S, rank]
        K_pe = np.array(self.k_pes)                  # [S, rope]
        kv_b = w["kv_b_proj.weight"].reshape(Hm, nope + vd, rank)
        out = np.zeros((Hm, vd))
        for h in range(Hm):
            k_nope = C @ kv_b[h, :nope].T            # [S, nope]
            values = C @ kv_b[h, nope:].T            # [S, v]
            scores = (k_nope @ q[h, :nope] + K_pe @ q[h, nope:]) * (nope + rope) ** -0.5
            p = np.exp(scores - scores.max())
            out[h] = (p / p.sum()) @ values
        return w["o_proj.weight"] @ out.reshape(-1)


def route(cfg, logits, bias):
    """Returns [(expert, weight)] for one token."""
    s = sigmoid(logits)
    biased = s + bias
    allowed = np.ones(cfg.n_experts, dtype=bool)
    if cfg.grouped and cfg.n_groups > 1:
        per = cfg.n_experts // cfg.n_groups
        group_scores = [np.sum(np.sort(biased[g * per:(g + 1) * per])[::-1][:2])
                        for g in range(cfg.n_groups)]
        keep = sorted(range(cfg.n_groups), key=lambda g: (-group_scores[g], g))[:cfg.topk_groups]
        allowed[:] = False
        for g in keep:
            allowed[g * per:(g + 1) * per] = True
    candidates = [e for e in range(cfg.n_experts) if allowed[e]]
    chosen = sorted(candidates, key=lambda e: (-biased[e], e))[:cfg.top_k]
    weights = np.array([s[e] for e in chosen])
    if cfg.renormalize:
        weights = weights / weights.sum()
    return list(zip(chosen, weights * cfg.scaling))


class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = Config(json.load(f))
        self.w = load_tensors(model_dir)
        self.reset()

    def reset(self):
        cfg, w = self.cfg, self.w
        self.layers = []
        for layer in range(cfg.n_layers):
            prefix = f"model.layers.{layer}.self_attn."
            self.layers.append(KdaLayer(cfg, w, prefix) if layer in cfg.kda_layers
                               else MlaLayer(cfg, w, prefix))

    def _ffn(self, layer, x):
        cfg, w = self.cfg, self.w
        p = f"model.layers.{layer}."
        if not cfg.is_moe(layer):
            return mlp(x, w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"],
                       w[p + "mlp.down_proj.weight"])
        m = p + "block_sparse_moe."
        out = np.zeros_like(x)
        for e, weight in route(cfg, w[m + "gate.weight"] @ x, w[m + "gate.e_score_correction_bias"]):
            out += weight * mlp(x, w[f"{m}experts.{e}.w1.weight"], w[f"{m}experts.{e}.w3.weight"],
                                w[f"{m}experts.{e}.w2.weight"])
        if cfg.n_shared > 0:
            out += mlp(x, w[m + "shared_experts.gate_proj.weight"],
                       w[m + "shared_experts.up_proj.weight"],
                       w[m + "shared_experts.down_proj.weight"])
        return out

    def step(self, token):
        """Consumes one token; returns its logits [vocab]."""
        cfg, w = self.cfg, self.w
        x = w["model.embed_tokens.weight"][token].copy()
        for layer, attn in enumerate(self.layers):
            p = f"model.layers.{layer}."
            x = x + attn.step(rms_norm(x, w[p + "input_layernorm.weight"], cfg.eps))
            x = x + self._ffn(layer, rms_norm(x, w[p + "post_attention_layernorm.weight"], cfg.eps))
        head = w["model.embed_tokens.weight"] if cfg.tied else w["lm_head.weight"]
        return head @ rms_norm(x, w["model.norm.weight"], cfg.eps)

    def forward(self, tokens):
        """Logits [len(tokens), vocab], continuing from the current state."""
        return np.array([self.step(t) for t in tokens])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model = Model(sys.argv[1])
    logits = model.forward([int(t) for t in sys.argv[2].split(",")])
    print(" ".join(str(int(np.argmax(row))) for row in logits))
