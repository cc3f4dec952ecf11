"""Mauvaises entrées des fonctions publiques (runtime, assets, embeddings, metrics, outillage) : une erreur
française claire (TypeError ou ValueError) qui nomme le paramètre, jamais une trace anglaise ni un résultat faux."""

from pathlib import Path

import pandas as pd
import pytest

from atelier import metrics, parameters
from atelier.assets import data, models
from atelier.embeddings import api_client, cache
from atelier.runtime import config, display, fmt, measure, servers
from tools import build

CASES = [
    ("seed_everything(2**40)", lambda: config.seed_everything(2**40), ValueError, "seed"),
    ("seed_everything('a')", lambda: config.seed_everything("a"), TypeError, "seed"),
    ("config.secret('')", lambda: config.secret(""), ValueError, "var"),
    ("data.load(liste de parties)", lambda: data.load("xnli_fr", ["dev"]), TypeError, "split"),
    ("data.load(partie inconnue)", lambda: data.load("xnli_fr", "train"), ValueError, "Partie inconnue"),
    ("data.load(nom inconnu)", lambda: data.load("inconnu"), ValueError, "inconnu"),
    ("models.model_id(rôle inconnu)", lambda: models.model_id("x"), ValueError, "Rôle inconnu"),
    ("count_tokens(encoding inconnu)", lambda: api_client.count_tokens(["a"], encoding="inconnu"), ValueError,
     "encoding"),
    ("count_tokens(texte seul)", lambda: api_client.count_tokens("abc"), TypeError, "texts"),
    ("estimate_cost(prix NaN)", lambda: api_client.estimate_cost(10, float("nan")), ValueError, "price_per_million"),
    ("with_retries(non appelable)", lambda: api_client.with_retries(1), TypeError, "fn"),
    ("measure(NaN)", lambda: measure.measure(float("nan")), ValueError, "interval"),
    ("cache_key(modèle entier)", lambda: cache.cache_key(3, "a"), TypeError, "model"),
    ("EmbeddingCache(chemin entier)", lambda: cache.EmbeddingCache(3), TypeError, "path"),
    ("count_weights(chemin absent)", lambda: parameters.count_weights("/chemin/absent.npz"), ValueError, "source"),
    ("count_weights(pas un .npz)", lambda: parameters.count_weights("/chemin/absent"), ValueError, "source"),
    ("classification_scores(NaN)", lambda: metrics.classification_scores([0, 1], [0, float("nan")]), ValueError,
     "y_pred"),
    ("bootstrap_interval(level=95)", lambda: metrics.bootstrap_interval(len, [1, 2], level=95), ValueError, "level"),
    ("seed_interval([])", lambda: metrics.seed_interval([]), ValueError, "values"),
    ("wait_until_ready(pas un Server)", lambda: servers.wait_until_ready(3), TypeError, "server"),
    ("french_table(decimals=-1)", lambda: display.french_table(pd.DataFrame({"a": [1.5]}), decimals=-1), ValueError,
     "decimals"),
    ("nombre('a')", lambda: fmt.nombre("a"), TypeError, "x"),
    ("chapter_sources(dossier absent)", lambda: build.chapter_sources(Path("/dossier/absent")), ValueError,
     "book_dir"),
]


@pytest.mark.parametrize("name, call, error, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_french_error(name, call, error, fragment):
    with pytest.raises(error) as exc:
        call()
    message = str(exc.value)
    assert fragment in message, message
    assert any(w in message for w in ("reçu", "inconnu", "accept", "attendu", "doit", "introuvable")), message


def test_chapter_sources_with_no_chapter_is_an_error(tmp_path):
    (tmp_path / "01_vide.md").write_text("# Pas de kernelspec\n", "utf-8")
    with pytest.raises(ValueError, match="aucun chapitre"):
        build.chapter_sources(tmp_path)


def test_server_cli_speaks_french(capsys):
    from atelier.embeddings import serve

    with pytest.raises(SystemExit):
        serve.main(["--port", "abc"])
    err = capsys.readouterr().err
    assert "erreur : argument --port : valeur invalide" in err and "invalid int value" not in err
