"""Our tokenizer (C API and CLI) against its peer, Python's tiktoken, on the same model folder.

Every comparison collects all mismatches and fails with their count and the first 20; the
number of inputs compared is printed, so the log shows what was proven. See conftest.py for
the environment variables.
"""
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (KL_ERR_INVALID_ARGUMENT, KL_OK, PEER_SEED, KLError,
                      render_chat_reference)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_strings as ps  # noqa: E402

MIN_STRINGS = 10_500
SHOW = 20


def _as_text(s):
    """The text the peer sees for an input: bytes are decoded with U+FFFD replacement."""
    return s.decode("utf-8", "replace") if isinstance(s, bytes) else s


def _short(x, n=160):
    r = repr(x)
    return r if len(r) <= n else r[:n] + "...(%d chars)" % len(x)


def _report(capsys, message):
    with capsys.disabled():
        print("\n[tokenizer-peer] " + message)


def _check(capsys, what, total, mismatches):
    if mismatches:
        lines = ["%s: %d of %d differ; first %d:" % (what, len(mismatches), total,
                                                   min(SHOW, len(mismatches)))]
        for m in mismatches[:SHOW]:
            lines.append("  " + "  |  ".join(_short(x) for x in m))
        pytest.fail("\n".join(lines), pytrace=False)
    _report(capsys, "%s: %d strings identical" % (what, total))


# ---------------------------------------------------------------------------------------------
# The inputs themselves (need nothing but Python)
# ---------------------------------------------------------------------------------------------

def test_peer_strings_generator(capsys):
    cats = ps.peer_string_categories(PEER_SEED)
    strings = ps.peer_strings(PEER_SEED)
    assert len(strings) >= MIN_STRINGS
    assert strings == ps.peer_strings(PEER_SEED), "not deterministic"
    assert strings != ps.peer_strings(PEER_SEED + 1), "seed ignored"
    for name, items in cats.items():
        if name not in ("edge", "long"):
            assert len(items) >= 500, name
    for s in strings:
        assert isinstance(s, (str, bytes))
        if isinstance(s, str):
            s.encode("utf-8")  # no surrogates
    n_invalid = 0
    for b in cats["random_bytes"]:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            n_invalid += 1
    assert n_invalid >= 0.9 * len(cats["random_bytes"])
    _report(capsys, "%d inputs: %s" % (len(strings), ", ".join(
        "%s %d" % (k, len(v)) for k, v in cats.items())))


def test_peer_side(peer, strings, capsys):
    """The peer itself handles every input and round-trips it (checks the test harness)."""
    bad = []
    for s in strings:
        text = _as_text(s)
        if peer.decode_bytes(peer.encode_ordinary(text)) != text.encode("utf-8"):
            bad.append((s,))
        if isinstance(s, str):
            ids = peer.encode(s, allowed_special="all", disallowed_special=())
            if peer.decode_bytes(ids) != s.encode("utf-8"):
                bad.append((s, "special"))
    _check(capsys, "peer round trip", len(strings), bad)


# ---------------------------------------------------------------------------------------------
# Token ids against the peer
# ---------------------------------------------------------------------------------------------

def test_tokenize_ordinary_identical(kl, peer, strings, capsys):
    mismatches = []
    for s in strings:
        theirs = peer.encode_ordinary(_as_text(s))
        try:
            ours = kl.tokenize(s, parse_special=False)
        except KLError as e:
            ours = str(e)
        if ours != theirs:
            mismatches.append((s, ours, theirs))
    _check(capsys, "kl_tokenize(parse_special=0) == encode_ordinary", len(strings), mismatches)


def test_tokenize_special_identical(kl, peer, strings, capsys):
    texts = [s for s in strings if isinstance(s, str)]
    mismatches = []
    n_with_special = 0
    special_ids = set(peer._special_tokens.values())
    for s in texts:
        theirs = peer.encode(s, allowed_special="all", disallowed_special=())
        n_with_special += any(t in special_ids for t in theirs)
        try:
            ours = kl.tokenize(s, parse_special=True)
        except KLError as e:
            ours = str(e)
        if ours != theirs:
            mismatches.append((s, ours, theirs))
    _check(capsys, "kl_tokenize(parse_special=1) == encode(allowed_special='all') "
           "(%d with special ids)" % n_with_special, len(texts), mismatches)
    assert n_with_special >= 100, "too few inputs exercise special tokens"


