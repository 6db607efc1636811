"""ctypes declarations of the C API in capi/include/kimi_linear.h (ABI 1).

This module mirrors the header one to one: the constants, the parameter structs and the
signature (argtypes/restype) of every exported function. It is the package's one native
layer: Model, Session and errors.check call the functions of :func:`lib` (which loads the
shared library on first use) directly. It imports nothing else from the package, so every
other module may import it.

Library lookup, first hit wins:
  1. ``$KIMI_LINEAR_LIBRARY``: the full path of the library (no fallback when it is set);
  2. ``kimi_linear/lib/libkimi_linear.so*`` inside this package (a wheel ships it there);
  3. ``ctypes.util.find_library("kimi_linear")``, then the plain SONAME
     ``libkimi_linear.so.1`` through the system loader (LD_LIBRARY_PATH, ld.so.cache).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_float, c_int, c_int32,
                    c_size_t, c_uint32, c_uint64, c_void_p)
from typing import List, Optional

# ---- constants ------------------------------------------------------------------------

ABI_VERSION = 1  # KL_ABI_VERSION this module is written for
SONAME = "libkimi_linear.so.1"

KL_NO_TOKEN = -1

# kl_status (errors.py re-exports these and maps each to its exception class)
KL_OK = 0
KL_ERR_INVALID_ARGUMENT = 1
KL_ERR_IO = 2
KL_ERR_FORMAT = 3
KL_ERR_UNSUPPORTED = 4
KL_ERR_OUT_OF_MEMORY = 5
KL_ERR_CONTEXT_FULL = 6
KL_ERR_CANCELLED = 7
KL_ERR_DEVICE = 8
KL_ERR_INTERNAL = 9
KL_ERR_BUSY = 10

KL_STATUSES = (KL_OK, KL_ERR_INVALID_ARGUMENT, KL_ERR_IO, KL_ERR_FORMAT, KL_ERR_UNSUPPORTED,
               KL_ERR_OUT_OF_MEMORY, KL_ERR_CONTEXT_FULL, KL_ERR_CANCELLED, KL_ERR_DEVICE,
               KL_ERR_INTERNAL, KL_ERR_BUSY)

# kl_device
KL_DEVICE_AUTO = 0
KL_DEVICE_CPU = 1
KL_DEVICE_CUDA = 2

# kl_weight_format
KL_WEIGHTS_AUTO = 0
KL_WEIGHTS_BF16 = 1
KL_WEIGHTS_FP8 = 2
KL_WEIGHTS_INT4 = 3

# kl_logits
KL_LOGITS_NONE = 0
KL_LOGITS_LAST = 1
KL_LOGITS_ALL = 2

# kl_end_reason
KL_END_NONE = 0
KL_END_LENGTH = 1
KL_END_STOP_TOKEN = 2
KL_END_STOP_STRING = 3
KL_END_CALLBACK = 4
KL_END_CANCELLED = 5
KL_END_ERROR = 6

KL_MAX_TOP_LOGPROBS = 20
KL_MAX_DEVICES = 8  # kl_model_params.devices

# log levels
KL_LOG_ERROR = 0
KL_LOG_WARN = 1
KL_LOG_INFO = 2
KL_LOG_DEBUG = 3

# C enums are int-sized (the library static_asserts it).
kl_status = c_int
kl_device = c_int
kl_logits = c_int
kl_end_reason = c_int


class LibraryError(OSError):
    """The shared library could not be found or loaded, or is of another ABI."""


# ---- opaque handles -----------------------------------------------------------------------

class kl_model(Structure):
    """Opaque ``struct kl_model``; only pointers to it are used."""


class kl_session(Structure):
    """Opaque ``struct kl_session``; only pointers to it are used."""


class kl_generator(Structure):
    """Opaque ``struct kl_generator``; only pointers to it are used."""


kl_model_p = POINTER(kl_model)
kl_session_p = POINTER(kl_session)
kl_generator_p = POINTER(kl_generator)

# ---- callbacks ----------------------------------------------------------------------------

kl_log_callback = CFUNCTYPE(None, c_int, c_char_p, c_void_p)
kl_progress_callback = CFUNCTYPE(c_int, c_float, c_void_p)
kl_token_callback = CFUNCTYPE(c_int, c_void_p, c_int32, POINTER(c_char), c_size_t)
kl_logits_processor = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), c_size_t, POINTER(c_int32),
                                c_size_t)


# ---- structs ------------------------------------------------------------------------------

class kl_model_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("device", kl_device),
        ("device_index", c_int32),
        ("n_threads", c_int32),
        ("progress_cb", kl_progress_callback),
        ("progress_user", c_void_p),
        ("max_batch", c_uint32),  # appended fields (decode batching across threads)
        ("batch_wait_us", c_uint32),
        ("weight_format", c_int),  # appended later: kl_weight_format
        ("n_devices", c_uint32),  # appended later: the devices the model is split over
        ("devices", c_int32 * KL_MAX_DEVICES),
    ]


class kl_model_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("vocab_size", c_uint32),
        ("hidden_size", c_uint32),
        ("n_layers", c_uint32),
        ("n_kda_layers", c_uint32),
        ("n_mla_layers", c_uint32),
        ("n_experts", c_uint32),
        ("n_experts_active", c_uint32),
        ("max_context", c_uint64),
        ("device", kl_device),
        ("weight_bytes", c_uint64),
        ("session_fixed_bytes", c_uint64),
        ("kv_bytes_per_token", c_uint64),
        ("bos_token", c_int32),
        ("eos_token", c_int32),
        ("n_params", c_uint64),
        ("n_active_params", c_uint64),
        ("eot_token", c_int32),
        ("n_routed_params", c_uint64),
        ("decode_weight_bytes", c_uint64),  # appended later: bytes as the backend holds them
        ("routed_weight_bytes", c_uint64),
        ("n_devices", c_uint32),  # appended later: 1 for a model on one device
    ]


class kl_session_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_context", c_uint64),
    ]


class kl_sampling_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repetition_penalty", c_float),
        ("repetition_window", c_int32),
        ("seed", c_uint64),
    ]


class kl_generate_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_new_tokens", c_uint32),
        ("sampling", kl_sampling_params),
        ("stop_tokens", POINTER(c_int32)),
        ("n_stop_tokens", c_size_t),
        ("stop_strings", POINTER(c_char_p)),
        ("n_stop_strings", c_size_t),
        ("logprobs", c_int32),
        ("n_top_logprobs", c_uint32),
        ("logit_bias_tokens", POINTER(c_int32)),
        ("logit_bias_values", POINTER(c_float)),
        ("n_logit_bias", c_size_t),
        ("logits_processor", kl_logits_processor),
        ("logits_processor_user", c_void_p),
    ]


class kl_generation_step(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("token", c_int32),
        ("piece", POINTER(c_char)),  # owned by the generator, valid until its next call
        ("piece_len", c_size_t),
        ("end", kl_end_reason),
        ("n_generated", c_uint32),
        ("logprob", c_float),
        ("n_top", c_uint32),
        ("top_tokens", POINTER(c_int32)),  # owned by the generator, valid until its next call
        ("top_logprobs", POINTER(c_float)),
    ]


class kl_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
    ]


# ---- functions ----------------------------------------------------------------------------

_size_p = POINTER(c_size_t)
_i32_p = POINTER(c_int32)
_f32_p = POINTER(c_float)

# name: (restype, argtypes), in the order of the header.
_SIGNATURES = {
    # version and errors
    "kl_version": (c_char_p, []),
    "kl_abi_version": (c_uint32, []),
    "kl_last_error": (c_char_p, []),
    "kl_status_string": (c_char_p, [kl_status]),
    "kl_set_log_callback": (None, [kl_log_callback, c_void_p]),
    # model
    "kl_model_params_default": (None, [POINTER(kl_model_params)]),
    "kl_model_params_init": (kl_status, [POINTER(kl_model_params), c_size_t]),
    "kl_checkpoint_quantize": (kl_status, [c_char_p, c_char_p, c_int, c_uint64]),
    "kl_checkpoint_quantize_with_progress": (kl_status, [c_char_p, c_char_p, c_int, c_uint64,
                                                         kl_progress_callback, c_void_p]),
    "kl_model_load": (kl_status, [c_char_p, POINTER(kl_model_params), POINTER(kl_model_p)]),
    "kl_model_create_random": (kl_status, [c_char_p, c_uint64, POINTER(kl_model_params),
                                           POINTER(kl_model_p)]),
    "kl_model_free": (None, [kl_model_p]),
    "kl_model_info": (kl_status, [kl_model_p, POINTER(kl_model_info)]),
    # session
    "kl_session_params_default": (None, [POINTER(kl_session_params)]),
    "kl_session_create": (kl_status, [kl_model_p, POINTER(kl_session_params),
                                      POINTER(kl_session_p)]),
    "kl_session_free": (None, [kl_session_p]),
    "kl_session_reset": (kl_status, [kl_session_p]),
    "kl_session_append": (kl_status, [kl_session_p, _i32_p, c_size_t, kl_logits, _f32_p]),
    "kl_session_fill_synthetic": (kl_status, [kl_session_p, c_uint64, c_uint64]),
    "kl_session_position": (kl_status, [kl_session_p, POINTER(c_uint64)]),
    "kl_session_tokens": (kl_status, [kl_session_p, _i32_p, c_size_t, _size_p]),
    "kl_session_fork": (kl_status, [kl_session_p, POINTER(kl_session_p)]),
    "kl_session_state_size": (kl_status, [kl_session_p, _size_p]),
    "kl_session_state_save": (kl_status, [kl_session_p, c_void_p, c_size_t, _size_p]),
    "kl_session_state_load": (kl_status, [kl_session_p, c_void_p, c_size_t]),
    "kl_session_cancel": (None, [kl_session_p]),
    "kl_session_clear_cancel": (None, [kl_session_p]),
    # sampling and generation
    "kl_sampling_params_default": (None, [POINTER(kl_sampling_params)]),
    "kl_session_sample": (kl_status, [kl_session_p, POINTER(kl_sampling_params), _i32_p]),
    "kl_generate_params_default": (None, [POINTER(kl_generate_params)]),
    "kl_generate_params_init": (kl_status, [POINTER(kl_generate_params), c_size_t]),
    "kl_session_generate": (kl_status, [kl_session_p, POINTER(kl_generate_params),
                                        kl_token_callback, c_void_p, _size_p]),
    "kl_session_next": (kl_status, [kl_session_p, POINTER(kl_sampling_params), _i32_p,
                                    POINTER(c_char), c_size_t, _size_p]),
    "kl_generator_create": (kl_status, [kl_session_p, POINTER(kl_generate_params),
                                        POINTER(kl_generator_p)]),
    "kl_generator_next": (kl_status, [kl_generator_p, POINTER(kl_generation_step)]),
    "kl_generator_free": (None, [kl_generator_p]),
    # batched decode
    "kl_batch_next": (kl_status, [POINTER(kl_session_p), c_size_t, POINTER(kl_sampling_params),
                                  _i32_p, POINTER(c_char), c_size_t, _size_p]),
    "kl_batch_append": (kl_status, [POINTER(kl_session_p), c_size_t, _i32_p]),
    # tokenizer and chat format
    "kl_tokenize": (kl_status, [kl_model_p, c_char_p, c_size_t, c_int, _i32_p, c_size_t,
                                _size_p]),
    "kl_detokenize": (kl_status, [kl_model_p, _i32_p, c_size_t, POINTER(c_char), c_size_t,
                                  _size_p]),
    "kl_chat_template_apply": (kl_status, [kl_model_p, POINTER(kl_chat_message), c_size_t, c_int,
                                           POINTER(c_char), c_size_t, _size_p]),
    "kl_chat_tokenize": (kl_status, [kl_model_p, POINTER(kl_chat_message), c_size_t, c_int, _i32_p,
                                     c_size_t, _size_p]),
}

_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None
_lock = threading.Lock()


def _candidates() -> List[str]:
    """Where to look, in order (see the module docstring)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
    found: List[str] = []
    if os.path.isdir(here):
        names = sorted(n for n in os.listdir(here) if n.startswith("libkimi_linear.so"))
        # The SONAME first, then the unversioned link, then anything else (a full version).
        rank = {SONAME: 0, "libkimi_linear.so": 1}
        names.sort(key=lambda n: rank.get(n, 2))
        found += [os.path.join(here, n) for n in names]
    system = ctypes.util.find_library("kimi_linear")
    if system:
        found.append(system)
    found.append(SONAME)
    return found


