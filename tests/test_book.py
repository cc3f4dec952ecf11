"""atelier.runtime.book et atelier.runtime.config : profil, graines, tampon, rendu plotly."""

import json

import pytest

from atelier.runtime import book, config


def test_profile_default_and_override(monkeypatch):
    monkeypatch.delenv("ATELIER_PROFILE", raising=False)
    monkeypatch.setattr(config, "_cuda_available", lambda: False)
    assert config.get_profile() == "light" and config.profile_source() == "défaut (pas de GPU)"
    monkeypatch.setattr(config, "_cuda_available", lambda: True)
    assert config.get_profile() == "full" and "GPU CUDA présent" in config.profile_source()
    monkeypatch.setenv("ATELIER_PROFILE", "FULL")
    assert config.get_profile() == "full"
    monkeypatch.setenv("ATELIER_PROFILE", "moyen")
    with pytest.raises(ValueError, match="profil connu"):
        config.get_profile()


def test_data_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_DATA", str(tmp_path))
    assert config.data_dir() == tmp_path.resolve()


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), ("0", TypeError),
                                        (True, TypeError)])
def test_seed_rejects_bad_values(bad, error):
    with pytest.raises(error, match="graine"):
        config.seed_everything(bad)


def test_seed_accepts_numpy_integers():
    import numpy as np

    assert config.seed_everything(np.int64(3)) == 3


def test_seed_makes_torch_deterministic():
    import torch

    config.seed_everything(3)
    a = torch.randn(4)
    config.seed_everything(3)
    assert torch.equal(a, torch.randn(4))


@pytest.mark.parametrize("bad", ["anatomie", "1_x", "01-anatomie", "01_Anatomie", 1])
def test_setup_rejects_bad_slug(bad):
    with pytest.raises(ValueError, match="Nom de chapitre"):
        book.setup(bad)


def test_stamp_writes_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ATELIER_BUILD", str(tmp_path))
    monkeypatch.setenv("ATELIER_PROFILE", "light")  # le même tampon sur une machine avec ou sans GPU
    ctx = book.setup("42_essai", seed=7)
    assert ctx.stamp() is None
    out = capsys.readouterr().out
    assert "profil « light »" in out and "graine 7" in out
    saved = json.loads((tmp_path / "runs" / "42_essai.json").read_text("utf-8"))
    assert saved["chapter"] == "42_essai" and saved["seed"] == 7
    assert saved["versions"]["torch"].startswith("2.")
    assert saved["peak_rss_mb"] > 0 and saved["commit"]


def test_plotly_renderer_is_offline_and_deterministic():
    import plotly.graph_objects as go
    import plotly.io as pio

    book.setup("42_essai")
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    b1 = pio.renderers["atelier"].to_mimebundle(fig.to_dict())
    b2 = pio.renderers["atelier"].to_mimebundle(fig.to_dict())
    html = b1["text/html"]
    assert b1 == b2  # même figure, même sortie : builds reproductibles
    assert "Plotly.newPlot" in html and "<script src" not in html and "cdn" not in html.lower()
    assert "application/vnd.plotly.v1+json" in b1
