"""Batch: several sessions of one model stepped together, one token each per forward pass
(kl_batch_next / kl_batch_append), and streaming generation over them."""

from __future__ import annotations

import contextlib
import numbers
from ctypes import byref, c_int32, c_size_t, create_string_buffer, string_at
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from . import _native
from ._session import Session, _Busy, _check_count, _sampling, _MAX_NEW_TOKENS
from ._types import SamplingParams, token_buffer, token_pointer
from .errors import KL_ERR_INVALID_ARGUMENT, InvalidArgumentError, check

# Bytes of text room per session for kl_batch_next's first try. A piece that does not fit
# fails the call with nothing appended (and the draw is a function of seed and position), so
# the call is repeated with more room; the library does not say how much, hence the steps.
_PIECE_STRIDES = (256, 4096, 65536, 1 << 20)

Sampling = Union[None, SamplingParams, Sequence[Optional[SamplingParams]]]


class BatchStep(NamedTuple):
    """One session's token of a Batch.generate() step.

    index: the session's place in the Batch; token: the token appended; piece: the text it
    completes ("" while a character is unfinished; "" for a stop token, whose text is not
    passed on; None without a tokenizer); finish_reason: None while the session goes on,
    "stop_token" or "length" on its last step (it has then left the batch).
    """

    index: int
    token: int
    piece: Optional[str]
    finish_reason: Optional[str]