def _declare(cdll: ctypes.CDLL, where: str) -> None:
    """Set argtypes/restype of every function on a handle of the library; checks the ABI."""
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            raise LibraryError(f"{where} does not export {name}: not a kimi_linear library of "
                               f"ABI {ABI_VERSION}") from None
        fn.restype = restype
        fn.argtypes = argtypes
    abi = cdll.kl_abi_version()
    if abi != ABI_VERSION:
        raise LibraryError(f"{where} has ABI {abi}, this package needs ABI {ABI_VERSION}")


def _load() -> ctypes.CDLL:
    explicit = os.environ.get("KIMI_LINEAR_LIBRARY")
    if explicit:
        try:
            cdll = ctypes.CDLL(explicit)
        except OSError as e:
            raise LibraryError(f"KIMI_LINEAR_LIBRARY={explicit!r} cannot be loaded: {e}") from e
        _declare(cdll, explicit)
        return _remember(cdll, explicit)
    errors = []
    for path in _candidates():
        try:
            cdll = ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"  {path}: {e}")
            continue
        _declare(cdll, path)
        return _remember(cdll, path)
    raise LibraryError("libkimi_linear not found; set KIMI_LINEAR_LIBRARY to its full path. "
                       "Tried:\n" + "\n".join(errors))


def _remember(cdll: ctypes.CDLL, path: str) -> ctypes.CDLL:
    global _lib, _lib_path
    _lib, _lib_path = cdll, path
    return cdll


