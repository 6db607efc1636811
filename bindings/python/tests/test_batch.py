"""Batched decode in the Python package (issue 14): Batch.next/append/generate equal each
session stepped alone (greedy and seeded sampling, per session), sessions leaving a
generation at their stop token or limit, all-or-nothing failures, and max_batch: threads
stepping their own sessions of a batching model get the tokens of one thread alone."""

import os
import threading

import pytest

PROMPTS = ["The quick brown fox", "Remember: apple=3", "Sort: 42 7 19"]


def prompted(model, prompts=PROMPTS, **session_args):
    sessions = [model.session(**session_args) for _ in prompts]
    for s, p in zip(sessions, prompts):
        s.append(model.tokenize(p))
    return sessions


def alone(session, steps, sampling=None):
    """(token, piece) of `steps` Session.next() calls on a fork of session."""
    with session.fork() as f:
        return [f.next(sampling) for _ in range(steps)]


def close_all(sessions):
    for s in sessions:
        s.close()


def test_model_batch_options(kl, model_dir):
    with kl.Model(model_dir, device="cpu", max_batch=4, batch_wait_us=500) as m:
        assert m.info.vocab_size > 0
    # Past the library's limits: the library's error, so the values reached it.
    with pytest.raises(kl.InvalidArgumentError, match="max_batch"):
        kl.Model(model_dir, device="cpu", max_batch=5000)
    with pytest.raises(kl.InvalidArgumentError, match="batch_wait_us"):
        kl.Model(model_dir, device="cpu", batch_wait_us=2_000_000)
    with pytest.raises(ValueError, match="max_batch"):
        kl.Model(model_dir, device="cpu", max_batch=-1)
    with pytest.raises(ValueError, match="batch_wait_us"):
        kl.Model(model_dir, device="cpu", batch_wait_us=2 ** 32)
    with pytest.raises(TypeError, match="max_batch"):
        kl.Model(model_dir, device="cpu", max_batch="2")
    with open(os.path.join(model_dir, "config.json")) as f:
        config = f.read()
    with kl.Model.random(config, device="cpu", max_batch=2, batch_wait_us=0) as m:
        assert m.info.vocab_size > 0
    with pytest.raises(kl.InvalidArgumentError, match="max_batch"):
        kl.Model.random(config, device="cpu", max_batch=5000)


def test_batch_next_equals_each_session_alone(kl, model):
    sessions = prompted(model)
    try:
        want = [alone(s, 6) for s in sessions]
        start = [s.position for s in sessions]
        batch = kl.Batch(sessions)
        assert len(batch) == 3 and batch.sessions == sessions
        got = [batch.next() for _ in range(6)]
        for i, s in enumerate(sessions):
            assert [step[i] for step in got] == want[i]
            assert s.position == start[i] + 6
            assert s.tokens()[-6:] == [t for t, _ in want[i]]
    finally:
        close_all(sessions)


def test_batch_sampling_per_session(kl, model):
    params = [None, kl.SamplingParams(temperature=0.9, seed=5),
              kl.SamplingParams(temperature=1.0, top_k=20, seed=9)]
    sessions = prompted(model)
    try:
        want = [alone(s, 8, p) for s, p in zip(sessions, params)]
        batch = kl.Batch(sessions)
        got = [batch.next(params) for _ in range(8)]
        for i in range(3):
            assert [step[i] for step in got] == want[i]
        # One SamplingParams for all: each session draws from its own seed and position.
        one = kl.SamplingParams(temperature=0.8, seed=3)
        want = [alone(s, 4, one) for s in sessions]
        got = [batch.next(one) for _ in range(4)]
        for i in range(3):
            assert [step[i] for step in got] == want[i]
    finally:
        close_all(sessions)


def test_batch_append_equals_append(kl, model):
    sessions = prompted(model)
    try:
        forks = [s.fork() for s in sessions]
        kl.Batch(sessions).append([5, 6, 7])
        for f, t in zip(forks, [5, 6, 7]):
            f.append(t)
        for s, f in zip(sessions, forks):
            assert s.tokens() == f.tokens()
            assert s.next() == f.next()
        close_all(forks)
    finally:
        close_all(sessions)


def test_generate_sessions_leave_at_stop_tokens_and_limits(kl, model):
    sessions = prompted(model)
    try:
        ref = [[t for t, _ in alone(s, 10)] for s in sessions]
        stop = ref[0][2]
        limits = [10, 7, 2]
        want = []
        for i in range(3):  # each session's tokens up to its stop token or its limit
            tokens = []
            for t in ref[i][:limits[i]]:
                tokens.append(t)
                if t == stop:
                    break
            want.append(tokens)
        start = [s.position for s in sessions]
        steps = list(kl.Batch(sessions).generate(limits, stop_tokens=[stop]))
        for i in range(3):
            mine = [step for step in steps if step.index == i]
            assert [step.token for step in mine] == want[i]
            assert all(step.finish_reason is None for step in mine[:-1])
            reason = "stop_token" if want[i][-1] == stop else "length"
            assert mine[-1].finish_reason == reason
            if reason == "stop_token":
                assert mine[-1].piece == ""  # its text is not passed on
            assert sessions[i].position == start[i] + len(want[i])
        # Each step is one pass over the sessions still running, in their order.
        rounds = max(len(w) for w in want)
        order = [[i for i in range(3) if len(want[i]) > r] for r in range(rounds)]
        assert [step.index for step in steps] == [i for r in order for i in r]
        assert list(kl.Batch(sessions).generate(0)) == []
    finally:
        close_all(sessions)


