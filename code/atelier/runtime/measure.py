"""Mesurer le temps et la mémoire d'un bloc de code.

Utilisé par tous les chapitres qui affichent des durées, des débits ou des
pics de mémoire (chapitres « Embeddings », « CamemBERT », « LoRA et NF4 »,
« Affinage »), et par le tampon d'exécution (:mod:`atelier.runtime.book`).

Exemple ::

    with measure() as m:
        model(**batch)
    print(m.seconds, m.peak_mb)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

from atelier.runtime.checks import check_float


def disk_bytes(*paths) -> int:
    """Taille sur disque, en octets, de fichiers ou de dossiers (tout leur contenu).

    Un identifiant du hub Hugging Face (profil full) compte pour sa copie dans le
    cache local, sans téléchargement ; un chemin absent lève ``ValueError``.
    """
    from pathlib import Path

    total = 0
    for p in paths:
        path = Path(p)
        if not path.exists():
            try:
                from huggingface_hub import snapshot_download

                path = Path(snapshot_download(str(p), local_files_only=True))
            except Exception as exc:  # noqa: BLE001 - identifiant inconnu ou absent du cache
                raise ValueError(f"paths : {str(p)!r} n'est ni un fichier, ni un dossier, ni un modèle du cache du hub.") from exc
        total += path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total


def rss_mb() -> float:
    """Mémoire résidente actuelle du processus, en Mio."""
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Pic de mémoire résidente depuis le début du processus, en Mio."""
    import resource

    # ru_maxrss est en Kio sous Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Measurement:
    """Résultat d'un :func:`measure` : durée (s), mémoire avant, pic et après (Mio)."""

    seconds: float = 0.0
    start_mb: float = 0.0
    peak_mb: float = 0.0
    end_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def delta_peak_mb(self) -> float:
        """Surcoût maximal de mémoire pendant le bloc, par rapport au début."""
        return self.peak_mb - self.start_mb


class measure:
    """Gestionnaire de contexte : chronomètre et pic de RSS échantillonné.

    ``interval`` est la période d'échantillonnage de la mémoire, en secondes
    (le pic d'un bloc plus court que cela peut être sous-estimé).
    """

    def __init__(self, interval: float = 0.01):
        self.interval = check_float("interval", interval, min=0, min_open=True, max=60)  # secondes, NaN refusé
        self.result = Measurement()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        proc = psutil.Process(os.getpid())
        while not self.result._stop.wait(self.interval):
            self.result.peak_mb = max(self.result.peak_mb, proc.memory_info().rss / 2**20)

    def __enter__(self) -> Measurement:
        r = self.result
        r.start_mb = r.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return r

    def __exit__(self, *exc) -> None:
        r = self.result
        r.seconds = time.perf_counter() - self._t0
        r._stop.set()
        if self._thread is not None:
            self._thread.join()
        r.end_mb = rss_mb()
        r.peak_mb = max(r.peak_mb, r.end_mb)
