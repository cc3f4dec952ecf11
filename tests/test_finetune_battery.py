"""atelier.finetuning.battery : la batterie d'oubli du chapitre 05, sur des embeddings fabriqués (rapide)."""

import numpy as np
import pytest

from atelier.finetuning import battery, pair_auc, probe_accuracy, retrieval_top1, sts_spearman

VECS = {"a": [1.0, 0.0], "a2": [0.9, 0.1], "b": [0.0, 1.0], "b2": [0.1, 0.9], "c": [0.7, 0.7], "d": [-1.0, 0.2]}


def encode(texts):
    return np.array([VECS[t] for t in texts], dtype=float)  # (N, 2)


def test_sts_spearman_follows_cosine_order():
    a, b = ["a", "a", "a"], ["a2", "c", "b"]           # cosinus décroissants
    assert sts_spearman(encode, a, b, [5.0, 3.0, 0.0]) == pytest.approx(1.0)
    assert sts_spearman(encode, a, b, [0.0, 3.0, 5.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="même longueur"):
        sts_spearman(encode, a, b, [1.0, 2.0])


def test_pair_auc_separates_and_checks_labels():
    a, b = ["a", "b", "a", "b"], ["a2", "b2", "b", "d"]
    assert pair_auc(encode, a, b, [1, 1, 0, 0]) == pytest.approx(1.0)
    assert pair_auc(encode, a, b, [0, 0, 1, 1]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="des 0 et des 1"):
        pair_auc(encode, a, b, [1, 1, 1, 1])


def test_retrieval_top1_counts_aligned_neighbours():
    assert retrieval_top1(encode, ["a", "b"], ["a2", "b2"]) == 1.0
    assert retrieval_top1(encode, ["a", "b"], ["b2", "a2"]) == 0.0
    with pytest.raises(ValueError, match="même longueur"):
        retrieval_top1(encode, ["a", "b"], ["a2"])
    with pytest.raises(TypeError, match="queries"):
        retrieval_top1(encode, "a", ["a2"])


def test_probe_accuracy_on_separable_and_random_data():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    centers = np.eye(3) * 5
    x = centers[y] + rng.normal(size=(60, 3)) * 0.1
    assert probe_accuracy(x, y) == pytest.approx(1.0)
    noise = probe_accuracy(rng.normal(size=(60, 3)), y)
    assert noise < 0.7
    with pytest.raises(ValueError, match="matrice"):
        probe_accuracy(np.zeros(5), y[:5])
    with pytest.raises(ValueError, match="folds"):
        probe_accuracy(x, y, folds=1)


def test_battery_runs_each_measure_and_rejects_unknown():
    y = np.repeat([0, 1], 5)
    texts = ["a", "a2", "a", "a2", "a"] + ["b", "b2", "b", "b2", "b"]
    tasks = {
        "sts": (sts_spearman, (["a", "a"], ["a2", "b"], [5.0, 0.0])),
        "paws": (pair_auc, (["a", "a"], ["a2", "b"], [1, 0])),
        "fr-en": (retrieval_top1, (["a", "b"], ["a2", "b2"])),
        "sonde": (probe_accuracy, (texts, y)),
    }
    out = battery(encode, tasks)
    assert list(out) == list(tasks)
    assert out["paws"] == 1.0 and out["fr-en"] == 1.0 and out["sonde"] == 1.0
    with pytest.raises(ValueError, match="Mesure inconnue"):
        battery(encode, {"x": (len, ([1],))})
    with pytest.raises(ValueError, match="non vide"):
        battery(encode, {})
