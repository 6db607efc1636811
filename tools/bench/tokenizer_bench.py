#!/usr/bin/env python3
"""Single-threaded encode throughput: our tokenizer (kl_tokenize through ctypes) against
Python's tiktoken (encode_ordinary), on the same model folder.

    build/venv/bin/python tools/bench/tokenizer_bench.py \
        --library build/libkimi_linear.so --model build/tok-model [--mb 8] [--repeat 5]

Two texts, both deterministic: a mixed one (English-heavy, with code, CJK, Cyrillic, Arabic,
Greek, emoji, digits, punctuation), built from the generators of tests/tokenizer/peer_strings.py,
and an English-only one. On each, both tokenizers must give identical ids (else it exits 1),
then each encodes the whole text --repeat times and the best time counts. Ours gets the text as
UTF-8 bytes and a preallocated output buffer, so neither conversion nor allocation is timed;
tiktoken gets the str, as its users call it. MB = 10^6 bytes of UTF-8 text.

Then inputs where one pre-token is very long (a paste of one repeated character) or one
character class runs for a megabyte: the cost of one encode of each, ours next to tiktoken's
(--long-only runs just these; --no-long skips them).
"""
import argparse
import ctypes
import os
import pathlib
import platform
import random
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "tokenizer"))
import peer_strings as ps  # noqa: E402
from conftest import KLTokenizer, load_peer  # noqa: E402  (ctypes wrapper and tiktoken peer)


def english_paragraph(rng):
    return " ".join(ps.english_sentence(rng) for _ in range(rng.randint(3, 10)))


MIXED = [  # (weight, document generator)
    (55, english_paragraph),
    (14, lambda rng: "\n\n".join(ps.gen_code(rng) for _ in range(rng.randint(1, 3)))),
    (9, lambda rng: "".join(ps.gen_cjk(rng) for _ in range(rng.randint(3, 10)))),
    (6, lambda rng: " ".join(ps.gen_cyrillic(rng) for _ in range(rng.randint(2, 6)))),
    (3, lambda rng: " ".join(ps.gen_arabic(rng) for _ in range(rng.randint(2, 6)))),
    (3, lambda rng: " ".join(ps.gen_greek(rng) for _ in range(rng.randint(2, 6)))),
    (4, lambda rng: english_paragraph(rng) + " " + ps.gen_emoji(rng)),
    (6, lambda rng: " ".join(g(rng) for g in (ps.gen_digits, ps.gen_punctuation,
                                               ps.gen_contractions, ps.gen_whitespace,
                                               ps.gen_combining))),
]


def build_text(n_bytes, seed, docs):
    rng = random.Random(seed)
    weights = [w for w, _ in docs]
    gens = [g for _, g in docs]
    parts, size = [], 0
    while size < n_bytes:
        doc = rng.choices(gens, weights)[0](rng) + "\n\n"
        parts.append(doc)
        size += len(doc.encode("utf-8"))
    data = "".join(parts).encode("utf-8")[:n_bytes]
    return data.decode("utf-8", "ignore")  # drop a character cut at the end


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


LONG_INPUTS = [  # (name, text): one pre-token of 100,000 characters, or 1 MB of one class
    ("100,000 x 'a'", "a" * 100_000),
    ("100,000 x 'é'", "é" * 100_000),
    ("100,000 x '漢'", "漢" * 100_000),
    ("100,000 x '😀'", "😀" * 100_000),
    ("300 KB of 'ab'", "ab" * 150_000),
    ("1 MB of spaces", " " * 1_000_000),
    ("1 MB of digits", "7" * 1_000_000),
    ("1 MB of newlines", "\n" * 1_000_000),
    ("1 MB of combining marks", "e" + "\u0301" * 500_000),
]


def long_inputs(kl, peer, repeat):
    """Rows (name, MB, ours s, tiktoken s) for LONG_INPUTS; None for ours when ids differ."""
    rows = []
    for name, text in LONG_INPUTS:
        data = text.encode("utf-8")
        cap = len(data) + 1
        out = (ctypes.c_int32 * cap)()
        n = ctypes.c_size_t()

        def ours():
            st = kl.lib.kl_tokenize(kl.model, data, len(data), 0, out, cap, ctypes.byref(n))
            if st != 0:
                raise RuntimeError("kl_tokenize: status %d: %s" % (st, kl.last_error()))

        t_ours = best_of(repeat, ours)
        try:
            t_tik = best_of(repeat, lambda: peer.encode_ordinary(text))
            same = out[:n.value] == peer.encode_ordinary(text)
        except BaseException as e:  # tiktoken's regex engine can overflow its stack (a panic)
            if isinstance(e, KeyboardInterrupt):
                raise
            t_tik, same = None, True
        rows.append((name, len(data) / 1e6, t_ours if same else None, t_tik))
        print("  %s: ours %.3f s, tiktoken %s%s" % (
            name, t_ours, "fails" if t_tik is None else "%.3f s" % t_tik,
            "" if same else " (ids differ)"), file=sys.stderr)
    return rows


