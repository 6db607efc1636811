"""A PyTorch implementation of the Kimi Linear model for training (docs/design/model.md).

The module's parameters are the checkpoint tensors: `state_dict()` has exactly the Hugging
Face names and shapes of model.md (`model.layers.L.self_attn.q_proj.weight`, ...), so a trained
model is written with `save_checkpoint` and read by the C++ engine as it is.

    model = KimiLinearForCausalLM(config_dict)            # fresh weights (init_weights)
    model = KimiLinearForCausalLM.from_checkpoint(dir)    # config.json + safetensors
    logits = model(ids)                                   # ids [B, T] -> [B, T, vocab]
    model.save_checkpoint(out_dir)                        # bf16 matrices, fp32 where model.md says

Whole sequences only, from an empty state (training): KDA runs in a chunkwise-parallel form
(`kda_chunked`, chunk 64) that equals the token-by-token recurrence (`kda_recurrent`, the
definition) up to rounding; MLA is plain causal softmax attention with expanded keys and values
(NoPE: no positional encoding at all). Mixed precision: keep the parameters fp32 and run under
torch.autocast(bfloat16); the RMSNorms, the router, the KDA decay/gate math and the KDA core
run in float32 regardless (float64 when the model is `.double()`, which tools/train/
check_torch_vs_reference.py uses against tools/reference/kimi_reference.py).

Needs only torch (>= 2.1) and numpy.
"""

import json
import math
import os
import shutil
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

# Tensors stored fp32 in the checkpoint (model.md); everything else bf16 by default.
FP32_SUFFIXES = ("A_log", "dt_bias", "e_score_correction_bias")
TOKENIZER_FILES = ("tiktoken.model", "tokenizer_config.json")


def _compute(x):
    """float32 for half types, else unchanged (float64 stays float64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _no_autocast(x):
    """A disabled-autocast context for x's device type (the math below picks its own dtypes)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


# ---- configuration -----------------------------------------------------------------------

class KimiConfig:
    """config.json, parsed as the engine and the reference parse it (any sizes, any lists)."""

    def __init__(self, raw):
        self.raw = dict(raw)
        self.hidden = raw["hidden_size"]
        self.n_layers = raw["num_hidden_layers"]
        self.vocab = raw["vocab_size"]
        self.inter = raw["intermediate_size"]
        self.eps = raw["rms_norm_eps"]
        self.mla_heads = raw["num_attention_heads"]
        self.rank = raw["kv_lora_rank"]
        self.nope = raw["qk_nope_head_dim"]
        self.rope = raw["qk_rope_head_dim"]
        self.v_dim = raw["v_head_dim"]
        if raw.get("q_lora_rank") is not None:
            raise ValueError("q_lora_rank: only null (a plain q_proj) is supported (model.md)")
        if not raw.get("mla_use_nope", True):
            raise ValueError("mla_use_nope: false (rotary MLA) is not defined by model.md")
        act = raw.get("moe_router_activation_func", "sigmoid")
        if act != "sigmoid":
            raise ValueError(f"moe_router_activation_func: only sigmoid is supported, got {act!r}")
        linear = raw["linear_attn_config"]
        self.kda_heads = linear["num_heads"]
        self.kda_dim = linear["head_dim"]
        self.conv = linear["short_conv_kernel_size"]
        self.kda_layers = {n - 1 for n in linear["kda_layers"]}  # the file is 1-based
        self.n_experts = raw["num_experts"]
        self.top_k = raw["num_experts_per_token"]
        self.moe_inter = raw["moe_intermediate_size"]
        self.n_shared = raw.get("num_shared_experts") or 0
        self.renormalize = raw.get("moe_renormalize", True)
        self.scaling = raw.get("routed_scaling_factor", 1.0)
        self.grouped = raw.get("use_grouped_topk", False)
        self.n_groups = raw.get("num_expert_group") or 1
        self.topk_groups = raw.get("topk_group") or 1
        self.first_dense = raw.get("first_k_dense_replace", 0)
        self.moe_freq = raw.get("moe_layer_freq", 1)
        self.tied = raw.get("tie_word_embeddings", False)

    def is_kda(self, layer):
        return layer in self.kda_layers

    def is_moe(self, layer):
        return self.n_experts > 0 and layer >= self.first_dense and layer % self.moe_freq == 0