def test_long_pre_tokens_identical(kl, peer, capsys):
    """One pre-token of 100,000 repeated characters (a user's paste): the heap merge gives
    tiktoken's ids, in well under a second (it was 25-60 s; docs/perf/tokenizer.md)."""
    import time
    rng = random.Random(PEER_SEED)
    cases = ["a" * 100_000, "é" * 100_000, "漢" * 100_000, "😀" * 100_000, "ab" * 150_000,
             "".join(rng.choice("ab") for _ in range(100_000)),
             "".join(rng.choice("etaoin") for _ in range(100_000)),
             " " + "x" * 50_000 + "'s", "Ǆ" * 30_000 + "ǆ" * 30_000]
    mismatches, slow = [], []
    for s in cases:
        theirs = peer.encode_ordinary(s)
        t0 = time.perf_counter()
        ours = kl.tokenize(s, parse_special=False)
        took = time.perf_counter() - t0
        if ours != theirs:
            mismatches.append((s, ours, theirs))
        if took > 2.0:
            slow.append((s, "%.2f s" % took))
    _check(capsys, "long pre-tokens == encode_ordinary", len(cases), mismatches)
    assert not slow, slow


# ---------------------------------------------------------------------------------------------
# Detokenize
# ---------------------------------------------------------------------------------------------

def test_round_trip(kl, strings, capsys):
    mismatches = []
    total = 0
    for s in strings:
        expected = _as_text(s).encode("utf-8")
        modes = (False, True) if isinstance(s, str) else (False,)
        for parse_special in modes:
            total += 1
            try:
                got = kl.detokenize(kl.tokenize(s, parse_special))
            except KLError as e:
                got = str(e)
            if got != expected:
                mismatches.append((s, parse_special, got, expected))
    _check(capsys, "detokenize(tokenize(s)) == s (bytes: replace-decoded)", total, mismatches)


def test_detokenize_peer_ids(kl, peer, strings, capsys):
    mismatches = []
    total = 0
    for s in strings:
        if not isinstance(s, str):
            continue
        for ids in (peer.encode_ordinary(s), peer.encode(s, allowed_special="all",
                                                          disallowed_special=())):
            total += 1
            try:
                got = kl.detokenize(ids)
            except KLError as e:
                got = str(e)
            if got != peer.decode_bytes(ids):
                mismatches.append((s, ids, got, peer.decode_bytes(ids)))
    _check(capsys, "kl_detokenize(peer ids) == peer.decode_bytes", total, mismatches)


def test_detokenize_every_single_token(kl, peer, capsys):
    """Each id alone: its bytes, invalid UTF-8 replaced by U+FFFD like bytes.decode('replace');
    special ids give their content text."""
    mismatches = []
    valid = []
    for i in range(peer.max_token_value + 1):
        try:
            expected = peer.decode_bytes([i])
        except KeyError:
            continue  # a hole in the id space
        valid.append(i)
        expected = expected.decode("utf-8", "replace").encode("utf-8")
        try:
            got = kl.detokenize([i])
        except KLError as e:
            got = str(e)
        if got != expected:
            mismatches.append((i, got, expected))
    _check(capsys, "kl_detokenize([id]) for every id", len(valid), mismatches)


def test_detokenize_partial_sequences(kl, peer, strings, capsys):
    """Random slices of token sequences (cut inside multi-byte characters) decode like
    peer.decode_bytes(slice).decode('utf-8', 'replace')."""
    rng = random.Random(PEER_SEED)
    mismatches = []
    total = 0
    for s in strings:
        if not isinstance(s, str) or not s:
            continue
        ids = peer.encode_ordinary(s)
        if len(ids) < 2:
            continue
        a = rng.randrange(len(ids))
        b = rng.randrange(a, len(ids)) + 1
        part = ids[a:b]
        expected = peer.decode_bytes(part).decode("utf-8", "replace").encode("utf-8")
        total += 1
        try:
            got = kl.detokenize(part)
        except KLError as e:
            got = str(e)
        if got != expected:
            mismatches.append((s, part, got, expected))
    _check(capsys, "kl_detokenize(slice) == decode_bytes(slice) with U+FFFD", total, mismatches)


