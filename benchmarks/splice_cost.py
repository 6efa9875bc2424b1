"""What one context costs the loss-recovered job: a clean forward against one splice from the hook on.

Loads the embedded SmolLM2-135M, then for a context of 64 and of 256 random tokens times one clean forward (which
also records the state entering the hook's block, `saeseeds.functional.splice.SplicedModel.clean`) and one zero-ablation splice
run from the hook's block on, with the float64 log-softmax and KL the job computes (mean of 3). The default study's
loss job costs per context one clean forward plus one splice per SAE and one for the zero-ablation.

    python benchmarks/splice_cost.py [--hook layers.6.mlp] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from saeseeds.functional.loss import zero_splice
from saeseeds.activations.models import load_model
from saeseeds.functional.splice import SplicedModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hook", default="layers.6.mlp")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, _ = load_model("embedded:smollm2-135m")
    print(f"model loaded in {time.perf_counter() - start:.1f} s", flush=True)
    spliced = SplicedModel(model, args.hook)
    for length in (64, 256):
        ids = torch.randint(0, 49000, (1, length), generator=torch.Generator().manual_seed(0))
        spliced.clean(ids)  # warm-up
        start = time.perf_counter()
        logits, prefix = spliced.clean(ids)
        clean_logp = F.log_softmax(logits.double(), -1)
        clean_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(3):
            logp = F.log_softmax(spliced.tail(prefix, zero_splice).double(), -1)
            (clean_logp.exp() * (clean_logp - logp)).sum()
        tail_s = (time.perf_counter() - start) / 3
        print(f"context of {length} tokens: clean forward {clean_s:.2f} s, one splice (tail + log-softmax + KL) {tail_s:.2f} s, "
              f"ratio {tail_s / clean_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
