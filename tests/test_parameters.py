"""atelier.parameters.count_weights et atelier.runtime.measure.disk_bytes : les colonnes « paramètres » et « disque » du chapitre 02."""

import numpy as np
import pytest
from torch import nn

from atelier.parameters import count_weights
from atelier.runtime.measure import disk_bytes


def test_count_weights_module_npz_spacy_like(tmp_path):
    tied = nn.Linear(4, 3)
    model = nn.Sequential(tied, nn.ReLU(), tied)  # poids partagé : compté une fois
    assert count_weights(model) == 4 * 3 + 3
    path = tmp_path / "weights.npz"
    np.savez(path, a=np.zeros((2, 5)), b=np.zeros(7))
    assert count_weights(path) == 17 and count_weights(str(path)) == 17

    class Vectors:
        data = np.zeros((10, 3))

    class Vocab:
        vectors = Vectors()

    class SpacyLike:
        vocab = Vocab()

    assert count_weights(SpacyLike()) == 30
    assert count_weights(object()) is None


def test_disk_bytes_files_and_folders(tmp_path):
    (tmp_path / "d" / "sous").mkdir(parents=True)
    (tmp_path / "d" / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "d" / "sous" / "b.bin").write_bytes(b"y" * 28)
    (tmp_path / "c.bin").write_bytes(b"z" * 5)
    assert disk_bytes(tmp_path / "d") == 128
    assert disk_bytes(tmp_path / "d", tmp_path / "c.bin") == 133
    with pytest.raises(ValueError, match="ni un fichier"):
        disk_bytes(tmp_path / "absent")
