"""What a chat app needs from generation (issue 13 item 5) in the Python package: finish
reasons, log-probabilities against a direct log-softmax of the session's logits, logit bias
and the logits processor (a no-op gives the same tokens), the token history, the
end-of-turn token, chat() stopping at it, and Conversation appending each turn once."""

import math

import pytest

PROMPT = "The quick brown fox"


def log_softmax(row):
    top = max(row)
    total = top + math.log(sum(math.exp(x - top) for x in row))
    return [x - total for x in row]


def test_end_of_turn_token(kl, model, tiny_model):
    assert model.info.eot_token is not None
    assert model.tokenize("<|im_end|>") == [model.info.eot_token]
    assert tiny_model.info.eot_token is None  # no tokenizer, no chat format


def test_tokens_are_the_history_and_survive_fork_and_snapshots(kl, model):
    ids = model.tokenize(PROMPT)
    with model.session() as s:
        assert s.tokens() == []
        s.append(ids)
        generated = [t for t, _ in s.generate(max_new_tokens=5, tokens=True, temperature=0.7,
                                              seed=2)]
        assert s.tokens() == ids + generated
        with s.fork() as f:
            assert f.tokens() == ids + generated
        state = s.save_state()
        with model.session() as loaded:
            loaded.load_state(state)
            assert loaded.tokens() == ids + generated
        s.reset()
        assert s.tokens() == []


def test_finish_reasons(kl, model):
    ids = model.tokenize(PROMPT)
    with model.session() as s:
        g = s.generate(ids, max_new_tokens=3, tokens=True)
        assert g.finish_reason is None  # not started
        greedy = [t for t, _ in g if t != kl.KL_NO_TOKEN]  # not the held text at the end
        assert len(greedy) == 3 and g.finish_reason == "length"
        s.reset()
        g = s.generate(ids, max_new_tokens=10, stop_tokens=[greedy[1]], tokens=True)
        assert [t for t, _ in g if t != kl.KL_NO_TOKEN] == [greedy[0]]
        assert g.finish_reason == "stop_token"
        s.reset()
        text = "".join(s.generate(ids, max_new_tokens=3))
        s.reset()
        g = s.generate(ids, max_new_tokens=10, stop_strings=[text[-1]])
        "".join(g)
        assert g.finish_reason == "stop_string"

        s.reset()
        g = s.generate(ids, max_new_tokens=10, logits_processor=lambda logits, history: True)
        assert list(g) == [] and g.finish_reason == "callback"
        assert s.position == len(ids)

        calls = []

        def cancel_on_third(logits, history):
            calls.append(len(history))
            if len(calls) == 3:
                s.cancel()  # allowed while the step holds the session

        s.reset()
        g = s.generate(ids, max_new_tokens=10, tokens=True, logits_processor=cancel_on_third)
        with pytest.raises(kl.CancelledError):
            list(g)
        assert g.finish_reason == "cancelled"
        assert s.position == len(ids) + 2  # the cancelled step appended nothing

        def broken(logits, history):
            raise KeyError("from the processor")

        s.reset()
        g = s.generate(ids, max_new_tokens=10, logits_processor=broken)
        with pytest.raises(KeyError, match="from the processor"):
            list(g)
        assert g.finish_reason == "error"
        assert s.position == len(ids)


def test_logprobs_are_the_log_softmax_of_the_sessions_logits(kl, model):
    ids = model.tokenize(PROMPT)
    with model.session() as s, model.session() as ref:
        g = s.generate(ids, max_new_tokens=5, tokens=True, temperature=0.9, seed=4,
                       top_logprobs=3)
        tokens = [t for t, _ in g]
        assert len(g.logprobs) == 5 == len(tokens)
        logits = list(ref.append(ids, logits="last"))
        for step, token in zip(g.logprobs, tokens):
            want = log_softmax(logits)
            assert step.token == token
            assert step.logprob == pytest.approx(want[token], abs=1e-5)
            order = sorted(range(len(want)), key=lambda i: (-want[i], i))[:3]
            assert [t for t, _ in step.top] == order
            for (t, lp) in step.top:
                assert lp == pytest.approx(want[t], abs=1e-5)
            logits = list(ref.append([token], logits="last"))
        # logprobs=True alone: no alternatives
        s.reset()
        g = s.generate(ids, max_new_tokens=2, logprobs=True)
        list(g)
        assert len(g.logprobs) == 2 and all(step.top == () for step in g.logprobs)
        with pytest.raises(ValueError):
            s.generate(ids, top_logprobs=kl._native.KL_MAX_TOP_LOGPROBS + 1)


def test_zero_bias_and_a_no_op_processor_give_the_same_tokens(kl, model):
    ids = model.tokenize(PROMPT)
    for sampling in (dict(), dict(temperature=0.8, seed=9)):
        with model.session() as s:
            want = [t for t, _ in s.generate(ids, max_new_tokens=10, tokens=True, **sampling)]
        with model.session() as s:
            seen = []
            got = [t for t, _ in s.generate(
                ids, max_new_tokens=10, tokens=True, logit_bias={want[0]: 0.0},
                logits_processor=lambda logits, history: seen.append(len(history)), **sampling)]
        assert got == want
        assert seen == list(range(len(ids), len(ids) + 10))  # the history grows a token a step


