"""The wheel's consumer (packaging/consumers/README.md): python greedy.py MODEL_DIR."""
import sys

import kimi_linear as kl

with kl.Model(sys.argv[1], device="auto") as model, model.session() as session:
    prompt = model.tokenize("Once upon a time", parse_special=True)
    session.append(prompt)
    generated = [session.next()[0] for _ in range(16)]
print(" ".join(map(str, prompt)) + "|" + " ".join(map(str, generated)))
