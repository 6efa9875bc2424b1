"""The embedded model's GGUF load with and without `gguf_parsed_once`, alternated in fresh processes.

    python benchmarks/gguf_load.py [rounds]

Each run loads `embedded:smollm2-135m` from its GGUF file with `saeseeds.activations.models.load_gguf` ("new") or
with the parse-once block replaced by a no-op ("old": transformers parses the file for the config, the weights and
the tokenizer, and builds gguf's tensor-name map per module), and prints the seconds and a sha256 over every
tensor of the state dict, the whole vocabulary, the tokenizer's serialised form and the ids of a test text: the
two must print the same digest. This is the build of the embedded copy, paid once per machine (and by the tests).
"""

import subprocess
import sys

RUN = r'''
import contextlib, hashlib, sys, time
import saeseeds.activations.models as m
if sys.argv[1] == "old":
    m.gguf_parsed_once = contextlib.nullcontext
start = time.perf_counter()
model, tok = m.load_gguf("embedded:smollm2-135m")
seconds = time.perf_counter() - start
h = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    h.update(name.encode())
    h.update(tensor.numpy().tobytes())
h.update(repr(sorted(tok.get_vocab().items())).encode())
h.update(tok.backend_tokenizer.to_str().encode())
h.update(repr(tok("In the beginning God created the heaven and the earth. def f(x): return x").input_ids).encode())
print(f"{sys.argv[1]}: {seconds:.1f} s, sha256 {h.hexdigest()[:16]}, {len(tok)} tokens")
'''

for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 2):
    for mode in ("old", "new"):
        proc = subprocess.run([sys.executable, "-c", RUN, mode], capture_output=True, text=True, check=True)
        print(proc.stdout.strip(), flush=True)
