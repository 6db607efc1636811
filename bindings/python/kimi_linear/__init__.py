"""Python bindings of libkimi_linear, the Kimi Linear inference runtime.

    import kimi_linear as kl

    with kl.Model("path/to/model") as model, model.session() as session:
        prompt = model.apply_chat_template([{"role": "user", "content": "Hi"}])
        for piece in session.generate(prompt, max_new_tokens=64,
                                      stop_tokens=[model.info.eot_token]):
            print(piece, end="", flush=True)

Pure Python over ctypes (the declarations of _native.py). The shared library is found
through $KIMI_LINEAR_LIBRARY, then the copy inside this package (wheels), then the system
loader (libkimi_linear.so.1). The SWIG module ``kimi_linear_native`` (built from
bindings/swig/kimi_linear.i) is a separate low-level module; this package does not use it.
"""

from . import _native
from ._batch import Batch, BatchStep
from ._conversation import Conversation
from ._generation import Generation, TokenLogprob
from ._model import Model, quantize_checkpoint
from ._native import KL_LOG_DEBUG, KL_LOG_ERROR, KL_LOG_INFO, KL_LOG_WARN, KL_NO_TOKEN
from ._session import Session
from ._types import ChatMessage, ModelInfo, SamplingParams
from .errors import (BusyError, CancelledError, ContextFullError, DeviceError, FormatError,
                     InternalError, InvalidArgumentError, IoError, KimiLinearError, LibraryError,
                     OutOfMemoryError, UnsupportedError)

__version__ = "0.1.0"  # of these bindings; version() is the library's

__all__ = [
    "Model", "Session", "SamplingParams", "ChatMessage", "ModelInfo", "Conversation",
    "Generation", "TokenLogprob", "Batch", "BatchStep", "quantize_checkpoint",
    "KimiLinearError", "InvalidArgumentError", "IoError", "FormatError", "UnsupportedError",
    "OutOfMemoryError", "ContextFullError", "CancelledError", "DeviceError", "InternalError",
    "BusyError", "LibraryError",
    "KL_NO_TOKEN", "KL_LOG_ERROR", "KL_LOG_WARN", "KL_LOG_INFO", "KL_LOG_DEBUG",
    "version", "abi_version", "library_path", "set_log_callback", "backend",
]


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _native.lib().kl_version().decode("ascii")


def abi_version() -> int:
    """The loaded library's ABI major (1 for this package)."""
    return int(_native.lib().kl_abi_version())


def library_path() -> str:
    """The path (or name) the library was loaded from."""
    return _native.library_path()


def set_log_callback(callback) -> None:
    """Route the library's log lines to ``callback(level: int, message: str)``.

    Levels are KL_LOG_ERROR (0) .. KL_LOG_DEBUG (3). ``None`` restores the default (stderr,
    warnings and errors only). The callback may run on any thread; exceptions in it are
    printed and ignored.
    """
    _native.set_log_callback(callback)


def backend() -> str:
    """The native layer in use: always "ctypes" (kept for code written when the package
    could also run on the SWIG module; that module is now used on its own)."""
    return "ctypes"