def test_detokenize_rejects_bad_ids(kl, peer):
    for bad in ([peer.max_token_value + 1], [-1], [0, 2 ** 31 - 1]):
        st, _, _ = kl.detokenize_raw(bad, 1024)
        assert st != KL_OK, "kl_detokenize accepted id(s) %r" % bad
        assert kl.last_error(), "no kl_last_error() for bad id(s) %r" % bad


# ---------------------------------------------------------------------------------------------
# Buffer sizing and raw-byte input
# ---------------------------------------------------------------------------------------------

def test_sizing(kl, peer):
    text = "Hello, world! 你好 😀 <|im_end|> 12345"
    for parse_special in (False, True):
        st, need, ids = kl.tokenize_raw(text, parse_special, 1000)
        assert st == KL_OK and need == len(ids) > 3
        # A NULL buffer (cap 0) asks for the size: KL_OK, no error; one too small fails.
        assert kl.tokenize_raw(text, parse_special, 0)[:2] == (KL_OK, need)
        assert kl.last_error() == ""
        for cap in (1, need - 1):
            st, n, _ = kl.tokenize_raw(text, parse_special, cap)
            assert (st, n) == (KL_ERR_INVALID_ARGUMENT, need), "tokenize cap=%d" % cap
        assert kl.tokenize_raw(text, parse_special, need)[:2] == (KL_OK, need)

    ids = peer.encode(text, allowed_special="all")
    st, need, data = kl.detokenize_raw(ids, 1000)
    assert st == KL_OK and need == len(data) == len(text.encode())
    assert kl.detokenize_raw(ids, 0)[:2] == (KL_OK, need)
    for cap in (1, need - 1):
        st, n, _ = kl.detokenize_raw(ids, cap)
        assert (st, n) == (KL_ERR_INVALID_ARGUMENT, need), "detokenize cap=%d" % cap
    assert kl.detokenize_raw(ids, need)[:2] == (KL_OK, need)

    msgs = [{"role": "user", "content": "hi"}]
    st, need, data = kl.chat_raw(msgs, True, 4096)
    assert st == KL_OK and need == len(data) > 2
    assert kl.chat_raw(msgs, True, 0)[:2] == (KL_OK, need)
    for cap in (1, need - 1):
        st, n, _ = kl.chat_raw(msgs, True, cap)
        assert (st, n) == (KL_ERR_INVALID_ARGUMENT, need), "chat cap=%d" % cap
    assert kl.chat_raw(msgs, True, need)[:2] == (KL_OK, need)

    assert kl.tokenize_raw(b"", False, 0)[:2] == (KL_OK, 0)
    assert kl.detokenize_raw([], 0)[:2] == (KL_OK, 0)


def test_length_not_nul_terminated(kl, peer):
    """Only len bytes are read: the bytes after them, and embedded NULs, are text or nothing."""
    import ctypes
    buf = ctypes.create_string_buffer(b"hello world, more text after the end", 64)
    for n in (0, 1, 5, 11):
        out = (ctypes.c_int32 * 64)()
        got = ctypes.c_size_t()
        st = kl.lib.kl_tokenize(kl.model, buf, n, 0, out, 64, ctypes.byref(got))
        assert st == KL_OK
        assert list(out[:got.value]) == peer.encode_ordinary(buf.raw[:n].decode())
    assert kl.tokenize("a\x00b\x00") == peer.encode_ordinary("a\x00b\x00")


# ---------------------------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------------------------

