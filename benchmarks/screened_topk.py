"""The encoder's top-k of one batch: float32 `addmm` + `topk` against the exact bf16 screen (`saeseeds.sae.screened_topk`).

Reads the first batch of a cached store, centres it, and takes the top k of 4608 latents (k = 32) drawn as
training starts them, plus any trained checkpoints given; prints the best of `--repeat` times of each (the screen
with its compiled selection, as CPU training runs it, and with the torch ops other devices run) and the fraction
of rows where the screen and float32 keep the same latents.

    python benchmarks/screened_topk.py --store results/smollm2-135m/kjv-pydoc/layers.6.mlp/activations.zarr \\
        results/smollm2-135m/kjv-pydoc/layers.6.mlp/topk-1152-k4/seed0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from saeseeds.activations.store import open_store
from saeseeds.sae.coder import init_encoder_weight, load_sae
import saeseeds.sae.screened_topk as screened_module
from saeseeds.sae.screened_topk import screened_topk


def best_ms(fn, repeat: int):
    fn()
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("checkpoints", nargs="*", help="trained TopK checkpoint folders (sparsify layout)")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--latents", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    store = open_store(args.store)
    x = torch.from_numpy(np.asarray(store.array[: args.batch_size], dtype=np.float32))
    d = x.shape[1]
    cases = [(f"init, {args.latents} latents", init_encoder_weight(args.latents, d, 0), torch.zeros(args.latents), args.k, x - x.mean(0))]
    for path in args.checkpoints:
        sae = load_sae(path)
        cases.append((path, sae.encoder.weight.detach(), sae.encoder.bias.detach(), sae.cfg.k, x - sae.b_dec.detach()))
    for name, w, b, k, xc in cases:
        ms_ref, (_, ref_idx) = best_ms(lambda: torch.addmm(b, xc, w.T).topk(k, dim=-1, sorted=False), args.repeat)
        ms_scr, (_, scr_idx) = best_ms(lambda: screened_topk(xc, w, b, k), args.repeat)
        compiled = screened_module._compiled_selection_applies
        screened_module._compiled_selection_applies = lambda *t: False
        ms_ops, _ = best_ms(lambda: screened_topk(xc, w, b, k), args.repeat)
        screened_module._compiled_selection_applies = compiled
        same = (ref_idx.sort(1).values == scr_idx.sort(1).values).all(1).float().mean().item()
        print(f"{name} (k = {k}): addmm + topk {ms_ref:.1f} ms, bf16 screen {ms_scr:.1f} ms ({ms_ref / ms_scr:.2f}x; "
              f"with torch ops after the matmul {ms_ops:.1f} ms), same latents on {same:.4f} of rows")


if __name__ == "__main__":
    main()
