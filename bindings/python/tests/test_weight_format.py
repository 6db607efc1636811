"""The weights= load option (kl_model_params.weight_format): a bf16 checkpoint quantized on
load runs other logits than as stored, bf16 runs the same ones, and bad values are refused."""
import numpy as np
import pytest


def last_logits(model):
    with model.session() as s:
        return np.array(s.append([1, 5, 9, 2, 7], logits="last"))


def test_weights_option_reaches_the_library(kl, tiny_model_dir):
    with kl.Model(tiny_model_dir, device="cpu") as m:
        stored = last_logits(m)
    with kl.Model(tiny_model_dir, device="cpu", weights="bf16") as m:
        assert np.array_equal(last_logits(m), stored)  # a bf16 checkpoint as it is
    for weights in ("fp8", "int4"):
        with kl.Model(tiny_model_dir, device="cpu", weights=weights) as m:
            quantized = last_logits(m)
            # The CPU backend dequantizes: a decode step reads fp32 weights all the same.
            assert m.info.decode_weight_bytes == 4 * m.info.n_active_params > 0, weights
            assert m.info.routed_weight_bytes == 4 * m.info.n_routed_params > 0, weights
        assert not np.array_equal(quantized, stored), weights
        assert np.abs(quantized - stored).mean() < np.abs(stored).mean(), weights


def test_bad_weights_values_are_refused(kl, tiny_model_dir):
    with pytest.raises(ValueError, match="weights"):
        kl.Model(tiny_model_dir, device="cpu", weights="fp4")
    with pytest.raises(TypeError, match="weights"):
        kl.Model(tiny_model_dir, device="cpu", weights=2)