def best_of(repeat, fn):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    return cpu, nproc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--library", required=True, help="path to libkimi_linear.so")
    ap.add_argument("--model", required=True, help="model folder (tiktoken.model, "
                                                   "tokenizer_config.json)")
    ap.add_argument("--mb", type=float, default=8, help="text size in MB (10^6 bytes)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per tokenizer; best counts")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--long-only", action="store_true", help="only the long-input table")
    ap.add_argument("--no-long", action="store_true", help="skip the long-input table")
    ap.add_argument("--long-repeat", type=int, default=1,
                    help="runs per long input; best counts (1: a slow build stays bearable)")
    args = ap.parse_args()

    import tiktoken
    kl = KLTokenizer(args.library, args.model, n_threads=1)
    peer = load_peer(args.model)
    n_bytes = int(args.mb * 1e6)

    t0 = time.perf_counter()
    texts = [] if args.long_only else [
        ("mixed", build_text(n_bytes, args.seed, MIXED)),
        ("English only", build_text(n_bytes, args.seed + 1, [(1, english_paragraph)]))]
    print("built texts in %.1f s" % (time.perf_counter() - t0), file=sys.stderr)

    rows, failed = [], False
    for name, text in texts:
        data = text.encode("utf-8")
        cap = len(data) + 1  # every token covers at least one byte
        out = (ctypes.c_int32 * cap)()
        n = ctypes.c_size_t()

        def ours():
            st = kl.lib.kl_tokenize(kl.model, data, len(data), 0, out, cap, ctypes.byref(n))
            if st != 0:
                raise RuntimeError("kl_tokenize: status %d: %s" % (st, kl.last_error()))

        theirs_ids = peer.encode_ordinary(text)
        ours()
        ours_ids = out[:n.value]
        if ours_ids != theirs_ids:
            i = first_difference(ours_ids, theirs_ids)
            ctx = peer.decode_bytes(theirs_ids[max(0, i - 5):i + 5])
            print("%s: ids differ at token %d of %d/%d (ours %r, tiktoken %r), near %r" % (
                name, i, len(ours_ids), len(theirs_ids), ours_ids[i:i + 5], theirs_ids[i:i + 5],
                ctx), file=sys.stderr)
            failed = True
            continue
        t_ours = best_of(args.repeat, ours)
        t_tik = best_of(args.repeat, lambda: peer.encode_ordinary(text))
        mb = len(data) / 1e6
        rows.append((name, mb, len(theirs_ids), mb / t_ours, mb / t_tik, t_tik / t_ours))

    long_rows = [] if args.no_long else long_inputs(kl, peer, args.long_repeat)
    failed = failed or any(r[2] is None for r in long_rows)

    cpu, nproc = machine()
    if long_rows:
        print("Long inputs: one encode each, best of %d (seconds)\n" % args.long_repeat)
        print("| input | MB | ours s | tiktoken s |")
        print("|---|---:|---:|---:|")
        for name, mb, t_ours, t_tik in long_rows:
            print("| %s | %.2f | %s | %s |" % (
                name, mb, "ids differ" if t_ours is None else "%.3f" % t_ours,
                "fails (regex stack overflow)" if t_tik is None else "%.3f" % t_tik))
        print()
    if texts:
        print("Tokenizer encode throughput, single thread, best of %d (model %s, vocab %d)\n" % (
            args.repeat, args.model, peer.n_vocab))
        print("| text | MB | tokens | ours MB/s | tiktoken MB/s | ours / tiktoken |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, mb, ntok, ours_mbs, tik_mbs, ratio in rows:
            print("| %s | %.2f | %d | %.1f | %.1f | %.2fx |" % (name, mb, ntok, ours_mbs,
                                                                tik_mbs, ratio))
    print("\nmachine: %s, nproc %s, %s" % (cpu or "unknown CPU", nproc, platform.platform()))
    print("versions: kimi-linear %s, tiktoken %s, Python %s" % (
        kl.version, tiktoken.__version__, platform.python_version()))
    kl.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