def test_logit_bias_and_processor_change_the_tokens(kl, model):
    ids = model.tokenize(PROMPT)
    with model.session() as s:
        first = next(iter(s.generate(ids, max_new_tokens=1, tokens=True)))[0]
        s.reset()
        banned = [t for t, _ in s.generate(ids, max_new_tokens=1, tokens=True,
                                           logit_bias={first: float("-inf")})]
        assert banned and banned[0] != first
        s.reset()
        assert [t for t, _ in s.generate(ids, max_new_tokens=1, tokens=True,
                                         logit_bias={5: 1000.0})] == [5]

        def ban(logits, history):
            logits[first] = float("-inf")

        s.reset()
        assert [t for t, _ in s.generate(ids, max_new_tokens=1, tokens=True,
                                         logits_processor=ban)] == banned
        position = s.position
        with pytest.raises(kl.InvalidArgumentError, match="logit_bias"):
            list(s.generate(max_new_tokens=1, logit_bias={model.info.vocab_size: 1.0}))
        with pytest.raises(TypeError):
            s.generate(max_new_tokens=1, logit_bias={"x": 1.0})
        with pytest.raises(TypeError):
            s.generate(max_new_tokens=1, logits_processor=5)
        assert s.position == position


def test_chat_stops_at_the_end_of_turn_by_default(kl, model):
    messages = [{"role": "user", "content": "Hi"}]
    eot = model.info.eot_token
    prompt = model.tokenize_chat(messages)
    with model.session() as s:
        g = s.chat(messages, max_new_tokens=5, logit_bias={eot: 100.0})
        assert list(g) == [] and g.finish_reason == "stop_token"
        assert s.tokens() == prompt + [eot]  # appended, not passed on
        s.reset()
        g = s.chat(messages, max_new_tokens=5, logit_bias={eot: 100.0}, tokens=True,
                   stop_at_end_of_turn=False)
        assert [t for t, _ in g] == [eot] * 5 and g.finish_reason == "length"


def _segment(model, role, content):
    """The tokens one message adds to a conversation after its first message."""
    empty = model.tokenize_chat([("system", "")], add_generation_prompt=False)
    return model.tokenize_chat([("system", ""), (role, content)],
                               add_generation_prompt=False)[len(empty):]


def _opening(model):
    empty = model.tokenize_chat([("system", "")], add_generation_prompt=False)
    return model.tokenize_chat([("system", "")])[len(empty):]


def test_conversation_appends_each_turn_once(kl, model):
    with kl.Conversation(model, max_new_tokens=4) as chat:
        first = chat.say("Hello there")
        "".join(first)
        assert chat.prefilled == len(model.tokenize_chat(chat.messages[:1], False)) + \
            len(_opening(model)) + (0 if first.finish_reason == "stop_token" else 1)
        assert chat.session.tokens() == chat.tokens()
        assert chat.messages[1]["role"] == "assistant"
        before = chat.prefilled
        second = chat.say("And again")
        "".join(second)
        closing = 0 if second.finish_reason == "stop_token" else 1
        new = len(_segment(model, "user", "And again")) + len(_opening(model))
        assert chat.prefilled - before == new + closing  # the history was not read again
        assert chat.session.position == len(chat.tokens())
        assert chat.session.tokens() == chat.tokens()

        # Editing the last user message restores the state kept where the first reply ended.
        before = chat.prefilled
        chat.edit(2, "Something else")
        assert [m["content"] for m in chat.messages][1:] == [chat.messages[1]["content"],
                                                             "Something else"]
        third = chat.reply()
        "".join(third)
        closing = 0 if third.finish_reason == "stop_token" else 1
        assert chat.prefilled - before == \
            len(_segment(model, "user", "Something else")) + len(_opening(model)) + closing
        assert chat.session.tokens() == chat.tokens()


def test_regenerate_reads_nothing_again_and_equals_a_fresh_session(kl, model):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "What is 2 + 2?"}]
    with kl.Conversation(model, messages, max_new_tokens=6) as chat:
        first = "".join(chat.reply())
        assert chat.prefilled >= len(model.tokenize_chat(messages))
        before = chat.prefilled
        again = chat.regenerate()
        second = "".join(again)
        assert second == first  # greedy
        assert chat.prefilled - before == (0 if again.finish_reason == "stop_token" else 1)
        with model.session() as fresh:
            "".join(fresh.chat(messages, max_new_tokens=6))
            want = fresh.tokens()
        assert chat.session.tokens()[:len(want)] == want
        assert len(chat.messages) == 5 and chat.messages[-1] == {"role": "assistant",
                                                                 "content": second}
