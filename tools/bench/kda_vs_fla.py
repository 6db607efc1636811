#!/usr/bin/env python3
"""Side-by-side: our KDA chunked prefill (kda_chunk_bench --inputs) vs FLA's chunk_kda, and
our one-token recurrence vs FLA's fused_recurrent_kda, on the same inputs, both checked
against a float64 recurrence computed in torch on the GPU.

Runs on the device machine (torch + triton there; FLA from a carried wheel). Usage:
    python3 tools/bench/kda_vs_fla.py BENCH_BINARY [T ...]
Inputs as the model feeds the KDA core: q, k L2-normalised then rounded to bf16, v bf16,
g = logsigmoid(N(0,1)) log-space per-token decay (fp32), beta = sigmoid(N(0,1)) (bf16),
state0 ~ N(0, 0.1) fp32; scale = D^-0.5. FLA gets use_qk_l2norm_in_kernel=False, the gate
and beta already applied; ours gets the same values as fp32 files.
Errors: max |x - ref| / max |ref| (as tests/compare.h) over all tokens and the final state;
the fp64 reference is computed chunkwise (checked against the token-by-token recurrence).
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import triton.testing
from fla.ops.kda import chunk_kda, fused_recurrent_kda

B, H, D = 1, 32, 128
SCALE = D ** -0.5


def make_inputs(T, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    shape = (B, T, H, D)
    rn = lambda *s: torch.randn(*s, generator=gen, device="cuda", dtype=torch.float32)
    q = F.normalize(rn(*shape), dim=-1).to(torch.bfloat16)
    k = F.normalize(rn(*shape), dim=-1).to(torch.bfloat16)
    v = rn(*shape).to(torch.bfloat16)
    g = F.logsigmoid(rn(*shape))
    beta = torch.sigmoid(rn(B, T, H)).to(torch.bfloat16)
    h0 = 0.1 * rn(B, H, D, D)
    return q, k, v, g, beta, h0


@torch.no_grad()
def recurrence_fp64(q, k, v, g, beta, h0):
    """The recurrence of model.md in float64, one token at a time, all heads at once."""
    q, k, v, g = (x[0].double() for x in (q, k, v, g))  # [T, H, D]
    beta = beta[0].double()
    S = h0[0].double().clone()  # [H, K, V]
    o = torch.empty_like(v)
    decay = g.exp()
    for t in range(q.shape[0]):
        S.mul_(decay[t].unsqueeze(-1))
        kS = torch.einsum("hk,hkv->hv", k[t], S)
        delta = beta[t].unsqueeze(-1) * (v[t] - kS)
        S.add_(k[t].unsqueeze(-1) * delta.unsqueeze(1))
        o[t] = torch.einsum("hk,hkv->hv", q[t] * SCALE, S)
    return o, S


@torch.no_grad()
def reference_fp64(q, k, v, g, beta, h0, L=32):
    """The same recurrence in float64, L tokens at a time (the chunkwise form: a triangular
    solve per chunk). Fast enough for 64K tokens; exact to float64 rounding here because
    e^{±G} over L tokens of g = logsigmoid(N(0,1)) (>= -20 per token) stays far inside the
    float64 range. main() checks it against recurrence_fp64 on a prefix."""
    q, k, v, g = (x[0].double().transpose(0, 1) for x in (q, k, v, g))  # [H, T, D]
    beta = beta[0].double().transpose(0, 1)  # [H, T]
    S = h0[0].double().clone()
    T = q.shape[1]
    o = torch.empty_like(v)
    for t0 in range(0, T, L):
        sl = slice(t0, min(t0 + L, T))
        qc, kc, vc, bc = q[:, sl], k[:, sl], v[:, sl], beta[:, sl]
        G = g[:, sl].cumsum(1)
        n = G.shape[1]
        kpos, kneg, qpos = kc * G.exp(), kc * (-G).exp(), qc * G.exp()
        A = torch.tril(kpos @ kneg.transpose(1, 2), -1) * bc.unsqueeze(-1)
        Bqk = torch.tril(qpos @ kneg.transpose(1, 2))
        rhs = bc.unsqueeze(-1) * (vc - kpos @ S)
        eye = torch.eye(n, dtype=torch.float64, device=q.device)
        d = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
        o[:, sl] = SCALE * (qpos @ S + Bqk @ d)
        last = G[:, -1:]
        S = last.transpose(1, 2).exp() * S + (kc * (last - G).exp()).transpose(1, 2) @ d
    return o.transpose(0, 1), S


def rel_err(x, ref):
    x = x.double().reshape(ref.shape)
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()


def write_inputs(d, q, k, v, g, beta, h0):
    T = q.shape[1]
    with open(os.path.join(d, "shape.txt"), "w") as f:
        f.write(f"{T} {H} {D} {SCALE!r}\n")
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta), ("state", h0)):
        x.float().contiguous().cpu().numpy().astype("<f4").tofile(os.path.join(d, name + ".bin"))


def run_ours(bench, d, T):
    out = subprocess.run([bench, "--inputs", d], check=True, capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("ours ")][-1]
    ms = float(line.split("ms=")[1])
    o = torch.from_numpy(np.fromfile(os.path.join(d, "o_ours.bin"), dtype="<f4")).cuda()
    s = torch.from_numpy(np.fromfile(os.path.join(d, "state_ours.bin"), dtype="<f4")).cuda()
    return ms, o.view(T, H, D), s.view(H, D, D)


def log(msg, t_start=[time.time()]):
    print(f"[{time.time() - t_start[0]:6.1f}s] {msg}", flush=True)


HEADER = (f"{'T':>6} {'FLA ms':>9} {'ours ms':>9} {'FLA/ours':>9} {'FLA o err':>10} "
          f"{'ours o err':>10} {'FLA S err':>10} {'ours S err':>10}")


def row(T, fms, oms, efo, eoo, efs, eos):
    return (f"{T:>6} {fms:>9.3f} {oms:>9.3f} {fms / oms:>9.2f} {efo:>10.2e} {eoo:>10.2e} "
            f"{efs:>10.2e} {eos:>10.2e}")


def main():
    bench = sys.argv[1]
    lengths = [int(x) for x in sys.argv[2:]] or [4096, 16384, 65536]
    rows = []
    with torch.inference_mode():
        # The fast fp64 reference against the token-by-token one on a prefix.
        q, k, v, g, beta, h0 = make_inputs(300, 7)
        o_a, s_a = recurrence_fp64(q, k, v, g, beta, h0)
        o_b, s_b = reference_fp64(q, k, v, g, beta, h0)
        log(f"chunked fp64 reference vs token recurrence, T=300: o {rel_err(o_b, o_a):.1e}, "
            f"S {rel_err(s_b, s_a):.1e}")
        for T in lengths:
            q, k, v, g, beta, h0 = make_inputs(T, 1234 + T)

            def fla():
                return chunk_kda(q, k, v, g, beta, scale=SCALE, initial_state=h0,
                                 output_final_state=True, use_qk_l2norm_in_kernel=False)

            o_fla, s_fla = fla()
            torch.cuda.synchronize()
            log(f"T={T}: FLA first call done")
            fla_ms = triton.testing.do_bench(fla, warmup=100, rep=500, return_mode="median")
            o_ref, s_ref = reference_fp64(q, k, v, g, beta, h0)
            torch.cuda.synchronize()
            log(f"T={T}: FLA timed, reference done")
            with tempfile.TemporaryDirectory(dir="/tmp") as d:
                write_inputs(d, q, k, v, g, beta, h0)
                our_ms, o_ours, s_ours = run_ours(bench, d, T)
            rows.append((T, fla_ms, our_ms, rel_err(o_fla[0], o_ref), rel_err(o_ours, o_ref),
                         rel_err(s_fla[0], s_ref), rel_err(s_ours, s_ref)))
            log("row " + row(*rows[-1]))
            del q, k, v, g, beta, h0, o_fla, s_fla, o_ref, s_ref, o_ours, s_ours
            torch.cuda.empty_cache()

        # One decode step (T = 1) through FLA's fused recurrence; ours: kda_recurrent.
        q, k, v, g, beta, h0 = make_inputs(1, 99)
        step = lambda: fused_recurrent_kda(q, k, v, g, beta, scale=SCALE, initial_state=h0,
                                           output_final_state=True,
                                           use_qk_l2norm_in_kernel=False)
        step()
        fla_step_ms = triton.testing.do_bench(step, warmup=50, rep=300, return_mode="median")
    out = subprocess.run([bench, "--decode"], check=True, capture_output=True, text=True)
    our_step_us = float(out.stdout.split()[-1])

    dev = torch.cuda.get_device_name()
    print(f"\nKDA prefill, {dev}, B={B} H={H} D={D}; errors vs fp64 recurrence "
          "(max|x-ref|/max|ref|)")
    print(HEADER)
    for r in rows:
        print(row(*r))
    print(f"decode step T=1, H={H} D={D}: FLA fused_recurrent_kda {fla_step_ms * 1000:.1f} us "
          f"(do_bench median, per call from PyTorch), ours kda_recurrent {our_step_us:.1f} us "
          "(per call, back-to-back launches)")


if __name__ == "__main__":
    main()