def test_generate_text_equals_next_alone(kl, model):
    sessions = prompted(model)
    try:
        params = [kl.SamplingParams(temperature=0.7, seed=i) for i in range(3)]
        want = [alone(s, 5, p) for s, p in zip(sessions, params)]
        steps = list(kl.Batch(sessions).generate(5, sampling=params))
        for i in range(3):
            assert [(st.token, st.piece) for st in steps if st.index == i] == want[i]
    finally:
        close_all(sessions)


def test_a_failed_step_changes_no_session(kl, model):
    ids = model.tokenize(PROMPTS[0])
    full = model.session(max_context=len(ids))
    full.append(ids)
    sessions = prompted(model, PROMPTS[1:]) + [full]
    try:
        before = [s.tokens() for s in sessions]
        batch = kl.Batch(sessions)
        for call in (batch.next, lambda: batch.append([1, 2, 3]),
                     lambda: list(batch.generate(4))):
            with pytest.raises(kl.ContextFullError, match=r"sessions\[2\]"):
                call()
            assert [s.tokens() for s in sessions] == before
        # Without it the others step on.
        assert len(kl.Batch(sessions[:2]).next()) == 2
    finally:
        close_all(sessions)


def test_bad_batches_are_refused(kl, model, tiny_model):
    sessions = prompted(model, PROMPTS[:2])
    other = tiny_model.session()
    other.append([1, 2])
    try:
        with pytest.raises(kl.InvalidArgumentError, match="same session"):
            kl.Batch([sessions[0], sessions[1], sessions[0]]).next()
        with pytest.raises(kl.InvalidArgumentError, match="another model"):
            kl.Batch([sessions[0], other]).next()
        with pytest.raises(kl.InvalidArgumentError, match="out of range"):
            kl.Batch(sessions).append([1, model.info.vocab_size])
        with model.session() as empty:
            with pytest.raises(kl.InvalidArgumentError, match=r"sessions\[1\].*no logits"):
                kl.Batch([sessions[0], empty]).next()
        with pytest.raises(kl.InvalidArgumentError):
            kl.Batch([])
        with pytest.raises(TypeError):
            kl.Batch([sessions[0], "session"])
        batch = kl.Batch(sessions)
        with pytest.raises(kl.InvalidArgumentError, match="one per session"):
            batch.next([kl.SamplingParams()])
        with pytest.raises(kl.InvalidArgumentError, match="one token per session"):
            batch.append([1])
        with pytest.raises(kl.InvalidArgumentError):
            batch.generate([1, 2, 3])
        with pytest.raises(kl.InvalidArgumentError, match="temperature"):
            batch.next(kl.SamplingParams(temperature=-1.0))
        assert [s.position for s in sessions] == [len(model.tokenize(p)) for p in PROMPTS[:2]]
    finally:
        close_all(sessions)
        other.close()


def test_a_pending_cancel_fails_the_batch_and_is_consumed(kl, model):
    sessions = prompted(model, PROMPTS[:2])
    try:
        want = [alone(s, 1) for s in sessions]
        before = [s.position for s in sessions]
        sessions[1].cancel()
        batch = kl.Batch(sessions)
        with pytest.raises(kl.CancelledError, match=r"sessions\[1\]"):
            batch.next()
        assert [s.position for s in sessions] == before
        assert batch.next() == [w[0] for w in want]
    finally:
        close_all(sessions)


def test_model_without_tokenizer(kl, tiny_model):
    sessions = [tiny_model.session() for _ in range(2)]
    try:
        for s, ids in zip(sessions, ([1, 2, 3], [4, 5])):
            s.append(ids)
        want = [alone(s, 3) for s in sessions]
        batch = kl.Batch(sessions)
        got = [batch.next() for _ in range(3)]
        for i in range(2):
            assert [step[i] for step in got] == want[i]
            assert all(piece is None for _, piece in want[i])
    finally:
        close_all(sessions)


@pytest.mark.parametrize("n_threads", [2, 4])
def test_threads_on_a_batching_model_get_their_own_tokens(kl, model, model_dir, n_threads):
    prompts = [PROMPTS[i % len(PROMPTS)] + " " * (i // len(PROMPTS)) for i in range(n_threads)]
    want = []
    for p in prompts:
        with model.session() as s:
            want.append(list(s.generate(p, 12, tokens=True)))
    with kl.Model(model_dir, device="cpu", max_batch=n_threads, batch_wait_us=2000) as batching:
        results, errors = [None] * n_threads, []
        start = threading.Barrier(n_threads)

        def work(i):
            try:
                with batching.session() as s:
                    start.wait()
                    results[i] = list(s.generate(prompts[i], 12, tokens=True))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert results == want
