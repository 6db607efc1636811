"""What a generate() iteration reports besides its pieces: why it ended, and the
log-probabilities of its tokens (kl_generation_step), and the logits-processor thunk."""

from __future__ import annotations

from ctypes import addressof, c_float
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Tuple

from . import _native
from ._types import numpy

#: kl_end_reason -> Generation.finish_reason
FINISH_REASONS = {
    _native.KL_END_LENGTH: "length",
    _native.KL_END_STOP_TOKEN: "stop_token",
    _native.KL_END_STOP_STRING: "stop_string",
    _native.KL_END_CALLBACK: "callback",
    _native.KL_END_CANCELLED: "cancelled",
    _native.KL_END_ERROR: "error",
}


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's natural-log probability and the most likely alternatives, over
    the log-softmax of the step's logits after logit_bias and the logits processor, before
    the repetition penalty, temperature and top-k/top-p/min-p (docs/design/capi.md)."""

    token: int
    logprob: float
    top: Tuple[Tuple[int, float], ...] = ()  #: (token, logprob), most likely first


class Generation:
    """The iterator Session.generate() returns: the pieces (or (token, piece) pairs), and
    once it has ended ``finish_reason`` ("length", "stop_token", "stop_string", "callback",
    "cancelled" or "error"; None while it runs or when closed early) and, when asked for,
    ``logprobs``: one TokenLogprob per token appended, the stop token included."""

    __slots__ = ("_stream", "finish_reason", "logprobs", "__weakref__")

    def __init__(self) -> None:
        self._stream: Optional[Iterator[Any]] = None
        self.finish_reason: Optional[str] = None
        self.logprobs: List[TokenLogprob] = []

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> Any:
        assert self._stream is not None
        return next(self._stream)

    def close(self) -> None:
        """Stop early: the tokens so far stay appended; the generator is freed."""
        if self._stream is not None:
            self._stream.close()

    def _record(self, step: Any, top_wanted: bool) -> None:
        """Keep a step's log-probabilities (the caller asked for them)."""
        top = tuple((step.top_tokens[i], step.top_logprobs[i]) for i in range(step.n_top)) \
            if top_wanted else ()
        self.logprobs.append(TokenLogprob(step.token, step.logprob, top))


def logits_processor_thunk(processor: Callable[[Any, Any], Any], raised: List[BaseException]):
    """A kl_logits_processor calling ``processor(logits, history)``: logits a writable
    float32 numpy view of the vocabulary's logits (a ctypes array without numpy), history
    the session's tokens (an int32 view or a list), both valid during the call only; a true
    return ends the generation. An exception ends it too, kept in ``raised`` for the
    iterator to re-raise (it cannot cross the C library)."""
    np = numpy()

    def thunk(_user, logits, vocab, history, n_history) -> int:
        if raised:
            return 1
        try:
            if np is not None:
                view = np.ctypeslib.as_array(logits, shape=(vocab,))
                tokens = np.ctypeslib.as_array(history, shape=(n_history,)) if n_history \
                    else np.empty(0, dtype=np.int32)
            else:
                view = (c_float * vocab).from_address(addressof(logits.contents))
                tokens = history[:n_history]
            return 1 if processor(view, tokens) else 0
        except BaseException as e:  # noqa: B902 - re-raised by the iterator
            raised.append(e)
            return 1

    return _native.kl_logits_processor(thunk)
