"""Lecture et validation des dialogues : fichiers JSONL, listes en mémoire, messages d'une conversation.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``), à travers :mod:`atelier.lora_nf4.chat` (qui réexporte
ces fonctions) et :mod:`atelier.lora_nf4.sft` :

- :func:`load_dialogues` lit un fichier JSONL ``{"messages": [{"role",
  "content"}, …]}`` et refuse toute conversation mal formée (ou un texte qui
  n'est pas en UTF-8) en nommant le fichier et la ligne : aucune conversation
  n'est écartée en silence ;
- :func:`validate_dialogues` fait de même pour une liste en mémoire ;
- :func:`split_by_first_prompt` sépare entraînement et test sans qu'une même
  première question se retrouve des deux côtés ;
- :func:`check_messages` vérifie les messages passés au chat template.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

from atelier.runtime.checks import check_float, check_int, check_type

__all__ = ["ROLES", "load_dialogues", "validate_dialogues", "split_by_first_prompt", "check_messages"]

ROLES = ("system", "user", "assistant")


# ----------------------------------------------------------------------------
# Lecture et validation des dialogues
# ----------------------------------------------------------------------------
def _validate(conv, where: str) -> dict:
    """Vérifie une conversation ; ``where`` dit d'où elle vient (fichier et ligne)."""
    if not isinstance(conv, dict):
        raise ValueError(f"{where} : un objet JSON {{\"messages\": [...]}} est attendu, reçu {type(conv).__name__}.")
    messages = conv.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where} : la clé « messages » doit être une liste non vide de messages.")
    clean = []
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"{where}, message {i} : chaque message doit être un objet avec « role » et « content ».")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise ValueError(f"{where}, message {i} : rôle inconnu {role!r} ; rôles acceptés : {', '.join(ROLES)}.")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{where}, message {i} : le contenu est vide (ou n'est pas du texte).")
        if role == "system" and i != 1:
            raise ValueError(f"{where}, message {i} : un message « system » n'est permis qu'en première position.")
        clean.append({"role": role, "content": content})
    turns = clean[1:] if clean[0]["role"] == "system" else clean
    if not turns or turns[0]["role"] != "user":
        raise ValueError(f"{where} : la conversation doit commencer par un message « user » (après un éventuel « system »).")
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ValueError(
                f"{where}, message {i + 1 + (len(clean) - len(turns))} : « {expected} » attendu, reçu « {m['role']} » "
                "(les tours doivent alterner user / assistant)."
            )
    if turns[-1]["role"] != "assistant":
        raise ValueError(f"{where} : la conversation doit se terminer par une réponse « assistant ».")
    out = {"messages": clean}
    if "id" in conv:
        out = {"id": conv["id"], **out}
    return out


def load_dialogues(path) -> list[dict]:
    """Lit et valide un fichier JSONL de conversations (une par ligne).

    Chaque ligne : ``{"messages": [{"role": "user", "content": …},
    {"role": "assistant", "content": …}, …]}`` (``id`` facultatif). Rôles
    ``system`` (en tête seulement), ``user``, ``assistant`` ; tours alternés,
    début par ``user``, fin par ``assistant``, contenus non vides. Les lignes
    vides sont permises. Toute erreur lève ``ValueError`` avec le fichier et
    le numéro de ligne.
    """
    check_type("path", path, (str, os.PathLike))
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Fichier de dialogues introuvable : {path}.")
    conversations = []
    # Ligne par ligne en octets : une ligne qui n'est pas en UTF-8 est nommée (fichier et ligne).
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        where = f"{path.name}, ligne {lineno}"
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{where} : le texte n'est pas en UTF-8 (octet {exc.start + 1} de la ligne : "
                             f"{raw[exc.start:exc.start + 1]!r}, du Latin-1 peut-être) ; réenregistrez le fichier "
                             "en UTF-8.") from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where} : JSON invalide ({exc.msg}, colonne {exc.colno}).") from None
        except RecursionError:
            raise ValueError(f"{where} : JSON imbriqué trop profondément pour être lu.") from None
        conversations.append(_validate(record, where))
    if not conversations:
        raise ValueError(f"{path.name} : aucune conversation dans le fichier.")
    return conversations


def validate_dialogues(conversations: Sequence, source: str = "dialogues") -> list[dict]:
    """Même validation que :func:`load_dialogues` pour une liste déjà en mémoire."""
    if isinstance(conversations, (str, bytes)) or not isinstance(conversations, Sequence):
        raise TypeError(f"Une liste de conversations est attendue, reçu {type(conversations).__name__}.")
    if not conversations:
        raise ValueError(f"{source} : la liste de conversations est vide.")
    return [_validate(c, f"{source}, conversation {i}") for i, c in enumerate(conversations, start=1)]


def _first_prompt(conv: dict) -> str:
    first = next(m["content"] for m in conv["messages"] if m["role"] == "user")
    return " ".join(first.split()).casefold()


def split_by_first_prompt(conversations: Sequence[dict], test_fraction: float = 0.1, seed: int = 0):
    """Sépare (entraînement, test) par première question : aucune fuite entre les deux.

    Les conversations qui partagent la même première question (les branches
    d'un même arbre OASST) vont toutes du même côté.
    """
    if isinstance(conversations, (str, bytes)) or not isinstance(conversations, Sequence) or not all(
            isinstance(c, dict) and isinstance(c.get("messages"), list) for c in conversations):
        raise TypeError("conversations doit être une liste de conversations {'messages': [...]} "
                        "(celles que renvoie load_dialogues).")
    test_fraction = check_float("test_fraction", test_fraction, min=0, max=1, min_open=True, max_open=True)
    seed = check_int("seed", seed, min=0)
    prompts = sorted({_first_prompt(c) for c in conversations})
    if len(prompts) < 2:
        raise ValueError("Il faut au moins deux premières questions différentes pour séparer entraînement et test.")
    random.Random(seed).shuffle(prompts)
    n_test = max(1, round(test_fraction * len(prompts)))
    test_prompts = set(prompts[:n_test])
    train = [c for c in conversations if _first_prompt(c) not in test_prompts]
    test = [c for c in conversations if _first_prompt(c) in test_prompts]
    return train, test


def check_messages(messages) -> list[dict]:
    """Vérifie une liste de messages ``{"role", "content"}`` (rôles de :data:`ROLES`, contenu textuel) ; la renvoie.

    Plus souple que :func:`load_dialogues` : la liste peut finir par une question (on attend alors la réponse).
    """
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages doit être une liste de messages {{'role': …, 'content': …}} ; "
                        f"reçu {type(messages).__name__}.")
    if not messages:
        raise ValueError("messages est vide : donnez au moins un message {'role': 'user', 'content': …}.")
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str):
            raise ValueError(f"messages, message {i} : un objet avec « role » et « content » (texte) est attendu ; "
                             f"reçu {m!r}"[:300] + ".")
        if m["role"] not in ROLES:
            raise ValueError(f"messages, message {i} : rôle inconnu {m['role']!r} ; rôles acceptés : {', '.join(ROLES)}.")
    return list(messages)
