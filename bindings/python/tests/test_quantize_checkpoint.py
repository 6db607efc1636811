"""quantize_checkpoint (kl_checkpoint_quantize, issue 15): the tiny bf16 model written as FP8
and INT4 checkpoints loads with weights="auto" as the original loads with weights="fp8" /
"int4" (the header's promise: the weights as that load holds them, so the same logits bit for
bit and the same greedy tokens); refused calls raise the library's status and leave nothing;
progress= rises to 1.0, and a False or an exception from it cancels the write, leaving nothing."""
import json
import os

import numpy as np
import pytest

PROMPT = [1, 5, 9, 2, 7, 11, 3]


def run(model):
    """The prompt's logits at every position, then 8 greedy tokens."""
    with model.session() as s:
        logits = np.array(s.append(PROMPT, logits="all"))
        tokens = [t for t, _ in s.generate(max_new_tokens=8, tokens=True)]
    return logits, tokens


@pytest.mark.parametrize("format, method", [("fp8", "fp8"), ("int4", "compressed-tensors")])
def test_a_quantized_checkpoint_loads_as_the_on_load_quantization(kl, tiny_model_dir, tmp_path,
                                                                 format, method):
    out = tmp_path / "q"  # made by the call
    assert kl.quantize_checkpoint(tiny_model_dir, out, format) is None
    with open(out / "config.json") as f:
        config = json.load(f)
    assert config["quantization_config"]["quant_method"] == method
    assert (out / "model.safetensors.index.json").is_file()
    with kl.Model(tiny_model_dir, device="cpu", weights=format) as m:
        want_logits, want_tokens = run(m)
    with kl.Model(str(out), device="cpu") as m:  # weights="auto": as stored
        logits, tokens = run(m)
    assert np.array_equal(logits, want_logits), format
    assert tokens == want_tokens and len(tokens) == 8, format
    with kl.Model(tiny_model_dir, device="cpu") as m:  # and not the bf16 model's
        assert not np.array_equal(run(m)[0], logits), format


def test_shard_bytes_and_an_empty_existing_folder(kl, tiny_model_dir, tmp_path):
    kl.quantize_checkpoint(tiny_model_dir, tmp_path, "int4", shard_bytes=1000)  # tmp_path: empty
    shards = [n for n in os.listdir(tmp_path) if n.endswith(".safetensors")]
    assert len(shards) > 2, shards  # many shards of about 1000 bytes
    with open(tmp_path / "model.safetensors.index.json") as f:
        assert set(json.load(f)["weight_map"].values()) == set(shards)
    with kl.Model(tiny_model_dir, device="cpu", weights="int4") as m:
        want = run(m)
    with kl.Model(tmp_path, device="cpu") as m:
        got = run(m)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


def test_refused_calls_raise_the_library_status(kl, tiny_model_dir, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(kl.InvalidArgumentError, match="not empty") as info:
        kl.quantize_checkpoint(tiny_model_dir, used, "int4")
    assert info.value.status_name == "KL_ERR_INVALID_ARGUMENT"
    assert os.listdir(used) == ["notes.txt"]  # untouched

    out = tmp_path / "never"
    with pytest.raises(kl.IoError, match="config.json") as info:  # not a model folder
        kl.quantize_checkpoint(tmp_path / "missing", out, "fp8")
    assert info.value.status_name == "KL_ERR_IO"
    assert isinstance(info.value, OSError)
    for format in ("auto", "bf16"):  # the library's refusal
        with pytest.raises(kl.InvalidArgumentError, match="KL_WEIGHTS_FP8 or KL_WEIGHTS_INT4"):
            kl.quantize_checkpoint(tiny_model_dir, out, format)
    with pytest.raises(kl.InvalidArgumentError, match="input folder"):
        kl.quantize_checkpoint(tiny_model_dir, tiny_model_dir, "fp8")
    assert not out.exists()  # a refused call made no folder


def test_bad_arguments_are_refused_before_the_call(kl, tiny_model_dir, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="format"):
        kl.quantize_checkpoint(tiny_model_dir, out, "fp4")
    with pytest.raises(TypeError, match="format"):
        kl.quantize_checkpoint(tiny_model_dir, out, 2)
    with pytest.raises(TypeError, match="in_dir"):
        kl.quantize_checkpoint(None, out, "fp8")
    with pytest.raises(ValueError, match="out_dir"):
        kl.quantize_checkpoint(tiny_model_dir, "a\0b", "fp8")
    with pytest.raises(ValueError, match="shard_bytes"):
        kl.quantize_checkpoint(tiny_model_dir, out, "fp8", shard_bytes=-1)
    assert not out.exists()


def test_progress_rises_to_exactly_one(kl, tiny_model_dir, tmp_path):
    seen = []
    kl.quantize_checkpoint(tiny_model_dir, tmp_path / "q", "fp8", shard_bytes=1000,
                           progress=seen.append)  # None: go on
    assert len(seen) > 3, seen
    assert all(0.0 <= f <= 1.0 for f in seen), seen
    assert seen == sorted(seen), seen
    assert seen[-1] == 1.0 and seen[-2] < 1.0, seen[-2:]
    with kl.Model(tiny_model_dir, device="cpu", weights="fp8") as m:
        want = run(m)
    with kl.Model(tmp_path / "q", device="cpu") as m:
        got = run(m)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


@pytest.mark.parametrize("stop_at", ["first", "middle"])
def test_false_cancels_and_leaves_nothing(kl, tiny_model_dir, tmp_path, stop_at):
    calls = []
    kl.quantize_checkpoint(tiny_model_dir, tmp_path / "whole", "int4", shard_bytes=1000,
                           progress=calls.append)
    stop = 1 if stop_at == "first" else len(calls) // 2
    seen = []

    def progress(fraction):
        seen.append(fraction)
        return len(seen) < stop

    out = tmp_path / "q"  # made by the call
    with pytest.raises(kl.CancelledError, match="cancelled") as info:
        kl.quantize_checkpoint(tiny_model_dir, out, "int4", shard_bytes=1000, progress=progress)
    assert info.value.status_name == "KL_ERR_CANCELLED"
    assert len(seen) == stop
    assert not out.exists()
    empty = tmp_path / "empty"  # there before, left empty
    empty.mkdir()
    seen.clear()
    with pytest.raises(kl.CancelledError):
        kl.quantize_checkpoint(tiny_model_dir, empty, "int4", shard_bytes=1000, progress=progress)
    assert os.listdir(empty) == []
    kl.quantize_checkpoint(tiny_model_dir, out, "int4", shard_bytes=1000)  # then a whole write
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "whole"))


def test_an_exception_in_progress_cancels_and_is_reraised(kl, tiny_model_dir, tmp_path):
    class Boom(Exception):
        pass

    seen = []

    def progress(fraction):
        seen.append(fraction)
        if len(seen) == 3:
            raise Boom("stop here")

    out = tmp_path / "q"
    with pytest.raises(Boom, match="stop here"):
        kl.quantize_checkpoint(tiny_model_dir, out, "fp8", shard_bytes=1000, progress=progress)
    assert len(seen) == 3  # not called after it raised
    assert not out.exists()
    with pytest.raises(TypeError, match="progress"):
        kl.quantize_checkpoint(tiny_model_dir, out, "fp8", progress=1)
    assert not out.exists()
