"""Session.generate_async: the async form of generate (see conftest.py for the environment)."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

PROMPT = "Once upon a time"


async def _collect(stream):
    return [piece async for piece in stream]


class _WatchedExecutor(ThreadPoolExecutor):
    """A pool that records when a step starts and how many steps run at once."""

    def __init__(self, workers, hold=None):
        super().__init__(max_workers=workers)
        self.started = threading.Event()
        self.returned = threading.Event()
        self.hold = hold  # an Event each step waits for after its call returned, if given
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def submit(self, fn, *args, **kwargs):
        def watched():
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            self.started.set()
            try:
                return fn(*args, **kwargs)
            finally:
                self.returned.set()
                if self.hold is not None:
                    self.hold.wait()
                with self.lock:
                    self.running -= 1
        return super().submit(watched)


@pytest.mark.parametrize("kwargs", [dict(), dict(tokens=True, temperature=0.9, seed=5),
                                    dict(stop_strings=["e"], top_k=20, temperature=1.0)])
def test_pieces_equal_the_sync_generate(kl, model, kwargs):
    prompt = model.tokenize(PROMPT)
    with model.session() as s:
        want = list(s.generate(prompt, max_new_tokens=24, **kwargs))
        want_position = s.position
    with model.session() as s:
        got = asyncio.run(_collect(s.generate_async(prompt, max_new_tokens=24, **kwargs)))
        assert got == want
        assert s.position == want_position
        assert not s._state.generators  # freed at the end of the iteration


def test_arguments_are_checked_when_called(kl, model):
    with model.session() as s:
        with pytest.raises(ValueError):
            s.generate_async(max_new_tokens=-1)
        with pytest.raises(TypeError):
            s.generate_async(temperature="hot")
        with pytest.raises(TypeError):
            s.generate_async(no_such_argument=1)


def test_cancelling_the_task_stops_the_stream_and_frees_the_session(kl, model):
    prompt = model.tokenize(PROMPT)
    with model.session() as s:
        async def main():
            pieces = []
            enough = asyncio.Event()

            async def consume():
                async for piece in s.generate_async(prompt, max_new_tokens=100000):
                    pieces.append(piece)
                    if len(pieces) == 3:
                        enough.set()

            task = asyncio.create_task(consume())
            await enough.wait()
            start = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return pieces, time.monotonic() - start

        pieces, latency = asyncio.run(main())
        assert latency < 2.0
        assert 3 <= len(pieces) < 1000  # stopped, far before max_new_tokens
        assert not s._state.busy.locked()  # no native call outlives the stream
        assert not s._state.generators
        position = s.position
        s.append([5])  # no cancel left pending
        assert s.position == position + 1
        assert len(list(s.generate(max_new_tokens=3, tokens=True))) == 3


async def _cancel_once(stream, moment, release=None, after=None):
    """Drain stream in a task, cancel the task once the threading.Event moment is set (and
    set release a little later, if given), expect CancelledError; the result of after()
    called as soon as the task has ended."""
    task = asyncio.create_task(_collect(stream))
    await asyncio.get_running_loop().run_in_executor(None, moment.wait)
    task.cancel()
    if release is not None:
        await asyncio.sleep(0.05)  # the cancel request is sent while the step is held
        release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    return after() if after is not None else None


def test_cancel_during_a_native_step_waits_for_it(kl, model):
    # The cancel lands while the first step (the long prompt's append) runs on the pool's
    # thread: the task ends only after that call has returned, with no request left pending.
    long_prompt = list(range(1, 2049))
    executor = _WatchedExecutor(1)
    with model.session() as s:
        stream = s.generate_async(long_prompt, max_new_tokens=4, executor=executor)
        running_after = asyncio.run(_cancel_once(stream, executor.started,
                                                 after=lambda: executor.running))
        executor.shutdown()
        assert running_after == 0
        assert not s._state.busy.locked()
        # The append was cancelled (nothing appended), or its step ended before the cancel
        # landed (the prompt and at most one token appended).
        assert s.position in (0, len(long_prompt), len(long_prompt) + 1)
        position = s.position
        s.append([7])
        assert s.position == position + 1


def test_a_cancel_after_the_native_call_returned_is_not_left_pending(kl, model):
    # The task is cancelled when the step's native call has returned but its thread has not
    # handed the result over yet: the cancel request then finds no call to stop and must not
    # stay pending for the caller's next call.
    release = threading.Event()
    executor = _WatchedExecutor(1, hold=release)
    with model.session() as s:
        stream = s.generate_async(PROMPT, max_new_tokens=4, executor=executor)
        asyncio.run(_cancel_once(stream, executor.returned, release=release))
        executor.shutdown()
        position = s.position
        assert position > 0  # the first step (the prompt and one token) ran
        s.append([5])  # no CancelledError: the request was dropped
        assert s.position == position + 1


def test_cancel_from_elsewhere_raises_the_library_error(kl, model):
    with model.session() as s:
        async def main():
            pieces = []
            with pytest.raises(kl.CancelledError):
                async for piece in s.generate_async(PROMPT, max_new_tokens=100000):
                    pieces.append(piece)
                    if len(pieces) == 2:
                        s.cancel()  # the next step raises
            return pieces

        assert len(asyncio.run(main())) == 2
        assert not s._state.generators


def test_breaking_out_frees_the_generator(kl, model):
    with model.session() as s:
        async def main():
            stream = s.generate_async(PROMPT, max_new_tokens=50)
            async for _piece in stream:
                break
            await stream.aclose()

        asyncio.run(main())
        assert not s._state.generators
        s.append([3])


def test_two_sessions_stream_concurrently_on_one_thread(kl, model):
    # One pool thread for both streams: they can only both progress if each step gives the
    # thread back, so the pieces interleave.
    prompts = [model.tokenize(PROMPT), model.tokenize("The sky is")]
    want = []
    for prompt in prompts:
        with model.session() as s:
            want.append(list(s.generate(prompt, max_new_tokens=20, tokens=True)))
    executor = _WatchedExecutor(1)
    order = []
    with model.session() as a, model.session() as b:
        async def run(name, session, prompt):
            got = []
            async for step in session.generate_async(prompt, max_new_tokens=20, tokens=True,
                                                     executor=executor):
                got.append(step)
                order.append(name)
            return got

        async def main():
            return await asyncio.gather(run("a", a, prompts[0]), run("b", b, prompts[1]))

        got = asyncio.run(main())
    executor.shutdown()
    assert got == want
    assert executor.most == 1
    first_b, last_a = order.index("b"), len(order) - 1 - order[::-1].index("a")
    assert first_b < last_a  # b started before a ended


def test_two_sessions_stream_concurrently_on_the_default_executor(kl, model):
    prompts = [model.tokenize(PROMPT), model.tokenize("The sky is")]
    want = []
    for prompt in prompts:
        with model.session() as s:
            want.append(list(s.generate(prompt, max_new_tokens=20, temperature=0.7, seed=3)))
    with model.session() as a, model.session() as b:
        async def main():
            return await asyncio.gather(
                _collect(a.generate_async(prompts[0], max_new_tokens=20, temperature=0.7,
                                          seed=3)),
                _collect(b.generate_async(prompts[1], max_new_tokens=20, temperature=0.7,
                                          seed=3)))

        assert asyncio.run(main()) == want
