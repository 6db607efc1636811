"""The C++ engine against the independent float64 NumPy reference, on several tiny configs.

Needs KL_LIBRARY (libkimi_linear.so) and KL_MAKE_TINY_MODEL (the tool); ctest sets both.
"""

import copy
import glob
import json
import os
import struct
import subprocess

import numpy as np
import pytest

from engine import KL_LOGITS_LAST, Engine
from kimi_reference import Model, load_tensors

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


def make_model(tmp_path, name, cfg, seed, shards=2, dtype="bf16"):
    config_path = tmp_path / f"{name}.json"
    config_path.write_text(json.dumps(cfg))
    out = tmp_path / name
    subprocess.run([required_env("KL_MAKE_TINY_MODEL"), str(out), "--config", str(config_path),
                    "--seed", str(seed), "--shards", str(shards), "--dtype", dtype],
                   check=True, capture_output=True)
    return str(out)


def set_a_log(model_dir, value):
    """Overwrites every (fp32) A_log in place. make_tiny_model's A_log decays the KDA state to
    ~3% per token, which hides any error in state carried over more than a few tokens."""
    for path in glob.glob(os.path.join(model_dir, "*.safetensors")):
        with open(path, "r+b") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
            for name, entry in header.items():
                if name.endswith(".A_log"):
                    assert entry["dtype"] == "F32", f"{name} is {entry['dtype']}"
                    begin, end = entry["data_offsets"]
                    f.seek(8 + header_len + begin)
                    f.write(np.full((end - begin) // 4, value, dtype="<f4").tobytes())


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

        cut = len(tokens) // 3

        # Two prefills: the second starts from a non-zero state and cache.
        session = engine.session(model)
        rows = [engine.append(session, tokens[:cut], vocab),
                engine.append(session, tokens[cut:], vocab)]
        engine.lib.kl_session_free(session)
        assert relative_error(np.vstack(rows), reference) <= TOLERANCE

        # A prefill, then token by token (recurrent KDA, absorbed MLA).
        session = engine.session(model)
        first = engine.append(session, tokens[:cut], vocab)
        rows = [first] + [engine.append(session, [t], vocab, KL_LOGITS_LAST)
                          for t in tokens[cut:]]
        engine.lib.kl_session_free(session)
        assert relative_error(np.vstack(rows), reference) <= TOLERANCE

        assert np.array_equal(np.argmax(prefill, axis=1), np.argmax(reference, axis=1))
    finally:
        engine.lib.kl_model_free(model)


def test_engine_matches_reference_weak_decay_across_chunks(engine, tmp_path):
    """Slow decay (~1% per token) over 100 tokens: the KDA prefill crosses its 64-token chunk
    boundary, in one call and after a first call, with the whole history still weighing in."""
    model_dir = make_model(tmp_path, "weak_decay", TINY, seed=5)
    set_a_log(model_dir, np.log(0.02))
    tokens = np.random.default_rng(5).integers(0, TINY["vocab_size"], size=100)
    reference = Model(model_dir).forward(tokens)

    model, vocab = engine.load(model_dir)
    try:
        session = engine.session(model)
        prefill = engine.append(session, tokens, vocab)
        engine.lib.kl_session_free(session)
        assert relative_error(prefill, reference) <= TOLERANCE

        session = engine.session(model)
        rows = [engine.append(session, tokens[:30], vocab),
                engine.append(session, tokens[30:], vocab)]
        engine.lib.kl_session_free(session)
        assert relative_error(np.vstack(rows), reference) <= TOLERANCE
    finally:
        engine.lib.kl_model_free(model)


def test_engine_matches_reference_single_file_f32(engine, tmp_path):
    """An unsharded model.safetensors with fp32 weights (the main test uses sharded bf16)."""
    model_dir = make_model(tmp_path, "single_f32", TINY, seed=9, shards=1, dtype="f32")
    assert sorted(os.listdir(model_dir)) == ["config.json", "model.safetensors"]
    tokens = np.random.default_rng(9).integers(0, TINY["vocab_size"], size=25)
    reference = Model(model_dir).forward(tokens)

    model, vocab = engine.load(model_dir)
    try:
        session = engine.session(model)
        got = engine.append(session, tokens, vocab)
        engine.lib.kl_session_free(session)
        assert relative_error(got, reference) <= TOLERANCE
    finally:
        engine.lib.kl_model_free(model)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape, raw little-endian bytes)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, raw in tensors.values():
            f.write(raw)


def test_reference_reads_every_dtype_single_and_sharded(tmp_path):
    """The reference's own reader on hand-made files whose values are known exactly: the engine
    comparison cannot catch a decoding error that both sides share."""
    values = np.array([[1.0, -2.5, 0.15625], [3.0e4, -1.0e-3, 0.0]])
    bf16_bits = (values.astype(np.float32).view(np.uint32) >> 16).astype("<u2")  # exact: truncation
    tensors = {
        "a.f32": ("F32", [2, 3], values.astype("<f4").tobytes()),
        "b.f16": ("F16", [3, 2], values.astype("<f2").tobytes()),
        "c.bf16": ("BF16", [6], bf16_bits.tobytes()),
    }
    single = tmp_path / "single"
    single.mkdir()
    write_safetensors(single / "model.safetensors", tensors)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    names = list(tensors)
    shard_files = {"model-00001-of-00002.safetensors": names[:1],
                   "model-00002-of-00002.safetensors": names[1:]}
    for file, members in shard_files.items():
        write_safetensors(sharded / file, {n: tensors[n] for n in members})
    weight_map = {n: f for f, members in shard_files.items() for n in members}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    # Not named by the index: must be ignored.
    write_safetensors(sharded / "stale.safetensors", {"zz": ("F32", [1], b"\0\0\0\0")})

    for folder in (single, sharded):
        got = load_tensors(str(folder))
        assert sorted(got) == sorted(tensors)
        assert all(t.dtype == np.float64 for t in got.values())
        np.testing.assert_array_equal(got["a.f32"], values.astype(np.float32))
        np.testing.assert_array_equal(got["b.f16"], values.astype(np.float16).reshape(3, 2))
        want_bf16 = (bf16_bits.astype(np.uint32) << 16).view(np.float32).reshape(6)
        np.testing.assert_array_equal(got["c.bf16"], want_bf16)
        assert got["c.bf16"][0] == 1.0 and got["c.bf16"][1] == -2.5  # exact in bf16
