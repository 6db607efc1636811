"""Session.generate_async: the stream of Session.generate as an async iterator.

Each step of the synchronous stream (one kl_generator_next; the first step also appends the
prompt) runs on an executor thread, which goes back to the pool when the step returns: no
thread is held by a stream between steps, so many sessions can stream in one event loop on
few threads. The steps run one after another (a session takes one call at a time).

Cancelling the task that iterates (or the iterator's owner) calls kl_session_cancel, waits
for the native step in flight to return (a call must never outlive the stream on a session
the caller may use again), drops the cancel request if that step ended before it landed,
frees the kl_generator and re-raises asyncio.CancelledError.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Optional

if TYPE_CHECKING:
    from ._session import Session

_END = object()  # what a step returns when the stream has ended


def _step(stream: Iterator[Any]) -> Any:
    """One step of the synchronous stream, on an executor thread."""
    return next(stream, _END)


async def _wait_out(step: "asyncio.Future[Any]") -> None:
    """Wait until the step's thread has returned, whatever cancels the waiting task
    meanwhile (the caller re-raises the first cancellation)."""
    while not step.done():
        try:
            await asyncio.wait({step})
        except asyncio.CancelledError:
            continue
    if not step.cancelled():
        step.exception()  # retrieved: its error (a CancelledError of ours, most likely) is moot


async def stream_async(session: "Session", stream: Iterator[Any],
                       executor: Optional[Executor]) -> AsyncIterator[Any]:
    """The pieces of ``stream`` (from session.generate), each step run on ``executor``
    (None: the event loop's default one)."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            step = loop.run_in_executor(executor, _step, stream)
            try:
                # shield: a cancelled task must not abandon the step, whose thread is inside
                # the library; the step's own outcome is awaited below.
                piece = await asyncio.shield(step)
            except asyncio.CancelledError:
                in_flight = not step.done()
                if in_flight:
                    session.cancel()
                await _wait_out(step)
                if in_flight:
                    # The step may have returned before the cancel landed: the request is
                    # then pending and would stop the caller's next call.
                    session.clear_cancel()
                raise
            if piece is _END:
                return
            yield piece
    finally:
        stream.close()  # no step is running now: frees the kl_generator
