"""Exceptions of the kimi_linear package.

Every failing C call becomes a :class:`KimiLinearError` subclass chosen by its ``kl_status``;
the exception carries the status code (``.status``), its stable name (``.status_name``,
from ``kl_status_string``) and the library's message (``kl_last_error()``).

Where a status has an obvious built-in counterpart the subclass derives from it too, so
generic handlers keep working: ``except ValueError`` catches a bad argument, ``except
OSError`` an unreadable file, ``except MemoryError`` an allocation failure.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from . import _native
from ._native import (KL_ERR_BUSY, KL_ERR_CANCELLED, KL_ERR_CONTEXT_FULL, KL_ERR_DEVICE,
                      KL_ERR_FORMAT, KL_ERR_INTERNAL, KL_ERR_INVALID_ARGUMENT, KL_ERR_IO,
                      KL_ERR_OUT_OF_MEMORY, KL_ERR_UNSUPPORTED, KL_OK, LibraryError)

__all__ = [
    "KimiLinearError",
    "InvalidArgumentError",
    "IoError",
    "FormatError",
    "UnsupportedError",
    "OutOfMemoryError",
    "ContextFullError",
    "CancelledError",
    "DeviceError",
    "InternalError",
    "BusyError",
    "LibraryError",
    "check",
    "error_for_status",
]

# The same names kl_status_string returns; used when an error is raised by the Python side
# (argument checks that happen before any C call) and as a fallback.
STATUS_NAMES: Dict[int, str] = {
    KL_OK: "KL_OK",
    KL_ERR_INVALID_ARGUMENT: "KL_ERR_INVALID_ARGUMENT",
    KL_ERR_IO: "KL_ERR_IO",
    KL_ERR_FORMAT: "KL_ERR_FORMAT",
    KL_ERR_UNSUPPORTED: "KL_ERR_UNSUPPORTED",
    KL_ERR_OUT_OF_MEMORY: "KL_ERR_OUT_OF_MEMORY",
    KL_ERR_CONTEXT_FULL: "KL_ERR_CONTEXT_FULL",
    KL_ERR_CANCELLED: "KL_ERR_CANCELLED",
    KL_ERR_DEVICE: "KL_ERR_DEVICE",
    KL_ERR_INTERNAL: "KL_ERR_INTERNAL",
    KL_ERR_BUSY: "KL_ERR_BUSY",
}


class KimiLinearError(Exception):
    """A call into libkimi_linear failed.

    Attributes:
        status: the ``kl_status`` code (an int).
        status_name: its stable name, e.g. ``"KL_ERR_FORMAT"``.
        message: the library's message (``kl_last_error()``).
    """

    #: The kl_status this class stands for (the base class: none in particular).
    default_status: Optional[int] = None

    def __init__(self, message: str, status: Optional[int] = None,
                 status_name: Optional[str] = None) -> None:
        if status is None:
            status = self.default_status if self.default_status is not None else -1
        if status_name is None:
            status_name = STATUS_NAMES.get(status, "KL_ERR_UNKNOWN")
        self.status = int(status)
        self.status_name = status_name
        self.message = message
        # Only the message goes to the built-in bases: OSError in particular reads two or
        # more arguments as (errno, strerror).
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]" if self.message else self.status_name

    def __reduce__(self):  # picklable despite the extra constructor arguments
        return (type(self), (self.message, self.status, self.status_name))


class InvalidArgumentError(KimiLinearError, ValueError):
    """KL_ERR_INVALID_ARGUMENT: a bad argument (a token id out of range, a bad parameter)."""

    default_status = KL_ERR_INVALID_ARGUMENT


class IoError(KimiLinearError, OSError):
    """KL_ERR_IO: a file could not be opened or read."""

    default_status = KL_ERR_IO


class FormatError(KimiLinearError):
    """KL_ERR_FORMAT: a file is malformed (config, safetensors, tokenizer, state snapshot)."""

    default_status = KL_ERR_FORMAT


# Not a NotImplementedError: that one means "code someone has yet to write" (abstract
# methods), and generic code catches it with that meaning. KL_ERR_UNSUPPORTED is a property
# of the data or the build (a model folder without a tokenizer, a build without CUDA) that a
# caller handles as an ordinary runtime condition, so it stays a plain library error.
class UnsupportedError(KimiLinearError):
    """KL_ERR_UNSUPPORTED: this model or build cannot do it (e.g. no tokenizer, no CUDA)."""

    default_status = KL_ERR_UNSUPPORTED


class OutOfMemoryError(KimiLinearError, MemoryError):
    """KL_ERR_OUT_OF_MEMORY: host or device memory ran out."""

    default_status = KL_ERR_OUT_OF_MEMORY


class ContextFullError(KimiLinearError):
    """KL_ERR_CONTEXT_FULL: the session's MLA cache cannot hold the tokens."""

    default_status = KL_ERR_CONTEXT_FULL


class CancelledError(KimiLinearError):
    """KL_ERR_CANCELLED: stopped by Session.cancel() or by a progress callback (a load, a
    checkpoint write)."""

    default_status = KL_ERR_CANCELLED


class DeviceError(KimiLinearError):
    """KL_ERR_DEVICE: a GPU/driver failure."""

    default_status = KL_ERR_DEVICE


class InternalError(KimiLinearError):
    """KL_ERR_INTERNAL: a bug in the library."""

    default_status = KL_ERR_INTERNAL


# A RuntimeError, like the one a Session raises itself when a second thread calls it while a
# call runs (the library's own check is the same rule, one layer down).
class BusyError(KimiLinearError, RuntimeError):
    """KL_ERR_BUSY: the session is in use by another call (one thread at a time)."""

    default_status = KL_ERR_BUSY


_BY_STATUS: Dict[int, Type[KimiLinearError]] = {
    cls.default_status: cls  # type: ignore[misc]
    for cls in (InvalidArgumentError, IoError, FormatError, UnsupportedError, OutOfMemoryError,
                ContextFullError, CancelledError, DeviceError, InternalError, BusyError)
}


def error_for_status(status: int, message: str,
                     status_name: Optional[str] = None) -> KimiLinearError:
    """The exception object for a (non-OK) status; an unknown status gives the base class."""
    cls = _BY_STATUS.get(int(status), KimiLinearError)
    return cls(message, status, status_name)


def check(status: int) -> None:
    """Raise the exception for ``status`` (a kl_status) unless it is KL_OK.

    Call it right after the C call, on the same thread: the message comes from the
    thread-local ``kl_last_error()``.
    """
    if status == KL_OK:
        return
    lib = _native.lib()
    message = (lib.kl_last_error() or b"").decode("utf-8", "replace")
    name = (lib.kl_status_string(status) or b"KL_ERR_UNKNOWN").decode("ascii", "replace")
    raise error_for_status(status, message, name)
