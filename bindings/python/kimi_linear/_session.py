"""Session: one conversation's state (kl_session), and streaming generation."""

from __future__ import annotations

import dataclasses
import numbers
import threading
import weakref
from ctypes import (POINTER, byref, c_char_p, c_float, c_int32, c_size_t, c_uint64, cast,
                    create_string_buffer, sizeof, string_at)
from concurrent.futures import Executor
from typing import (TYPE_CHECKING, Any, AsyncIterator, Iterable, Iterator, List, Literal,
                    Optional, Sequence, Set, Tuple, Union, overload)

from . import _native
from ._async import stream_async
from ._handle import ModelHandle
from ._types import GREEDY, SamplingParams, numpy, text_bytes, token_buffer, token_pointer
from .errors import KL_ERR_INVALID_ARGUMENT, KL_OK, InvalidArgumentError, UnsupportedError, check

if TYPE_CHECKING:  # for annotations only: _model imports this module
    from ._model import Model

KL_NO_TOKEN = _native.KL_NO_TOKEN

_LOGITS = {None: _native.KL_LOGITS_NONE, "none": _native.KL_LOGITS_NONE,
           "last": _native.KL_LOGITS_LAST, "all": _native.KL_LOGITS_ALL}

_PIECE_BYTES = 256  # kl_session_next's first piece buffer; grown when a piece needs more
_MAX_NEW_TOKENS = 2 ** 32 - 1  # kl_generate_params.max_new_tokens is a uint32_t


class _State:
    """What the finalizer needs: the kl_session, its live kl_generators, the model share and
    the locks.

    busy: held during every call that uses the session (one thread at a time, as the C API
    requires; a second thread gets a RuntimeError instead of a data race). cancel_lock: held
    by cancel() and by the frees, so cancel() from another thread never touches a freed
    session and a generator is freed once, before its session.
    """

    __slots__ = ("ptr", "handle", "generators", "busy", "cancel_lock")

    def __init__(self, handle: ModelHandle) -> None:
        self.ptr = None
        self.handle: Optional[ModelHandle] = handle
        self.generators: Set[_Generator] = set()
        self.busy = threading.Lock()
        self.cancel_lock = threading.Lock()


class _Generator:
    """One kl_generator of a session; ptr None once freed (by its iteration or the session)."""

    __slots__ = ("ptr",)

    def __init__(self) -> None:
        self.ptr = _native.kl_generator_p()


def _free_generator(state: _State, generator: _Generator) -> None:
    with state.cancel_lock:
        ptr, generator.ptr = generator.ptr, None
        state.generators.discard(generator)
    if ptr:
        _native.lib().kl_generator_free(ptr)


def _free(state: _State) -> None:
    with state.cancel_lock:
        ptr, state.ptr = state.ptr, None
        generators, state.generators = state.generators, set()
        pointers = [g.ptr for g in generators]
        for g in generators:
            g.ptr = None
    lib = _native.lib()
    for generator in pointers:  # the session must outlive its generators
        if generator:
            lib.kl_generator_free(generator)
    if ptr:
        lib.kl_session_free(ptr)
    handle, state.handle = state.handle, None
    if handle is not None:
        handle.release()  # the model's share: frees the kl_model if it was the last


def _finalize(state: _State) -> None:
    # Garbage collection or interpreter exit. A call can be in flight only at exit, on a
    # daemon thread: leak the session rather than free it under that call.
    if not state.busy.acquire(blocking=False):
        return
    try:
        _free(state)
    finally:
        state.busy.release()


class _Busy:
    """``with session._busy() as ptr``: the session pointer, with the session's busy lock."""

    __slots__ = ("_state",)

    def __init__(self, state: _State) -> None:
        if not state.busy.acquire(blocking=False):
            raise RuntimeError("session is in use by another call (a Session is used by one "
                               "thread at a time; only cancel() may be called concurrently)")
        if state.ptr is None:
            state.busy.release()
            raise ValueError("session is closed")
        self._state = state

    def __enter__(self):
        return self._state.ptr

    def __exit__(self, *exc) -> None:
        self._state.busy.release()


def _sampling(sampling: Optional[SamplingParams], overrides: dict) -> SamplingParams:
    if sampling is None:
        sampling = GREEDY
    elif not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling must be a SamplingParams, not {type(sampling).__name__}")
    return dataclasses.replace(sampling, **overrides) if overrides else sampling


