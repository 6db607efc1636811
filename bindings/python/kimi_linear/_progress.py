"""A Python progress callable as a kl_progress_callback (model loads, checkpoint writes)."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from . import _native


class ProgressRelay:
    """``progress(fraction)`` for the library: returning False stops the call (the library
    answers KL_ERR_CANCELLED); an exception raised in it stops the call too and is kept, since
    none may unwind through the library's frames, for ``reraise()`` once the call returned.

    ``callback`` is the ctypes thunk (a NULL kl_progress_callback without ``progress``: ctypes
    takes no None for it); keep the relay alive until the call returns.
    """

    def __init__(self, progress: Optional[Callable[[float], Any]]) -> None:
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable or None")
        self._progress = progress
        self._raised: List[BaseException] = []
        self.callback = (_native.kl_progress_callback() if progress is None else
                         _native.kl_progress_callback(self._call))

    def _call(self, fraction: float, _user) -> int:  # non-zero: stop
        if self._raised:
            return 1
        try:
            return 1 if self._progress(float(fraction)) is False else 0
        except BaseException as e:  # noqa: B902 - re-raised after the C call
            self._raised.append(e)
            return 1

    @property
    def raised(self) -> bool:
        """Whether the callable raised (the call was stopped for it)."""
        return bool(self._raised)

    def reraise(self) -> None:
        """Raise what the callable raised, if it did."""
        if self._raised:
            raise self._raised[0]
