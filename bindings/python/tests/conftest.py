"""pytest setup: import kimi_linear from this source tree, point it at $KL_LIBRARY.

Environment:
  KL_LIBRARY          path of libkimi_linear.so (required; becomes KIMI_LINEAR_LIBRARY)
  KL_TOKENIZER_MODEL  model folder with a tokenizer (make_tiny_model --preset small)
  KL_TINY_MODEL       model folder without a tokenizer (make_tiny_model --preset tiny)
  KL_GREEDY_IDS       file "PROMPT_IDS|GENERATED_IDS" written by tests/capi/greedy_ids.c
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bindings/python

if os.environ.get("KL_LIBRARY"):
    os.environ["KIMI_LINEAR_LIBRARY"] = os.path.abspath(os.environ["KL_LIBRARY"])


def _env_path(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set ({what})")
    if not os.path.exists(value):
        pytest.skip(f"{name}={value} does not exist ({what})")
    return value


@pytest.fixture(scope="session")
def kl():
    if not os.environ.get("KL_LIBRARY"):
        pytest.skip("KL_LIBRARY is not set (the path of libkimi_linear.so to test)")
    import kimi_linear

    return kimi_linear


@pytest.fixture(scope="session")
def model_dir():
    return _env_path("KL_TOKENIZER_MODEL", "a model folder with a tokenizer: make_tiny_model "
                                           "DIR --preset small --seed 7")


@pytest.fixture(scope="session")
def tiny_model_dir():
    return _env_path("KL_TINY_MODEL", "a model folder without a tokenizer: make_tiny_model DIR "
                                      "--preset tiny --seed 1")


@pytest.fixture(scope="session")
def model(kl, model_dir):
    with kl.Model(model_dir, device="cpu") as m:
        yield m


@pytest.fixture(scope="session")
def tiny_model(kl, tiny_model_dir):
    with kl.Model(tiny_model_dir, device="cpu") as m:
        yield m


@pytest.fixture(scope="session")
def greedy_reference():
    path = _env_path("KL_GREEDY_IDS", "the C reference ids of tests/capi/greedy_ids.c")
    with open(path) as f:
        line = f.read().strip()
    prompt, generated = line.split("|")
    return [int(t) for t in prompt.split()], [int(t) for t in generated.split()]
