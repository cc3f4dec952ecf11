"""Ce que l'on garde d'un affinage : réponses aux questions de test, leur langue, l'adaptateur à télécharger.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``) :

- :func:`with_system_prompt` met un message système (français par défaut) en
  tête de chaque conversation qui n'en a pas : sans lui, le chat template de
  SmolLM2 insère son message système anglais par défaut dans chaque exemple ;
- :func:`reply_batch` répond à plusieurs questions d'un coup (génération
  gloutonne par lots de longueurs voisines, remplissage à gauche) ;
- :func:`dequantize_4bit_layers` déquantifie une fois pour toutes les couches
  NF4 d'un modèle entraîné, pour générer vite avec les mêmes poids ;
- :func:`is_french` et :func:`french_share` : une heuristique simple et
  déclarée pour dire si une réponse est en français (plus de mots-outils
  français que de mots-outils anglais), sans modèle de langue ni réseau ;
- :func:`zip_adapter` range un adaptateur sauvegardé dans une archive zip,
  prête à télécharger.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from atelier.lora_nf4.chat import render, validate_dialogues
from atelier.runtime.checks import check_int

__all__ = [
    "FRENCH_SYSTEM_PROMPT",
    "FRENCH_WORDS",
    "ENGLISH_WORDS",
    "with_system_prompt",
    "reply_batch",
    "language_counts",
    "is_french",
    "french_share",
    "dequantize_4bit_layers",
    "zip_adapter",
]

FRENCH_SYSTEM_PROMPT = "Tu es un assistant utile qui répond en français."

# Mots-outils fréquents, choisis pour n'exister que dans une des deux langues
# (ni « a », ni « on », ni « or », ni « son », qui existent dans les deux).
FRENCH_WORDS = frozenset(
    "le la les des du un une est et en que qui pour dans pas ce cette ces il elle ils elles je vous nous sur avec "
    "au aux sont plus mais ses sa leur leurs être avoir très peut fait comme où aussi tout tous été".split()
)
ENGLISH_WORDS = frozenset(
    "the and is are of to that it for with you this be was not can have your will by from an which they their "
    "there what would about been has were these those its also all".split()
)
_WORD = re.compile(r"[a-zàâäçéèêëîïôöùûüÿœæ]+")


def with_system_prompt(conversations: Sequence[dict], system_prompt: str = FRENCH_SYSTEM_PROMPT,
                       replace: bool = False) -> list[dict]:
    """Copie des conversations validées, ``system_prompt`` en premier message.

    Une conversation qui a déjà son message système le garde, sauf si
    ``replace`` est vrai. Les conversations d'origine ne sont pas modifiées.
    """
    if not isinstance(system_prompt, str) or not system_prompt.strip():
        raise ValueError("system_prompt doit être un texte non vide.")
    if not isinstance(replace, bool):
        raise TypeError(f"replace doit être un booléen, reçu {type(replace).__name__}.")
    out = []
    for conv in validate_dialogues(conversations, source="with_system_prompt"):
        if conv["messages"][0]["role"] == "system" and not replace:
            out.append(conv)
            continue
        turns = [m for m in conv["messages"] if m["role"] != "system"]
        out.append({**conv, "messages": [{"role": "system", "content": system_prompt}, *turns]})
    return out


@torch.no_grad()
def reply_batch(model, tokenizer, prompts: Sequence[Sequence[dict]], max_new_tokens: int = 48,
                batch_size: int = 32) -> list[str]:
    """Réponses gloutonnes de l'assistant à plusieurs débuts de conversation, ``batch_size`` à la fois.

    Chaque élément de ``prompts`` est une liste de messages qui se termine par
    un message ``user``. Les invites sont remplies **à gauche** (la génération
    continue à droite de chaque invite) ; le texte renvoyé s'arrête au jeton
    de fin de tour.
    """
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    if isinstance(prompts, (str, bytes)) or not prompts:
        raise ValueError("prompts doit être une liste non vide de conversations (listes de messages).")
    for i, messages in enumerate(prompts, start=1):
        if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
            raise ValueError(f"prompts, conversation {i} : le dernier message doit être un message « user ».")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    was_training = model.training
    model.eval()
    all_ids = [tokenizer(render(tokenizer, m, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for m in prompts]
    order = sorted(range(len(all_ids)), key=lambda i: len(all_ids[i]))  # lots de longueurs voisines : peu de remplissage
    answers: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        encoded = [all_ids[i] for i in rows]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (B, T), rempli à gauche
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, e in enumerate(encoded):
            ids[row, width - len(e):] = torch.tensor(e)
            mask[row, width - len(e):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad_id)
        for i, row in zip(rows, out):
            answers[i] = tokenizer.decode(row[width:], skip_special_tokens=True).strip()
    model.train(was_training)
    return [answers[i] for i in range(len(prompts))]


def dequantize_4bit_layers(model, dtype=torch.float32) -> int:
    """Remplace, sur place, chaque couche 4 bits de bitsandbytes par une ``nn.Linear`` aux poids déquantifiés.

    Le modèle calcule alors la même fonction (poids NF4 déquantifiés, plus les
    adaptateurs LoRA qui l'enveloppent), mais ne redéquantifie plus ses poids
    à chaque passage : la génération jeton par jeton redevient rapide sur CPU.
    Renvoie le nombre de couches remplacées.
    """
    import bitsandbytes as bnb

    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype doit être un type flottant de torch, reçu {dtype!r}.")
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if isinstance(child, bnb.nn.Linear4bit)]
    for parent, name, child in targets:
        weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state).to(dtype)
        linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                 dtype=dtype, device=weight.device)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if child.bias is not None:
                linear.bias.copy_(child.bias.to(dtype))
        linear.requires_grad_(False)
        setattr(parent, name, linear)
    return len(targets)


def language_counts(text: str) -> tuple[int, int]:
    """(mots-outils français, mots-outils anglais) de ``text``, en minuscules, mot par mot."""
    if not isinstance(text, str):
        raise TypeError(f"text doit être une chaîne, reçu {type(text).__name__}.")
    words = _WORD.findall(text.lower())
    return sum(w in FRENCH_WORDS for w in words), sum(w in ENGLISH_WORDS for w in words)


def is_french(text: str) -> bool:
    """Heuristique déclarée : ``text`` a plus de mots-outils français que de mots-outils anglais.

    Un texte sans aucun mot-outil (« Paris. ») n'est pas compté comme français.
    """
    fr, en = language_counts(text)
    return fr > en


def french_share(texts: Sequence[str]) -> float:
    """Part des textes de ``texts`` jugés en français par :func:`is_french` (entre 0 et 1)."""
    if isinstance(texts, str) or not texts:
        raise ValueError("texts doit être une liste non vide de textes.")
    return sum(is_french(t) for t in texts) / len(texts)


def zip_adapter(folder, archive=None) -> Path:
    """Range le dossier d'un adaptateur sauvegardé dans ``archive`` (``<dossier>.zip`` par défaut) ; renvoie son chemin."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(f"{folder} n'est pas un adaptateur peft sauvegardé : adapter_config.json manque.")
    archive = Path(archive) if archive is not None else folder.with_suffix(".zip")
    if archive.suffix != ".zip":
        raise ValueError(f"archive doit se terminer par .zip, reçu {archive.name}.")
    made = shutil.make_archive(str(archive.with_suffix("")), "zip", root_dir=folder.parent, base_dir=folder.name)
    return Path(made)