class Session:
    """Per-conversation state: position, KDA/conv states, MLA cache, last logits.

    Made by ``Model.session(max_context=0)`` (0 = the model's default capacity). Use it as a
    context manager or call close(). A session is used by one thread at a time; cancel()
    may be called from any thread. It stays usable after its Model is closed.
    """

    def __init__(self, model: "Model", max_context: int = 0) -> None:
        # A Model is what holds a ModelHandle (this module cannot import _model: see _handle).
        if not isinstance(getattr(model, "_handle", None), ModelHandle):
            raise TypeError(f"model must be a kimi_linear.Model, not {type(model).__name__}")
        if isinstance(max_context, bool) or not isinstance(max_context, numbers.Integral):
            raise TypeError(f"max_context must be an int, not {type(max_context).__name__}")
        if not 0 <= max_context < 2 ** 64:
            raise ValueError(f"max_context is {max_context}, must be >= 0")
        if model.closed or model._handle is None:
            raise ValueError("model is closed")
        handle = model._handle
        model_ptr = handle.acquire()  # the session's share of the model
        try:
            lib = _native.lib()
            params = _native.kl_session_params()
            lib.kl_session_params_default(params)
            params.max_context = int(max_context)
            out = _native.kl_session_p()
            check(lib.kl_session_create(model_ptr, byref(params), byref(out)))
        except BaseException:
            handle.release()
            raise
        self._setup(model, out, handle, int(max_context) or model.info.max_context)

    def _setup(self, model: "Model", ptr, handle: ModelHandle, max_context: int) -> None:
        self._model = model
        self._vocab = model._info.vocab_size
        self._has_tokenizer = model._has_tokenizer
        self._max_context = max_context
        self._piece = create_string_buffer(_PIECE_BYTES)
        self._state = _State(handle)
        self._state.ptr = ptr
        self._finalizer = weakref.finalize(self, _finalize, self._state)

    # ---- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Free the session. Idempotent. RuntimeError if a call is running on another thread."""
        if not self._finalizer.alive:
            return
        state = self._state
        if not state.busy.acquire(blocking=False):
            raise RuntimeError("cannot close a session while a call on it is running")
        try:
            if self._finalizer.detach() is not None:  # this call owns the free now
                _free(state)
        finally:
            state.busy.release()

    @property
    def closed(self) -> bool:
        return self._state.ptr is None

    def __enter__(self) -> "Session":
        if self.closed:
            raise ValueError("session is closed")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<kimi_linear.Session (closed)>"
        try:
            where = f"position={self.position}"
        except RuntimeError:
            where = "busy"
        return f"<kimi_linear.Session {where} max_context={self._max_context}>"

    def _busy(self) -> _Busy:
        return _Busy(self._state)

    @property
    def model(self) -> "Model":
        """The Model this session was made from (it may be closed since)."""
        return self._model

    @property
    def max_context(self) -> int:
        """Capacity of the MLA cache in tokens."""
        return self._max_context

    # ---- running tokens ---------------------------------------------------------------------

    @property
    def position(self) -> int:
        """Tokens consumed so far."""
        out = c_uint64(0)
        with self._busy() as ptr:
            check(_native.lib().kl_session_position(ptr, byref(out)))
        return out.value

    def append(self, tokens: Union[int, Iterable[int], Any], logits: Optional[str] = None):
        """Run tokens through the model at the current position.

        tokens: an int, a list/tuple of ints, an array.array('i') or a numpy integer array
        (int32 arrays and array.array('i') are passed to the library in place).
        logits: None (the default) returns None; "last" returns the last token's logits,
        shape [vocab]; "all" returns every token's, shape [n, vocab]. They come back as a
        float32 numpy array when numpy is importable, else as a list (of lists).
        On failure (a token id out of range, ContextFullError, CancelledError) the session
        is as it was.
        """
        try:
            which = _LOGITS[logits]
        except (KeyError, TypeError):
            raise ValueError(f"logits must be None, 'last' or 'all', not {logits!r}") from None
        buf, n = token_buffer(tokens)
        if n == 0:
            raise InvalidArgumentError("tokens is empty: nothing to append")
        size = 0 if which == _native.KL_LOGITS_NONE else (
            self._vocab if which == _native.KL_LOGITS_LAST else n * self._vocab)
        np = numpy()
        out = c_out = None
        if size and np is not None:
            out = np.empty(size, dtype=np.float32)
            c_out = out.ctypes.data_as(POINTER(c_float))
        elif size:
            out = c_out = (c_float * size)()
        tokens_ptr = token_pointer(buf, n)
        with self._busy() as ptr:
            check(_native.lib().kl_session_append(ptr, tokens_ptr, n, which, c_out))
        if out is None:
            return None
        if np is not None:
            return out if which == _native.KL_LOGITS_LAST else out.reshape(n, self._vocab)
        values = list(out)
        if which == _native.KL_LOGITS_LAST:
            return values
        v = self._vocab
        return [values[i * v:(i + 1) * v] for i in range(n)]

    def reset(self) -> None:
        """Back to position 0, all state zero, no last logits."""
        with self._busy() as ptr:
            check(_native.lib().kl_session_reset(ptr))

    def fill_synthetic(self, n_tokens: int, seed: int = 0) -> None:
        """Benchmark aid: jump to position n_tokens with deterministic random state, as if a
        prompt of that length had been read (meaningless content, real cost afterwards)."""
        for name, value in (("n_tokens", n_tokens), ("seed", seed)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if not 0 <= value < 2 ** 64:
                raise ValueError(f"{name} is {value}, must be in [0, 2**64)")
        with self._busy() as ptr:
            check(_native.lib().kl_session_fill_synthetic(ptr, int(n_tokens), int(seed)))

    def fork(self) -> "Session":
        """An independent deep copy of the whole state (cheap prefix reuse)."""
        handle = self._state.handle
        with self._busy() as ptr:
            handle.acquire()  # the copy's own share of the model
            try:
                out = _native.kl_session_p()
                check(_native.lib().kl_session_fork(ptr, byref(out)))
            except BaseException:
                handle.release()
                raise
        copy = Session.__new__(Session)
        copy._setup(self._model, out, handle, self._max_context)
        return copy

    def cancel(self) -> None:
        """Cancel: the call running on this session, or else the next one, among append(),
        next() and the steps of a generate() iteration (its prompt's append included), raises
        CancelledError, the state as before it, and consumes the request; so a cancel is
        never lost between two steps of a stream. A request pending when generate() is called
        is dropped (it was aimed at what ran before); so is one pending at reset() or
        clear_cancel(). Callable from any thread (the rule of kl_session_cancel). On a closed
        session it does nothing: a stop button may race with the session's end."""
        state = self._state
        with state.cancel_lock:
            if state.ptr is not None:
                _native.lib().kl_session_cancel(state.ptr)

    def clear_cancel(self) -> None:
        """Drop a pending cancel() request: call it when a new request starts, so that a
        cancel that arrived after the previous one ended cannot stop it. Any thread; nothing
        on a closed session."""
        state = self._state
        with state.cancel_lock:
            if state.ptr is not None:
                _native.lib().kl_session_clear_cancel(state.ptr)

    # ---- state snapshots -------------------------------------------------------------------

    def save_state(self) -> bytes:
        """A versioned, checksummed snapshot of the whole state."""
        lib = _native.lib()
        size, written = c_size_t(0), c_size_t(0)
        with self._busy() as ptr:
            check(lib.kl_session_state_size(ptr, byref(size)))
            for _ in range(3):
                buf = create_string_buffer(size.value)
                status = lib.kl_session_state_save(ptr, buf, size.value, byref(written))
                if status in (KL_OK, KL_ERR_INVALID_ARGUMENT) and written.value > size.value:
                    size.value = written.value
                    continue
                check(status)
                return string_at(buf, written.value)
        raise AssertionError("kl_session_state_save kept asking for more")  # pragma: no cover

    def load_state(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Restore a snapshot from save_state(). A corrupt or truncated one raises
        FormatError, another model's InvalidArgumentError; the session is then untouched."""
        if isinstance(data, str):
            raise TypeError("data must be bytes (from save_state()), not str")
        if not isinstance(data, bytes):
            try:
                data = memoryview(data).tobytes()
            except TypeError:
                raise TypeError(f"data must be bytes-like, not {type(data).__name__}") from None
        with self._busy() as ptr:
            check(_native.lib().kl_session_state_load(ptr, data, len(data)))

    # ---- sampling ------------------------------------------------------------------------------

    def sample(self, sampling: Optional[SamplingParams] = None, **overrides: Any) -> int:
        """Sample one token from the last logits (not appended). sampling defaults to greedy;
        keyword arguments override its fields, e.g. ``sample(temperature=0.8, seed=1)``."""
        c_params = _sampling(sampling, overrides)._to_c()
        token = c_int32(0)
        with self._busy() as ptr:
            check(_native.lib().kl_session_sample(ptr, byref(c_params), byref(token)))
        return token.value

    def next(self, sampling: Optional[SamplingParams] = None,
             **overrides: Any) -> Tuple[int, Optional[str]]:
        """Sample the next token, append it, return (token, text it completes).

        The text is whole characters only, may be "" (an unfinished character waits in the
        session for a later token); it is None when the model has no tokenizer.
        """
        c_params = _sampling(sampling, overrides)._to_c()
        lib = _native.lib()
        token, length = c_int32(0), c_size_t(0)
        with self._busy() as ptr:
            if not self._has_tokenizer:
                check(lib.kl_session_next(ptr, byref(c_params), byref(token), None, 0, None))
                return token.value, None
            for _ in range(3):
                piece = self._piece
                status = lib.kl_session_next(ptr, byref(c_params), byref(token), piece,
                                             len(piece), byref(length))
                # Too small for the text and its NUL: nothing was appended and the draw is a
                # function of (seed, position), so the same call with more room gives the
                # same token.
                if status == KL_ERR_INVALID_ARGUMENT and length.value + 1 > len(piece):
                    self._piece = create_string_buffer(length.value + 1)
                    continue
                check(status)
                return token.value, string_at(piece, length.value).decode("utf-8", "replace")
        raise AssertionError("kl_session_next kept asking for more room")  # pragma: no cover

    # ---- generation ------------------------------------------------------------------------------

    @overload
    def generate(self, prompt: Union[None, str, Sequence[int]] = ..., max_new_tokens: int = ...,
                 *, tokens: Literal[False] = ..., **kw: Any) -> Iterator[str]: ...

    @overload
    def generate(self, prompt: Union[None, str, Sequence[int]] = ..., max_new_tokens: int = ...,
                 *, tokens: Literal[True], **kw: Any) -> Iterator[Tuple[int, Optional[str]]]:
        ...

    def generate(self, prompt: Union[None, str, bytes, Iterable[int]] = None,
                 max_new_tokens: int = 128, *, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, min_p: float = 0.0, repetition_penalty: float = 1.0,
                 repetition_window: int = 64, seed: int = 0,
                 stop_tokens: Iterable[int] = (), stop_strings: Union[str, Iterable[str]] = (),
                 tokens: bool = False):
        """Stream a continuation: an iterator of text pieces, or of (token, piece) pairs
        with ``tokens=True``.

        prompt (optional) is appended first: a str (tokenized with parse_special=True) or
        token ids. Generation samples with the given parameters until max_new_tokens, a stop
        token or a stop string:

        - a sampled stop token is appended (so a chat can continue after it) and counted,
          but not yielded;
        - stop strings are matched on the generated text across token boundaries; text that
          may start one is held back until it cannot, and the stop string and anything
          after it are never yielded (the tokens that made them are appended);
        - text still held when generation ends another way (an unfinished character becomes
          U+FFFD) comes last, as (KL_NO_TOKEN, text) with ``tokens=True``.

        These are kl_session_generate's rules: the iterator runs one kl_generator (made by
        this call, which drops a cancel() pending from before; freed when the iteration ends,
        is closed or is collected) and yields what each kl_generator_next releases, so the
        caller may stop early (the tokens so far stay appended). The prompt is appended when
        iteration starts. Arguments are checked when generate() is called. Any cancel() from
        the moment generate() returns stops the generation (its prompt's append, or the step
        running or next). With ``tokens=True`` on a model without a tokenizer, pieces are None.
        """
        sampling = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p,
                                  min_p=min_p, repetition_penalty=repetition_penalty,
                                  repetition_window=repetition_window, seed=seed)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral):
            raise TypeError(f"max_new_tokens must be an int, not "
                            f"{type(max_new_tokens).__name__}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens is {max_new_tokens}, must be >= 0")
        if isinstance(stop_tokens, numbers.Integral) and not isinstance(stop_tokens, bool):
            stop_tokens = (stop_tokens,)
        stop_array, n_stop_tokens = token_buffer(stop_tokens, "stop_tokens")
        if isinstance(stop_strings, str):
            stop_strings = (stop_strings,)
        stops: List[bytes] = []
        for i, stop in enumerate(stop_strings):
            if not isinstance(stop, str):
                raise TypeError(f"stop_strings[{i}] must be str, not {type(stop).__name__}")
            if not stop:
                raise ValueError(f"stop_strings[{i}] is empty")
            if "\0" in stop:
                raise ValueError(f"stop_strings[{i}] contains a NUL character")
            stops.append(stop.encode("utf-8"))  # lone surrogates: UnicodeEncodeError
        if self.closed:
            raise ValueError("session is closed")
        if not self._has_tokenizer:
            if stops:
                raise UnsupportedError("stop_strings need a tokenizer, and this model has none")
            if not tokens:
                raise UnsupportedError("text generation needs a tokenizer, and this model has "
                                       "none: use tokens=True")
        prompt_buf = None
        if prompt is not None:
            if isinstance(prompt, (str, bytes)):
                handle = self._state.handle
                if handle is None:
                    raise ValueError("session is closed")
                prompt = handle.tokenize(text_bytes(prompt), True)
            prompt_buf = token_buffer(prompt, "prompt")
        # One kl_generate_params; what it points to lives as long as the iteration.
        params = _native.kl_generate_params()
        _native.lib().kl_generate_params_default(params)
        params.max_new_tokens = min(int(max_new_tokens), _MAX_NEW_TOKENS)
        params.sampling = sampling._to_c()
        params.stop_tokens = token_pointer(stop_array, n_stop_tokens)
        params.n_stop_tokens = n_stop_tokens
        strings = (c_char_p * len(stops))(*stops)
        params.stop_strings = cast(strings, POINTER(c_char_p))
        params.n_stop_strings = len(stops)
        return self._generate(prompt_buf, params, (stop_array, strings), bool(tokens))

    def _generate(self, prompt_buf, params, keep_alive, tokens: bool):
        # The generator first (it drops a stale cancel), the prompt when iteration starts:
        # every cancel() from now on stops this generation (docs/design/capi.md "Cancel").
        state = self._state
        generator = _Generator()
        with self._busy() as ptr:
            check(_native.lib().kl_generator_create(ptr, byref(params), byref(generator.ptr)))
            with state.cancel_lock:
                state.generators.add(generator)
        stream = self._stream(generator, prompt_buf, keep_alive, tokens)
        # An iteration never started runs no finally: free the generator with the iterator.
        weakref.finalize(stream, _free_generator, state, generator)
        return stream

    def _stream(self, generator: _Generator, prompt_buf, _keep_alive, tokens: bool):
        lib = _native.lib()
        state = self._state
        try:
            if prompt_buf is not None and prompt_buf[1] > 0:
                buf, n = prompt_buf
                with self._busy() as ptr:
                    check(lib.kl_session_append(ptr, token_pointer(buf, n), n,
                                                _native.KL_LOGITS_NONE, None))
            step = _native.kl_generation_step()
            step.struct_size = sizeof(step)
            text = self._has_tokenizer
            while True:
                with self._busy():  # the session is open, so is its generator
                    check(lib.kl_generator_next(generator.ptr, byref(step)))
                    piece = string_at(step.piece, step.piece_len).decode("utf-8", "replace") \
                        if text else None
                token, end = step.token, step.end
                if token == KL_NO_TOKEN or end == _native.KL_END_STOP_TOKEN:
                    # The end: the stop token is not passed on; text still held comes last.
                    if piece:
                        yield (KL_NO_TOKEN, piece) if tokens else piece
                    return
                if tokens:
                    yield (token, piece)
                elif piece:
                    yield piece
                if end != _native.KL_END_NONE:  # a stop string: its text is not passed on
                    return
        finally:
            _free_generator(state, generator)

    def generate_text(self, prompt: Union[None, str, bytes, Iterable[int]] = None,
                      max_new_tokens: int = 128, **kwargs: Any) -> str:
        """The text generate() streams, joined (same arguments, except tokens)."""
        if "tokens" in kwargs:
            raise TypeError("generate_text() returns text; use generate(tokens=True) for ids")
        return "".join(self.generate(prompt, max_new_tokens, **kwargs))

    def generate_async(self, prompt: Union[None, str, bytes, Iterable[int]] = None,
                       max_new_tokens: int = 128, *, executor: Optional[Executor] = None,
                       **kwargs: Any) -> AsyncIterator[Any]:
        """generate()'s stream as an async iterator: ``async for piece in
        session.generate_async(prompt, max_new_tokens=64, ...)``.

        Same arguments and pieces as generate() (checked, and the kl_generator made, when
        this is called). Each step runs on ``executor`` (None: the event loop's default
        executor) and returns its thread when the native call returns. Cancelling the task
        that iterates cancels the native step in flight, waits for it to return (the session
        is then free and has no cancel pending), frees the generator and raises
        asyncio.CancelledError; the tokens generated so far stay appended. A cancel() from
        elsewhere raises kimi_linear.CancelledError, as in generate().
        """
        stream = self.generate(prompt, max_new_tokens, **kwargs)
        return stream_async(self, stream, executor)