# ---- KDA core ----------------------------------------------------------------------------

def kda_recurrent(q, k, v, g, beta, initial_state=None):
    """The definition, token by token. q, k [B, T, H, K] (q already scaled), v [B, T, H, V],
    g [B, T, H, K] (log decay), beta [B, T, H]. Returns o [B, T, H, V], final S [B, H, K, V]."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    S = (torch.zeros(B, H, K, V, dtype=q.dtype, device=q.device) if initial_state is None
         else initial_state)
    outs = []
    for t in range(T):
        S = S * torch.exp(g[:, t])[..., None]                          # decay each key row
        kS = torch.einsum("bhk,bhkv->bhv", k[:, t], S)
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], beta[:, t, :, None] * (v[:, t] - kS))
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(outs, dim=1), S


def _intra_chunk(q, k, G, sub):
    """Akk[t, s] = sum_d k_t[d] k_s[d] exp(G_t[d] - G_s[d]) for s < t, else 0; Aqk the same
    with q_t, for s <= t. q, k [..., C, K] in the compute dtype; G [..., C, K] float64
    cumulative log decay (non-increasing along C).

    No exponent is ever positive. Within a sub-block of `sub` positions the exponents are the
    pairwise differences (clamped at 0 above the diagonal, whose products are masked out after
    the sum over d). A sub-block i against earlier positions s factors through R_i = G at block
    i's first position: exp(G_t - G_s) = exp(G_t - R_i) * exp(R_i - G_s), both factors <= 1, so
    that part is a matmul. Differences are taken of G split as hi + lo (hi = G rounded to the
    compute dtype, lo the rounding residue, a constant: its gradient is exactly zero), so each is
    exact to the compute dtype even where G is large and the difference small, while the big
    pairwise tensors and their gradients stay in the compute dtype."""
    C, K = k.shape[-2], k.shape[-1]
    nb = C // sub
    dt = k.dtype
    lead = k.shape[:-2]
    hi = G.to(dt)
    lo = None if dt == torch.float64 else (G - hi.double()).to(dt).detach()

    def minus(a, b, a_lo, b_lo):
        return a - b if lo is None else (a - b) + (a_lo - b_lo)

    qb = q.reshape(*lead, nb, sub, K)
    kb = k.reshape(*lead, nb, sub, K)
    hb = hi.reshape(*lead, nb, sub, K)
    lb = None if lo is None else lo.reshape(*lead, nb, sub, K)
    at = lambda x: None if x is None else x[..., :, None, :]           # noqa: E731
    as_ = lambda x: None if x is None else x[..., None, :, :]          # noqa: E731
    # Diagonal blocks: P[t, s, :] = exp(G_t - G_s) k_s, then contract with k_t and q_t.
    diff = minus(at(hb), as_(hb), at(lb), as_(lb)).clamp_(max=0)       # [..., nb, sub, sub, K]
    P = torch.exp(diff) * kb[..., None, :, :]
    strict = torch.tril(torch.ones(sub, sub, dtype=dt, device=k.device), -1)
    incl = torch.tril(torch.ones(sub, sub, dtype=dt, device=k.device))
    dkk = (P @ kb[..., :, :, None]).squeeze(-1) * strict               # [..., nb, sub, sub]
    dqk = (P @ qb[..., :, :, None]).squeeze(-1) * incl
    eye = torch.eye(nb, dtype=dt, device=k.device)
    Akk = torch.einsum("...its,ij->...itjs", dkk, eye).reshape(*lead, C, C)
    Aqk = torch.einsum("...its,ij->...itjs", dqk, eye).reshape(*lead, C, C)
    if nb > 1:
        R_hi = hb[..., :, :1, :]                                       # [..., nb, 1, K]
        R_lo = None if lb is None else lb[..., :, :1, :]
        decay = torch.exp(minus(hb, R_hi, lb, R_lo))                   # e^(G_t - R_i) <= 1
        earlier = (torch.arange(C, device=k.device)[None, :] <
                   (torch.arange(nb, device=k.device) * sub)[:, None]).to(dt)  # [nb, C]
        rdiff = minus(R_hi, hi[..., None, :, :], R_lo, as_(lo)).clamp_(max=0)  # [..., nb, C, K]
        right = (k[..., None, :, :] * torch.exp(rdiff)).transpose(-1, -2)
        mask = earlier[:, None, :]                                     # [nb, 1, C]
        Akk = Akk + ((kb * decay) @ right * mask).reshape(*lead, C, C)
        Aqk = Aqk + ((qb * decay) @ right * mask).reshape(*lead, C, C)
    return Akk, Aqk


def kda_chunked(q, k, v, g, beta, initial_state=None, chunk=64, sub=8):
    """The KDA recurrence in chunkwise-parallel (WY / UT-transform) form; same arguments and
    results as kda_recurrent. Math in the inputs' dtype (use float32 or float64); the cumulative
    log decays are summed in float64 so that their differences lose nothing.

    Within a chunk with state S0 at its start and G_t = sum_{r<=t} g_r (per key dim):
      S_t = diag(e^G_t) S0 + sum_{s<=t} diag(e^(G_t - G_s)) k_s u_s^T,
      u_t = beta_t (v_t - (k_t e^G_t)^T S0 - sum_{s<t} A_ts u_s),  A_ts = k_t^T diag(e^(G_t-G_s)) k_s,
    so (I + diag(beta) A) U = diag(beta) (V - (K e^G) S0): with the unit lower-triangular solve
    T = (I + diag(beta) A)^-1, U = T diag(beta) V - T diag(beta) (K e^G) S0 = U~ - W S0. Then
      O = (Q e^G) S0 + (Aqk masked s <= t) U,   S_C = diag(e^G_C) S0 + (K e^(G_C - G))^T U.
    Only the last three lines run chunk after chunk."""
    B, T, H, K = k.shape
    V = v.shape[-1]
    dt = q.dtype
    if chunk % sub:
        raise ValueError("chunk must be a multiple of sub")
    pad = (-T) % chunk
    # [B, H, T, *]; zero padding at the end is inert (k = v = 0, g = 0, beta = 0).
    q, k, v, g = (F.pad(x.transpose(1, 2), (0, 0, 0, pad)) for x in (q, k, v, g))
    beta = F.pad(beta.transpose(1, 2), (0, pad))
    N = (T + pad) // chunk
    q, k, v, g = (x.reshape(B, H, N, chunk, x.shape[-1]) for x in (q, k, v, g))
    beta = beta.reshape(B, H, N, chunk)

    G = torch.cumsum(g.double(), dim=-2)                               # [B, H, N, C, K] float64
    decay_in = torch.exp(G.to(dt))                                     # e^(G_t): chunk start -> t
    G_last = G[..., -1:, :]
    decay_out = torch.exp((G_last - G).to(dt))                         # e^(G_C - G_t): t -> end
    decay_all = torch.exp(G_last.to(dt)).squeeze(-2)                   # [B, H, N, K]

    Akk, Aqk = _intra_chunk(q, k, G, sub)                              # [B, H, N, C, C] each
    eye = torch.eye(chunk, dtype=dt, device=q.device)
    L = eye + beta[..., None] * Akk
    rhs = beta[..., None] * torch.cat([k * decay_in, v], dim=-1)
    X = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
    W, U_tilde = X[..., :K], X[..., K:]
    q_in = q * decay_in
    k_out = (k * decay_out).transpose(-1, -2)                          # [B, H, N, K, C]

    S = (torch.zeros(B, H, K, V, dtype=dt, device=q.device) if initial_state is None
         else initial_state.to(dt))
    outs = []
    for n in range(N):
        U = U_tilde[:, :, n] - W[:, :, n] @ S
        outs.append(q_in[:, :, n] @ S + Aqk[:, :, n] @ U)
        S = decay_all[:, :, n, :, None] * S + k_out[:, :, n] @ U
    o = torch.stack(outs, dim=2).reshape(B, H, N * chunk, V)[:, :, :T]
    return o.transpose(1, 2), S


# ---- modules -----------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        """Computed in float32 (float64 for float64 input); returns the promoted dtype of x and
        the weight (float32 under the usual fp32-weights-with-autocast training)."""
        out_dtype = torch.promote_types(x.dtype, self.weight.dtype)
        with _no_autocast(x):
            x = _compute(x)
            w = self.weight.to(x.dtype)
            y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w
        return y.to(out_dtype)


def _linear(n_in, n_out):
    return nn.Linear(n_in, n_out, bias=False)


class MLP(nn.Module):
    def __init__(self, hidden, inter, names=("gate_proj", "up_proj", "down_proj")):
        super().__init__()
        self.names = names
        for name, (i, o) in zip(names, ((hidden, inter), (hidden, inter), (inter, hidden))):
            setattr(self, name, _linear(i, o))

    def forward(self, x):
        gate, up, down = (getattr(self, n) for n in self.names)
        return down(F.silu(gate(x)) * up(x))


class KdaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H, D, hid = cfg.kda_heads, cfg.kda_dim, cfg.hidden
        self.H, self.D, self.eps = H, D, cfg.eps
        self.q_proj, self.k_proj, self.v_proj = _linear(hid, H * D), _linear(hid, H * D), _linear(hid, H * D)
        for name in ("q_conv1d", "k_conv1d", "v_conv1d"):
            setattr(self, name, nn.Conv1d(H * D, H * D, cfg.conv, groups=H * D, bias=False))
        self.f_a_proj, self.f_b_proj = _linear(hid, D), _linear(D, H * D)
        self.b_proj = _linear(hid, H)
        self.A_log = nn.Parameter(torch.zeros(1, 1, H, 1))
        self.dt_bias = nn.Parameter(torch.zeros(H * D))
        self.g_a_proj, self.g_b_proj = _linear(hid, D), _linear(D, H * D)
        self.o_norm = RMSNorm(D, cfg.eps)
        self.o_proj = _linear(H * D, hid)
        self.chunk, self.sub = 64, 8
        self.use_recurrent = False  # the token loop instead of kda_chunked (for checks)

    def _conv_silu(self, conv, x):
        """Causal depthwise conv over T: y_t = sum_j w[:, j] * x_{t-(k-1)+j}, zeros before 0."""
        k = conv.weight.shape[-1]
        y = F.conv1d(F.pad(x.transpose(1, 2), (k - 1, 0)), conv.weight, groups=conv.weight.shape[0])
        return F.silu(y.transpose(1, 2))

    def forward(self, x):
        B, T, _ = x.shape
        H, D = self.H, self.D
        q = self._conv_silu(self.q_conv1d, self.q_proj(x))
        k = self._conv_silu(self.k_conv1d, self.k_proj(x))
        v = self._conv_silu(self.v_conv1d, self.v_proj(x))
        f = self.f_b_proj(self.f_a_proj(x))
        b = self.b_proj(x)
        gate = self.g_b_proj(self.g_a_proj(x))
        with _no_autocast(x):
            q, k, v, f, b, gate = (_compute(t) for t in (q, k, v, f, b, gate))
            dt = q.dtype
            q, k, v = (t.reshape(B, T, H, D) for t in (q, k, v))
            q = q * torch.rsqrt(q.pow(2).sum(-1, keepdim=True) + 1e-6) * D ** -0.5
            k = k * torch.rsqrt(k.pow(2).sum(-1, keepdim=True) + 1e-6)
            a = -torch.exp(self.A_log.to(dt).reshape(H, 1))
            g = a * F.softplus((f + self.dt_bias.to(dt)).reshape(B, T, H, D))
            beta = torch.sigmoid(b)
            if self.use_recurrent:
                o, _ = kda_recurrent(q, k, v, g, beta)
            else:
                o, _ = kda_chunked(q, k, v, g, beta, chunk=self.chunk, sub=self.sub)
            o = self.o_norm(o) * torch.sigmoid(gate.reshape(B, T, H, D))
        return self.o_proj(o.reshape(B, T, H * D).to(self.o_proj.weight.dtype))


class MlaAttention(nn.Module):
    """NoPE MLA: the `rope` dims exist but are never rotated; no position input at all."""

    def __init__(self, cfg):
        super().__init__()
        self.Hm, self.nope, self.rope, self.v_dim, self.rank = (
            cfg.mla_heads, cfg.nope, cfg.rope, cfg.v_dim, cfg.rank)
        hid = cfg.hidden
        self.q_proj = _linear(hid, self.Hm * (self.nope + self.rope))
        self.kv_a_proj_with_mqa = _linear(hid, self.rank + self.rope)
        self.kv_a_layernorm = RMSNorm(self.rank, cfg.eps)
        self.kv_b_proj = _linear(self.rank, self.Hm * (self.nope + self.v_dim))
        self.o_proj = _linear(self.Hm * self.v_dim, hid)

    def forward(self, x):
        B, T, _ = x.shape
        Hm, nope, rope, vd = self.Hm, self.nope, self.rope, self.v_dim
        q = self.q_proj(x).reshape(B, T, Hm, nope + rope)
        c, k_pe = torch.split(self.kv_a_proj_with_mqa(x), [self.rank, rope], dim=-1)
        kv = self.kv_b_proj(self.kv_a_layernorm(c)).reshape(B, T, Hm, nope + vd)
        k_nope, v = torch.split(kv, [nope, vd], dim=-1)
        k = torch.cat([k_nope, k_pe[:, :, None, :].to(k_nope.dtype).expand(B, T, Hm, rope)], dim=-1)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if q.dtype != k.dtype:  # outside autocast q and k may differ after the norm
            q, k, v = (t.to(torch.promote_types(q.dtype, k.dtype)) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=(nope + rope) ** -0.5)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, Hm * vd))


class MoeGate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cfg.n_experts, cfg.hidden))
        # Not trained by gradients (top-k is not differentiable in it); see update_router_bias.
        self.register_buffer("e_score_correction_bias", torch.zeros(cfg.n_experts))


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.gate = MoeGate(cfg)
        self.experts = nn.ModuleList(
            MLP(cfg.hidden, cfg.moe_inter, ("w1", "w3", "w2")) for _ in range(cfg.n_experts))
        if cfg.n_shared > 0:
            self.shared_experts = MLP(cfg.hidden, cfg.moe_inter * cfg.n_shared)
        self.last_load = None     # tokens per expert in the last forward [E] (detached)
        self.last_aux_loss = None  # sequence-level balance loss of the last forward (scalar)

    def route(self, x):
        """x [N, hidden] -> chosen experts [N, k] (int64), weights [N, k], scores [N, E]."""
        cfg = self.cfg
        with _no_autocast(x):
            xc = _compute(x)
            s = torch.sigmoid(F.linear(xc, self.gate.weight.to(xc.dtype)))
            biased = s.detach() + self.gate.e_score_correction_bias.to(s.dtype)
            if cfg.grouped and cfg.n_groups > 1:
                N, E = biased.shape
                per = E // cfg.n_groups
                grouped = biased.reshape(N, cfg.n_groups, per)
                group_scores = grouped.topk(min(2, per), dim=-1).values.sum(-1)   # [N, groups]
                keep = group_scores.topk(cfg.topk_groups, dim=-1).indices
                allowed = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
                biased = biased.masked_fill(~allowed.repeat_interleave(per, dim=1), float("-inf"))
            chosen = biased.topk(cfg.top_k, dim=-1).indices
            w = s.gather(1, chosen)
            if cfg.renormalize:
                w = w / w.sum(-1, keepdim=True)
            w = w * cfg.scaling
        return chosen, w, s

    def forward(self, x):
        cfg = self.cfg
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        N, E, k = x.shape[0], cfg.n_experts, cfg.top_k
        chosen, w, s = self.route(x)
        flat = chosen.reshape(-1)
        counts = torch.bincount(flat, minlength=E)
        order = torch.argsort(flat, stable=True)
        token = order // k
        xs = x.index_select(0, token)
        ws = w.reshape(-1).index_select(0, order)
        ys = []
        for e, part in enumerate(torch.split(xs, counts.tolist())):
            if part.shape[0]:
                ys.append(self.experts[e](part))
        y = torch.cat(ys, dim=0)
        y = y.to(torch.promote_types(y.dtype, ws.dtype)) * ws[:, None]
        out = torch.zeros(N, shape[-1], dtype=y.dtype, device=x.device).index_add_(0, token, y)
        if cfg.n_shared > 0:
            out = out + self.shared_experts(x)
        load = counts.detach()
        self.last_load = load
        # DeepSeek-V3 style balance loss: E/(k N) * sum_e load_e * mean_n(s_ne / sum_e' s_ne').
        p = (s / s.sum(-1, keepdim=True)).mean(0)
        self.last_aux_loss = (load.to(p.dtype) * p).sum() * E / (k * N)
        return out.reshape(shape[:-1] + (out.shape[-1],))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.eps)
        self.self_attn = KdaAttention(cfg) if cfg.is_kda(layer) else MlaAttention(cfg)
        if cfg.is_moe(layer):
            self.block_sparse_moe = MoE(cfg)
        else:
            self.mlp = MLP(cfg.hidden, cfg.inter)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x)).to(x.dtype)
        ffn = self.block_sparse_moe if hasattr(self, "block_sparse_moe") else self.mlp
        return x + ffn(self.post_attention_layernorm(x)).to(x.dtype)


class KimiModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.hidden, cfg.eps)


class KimiLinearForCausalLM(nn.Module):
    def __init__(self, config, init=True, seed=None):
        super().__init__()
        self.config_dict = dict(config)
        self.cfg = KimiConfig(config)
        self.model = KimiModel(self.cfg)
        if not self.cfg.tied:
            self.lm_head = _linear(self.cfg.hidden, self.cfg.vocab)
        self.gradient_checkpointing = False
        if init:
            self.init_weights(seed)

    # -- forward --

    def hidden_states(self, input_ids):
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return self.model.norm(x)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.cfg.tied else self.lm_head.weight

    def forward(self, input_ids):
        """input_ids [B, T] (int64, all in 0..vocab-1) -> logits [B, T, vocab]."""
        h = self.hidden_states(input_ids)
        w = self.head_weight()
        return F.linear(h.to(w.dtype), w)

    # -- training helpers --

    def moe_layers(self):
        return [l.block_sparse_moe for l in self.model.layers if hasattr(l, "block_sparse_moe")]

    def aux_loss(self):
        """Mean balance loss of the MoE layers in the last forward (0 without MoE)."""
        losses = [m.last_aux_loss for m in self.moe_layers() if m.last_aux_loss is not None]
        return torch.stack(losses).mean() if losses else torch.zeros(())

    @torch.no_grad()
    def update_router_bias(self, rate=1e-3):
        """Aux-loss-free balancing (DeepSeek-V3): raise the bias of under-loaded experts and
        lower it for over-loaded ones, by `rate`, from the last forward's loads."""
        for m in self.moe_layers():
            if m.last_load is not None:
                load = m.last_load.float()
                m.gate.e_score_correction_bias += rate * torch.sign(load.mean() - load).to(
                    m.gate.e_score_correction_bias.dtype)

    def set_kda_mode(self, recurrent=False, chunk=64, sub=8):
        """recurrent: the token loop (the definition; slow) instead of kda_chunked."""
        for l in self.model.layers:
            if isinstance(l.self_attn, KdaAttention):
                a = l.self_attn
                a.use_recurrent, a.chunk, a.sub = recurrent, chunk, sub

    @torch.no_grad()
    def init_weights(self, seed=None, std=0.02):
        """Fresh weights: N(0, std) matrices (output projections scaled by 1/sqrt(2 layers)),
        unit norms, KDA A = U(1, 16) and dt = logU(1e-3, 0.1) as in flash-linear-attention,
        conv kernels ~ U(+-1/sqrt(kernel)), zero router bias."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        out_std = std / math.sqrt(2 * self.cfg.n_layers)

        def normal(p, s):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * s)

        def uniform(p, lo, hi):
            p.copy_((lo + (hi - lo) * torch.rand(p.shape, generator=gen, dtype=torch.float64)).to(p.dtype))

        for name, p in self.named_parameters():
            last = name.rsplit(".", 2)
            if name.endswith("A_log"):
                uniform(p, 1.0, 16.0)
                p.log_()
            elif name.endswith("dt_bias"):
                uniform(p, math.log(1e-3), math.log(0.1))
                p.exp_().clamp_(min=1e-4)
                p.copy_(p + torch.log(-torch.expm1(-p)))  # inverse softplus
            elif "conv1d" in name:
                bound = 1.0 / math.sqrt(p.shape[-1])
                uniform(p, -bound, bound)
            elif p.dim() == 1:  # norm weights
                p.fill_(1.0)
            elif last[-2] in ("o_proj", "down_proj", "w2"):
                normal(p, out_std)
            else:
                normal(p, std)
        for m in self.moe_layers():
            m.gate.e_score_correction_bias.zero_()

    # -- checkpoints --

    @classmethod
    def from_checkpoint(cls, model_dir, dtype=torch.float32, device="cpu"):
        with open(os.path.join(model_dir, "config.json")) as f:
            config = json.load(f)
        model = cls(config, init=False)
        tensors = load_tensors(model_dir)
        model.load_state_dict(tensors, strict=True)
        return model.to(device=device, dtype=dtype)

    def save_checkpoint(self, model_dir, config_dict=None, matrix_dtype="bf16", tokenizer_from=None):
        save_checkpoint(self, model_dir, config_dict, matrix_dtype, tokenizer_from)


# ---- safetensors -------------------------------------------------------------------------

def _read_safetensors(path):
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[begin:end]
        kind = entry["dtype"]
        if kind == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif kind == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif kind == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {kind}")
        out[name] = torch.from_numpy(arr.reshape(entry["shape"]).copy())
    return out


def load_tensors(model_dir):
    """name -> float32 tensor, from model.safetensors.index.json's shards or every *.safetensors."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(n for n in os.listdir(model_dir) if n.endswith(".safetensors"))
    tensors = {}
    for name in files:
        tensors.update(_read_safetensors(os.path.join(model_dir, name)))
    return tensors


