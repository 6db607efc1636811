#!/usr/bin/env python3
"""Streams a chat answer from a model folder: python3 generate.py MODEL_DIR "question"."""
import sys

import kimi_linear


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: generate.py MODEL_DIR QUESTION", file=sys.stderr)
        return 2
    with kimi_linear.Model(sys.argv[1]) as model, model.session() as session:
        # Token ids, the question kept plain text (a typed "<|im_end|>" cannot end the turn).
        prompt = model.tokenize_chat([{"role": "user", "content": sys.argv[2]}])
        end_of_turn = model.tokenize("<|im_end|>")
        count = 0
        for piece in session.generate(prompt, max_new_tokens=64, temperature=0.7, seed=1,
                                      stop_tokens=end_of_turn):
            print(piece, end="", flush=True)
            count += 1
        print(f"\n[{count} pieces]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
