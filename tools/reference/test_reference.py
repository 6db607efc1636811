"""The C++ engine against the independent float64 NumPy reference, on several tiny configs.

Needs KL_LIBRARY (libkimi_linear.so) and KL_MAKE_TINY_MODEL (the tool); ctest sets both.
"""

import copy
import json
import os
import subprocess

import numpy as np
import pytest

from engine import KL_LOGITS_LAST, Engine
from kimi_reference import Model

# Relative to the largest reference logit: fp32 engine vs float64 reference.
TOLERANCE = 1e-4

TINY = {
    "hidden_size": 64, "num_hidden_layers": 4, "vocab_size": 256, "intermediate_size": 128,
    "rms_norm_eps": 1e-5, "num_attention_heads": 2, "kv_lora_rank": 32,
    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "q_lora_rank": None,
    "mla_use_nope": True,
    "linear_attn_config": {"num_heads": 2, "head_dim": 16, "short_conv_kernel_size": 4,
                           "kda_layers": [1, 2, 3], "full_attn_layers": [4]},
    "num_experts": 8, "num_experts_per_token": 2, "num_shared_experts": 1,
    "moe_intermediate_size": 32, "moe_router_activation_func": "sigmoid",
    "moe_renormalize": True, "routed_scaling_factor": 2.446, "use_grouped_topk": False,
    "num_expert_group": 1, "topk_group": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "tie_word_embeddings": False,
}


def variant(**changes):
    cfg = copy.deepcopy(TINY)
    for key, value in changes.items():
        if key in ("kda_layers", "full_attn_layers"):
            cfg["linear_attn_config"][key] = value
        else:
            cfg[key] = value
    return cfg


CONFIGS = {
    "tiny": TINY,
    "grouped_topk": variant(num_experts=16, num_experts_per_token=4, use_grouped_topk=True,
                            num_expert_group=4, topk_group=2),
    "several_mla": variant(num_hidden_layers=6, kda_layers=[1, 3, 5], full_attn_layers=[2, 4, 6]),
    "dense_first_two_moe_every_other": variant(num_hidden_layers=5, kda_layers=[1, 2, 3, 5],
                                               full_attn_layers=[4], first_k_dense_replace=2,
                                               moe_layer_freq=2),
    "no_renormalize_no_shared": variant(moe_renormalize=False, num_shared_experts=0),
    "tied_embeddings": variant(tie_word_embeddings=True),
}


def required_env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (ctest sets it; see tests/CMakeLists.txt)")
    return value


@pytest.fixture(scope="module")
def engine():
    return Engine(required_env("KL_LIBRARY"))


def make_model(tmp_path, name, cfg, seed):
    config_path = tmp_path / f"{name}.json"
    config_path.write_text(json.dumps(cfg))
    out = tmp_path / name
    subprocess.run([required_env("KL_MAKE_TINY_MODEL"), str(out), "--config", str(config_path),
                    "--seed", str(seed), "--shards", "2", "--dtype", "bf16"],
                   check=True, capture_output=True)
    return str(out)


def relative_error(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_engine_matches_reference(engine, tmp_path, name):
    seed = sorted(CONFIGS).index(name) + 11
    model_dir = make_model(tmp_path, name, CONFIGS[name], seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CONFIGS[name]["vocab_size"], size=int(rng.integers(20, 41)))

    reference = Model(model_dir).forward(tokens)
    assert np.max(np.abs(reference)) > 0.1, "degenerate reference logits"

    model, vocab = engine.load(model_dir)
    try:
        # One prefill (chunked KDA, expanded MLA).
        session = engine.session(model)
        prefill = engine.append(session, tokens, vocab)
        engine.lib.kl_session_free(session)
        assert relative_error(prefill, reference) <= TOLERANCE

        # Two appends, then token by token (recurrent KDA, absorbed MLA).
        session = engine.session(model)
        cut = len(tokens) // 3
        first = engine.append(session, tokens[:cut], vocab)
        rows = [first] + [engine.append(session, [t], vocab, KL_LOGITS_LAST)
                          for t in tokens[cut:]]
        engine.lib.kl_session_free(session)
        assert relative_error(np.vstack(rows), reference) <= TOLERANCE

        assert np.array_equal(np.argmax(prefill, axis=1), np.argmax(reference, axis=1))
    finally:
        engine.lib.kl_model_free(model)