def lib() -> ctypes.CDLL:
    """The loaded library, its functions declared (loads it on first use)."""
    if _lib is not None:
        return _lib
    with _lock:
        return _lib if _lib is not None else _load()


def library_path() -> str:
    """The path (or name) the library was loaded from."""
    lib()
    assert _lib_path is not None
    return _lib_path


# ---- logging ------------------------------------------------------------------------------

_log_callback_ref = None  # the ctypes thunk must outlive its registration
# Every thunk ever registered: the library calls the callback outside its lock, so a call that
# began before a kl_set_log_callback may still run after it returns (kimi_linear.h); freeing
# the old thunk then would crash. A few hundred bytes per registration.
_log_callback_refs: list = []


def set_log_callback(callback) -> None:
    """Route the library's log lines to ``callback(level: int, message: str)``.

    Levels are KL_LOG_ERROR (0) .. KL_LOG_DEBUG (3). ``None`` restores the default (stderr,
    warnings and errors only). The callback may run on any thread; exceptions in it are
    printed and ignored.
    """
    global _log_callback_ref
    cdll = lib()
    if callback is None:
        cdll.kl_set_log_callback(kl_log_callback(), None)
        _log_callback_ref = None
        return
    if not callable(callback):
        raise TypeError("callback must be callable or None")

    def thunk(level, msg, _user):
        try:
            callback(int(level), (msg or b"").decode("utf-8", "replace"))
        except Exception:  # never let an exception unwind into C
            sys.excepthook(*sys.exc_info())

    ref = kl_log_callback(thunk)
    _log_callback_refs.append(ref)
    cdll.kl_set_log_callback(ref, None)
    _log_callback_ref = ref


def _reset_log_callback_at_exit() -> None:
    # Python callbacks must not be called once the interpreter is going away.
    if _log_callback_ref is not None and _lib is not None:
        _lib.kl_set_log_callback(kl_log_callback(), None)


import atexit  # noqa: E402

atexit.register(_reset_log_callback_at_exit)