class Batch:
    """Distinct sessions of one model, stepped together: each next() samples every session's
    next token with its own sampling parameters and appends them all in ONE forward pass (the
    weights are read once for the whole batch). The tokens and sessions afterwards are those
    of one Session.next() per session (on the CPU to float rounding).

    All or nothing: when a call fails (a session busy, without logits or at a full context,
    a token out of range; the exception names ``sessions[i]``) no session changed. A
    cancel() pending on any session fails the call with CancelledError and is consumed.
    The sessions stay ordinary sessions; the batch owns nothing.
    """

    def __init__(self, sessions: Iterable[Session]) -> None:
        sessions = list(sessions)
        for i, session in enumerate(sessions):
            if not isinstance(session, Session):
                raise TypeError(f"sessions[{i}] must be a kimi_linear.Session, not "
                                f"{type(session).__name__}")
        if not sessions:
            raise InvalidArgumentError("a batch needs at least one session")
        self._sessions = sessions
        self._stride = _PIECE_STRIDES[0]  # the room the last piece needed, kept

    @property
    def sessions(self) -> List[Session]:
        """The sessions, in the order of the results."""
        return list(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def __repr__(self) -> str:
        return f"<kimi_linear.Batch of {len(self._sessions)} sessions>"

    # ---- one token per session --------------------------------------------------------------

    def next(self, sampling: Sampling = None) -> List[Tuple[int, Optional[str]]]:
        """Sample each session's next token, append them all in one pass and return
        [(token, text it completes)] in the sessions' order, as Session.next() returns.

        sampling: None (greedy), one SamplingParams for every session, or a list with one
        per session (None entries: greedy).
        """
        return self._next(self._sessions, self._params(sampling, len(self._sessions)))

    def append(self, tokens: Iterable[int]) -> None:
        """Append tokens[i] to session i (one token each) in one pass: Session.append of one
        token per session, for callers that pick the tokens themselves."""
        buf, n = token_buffer(tokens)
        if n != len(self._sessions):
            raise InvalidArgumentError(f"tokens holds {n} tokens for {len(self._sessions)} "
                                       "sessions: one token per session")
        tokens_ptr = token_pointer(buf, n)
        with _held(self._sessions) as pointers:
            check(_native.lib().kl_batch_append(pointers, n, tokens_ptr))

    # ---- generation ---------------------------------------------------------------------------

    def generate(self, max_new_tokens: Union[int, Sequence[int]] = 128, *,
                 stop_tokens: Iterable[int] = (),
                 sampling: Sampling = None) -> Iterator[BatchStep]:
        """Stream a continuation of every session: an iterator of BatchStep, one per session
        still running at each step, each step one next() over those sessions (so tokens and
        text are each session's own generate()'s, with its own sampling parameters).

        A session leaves the batch when it samples one of ``stop_tokens`` (appended, reported
        with finish_reason "stop_token" and an empty piece) or has appended its
        ``max_new_tokens`` (an int, or one per session; its last step says "length"); the
        others go on. Append the prompts first. A failing step raises with no session
        changed by it (what earlier steps appended stays); a cancel() of any running session
        stops the stream with CancelledError. Arguments are checked now, the steps run as the
        iterator is read.
        """
        n = len(self._sessions)
        if isinstance(max_new_tokens, numbers.Integral) and not isinstance(max_new_tokens, bool):
            limits = [max_new_tokens] * n
        else:
            limits = list(max_new_tokens)
            if len(limits) != n:
                raise InvalidArgumentError(f"max_new_tokens holds {len(limits)} limits for "
                                           f"{n} sessions")
        limits = [_check_count(f"max_new_tokens[{i}]", limit, _MAX_NEW_TOKENS)
                  for i, limit in enumerate(limits)]
        stop_array, n_stops = token_buffer(stop_tokens, "stop_tokens")
        params = self._params(sampling, n)
        return self._stream(limits, set(stop_array[:n_stops]), params)

    def _stream(self, limits: List[int], stops: set, params: List[Any]) -> Iterator[BatchStep]:
        running = [i for i in range(len(self._sessions)) if limits[i] > 0]
        generated = [0] * len(self._sessions)
        while running:
            results = self._next([self._sessions[i] for i in running], [params[i] for i in running])
            still = []
            for i, (token, piece) in zip(running, results):
                generated[i] += 1
                if token in stops:
                    yield BatchStep(i, token, "" if piece is not None else None, "stop_token")
                elif generated[i] >= limits[i]:
                    yield BatchStep(i, token, piece, "length")
                else:
                    yield BatchStep(i, token, piece, None)
                    still.append(i)
            running = still

    # ---- the C call -----------------------------------------------------------------------------

    def _params(self, sampling: Sampling, n: int) -> List[Any]:
        """n kl_sampling_params (checked now, before anything runs)."""
        if sampling is None or isinstance(sampling, SamplingParams):
            one = _sampling(sampling, {})._to_c()
            return [one] * n
        if isinstance(sampling, (str, bytes)) or not isinstance(sampling, Sequence):
            raise TypeError("sampling must be a SamplingParams, a list of them (one per "
                            f"session) or None, not {type(sampling).__name__}")
        if len(sampling) != n:
            raise InvalidArgumentError(f"sampling holds {len(sampling)} SamplingParams for {n} "
                                       "sessions: one per session")
        return [_sampling(s, {})._to_c() for s in sampling]

    def _next(self, sessions: List[Session], params: List[Any]) -> List[Tuple[int, Optional[str]]]:
        lib = _native.lib()
        n = len(sessions)
        c_params = (_native.kl_sampling_params * n)(*params)
        tokens = (c_int32 * n)()
        lens = (c_size_t * n)()
        text = all(s._has_tokenizer for s in sessions)
        with _held(sessions) as pointers:
            if not text:
                check(lib.kl_batch_next(pointers, n, c_params, tokens, None, 0, None))
                return [(tokens[i], None) for i in range(n)]
            for stride in (s for s in _PIECE_STRIDES if s >= self._stride):
                pieces = create_string_buffer(n * stride)
                status = lib.kl_batch_next(pointers, n, c_params, tokens, pieces, stride, lens)
                if status == KL_ERR_INVALID_ARGUMENT and stride != _PIECE_STRIDES[-1]:
                    continue  # perhaps a piece without room: nothing changed, more room
                check(status)
                self._stride = stride
                return [(tokens[i], string_at(byref(pieces, i * stride), lens[i]).decode(
                    "utf-8", "replace")) for i in range(n)]
        raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _held(sessions: List[Session]):
    """The kl_session* array of the sessions, each session's busy lock held (once per
    distinct session: a session given twice is the library's to refuse, by name)."""
    with contextlib.ExitStack() as stack:
        seen = {}
        for session in sessions:
            state = session._state
            if id(state) not in seen:
                seen[id(state)] = stack.enter_context(_Busy(state))
        pointers = (_native.kl_session_p * len(sessions))(
            *[seen[id(s._state)] for s in sessions])
        yield pointers
