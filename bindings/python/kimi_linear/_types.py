"""Plain value types: SamplingParams, ModelInfo, ChatMessage, and token and text arguments
converted for the C calls."""

from __future__ import annotations

import array
import math
import numbers
from ctypes import POINTER, c_int32
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Tuple

from . import _native
from .errors import InvalidArgumentError

try:  # numpy is optional: logits come back as lists without it
    import numpy as _np
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    _np = None

_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1
_UINT64_MAX = 2 ** 64 - 1
# array.array typecode of a 32-bit signed int ('i' on every platform we build for).
_I32 = "i" if array.array("i").itemsize == 4 else "l"


def numpy():
    """The numpy module, or None when it is not importable (tests may patch this)."""
    return _np


class ChatMessage(NamedTuple):
    """One turn of a conversation: role ("system", "user", "assistant", "tool") and text."""

    role: str
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token (kl_sampling_params); the defaults are the C defaults.

    temperature 0 is greedy (argmax). top_k 0, top_p 1, min_p 0 and repetition_penalty 1
    are off. repetition_window: how many recent tokens the penalty looks at (0 = all). The
    random draw is a pure function of (seed, position): the same seed and state give the
    same token, across forks and state reloads.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repetition_window: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        # The library checks these too; checking here as well makes a bad value fail where it
        # is written, before any state changes (e.g. before generate() appends its prompt).
        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"SamplingParams.{name} must be a real number, not "
                                f"{type(value).__name__}")
        for name in ("top_k", "repetition_window", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"SamplingParams.{name} must be an int, not "
                                f"{type(value).__name__}")

        def bad(what: str) -> None:
            raise InvalidArgumentError(f"sampling {what}")

        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            bad(f"temperature is {self.temperature}, must be >= 0")
        if not 0 <= self.top_k <= _INT32_MAX:
            bad(f"top_k is {self.top_k}, must be >= 0")
        if not 0 < self.top_p <= 1:
            bad(f"top_p is {self.top_p}, must be in (0, 1]")
        if not 0 <= self.min_p < 1:
            bad(f"min_p is {self.min_p}, must be in [0, 1)")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            bad(f"repetition_penalty is {self.repetition_penalty}, must be > 0")
        if not 0 <= self.repetition_window <= _INT32_MAX:
            bad(f"repetition_window is {self.repetition_window}, must be >= 0")
        if not 0 <= self.seed <= _UINT64_MAX:
            bad(f"seed is {self.seed}, must be in [0, 2**64)")

    def _to_c(self) -> _native.kl_sampling_params:
        """The ctypes kl_sampling_params of these values."""
        p = _native.kl_sampling_params()
        _native.lib().kl_sampling_params_default(p)  # struct_size and any future fields
        p.temperature = self.temperature
        p.top_k = self.top_k
        p.top_p = self.top_p
        p.min_p = self.min_p
        p.repetition_penalty = self.repetition_penalty
        p.repetition_window = self.repetition_window
        p.seed = self.seed
        return p


GREEDY = SamplingParams()