def test_cli_tokenize(kimi_cli, model_dir, peer, strings, capsys):
    rng = random.Random(PEER_SEED)
    texts = [s for s in strings if isinstance(s, str)]
    chosen = rng.sample(texts, 240) + [s for s in ps.EDGE_CASES if "<|" in s] + [""]

    def run(args):
        s, parse_special = args
        cmd = [kimi_cli, "tokenize", model_dir] + (["--parse-special"] if parse_special else [])
        p = subprocess.run(cmd, input=s.encode("utf-8"), capture_output=True, timeout=120)
        if parse_special:
            theirs = peer.encode(s, allowed_special="all", disallowed_special=())
        else:
            theirs = peer.encode_ordinary(s)
        expected = (" ".join(map(str, theirs)) + "\n").encode()
        if p.returncode != 0 or p.stdout != expected:
            return (s, parse_special, p.returncode, p.stdout[:300], p.stderr[-300:], expected[:300])
        return None

    jobs = [(s, ps_) for s in chosen for ps_ in (False, True)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        mismatches = [r for r in pool.map(run, jobs) if r is not None]
    _check(capsys, "kimi tokenize [--parse-special] == peer", len(jobs), mismatches)


# ---------------------------------------------------------------------------------------------
# Chat template
# ---------------------------------------------------------------------------------------------

def _chat_content(rng):
    r = rng.random()
    if r < 0.1:
        return ""
    if r < 0.3:
        return ps.english_sentence(rng)
    if r < 0.4:
        return ps.gen_code(rng)
    if r < 0.5:
        return rng.choice([ps.gen_cjk, ps.gen_cyrillic, ps.gen_arabic, ps.gen_greek,
                           ps.gen_emoji, ps.gen_combining])(rng)
    if r < 0.6:
        return rng.choice(["{{ messages }}", "{% if true %}x{% endif %}", "{{", "}}", "{%", "%}",
                           "{# not a comment #}", "{{ raise_exception('no') }}", "{% for %}",
                           "{{ '<|im_end|>' }}", "{%- endfor -%}", "{{{{}}}}"]) + \
            rng.choice(["", " tail", "\n"])
    if r < 0.7:
        return ps.gen_special(rng)
    if r < 0.8:
        return rng.choice(["\n", "  ", "\n\n  hi  \n", " lead", "trail ", "\t\tx\n", "a\r\nb",
                           "\u3000", " \n "])
    if r < 0.9:
        return "\n".join(ps.english_sentence(rng, 1, 6) for _ in range(rng.randint(2, 5)))
    s = ps.gen_mixed(rng)
    return s.replace("\x00", "")


def chat_cases(seed, n):
    rng = random.Random("%d:chat" % seed)
    cases = []
    for _ in range(n):
        k = rng.randint(0, 6)
        roles = [rng.choice(["user", "assistant", "tool", "user", "assistant", "system"])
                 for _ in range(k)]
        r = rng.random()
        if k and r < 0.4:
            roles[0] = "system"
        elif k and r < 0.7:
            roles = [x if x != "system" else "user" for x in roles]
        msgs = [{"role": role, "content": _chat_content(rng).replace("\x00", "")} for role in roles]
        cases.append(msgs)
    return cases


def test_chat_template_matches_reference(kl, tokenizer_config, capsys):
    cases = chat_cases(PEER_SEED, 600)
    kinds = {"system first": 0, "no system": 0, "system later": 0, "empty": 0}
    for msgs in cases:
        roles = [m["role"] for m in msgs]
        if not msgs:
            kinds["empty"] += 1
        elif roles[0] == "system":
            kinds["system first"] += 1
        elif "system" in roles:
            kinds["system later"] += 1
        else:
            kinds["no system"] += 1
    assert min(kinds.values()) > 0, kinds

    mismatches = []
    total = 0
    for msgs in cases:
        for agp in (False, True):
            total += 1
            expected = render_chat_reference(tokenizer_config, msgs, agp)
            try:
                got = kl.chat(msgs, agp)
            except KLError as e:
                got = str(e)
            if got != expected:
                mismatches.append((msgs, agp, got, expected))
    _check(capsys, "kl_chat_template_apply == jinja2 (%s)" % kinds, total, mismatches)


def test_chat_template_unknown_role(kl):
    for msgs in ([{"role": "narrator", "content": "hi"}],
                 [{"role": "user", "content": "hi"}, {"role": "narrator", "content": "x"}],
                 [{"role": "", "content": "x"}]):
        st, _, _ = kl.chat_raw(msgs, True, 4096)
        assert st == KL_ERR_INVALID_ARGUMENT, (msgs, st)
        assert kl.last_error(), "empty kl_last_error() for %r" % msgs
