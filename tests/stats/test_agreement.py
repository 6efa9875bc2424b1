"""Shared fractions under three labellings and their spread over pairs (intervals: tests/stats/test_jackknife.py)."""

import numpy as np
import pandas as pd
import pytest

from saeseeds.stats.agreement import agreement_stats, labelled_shared


def table(enc_partner, enc_cos, dec_partner, dec_cos, enc_maxcos=None, dec_maxcos=None):
    enc_cos, dec_cos = np.asarray(enc_cos, float), np.asarray(dec_cos, float)
    return pd.DataFrame({
        "latent": np.arange(len(enc_cos)), "enc_partner": enc_partner, "enc_cos": enc_cos,
        "dec_partner": dec_partner, "dec_cos": dec_cos,
        "enc_maxcos": enc_cos if enc_maxcos is None else enc_maxcos,
        "dec_maxcos": dec_cos if dec_maxcos is None else dec_maxcos,
    })


def test_each_labelling_by_hand():
    t = table(
        enc_partner=[0, 1, 2, 3, 4],
        enc_cos=[0.9, 0.9, 0.7, 0.9, 0.5],
        dec_partner=[0, 2, 2, 3, 4],
        dec_cos=[0.8, 0.9, 0.9, 0.7, 0.9],
        enc_maxcos=[0.9, 0.9, 0.7, 0.9, 0.95],
        dec_maxcos=[0.8, 0.9, 0.9, 0.7, 0.9],
    )
    # paper: same partner and both >= 0.7 -> latents 0, 2, 3
    assert labelled_shared(t, 0.7, "paper").tolist() == [True, False, True, True, False]
    # notebook: both > 0.7, partners may differ -> latents 0, 1
    assert labelled_shared(t, 0.7, "notebook").tolist() == [True, True, False, False, False]
    # max-cos: best cosines both >= 0.7 -> latents 0, 1, 2, 3, 4
    assert labelled_shared(t, 0.7, "maxcos").tolist() == [True, True, True, True, True]
    with pytest.raises(ValueError, match="labelling"):
        labelled_shared(t, 0.7, "hungarian")


def test_agreement_stats_mean_and_spread_over_pairs():
    a = table([0, 1, 2, 3], [0.9] * 4, [0, 1, 2, 3], [0.9, 0.9, 0.1, 0.1])  # 50% shared
    b = table([0, 1, 2, 3], [0.9] * 4, [0, 1, 2, 3], [0.9, 0.1, 0.1, 0.1])  # 25% shared
    stats = agreement_stats([a, b], 0.7)
    assert stats["pairs"] == 2
    assert stats["shared_paper_mean"] == pytest.approx(0.375)
    assert stats["shared_paper_std"] == pytest.approx(0.125)
    assert "shared_paper_ci_lo" not in stats  # intervals resample seeds: saeseeds.stats.jackknife
    assert stats["enc_cos_mean"] == pytest.approx(0.9)
    # Seeds of different sizes (external sets): each pair's fraction is over its own latents.
    uneven = agreement_stats([a, b.iloc[:2]], 0.7)
    assert uneven["shared_paper_mean"] == pytest.approx((0.5 + 0.5) / 2)
