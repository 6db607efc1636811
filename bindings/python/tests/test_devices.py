"""The devices= load option (kl_model_params.devices, issue 16): the tiny model split over two
CPU shards reports 2 devices and gives the whole model's logits (to 1e-5) and greedy tokens;
bad lists are refused with the library's status."""
import numpy as np
import pytest

PROMPT = [1, 5, 9, 2, 7, 11, 3]


def run(model):
    """The prompt's logits at every position, then 8 greedy tokens."""
    with model.session() as s:
        logits = np.array(s.append(PROMPT, logits="all"))
        tokens = list(s.generate(max_new_tokens=8, tokens=True))
    return logits, [t for t, _ in tokens]


def test_two_cpu_devices_equal_the_whole_model(kl, tiny_model_dir):
    with kl.Model(tiny_model_dir, device="cpu") as m:
        assert m.info.n_devices == 1
        want_logits, want_tokens = run(m)
    with kl.Model(tiny_model_dir, device="cpu", devices=[0, 1]) as m:
        assert m.info.n_devices == 2
        logits, tokens = run(m)
    assert np.abs(logits - want_logits).max() <= 1e-5 * np.abs(want_logits).max()
    assert tokens == want_tokens
    with kl.Model(tiny_model_dir, device="cpu", devices=(0,)) as m:  # one device: whole
        assert m.info.n_devices == 1
        assert np.array_equal(run(m)[0], want_logits)


@pytest.mark.parametrize("devices, status, fragment", [
    ([0, 0], "KL_ERR_INVALID_ARGUMENT", "devices[1] is 0, as devices[0] is"),
    (list(range(9)), "KL_ERR_INVALID_ARGUMENT", "n_devices is 9"),
    ([0, -1], "KL_ERR_INVALID_ARGUMENT", "devices[1] is -1"),
    ([1, 0], "KL_ERR_INVALID_ARGUMENT", "0..n-1"),
    ([0, 1, 2], "KL_ERR_UNSUPPORTED", "kda_num_heads"),  # 3 does not divide 2 heads
])
def test_bad_device_lists_are_refused(kl, tiny_model_dir, devices, status, fragment):
    with pytest.raises(kl.KimiLinearError, match=fragment.replace("[", r"\[")) as info:
        kl.Model(tiny_model_dir, device="cpu", devices=devices)
    assert info.value.status_name == status


def test_device_list_types(kl, tiny_model_dir):
    with pytest.raises(TypeError, match="devices"):
        kl.Model(tiny_model_dir, device="cpu", devices="01")
    with pytest.raises(TypeError, match=r"devices\[1\]"):
        kl.Model(tiny_model_dir, device="cpu", devices=[0, 1.0])
    with pytest.raises(ValueError, match=r"devices\[0\]"):
        kl.Model(tiny_model_dir, device="cpu", devices=[2 ** 31])
