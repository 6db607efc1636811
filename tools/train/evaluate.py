"""Accuracy of a model folder on fresh task prompts, through the C++ engine (the kimi_linear
package over libkimi_linear), greedy decoding, the answer compared as text.

    python3 tools/train/evaluate.py MODEL_DIR --library build/libkimi_linear.so [--count 200]
        [--device cpu|cuda] [--pairs 2,4,8,12,16,24,32]   (recall accuracy by number of pairs)
        [--weights auto|bf16|fp8|int4]   (the weights' form once loaded: fp8/int4 quantize a
                                          bf16 model on load)
        [--batch N]   (also answer in batches of N sessions, kimi_linear.Batch: the answers
                       must equal the one-session ones)

Seeds: EVAL_SEED and above are never used for training (prepare.py trains on seed 1).
"""

import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tasks  # noqa: E402

EVAL_SEED = 20261123


def answer(model, question, max_new_tokens=64):
    """The model's greedy answer to one question (text up to <|im_end|>)."""
    prompt = model.apply_chat_template([{"role": "user", "content": question}])
    with model.session() as session:
        return "".join(session.generate(prompt, max_new_tokens=max_new_tokens,
                                        stop_tokens=model.tokenize("<|im_end|>"))).strip()


def answers_batched(model, questions, batch, max_new_tokens=64):
    """The greedy answers of answer(), from sessions stepped together, `batch` at a time."""
    import kimi_linear

    stop = model.tokenize("<|im_end|>")
    answers = []
    for start in range(0, len(questions), batch):
        group = questions[start:start + batch]
        sessions = [model.session() for _ in group]
        try:
            for session, question in zip(sessions, group):
                session.append(model.tokenize(model.apply_chat_template(
                    [{"role": "user", "content": question}])))
            texts = [[] for _ in group]
            for step in kimi_linear.Batch(sessions).generate(max_new_tokens,
                                                             stop_tokens=stop):
                texts[step.index].append(step.piece or "")
            answers += ["".join(t).strip() for t in texts]
        finally:
            for session in sessions:
                session.close()
    return answers


def accuracy(model, items):
    """(fraction right, [(task, question, expected, got)] of the wrong ones)."""
    wrong = []
    for task, question, expected in items:
        got = answer(model, question)
        if got != expected:
            wrong.append((task, question, expected, got))
    return 1.0 - len(wrong) / max(1, len(items)), wrong


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--library", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", default="")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--weights", default="auto", choices=["auto", "bf16", "fp8", "int4"])
    args = parser.parse_args()
    os.environ["KIMI_LINEAR_LIBRARY"] = os.path.abspath(args.library)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "bindings", "python"))
    import kimi_linear

    with kimi_linear.Model(args.model, device=args.device, weights=args.weights) as model:
        items = tasks.examples(EVAL_SEED, args.count)
        score, wrong = accuracy(model, items)
        print("accuracy on %d fresh prompts: %.1f%%" % (len(items), 100 * score))
        for task in tasks.TASKS:
            mine = [i for i in items if i[0] == task]
            bad = sum(1 for w in wrong if w[0] == task)
            print("  %-6s %3d prompts, %5.1f%%" % (task, len(mine), 100 * (1 - bad / max(1, len(mine)))))
        for w in wrong[:10]:
            print("  wrong: [%s] %s -> expected %r, got %r" % w)
        if args.batch:
            alone = [answer(model, q) for _, q, _ in items]
            together = answers_batched(model, [q for _, q, _ in items], args.batch)
            same = sum(a == b for a, b in zip(alone, together))
            right = sum(t == e for t, (_, _, e) in zip(together, items))
            print("batches of %d: %d/%d answers equal the one-session ones, %d/%d right"
                  % (args.batch, same, len(items), right, len(items)))
        if args.pairs:
            print("recall accuracy by number of key-value pairs (trained on 2-12):")
            for n in map(int, args.pairs.split(",")):
                rng = random.Random(EVAL_SEED + n)
                probes = [("recall",) + tasks.recall(rng, n_pairs=n, n_queries=min(4, n))
                          for _ in range(50)]
                score, _ = accuracy(model, probes)
                print("  %3d pairs: %5.1f%%" % (n, 100 * score))


if __name__ == "__main__":
    main()
