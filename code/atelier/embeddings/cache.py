"""Le cache d'embeddings du livre : un texte n'est encodé (ou payé) qu'une fois par modèle.

Utilisé par le chapitre « Embeddings : local ou API ? » (``02_embeddings`` :
encodeurs locaux et API), par :class:`atelier.embeddings.api_client.CachedEmbedder`
et par :class:`atelier.finetuning.FeatureCache` (chapitre 05).

Les vecteurs (float32) sont rangés dans une base SQLite, sur disque si l'on
donne un chemin (le cache survit au noyau), en mémoire sinon ; la clé est
l'empreinte SHA-256 de (modèle, texte).

>>> cache = EmbeddingCache()                     # en mémoire
>>> x = cache.encode("e5", textes, lambda todo: encode(todo, modele))   # seuls les textes nouveaux sont encodés
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["cache_key", "EmbeddingCache"]


def cache_key(model: str, text: str) -> str:
    """Empreinte SHA-256 de (modèle, texte) : la clé d'un vecteur dans le cache."""
    for name, value in (("model", model), ("text", text)):
        if not isinstance(value, str):
            raise TypeError(f"{name} doit être une chaîne ; reçu {type(value).__name__} ({value!r}).")
    return hashlib.sha256(model.encode("utf-8") + b"\x00" + text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vecteurs float32 indexés par (modèle, empreinte du texte), en SQLite : sur disque (``path``) ou en mémoire."""

    def __init__(self, path: str | os.PathLike | None = None):
        if path is not None and not isinstance(path, str | os.PathLike):
            raise TypeError(f"path doit être un chemin de fichier (str ou Path) ou None ; reçu {type(path).__name__}.")
        if path is None:
            self.path = None
            self._db = sqlite3.connect(":memory:")
        else:
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, model TEXT, dim INTEGER, vec BLOB)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def get_many(self, model: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Vecteurs en cache pour ``texts`` (``None`` là où il n'y en a pas)."""
        keys = [cache_key(model, t) for t in texts]
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self._db.execute(
                f"SELECT key, dim, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for key, dim, blob in rows:
                found[key] = np.frombuffer(blob, dtype="<f4", count=dim).copy()
        out = [found.get(k) for k in keys]
        hits = sum(v is not None for v in out)
        self.hits += hits
        self.misses += len(out) - hits
        return out

    def put_many(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Range un vecteur par texte (remplace un vecteur déjà présent)."""
        vectors = np.asarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"Il faut un vecteur par texte : {len(texts)} textes, tableau de forme {vectors.shape}.")
        self._db.executemany(
            "INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)",
            [(cache_key(model, t), model, int(v.shape[0]), v.tobytes()) for t, v in zip(texts, vectors)],
        )
        self._db.commit()

    def encode(self, model: str, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray],
               *, batch_size: int | None = None) -> np.ndarray:
        """Vecteurs ``(N, H)`` de ``texts``, dans l'ordre ; ``compute`` ne reçoit que les textes absents, sans doublons.

        ``compute(textes) -> (n, H)`` encode (ou achète) des textes ; avec
        ``batch_size``, il est appelé par lots et chaque lot est rangé dès qu'il
        revient (une coupure ne perd que le lot en cours).
        """
        if isinstance(texts, str):
            raise TypeError("texts doit être une liste de textes, pas une chaîne seule.")
        texts = list(texts)
        cached = self.get_many(model, texts)
        missing = list(dict.fromkeys(t for t, v in zip(texts, cached) if v is None))
        fresh: dict[str, np.ndarray] = {}
        step = batch_size or max(1, len(missing))
        for start in range(0, len(missing), step):
            batch = missing[start : start + step]
            vecs = np.asarray(compute(batch), dtype=np.float32)
            self.put_many(model, batch, vecs)
            fresh.update(zip(batch, vecs))
        return np.stack([v if v is not None else fresh[t] for t, v in zip(texts, cached)])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def size_bytes(self) -> int:
        """Taille du fichier SQLite (0 pour un cache en mémoire)."""
        return self.path.stat().st_size if self.path is not None and self.path.exists() else 0

    def clear(self) -> None:
        self._db.execute("DELETE FROM emb")
        self._db.commit()
        self.hits = self.misses = 0

    def close(self) -> None:
        self._db.close()
