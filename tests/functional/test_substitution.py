"""The substitution test (saeseeds.functional.substitution) on small planted SAEs."""

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.matching.match import match_dictionaries
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.functional.substitution import SUBSTITUTION_COLUMNS, RowRange, controls, decoder_cosines, dense_acts, substitution_table

D, N, K = 64, 48, 4


def planted_sae(seed: int = 0) -> SparseCoder:
    """A TopK SAE whose encoder rows are its (unit) decoder rows, so it recovers rows built from them."""
    sae = SparseCoder(D, SaeConfig(num_latents=N, k=K), seed=seed)
    with torch.no_grad():
        sae.encoder.weight.copy_(sae.W_dec)
    return sae.eval()


def rows_of(sae: SparseCoder, n: int, seed: int) -> np.ndarray:
    """Rows that are sums of K random decoder rows of `sae` with positive magnitudes, plus a little noise."""
    rng = np.random.default_rng(seed)
    dec = sae.W_dec.detach().numpy()
    picks = np.stack([rng.choice(N, K, replace=False) for _ in range(n)])
    mags = rng.uniform(1.0, 2.0, size=(n, K))
    return (np.einsum("nk,nkd->nd", mags, dec[picks]) + 0.01 * rng.normal(size=(n, D))).astype(np.float32)


def permuted(sae: SparseCoder, perm: np.ndarray, noise: float = 0.0, seed: int = 0) -> SparseCoder:
    """A copy of `sae` whose latent perm[i] is latent i, with optional noise on its weights."""
    copy = SparseCoder(D, sae.cfg, seed=1)
    gen = torch.Generator().manual_seed(seed)
    inverse = np.argsort(perm)
    with torch.no_grad():
        for name in ("W_dec",):
            w = getattr(sae, name)[inverse]
            getattr(copy, name).copy_(w + noise * torch.randn(w.shape, generator=gen))
        copy.encoder.weight.copy_(sae.encoder.weight[inverse] + noise * torch.randn((N, D), generator=gen))
        copy.encoder.bias.copy_(sae.encoder.bias[inverse])
        copy.b_dec.copy_(sae.b_dec)
    return copy.eval()


def matches_of(a: SparseCoder, b: SparseCoder) -> pd.DataFrame:
    table, _ = match_dictionaries(a.encoder.weight.detach().numpy(), a.W_dec.detach().numpy(),
                                  b.encoder.weight.detach().numpy(), b.W_dec.detach().numpy())
    return table


def test_a_permuted_copys_substitution_changes_nothing():
    a = planted_sae()
    perm = np.random.default_rng(3).permutation(N)
    b = permuted(a, perm)
    train, held = rows_of(a, 2000, 1), rows_of(a, 1000, 2)
    table = substitution_table(a, b, matches_of(a, b), train, held)
    assert list(table.columns) == SUBSTITUTION_COLUMNS
    assert (table["partner"].to_numpy() == perm).all()  # the matching finds the permutation
    fires = table["firing_rows"] > 0
    assert fires.all()
    assert np.allclose(table["scale_partner"], 1.0, atol=1e-6)
    assert np.allclose(table["delta_partner"], 0.0, atol=1e-9)
    assert np.allclose(table["score_partner"], 1.0, atol=1e-6)
    assert (table["rows_partner"] == table["firing_rows"]).all()  # i and its copy fire on the same rows
    assert (table["delta_ablate"] > 0).all()
    for method in ("greedy", "maxcos", "sinkhorn"):  # on a copy every matching finds the permutation and scores 1
        assert (table[method].to_numpy() == perm).all(), method
        assert np.allclose(table[f"score_{method}"], 1.0, atol=1e-6), method


def test_a_random_partner_scores_worse_than_the_true_partner_on_a_planted_case():
    """B is A permuted with noisy weights: the true partners still substitute well, random ones barely."""
    a = planted_sae()
    perm = np.random.default_rng(4).permutation(N)
    b = permuted(a, perm, noise=0.05, seed=2)
    table = substitution_table(a, b, matches_of(a, b), rows_of(a, 3000, 5), rows_of(a, 1500, 6), seed=0)
    assert (table["partner"].to_numpy() == perm).all()
    assert (table["random"] != table["partner"]).all() and (table["nonpartner"] != table["partner"]).all()
    assert (table["score_partner"] > table["score_random"]).all()
    assert (table["score_partner"] > table["score_nonpartner"]).all()
    assert table["score_partner"].median() > 0.8
    assert table["score_random"].median() < 0.2
    # a worse partner costs more reconstruction than a good one, in FVU units
    assert (table["delta_random"] > table["delta_partner"]).all()


def test_deltas_match_a_direct_recomputation_of_the_swapped_reconstruction():
    a, b = planted_sae(0), planted_sae(7)
    train, held = rows_of(a, 500, 8), rows_of(a, 300, 9)
    table = substitution_table(a, b, matches_of(a, b), train, held)
    x = torch.from_numpy(held).double()
    acts_a, acts_b = dense_acts(a, torch.from_numpy(held)).double(), dense_acts(b, torch.from_numpy(held)).double()
    recon = acts_a @ a.W_dec.double() + a.b_dec.double()
    base = (x - recon).pow(2).sum()
    variance = (x - x.mean(0)).pow(2).sum()
    for i in (0, 5, 17):
        j, s = int(table.loc[i, "partner"]), float(table.loc[i, "scale_partner"])
        swapped = recon - acts_a[:, i : i + 1] * a.W_dec[i].double() + s * acts_b[:, j : j + 1] * b.W_dec[j].double()
        assert table.loc[i, "delta_partner"] == pytest.approx(((x - swapped).pow(2).sum() - base).item() / variance.item(), rel=1e-6, abs=1e-12)
        dropped = recon - acts_a[:, i : i + 1] * a.W_dec[i].double()
        assert table.loc[i, "delta_ablate"] == pytest.approx(((x - dropped).pow(2).sum() - base).item() / variance.item(), rel=1e-6, abs=1e-12)


def test_controls_never_pick_the_partner_and_the_nonpartner_is_the_closest_other_row():
    a, b = planted_sae(0), planted_sae(1)
    partners = np.random.default_rng(0).permutation(N)
    random, best, best_cos = controls(decoder_cosines(a, b), partners, seed=1)
    assert (random != partners).all() and (best != partners).all() and ((0 <= random) & (random < N)).all()
    cos = (torch.nn.functional.normalize(a.W_dec, dim=1) @ torch.nn.functional.normalize(b.W_dec, dim=1).T).detach()
    for i in range(N):
        row = cos[i].clone()
        row[partners[i]] = -2
        assert best[i] == int(row.argmax()) and best_cos[i] == pytest.approx(float(row.max()), abs=1e-6)


def test_rows_read_batch_by_batch_from_a_store_array_give_the_same_table():
    a, b = planted_sae(0), planted_sae(7)
    rows = np.concatenate([rows_of(a, 500, 8), rows_of(a, 300, 9)])
    whole = substitution_table(a, b, matches_of(a, b), rows[:500], rows[500:], batch_rows=128)
    ranged = substitution_table(a, b, matches_of(a, b), RowRange(rows, 0, 500), RowRange(rows, 500, 800), batch_rows=128)
    pd.testing.assert_frame_equal(whole, ranged)