@dataclass(frozen=True)
class ModelInfo:
    """What kl_model_info reports about a loaded model."""

    vocab_size: int
    hidden_size: int
    n_layers: int
    n_kda_layers: int
    n_mla_layers: int
    n_experts: int
    n_experts_active: int
    max_context: int  #: default session capacity in tokens
    device: str  #: "cpu" or "cuda"
    weight_bytes: int  #: bytes of weights held by the backend
    session_fixed_bytes: int  #: KDA recurrent + conv state per session
    kv_bytes_per_token: int  #: MLA latent cache bytes per token (all MLA layers)
    bos_token: Optional[int]  #: tokenizer_config.json's bos_token id, None if none
    eos_token: Optional[int]  #: tokenizer_config.json's eos_token id, None if none
    n_params: int  #: weights in the checkpoint (a tied lm_head once)
    n_active_params: int  #: weights one decode step reads (the routed experts it uses)
    #: the chat format's end-of-turn token (<|im_end|>), None without a chat format
    eot_token: Optional[int] = None
    #: the routed experts' weights, all experts of all layers (a batch of B tokens reads
    #: about 1 - (1 - n_experts_active / n_experts)^B of them)
    n_routed_params: int = 0
    #: bytes of weights one decode step reads at least (its n_active_params), in the form the
    #: backend holds them: fp32 on the CPU (quantized weights dequantized); bf16, or FP8 / INT4
    #: codes and their fp32 scales as loaded, on CUDA
    decode_weight_bytes: int = 0
    #: the routed experts' bytes (n_routed_params), held the same way
    routed_weight_bytes: int = 0
    #: the devices the model is split over (Model(devices=...)), 1 for a model on one device
    n_devices: int = 1

    @classmethod
    def _from_c(cls, info: Any) -> "ModelInfo":
        """From a ctypes struct kl_model_info."""
        device = {_native.KL_DEVICE_CPU: "cpu", _native.KL_DEVICE_CUDA: "cuda"}.get(
            info.device, f"unknown({info.device})")
        return cls(
            vocab_size=info.vocab_size, hidden_size=info.hidden_size, n_layers=info.n_layers,
            n_kda_layers=info.n_kda_layers, n_mla_layers=info.n_mla_layers,
            n_experts=info.n_experts, n_experts_active=info.n_experts_active,
            max_context=info.max_context, device=device, weight_bytes=info.weight_bytes,
            session_fixed_bytes=info.session_fixed_bytes,
            kv_bytes_per_token=info.kv_bytes_per_token,
            bos_token=None if info.bos_token < 0 else info.bos_token,
            eos_token=None if info.eos_token < 0 else info.eos_token,
            n_params=info.n_params, n_active_params=info.n_active_params,
            eot_token=None if info.eot_token < 0 else info.eot_token,
            n_routed_params=info.n_routed_params,
            decode_weight_bytes=info.decode_weight_bytes,
            routed_weight_bytes=info.routed_weight_bytes, n_devices=info.n_devices)


def token_buffer(tokens: Any, what: str = "tokens") -> Tuple[Any, int]:
    """(int32 array, count) of token ids, the array a C-contiguous numpy int32 array or an
    array.array of 4-byte C ints: what :func:`token_pointer` passes to C in place.

    Accepts an int (one token), a numpy integer array (passed without a copy when it is
    already contiguous int32), an array.array of C ints (passed in place) or any iterable of
    ints. Strings, bytes and floats are a TypeError.
    """
    if isinstance(tokens, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be token ids (ints), not {type(tokens).__name__}; "
                        "use Model.tokenize() for text")
    if isinstance(tokens, numbers.Integral) and not isinstance(tokens, bool):
        tokens = (int(tokens),)
    np = numpy()
    if np is not None and isinstance(tokens, (np.ndarray, np.generic)):
        arr = np.asarray(tokens)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{what} must have an integer dtype, not {arr.dtype}")
        if arr.ndim > 1:
            raise ValueError(f"{what} must be one-dimensional, not of shape {arr.shape}")
        arr = arr.reshape(-1)
        if arr.dtype != np.int32 and arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < _INT32_MIN or hi > _INT32_MAX:
                bad = lo if lo < _INT32_MIN else hi
                raise InvalidArgumentError(f"{what}: token id {bad} is out of range")
        arr = np.ascontiguousarray(arr, dtype=np.int32)  # no copy if already int32, C order
        return arr, int(arr.size)
    if isinstance(tokens, array.array) and tokens.itemsize == 4 and tokens.typecode in "il":
        return tokens, len(tokens)
    try:
        arr = array.array(_I32, tokens)
    except OverflowError as e:
        raise InvalidArgumentError(f"{what}: a token id is out of range ({e})") from None
    except TypeError as e:
        raise TypeError(f"{what} must be an iterable of int token ids ({e})") from None
    return arr, len(arr)


def token_pointer(tokens: Any, n: int):
    """The int32_t* of a token_buffer() array (no copy), None when it is empty."""
    if n == 0:
        return None
    if isinstance(tokens, array.array):
        return (c_int32 * n).from_buffer(tokens)
    return tokens.ctypes.data_as(POINTER(c_int32))  # a C-contiguous numpy int32 array


def text_bytes(text: Any) -> bytes:
    """The UTF-8 bytes of a text argument (str, or bytes-like passed as they are)."""
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"text must be str or bytes, not {type(text).__name__}")
