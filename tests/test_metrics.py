"""Intervalles de confiance partagés (atelier.metrics)."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from atelier.metrics import Interval, bootstrap_interval, seed_interval


def test_bootstrap_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 2000):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < 0.7, y, 1 - y)
        iv = bootstrap_interval(accuracy_score, y, pred, n_resamples=500)
        assert isinstance(iv, Interval)
        assert iv.low <= iv.estimate <= iv.high
        assert iv.estimate == pytest.approx(accuracy_score(y, pred))
        widths.append(iv.high - iv.low)
    # largeur ≈ 2 × 1,96 × sqrt(p(1-p)/n)
    assert widths[1] < widths[0] / 3
    assert widths[1] == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 2000), rel=0.25)


def test_bootstrap_interval_is_deterministic_and_paired():
    y = np.array([0, 1] * 50)
    a = y.copy()
    b = y.copy()
    b[:10] = 1 - b[:10]
    diff = lambda t, p, q: accuracy_score(t, p) - accuracy_score(t, q)  # noqa: E731
    iv1 = bootstrap_interval(diff, y, a, b, seed=3)
    iv2 = bootstrap_interval(diff, y, a, b, seed=3)
    assert iv1 == iv2
    assert iv1.estimate == pytest.approx(0.10)
    assert iv1.low > 0  # a domine b sur chaque rééchantillon apparié


@pytest.mark.parametrize(
    "args, message",
    [((np.zeros(3), np.zeros(4)), "même longueur"), ((np.zeros(1), np.zeros(1)), "au moins 2")],
)
def test_bootstrap_interval_errors(args, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_interval(accuracy_score, *args)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(accuracy_score, np.zeros(5), np.zeros(5), level=95)


def test_seed_interval_matches_student():
    from scipy import stats

    v = [0.70, 0.72, 0.74]
    iv = seed_interval(v)
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(v), scale=stats.sem(v))
    assert iv.estimate == pytest.approx(0.72)
    assert (iv.low, iv.high) == pytest.approx((lo, hi))
    assert seed_interval([0.5]) == Interval(0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="values"):
        seed_interval([])
    with pytest.raises(ValueError, match="non finie"):
        seed_interval([0.1, float("nan")])