def _tensor_bytes(t, kind):
    t = t.detach().cpu()
    if kind == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if kind == "BF16":  # round to nearest even, as torch converts
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if kind == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    raise ValueError(kind)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype "F32"/"BF16"/"F16", torch tensor). One file, sorted names."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        kind, t = tensors[name]
        raw = _tensor_bytes(t, kind)
        header[name] = {"dtype": kind, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)  # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def save_checkpoint(model, model_dir, config_dict=None, matrix_dtype="bf16", tokenizer_from=None):
    """config.json + model.safetensors: `matrix_dtype` (bf16, f16 or f32) for every tensor but
    A_log, dt_bias and e_score_correction_bias, which stay fp32. tokenizer_from: a folder whose
    tiktoken.model and tokenizer_config.json are copied along."""
    kind = {"bf16": "BF16", "f16": "F16", "f32": "F32"}[matrix_dtype]
    os.makedirs(model_dir, exist_ok=True)
    tensors = {name: ("F32" if name.endswith(FP32_SUFFIXES) else kind, t)
               for name, t in model.state_dict().items()}
    write_safetensors(os.path.join(model_dir, "model.safetensors"), tensors)
    stale = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(stale):
        os.remove(stale)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config_dict if config_dict is not None else model.config_dict, f, indent=2)
        f.write("\n")
    if tokenizer_from:
        for name in TOKENIZER_FILES:
            src = os.path.join(tokenizer_from, name)
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(model_dir, name))
