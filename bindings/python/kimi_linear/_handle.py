"""ModelHandle: one kl_model shared by a Model, its Sessions and the calls in flight.

Model and Session both import this module (and neither imports the other's at load time:
_model imports _session, never the reverse).
"""

from __future__ import annotations

import threading
from ctypes import byref, c_int32, c_size_t
from typing import List

from . import _native
from .errors import KL_ERR_INVALID_ARGUMENT, KL_OK, check


class ModelHandle:
    """Owns one kl_model, shared by the Model and its Sessions, and by calls in flight.

    The header asks that a model be freed after its sessions ("Free its sessions first"),
    and the sessions need the model's tokenizer (text prompts), so the kl_model is freed when
    its last user lets go: Model.close() drops the Model's share, each Session holds one
    until it is closed, and each model call holds one while it runs (so a close() on another
    thread never frees a model under a running call).
    """

    __slots__ = ("_ptr", "_refs", "_lock", "__weakref__")

    def __init__(self, ptr) -> None:
        self._ptr = ptr
        self._refs = 1
        self._lock = threading.Lock()

    def acquire(self):
        """One more share; the kl_model pointer. ValueError when the last share is gone."""
        with self._lock:
            if self._refs == 0:
                raise ValueError("model is closed")
            self._refs += 1
            return self._ptr

    def release(self) -> None:
        """Drop one share; the last one frees the kl_model."""
        with self._lock:
            self._refs -= 1
            if self._refs > 0:
                return
            ptr, self._ptr = self._ptr, None
        if ptr:
            _native.lib().kl_model_free(ptr)

    def share(self) -> "Share":
        """A share for the duration of a call: ``with handle.share() as model_ptr``."""
        return Share(self)

    def tokenize(self, data: bytes, parse_special: bool) -> List[int]:
        """kl_tokenize of UTF-8 bytes (Model.tokenize, and Session's text prompts)."""
        lib = _native.lib()
        # A first guess that fits well-formed UTF-8 (at most one token per byte), then the
        # size the library reports when it was too small (KL_ERR_INVALID_ARGUMENT with the
        # count in *n): one tokenizer pass in the common case.
        cap = len(data) + 1
        with self.share() as ptr:
            return read_ids(lambda out, cap, n: lib.kl_tokenize(
                ptr, data, len(data), 1 if parse_special else 0, out, cap, n), cap, "kl_tokenize")


def read_ids(call, cap: int, what: str) -> List[int]:
    """The ids a kl_* call writes with the size protocol: call(out, cap, byref(n)) first with
    the guess cap, then once more with the size the library reported if it was too small."""
    n = c_size_t(0)
    for _ in range(3):
        out = (c_int32 * cap)()
        status = call(out, cap, byref(n))
        if status in (KL_OK, KL_ERR_INVALID_ARGUMENT) and n.value > cap:  # too small
            cap = n.value
            continue
        check(status)
        return out[:n.value]
    raise AssertionError(what + " kept asking for a larger buffer")  # pragma: no cover


class Share:
    """One share of a ModelHandle, as a context manager (its value: the kl_model pointer)."""

    __slots__ = ("_handle", "_ptr")

    def __init__(self, handle: ModelHandle) -> None:
        self._ptr = handle.acquire()
        self._handle = handle

    def __enter__(self):
        return self._ptr

    def __exit__(self, *exc) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.release()
