"""Début et fin de chaque chapitre : réglages, rendu des figures, tampon d'exécution.

Chaque chapitre commence par ``ctx = setup("NN_slug")`` et finit par
``ctx.stamp()``. Le tampon (date, commit, profil, modèles, données, matériel,
versions, durée, pic de mémoire) est affiché en bas de la page et écrit dans
``_build/runs/NN_slug.json`` ; la page « Exécution du livre » les rassemble.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from atelier.runtime import config, display
from atelier.runtime.fmt import duree, nombre
from atelier.runtime.measure import peak_rss_mb

# Bibliothèques dont le tampon donne la version.
MAIN_LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "sentence-transformers",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "numpy",
    "plotly",
)

_SLUG = re.compile(r"^\d{2}_[a-z0-9_]+$")


def library_versions(names=MAIN_LIBRARIES) -> dict[str, str]:
    """Versions installées des bibliothèques principales (``absent`` sinon)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def git_commit() -> str:
    """Commit courant du dépôt (court), suivi de ``+modifs`` si l'arbre est modifié."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"],
            cwd=config.REPO_ROOT, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=config.REPO_ROOT, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "inconnu"
    return sha + ("+modifs" if dirty else "")


def hardware() -> dict[str, object]:
    """Processeur, nombre de cœurs, mémoire et GPU éventuel."""
    import psutil
    import torch

    info: dict[str, object] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _register_plotly_renderer() -> str:
    """Fait afficher les figures plotly partout, hors ligne et de façon reproductible.

    Sur le site, myst-nb garde la sortie ``text/html`` : un ``<div>`` et un
    appel à ``Plotly.newPlot``, la bibliothèque plotly.js étant servie une seule
    fois par le site (voir :mod:`tools.sphinx`) ; l'identifiant du ``<div>``
    dérive du contenu de la figure, pour que deux builds donnent la même page.
    Dans Jupyter, le même paquet de sorties porte aussi
    ``application/vnd.plotly.v1+json``. Sur Colab, on garde le moteur ``colab``.
    """
    import hashlib

    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer, PlotlyRenderer

    if "google.colab" in sys.modules:
        pio.renderers.default = "colab"
        return "colab"

    class BookRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            fig_json = json.dumps(fig_dict, sort_keys=True, default=str)
            div_id = "fig-" + hashlib.sha1(fig_json.encode()).hexdigest()[:12]
            html = pio.to_html(
                fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                div_id=div_id, default_width="100%", default_height=480,
                config={"responsive": True, "displaylogo": False}, validate=False,
            )
            bundle = {"text/html": html}
            bundle.update(PlotlyRenderer().to_mimebundle(fig_dict))
            return bundle

    pio.renderers["atelier"] = BookRenderer()
    pio.renderers.default = "atelier"
    pio.templates.default = "plotly_white"
    return "atelier"


@dataclass
class Chapter:
    """Contexte d'exécution d'un chapitre, renvoyé par :func:`setup`."""

    slug: str
    seed: int
    profile: str
    precision: str = "fp32"
    threads: int = 1
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    models: dict[str, str] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)

    def use_model(self, role: str) -> str:
        """Identifiant du modèle d'un rôle (chemin local ou nom sur le hub), noté pour le tampon."""
        from atelier.assets import models

        model = models.model_id(role)
        info = models.describe(role)
        self.models[role] = str(info.get("name", model))
        return model

    def use_data(self, name: str, split=None):
        """Charge un jeu de données par son nom (voir :mod:`atelier.assets.data`) et le note pour le tampon."""
        from atelier.assets import data

        label = name if split is None else f"{name} ({split})"
        if label not in self.data:
            self.data.append(label)
        return data.load(name, split)

    def record(self) -> dict[str, object]:
        """Le contenu du tampon, sous forme de dictionnaire."""
        return {
            "chapter": self.slug,
            "date": self.started_at,
            "commit": git_commit(),
            "profile": self.profile,
            "precision": self.precision,
            "threads": self.threads,
            "seed": self.seed,
            "models": self.models,
            "data": self.data,
            "hardware": hardware(),
            "python": platform.python_version(),
            "versions": library_versions(),
            "seconds": round(time.perf_counter() - self.started, 1),
            "peak_rss_mb": round(peak_rss_mb(), 0),
        }

    def stamp(self) -> None:
        """Affiche le tampon d'exécution du chapitre et l'écrit dans ``_build/runs``.

        Ne renvoie rien (la dernière cellule n'affiche que le texte) : le contenu
        est dans ``_build/runs/<chapitre>.json``, ou via :meth:`record`.
        """
        rec = self.record()
        runs = config.build_dir() / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        (runs / f"{self.slug}.json").write_text(json.dumps(rec, ensure_ascii=False, indent=1), encoding="utf-8")
        hw = rec["hardware"]
        gpu = hw["gpu"] or "aucun"
        models_txt = ", ".join(dict.fromkeys(rec["models"].values())) or "aucun"   # noms affichés, pas les rôles
        data_txt = ", ".join(rec["data"]) or "aucune"
        libs = ", ".join(f"{k} {v}" for k, v in rec["versions"].items())
        print(
            f"Page exécutée le {rec['date']} (commit {rec['commit']}), profil « {rec['profile']} », graine {rec['seed']}, "
            f"calcul en {rec['precision']} sur {rec['threads']} fils.\n"
            f"Modèles : {models_txt}.\nDonnées : {data_txt}.\n"
            f"Matériel : {hw['cores']} cœurs ({hw['cpu']}), {nombre(hw['ram_gb'], 1)} Gio de RAM, GPU : {gpu}.\n"
            f"Python {rec['python']} ; {libs}.\n"
            f"Durée d'exécution : {duree(rec['seconds'])} ; pic de mémoire du noyau : {nombre(rec['peak_rss_mb'])} Mio."
        )


def setup(slug: str, *, seed: int = 0) -> Chapter:
    """Prépare l'exécution d'un chapitre et affiche ce qu'elle utilise.

    Fixe les graines (``random``, NumPy, PyTorch), lit le profil
    (``ATELIER_PROFILE``), règle le nombre de fils de calcul PyTorch
    (:func:`atelier.runtime.config.apply_threads`), annonce la précision de calcul
    (:func:`atelier.runtime.config.compute_dtype`), installe le rendu plotly du livre
    et démarre le chronomètre du tampon.
    """
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise ValueError(
            f"Nom de chapitre invalide : {slug!r}. Attendu : deux chiffres, un tiret bas "
            "et un nom en minuscules, par exemple « 01_anatomie »."
        )
    config.seed_everything(seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    profile = config.get_profile()
    if profile == "light":
        # Rien ne doit venir du hub en profil léger : échouer vite plutôt qu'attendre le réseau.
        config.forbid_hub()
    _register_plotly_renderer()
    display.install()  # tableaux pandas et figures plotly à la française
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    threads = config.apply_threads()
    ctx = Chapter(slug=slug, seed=seed, profile=profile, precision=config.precision_name(), threads=threads)
    # Jamais le chemin local de la machine qui construit le livre : d'où viennent les données.
    data_txt = ("copie locale (dossier ATELIER_DATA) des jeux de données publiés, cités dans la bibliographie"
                if config.data_dir().is_dir() else "hub Hugging Face (pas de copie locale des jeux de données)")
    print(
        f"Chapitre {slug} : profil « {profile} » ({config.profile_source()}), graine {seed}.\n"
        f"Calcul : {config.precision_reason()} ; {threads} fils de calcul PyTorch.\n"
        f"Données : {data_txt}."
    )
    return ctx
