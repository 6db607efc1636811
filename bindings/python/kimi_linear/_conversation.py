"""Conversation: a chat held in one session, each turn appended once, never read again."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Tuple

from ._generation import Generation
from ._model import _chat_messages

if TYPE_CHECKING:
    from ._model import Model
    from ._session import Session

# A system message with no content: rendering a message after it gives that message's tokens
# alone (the default system message is only added before a conversation's first message).
_EMPTY_SYSTEM = [("system", "")]


class Conversation:
    """A chat with a model held in one Session.

    Each turn appends only its new tokens (the new messages in the chat format, the
    assistant's opening), so the history is never read again; a reply is the tokens the model
    generated, closed by the end-of-turn token (<|im_end|>), at which generation stops.
    Editing or regenerating an earlier turn restores the longest kept state whose tokens are
    a prefix of the new conversation's, and appends the rest: states (session forks) are
    kept where each reply starts and ends, the last ``keep_states`` of them (each costs a
    session's memory).

        with kl.Conversation(model, [{"role": "system", "content": "Be brief."}]) as chat:
            for piece in chat.say("Hi!"):
                print(piece, end="")
            again = chat.regenerate(temperature=0.8, seed=1)   # the last reply, redone

    Keyword arguments (and those of say/reply/regenerate) are Session.generate()'s, except
    prompt and tokens. ``prefilled`` counts the tokens appended as prompts so far.
    """

    def __init__(self, model: "Model", messages: Iterable[Any] = (), *, max_context: int = 0,
                 keep_states: int = 4, **generate_kwargs: Any) -> None:
        if isinstance(keep_states, bool) or not isinstance(keep_states, numbers.Integral) \
                or keep_states < 1:
            raise ValueError(f"keep_states is {keep_states!r}, must be an int >= 1")
        for name in ("prompt", "tokens"):
            if name in generate_kwargs:
                raise TypeError(f"a Conversation makes its own {name}")
        self._model = model
        self._max_context = max_context
        self._keep_states = int(keep_states)
        self._defaults = generate_kwargs
        eot = model.info.eot_token
        if eot is None:
            raise ValueError("this model has no chat format (no end-of-turn token)")
        self._eot = eot
        empty = model.tokenize_chat(_EMPTY_SYSTEM, add_generation_prompt=False)
        self._empty_len = len(empty)
        self._opening = model.tokenize_chat(_EMPTY_SYSTEM, add_generation_prompt=True)[len(empty):]
        self._messages: List[Tuple[str, str]] = []
        self._segments: List[List[int]] = []  # each message's tokens, in order
        self._kept: List[Tuple[List[int], "Session"]] = []
        self._session = model.session(max_context)
        self.prefilled = 0
        for role, content in _pairs(messages):
            self._add(role, content)

    # ---- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Free the session and the kept states. Idempotent."""
        for _, state in self._kept:
            state.close()
        self._kept = []
        self._session.close()

    def __enter__(self) -> "Conversation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- what it holds -------------------------------------------------------------------

    @property
    def messages(self) -> List[Dict[str, str]]:
        """The conversation so far: dicts {"role", "content"} (a copy)."""
        return [{"role": r, "content": c} for r, c in self._messages]

    @property
    def session(self) -> "Session":
        """The session holding the conversation (read it; changing it confuses the helper)."""
        return self._session

    def tokens(self) -> List[int]:
        """The conversation's tokens: each message's, the replies as generated."""
        return [t for segment in self._segments for t in segment]

    # ---- turns ---------------------------------------------------------------------------

    def add(self, role: str, content: str) -> None:
        """Add a message without replying (e.g. a tool's result); nothing runs yet."""
        ((role, content),) = _pairs([(role, content)])
        self._add(role, content)

    def say(self, content: str, role: str = "user", **kwargs: Any) -> Generation:
        """Add a message and stream the assistant's reply (recorded when the stream ends)."""
        self.add(role, content)
        return self.reply(**kwargs)

    def reply(self, **kwargs: Any) -> Generation:
        """Stream the assistant's reply to the conversation so far. A Generation of text
        pieces (finish_reason, logprobs); the reply is recorded as an assistant message when
        the stream ends, is closed or fails (what was generated so far)."""
        for name in ("prompt", "tokens"):
            if name in kwargs:
                raise TypeError(f"a Conversation makes its own {name}")
        options = dict(self._defaults)
        options.update(kwargs)
        stops = options.pop("stop_tokens", ())
        stops = [stops] if isinstance(stops, numbers.Integral) else list(stops)
        if self._eot not in stops:
            stops.append(self._eot)
        history = self.tokens()
        self._restore(history + self._opening)
        self._keep()
        generation = self._session.generate(None, stop_tokens=stops, **options)
        inner = generation._stream
        generation._stream = self._recording(inner, len(history))
        return generation

    def regenerate(self, **kwargs: Any) -> Generation:
        """Drop the last message if it is the assistant's, and reply again: from the state
        kept where that reply started, nothing is read again."""
        if self._messages and self._messages[-1][0] == "assistant":
            self._messages.pop()
            self._segments.pop()
        return self.reply(**kwargs)

    def edit(self, index: int, content: str) -> None:
        """Change message ``index``'s content and drop the messages after it (a chat UI's
        edit); reply() then answers it, restoring the longest kept state that still fits."""
        if not -len(self._messages) <= index < len(self._messages):
            raise IndexError(f"message {index} of {len(self._messages)}")
        index %= len(self._messages)
        role = self._messages[index][0]
        del self._messages[index:]
        del self._segments[index:]
        self.add(role, content)

    # ---- inside --------------------------------------------------------------------------

    def _add(self, role: str, content: str) -> None:
        if self._messages:  # its tokens alone: after an empty system message, minus that
            segment = self._model.tokenize_chat(_EMPTY_SYSTEM + [(role, content)],
                                                add_generation_prompt=False)[self._empty_len:]
        else:  # the first: with the default system message, when the format adds one
            segment = self._model.tokenize_chat([(role, content)], add_generation_prompt=False)
        self._messages.append((role, content))
        self._segments.append(segment)

    def _restore(self, target: List[int]) -> None:
        """Make the session hold exactly target: append to it when its tokens are a prefix,
        else start from the longest kept prefix (or an empty session), appending the rest."""
        have = self._session.tokens()
        if have != target[:len(have)]:
            best = None
            for tokens, state in self._kept:
                if target[:len(tokens)] == tokens and (best is None or len(tokens) > len(best[0])):
                    best = (tokens, state)
            old = self._session
            self._session = best[1].fork() if best else self._model.session(self._max_context)
            old.close()
            have = best[0] if best else []
        rest = target[len(have):]
        if rest:
            self._session.append(rest)
            self.prefilled += len(rest)

    def _keep(self) -> None:
        self._kept.append((self._session.tokens(), self._session.fork()))
        while len(self._kept) > self._keep_states:
            self._kept.pop(0)[1].close()

    def _recording(self, inner: Iterator[str], history_len: int) -> Iterator[str]:
        pieces: List[str] = []
        try:
            for piece in inner:
                pieces.append(piece)
                yield piece
        finally:
            inner.close()  # frees the generator before the session is used again
            tokens = self._session.tokens()
            if tokens[-1] != self._eot:  # ended another way: close the turn
                self._session.append(self._eot)
                self.prefilled += 1
                tokens.append(self._eot)
            self._messages.append(("assistant", "".join(pieces)))
            self._segments.append(tokens[history_len:])
            self._keep()


def _pairs(messages: Iterable[Any]) -> List[Tuple[str, str]]:
    """(role, content) str pairs, checked as Model.tokenize_chat checks them."""
    _, _, pairs = _chat_messages(list(messages))
    return [(r.decode("utf-8"), c.decode("utf-8")) for r, c in pairs]
