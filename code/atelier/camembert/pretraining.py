"""Expérience contrôlée : pré-entraîner un petit RoBERTa et un petit DeBERTa-v2.

Utilisé par le chapitre « CamemBERT ou CamemBERTa ? L'attention
désentrelacée » (``book/03_camembert.md``), section « Une expérience
contrôlée ».

Deux encodeurs de même largeur et profondeur, même tokeniseur, mêmes lots
masqués dans le même ordre, même graine, même optimiseur : seule change la
façon de coder les positions (positions absolues ajoutées à l'entrée pour
RoBERTa, attention désentrelacée à positions relatives pour DeBERTa-v2). On
compare les courbes de perte de validation du modèle de langue masqué (MLM).

* :func:`train_tokenizer` — BPE entraîné sur le corpus (``tokenizers``) ;
* :func:`make_blocks` — texte → blocs de ``seq_len`` jetons ``[CLS] … [SEP]`` ;
* :func:`encoder_configs` — les deux configurations jumelles ;
* :func:`masked_batches` — lots masqués (15 %) tirés une fois pour toutes ;
* :func:`pretrain` — boucle d'entraînement, perte de validation régulière ;
* :func:`unigram_loss` — le palier d'un prédicteur qui ignore le contexte ;
* :func:`mlm_loss` (avec ``offset``) — perte de validation, positions décalées au besoin ;
* :func:`tokens_to_floor` — jetons vus avant de passer sous ce palier ;
* :func:`article_probe` — sonde linguistique : retrouver l'article masqué.
"""

from __future__ import annotations

import math
import time

import torch

from atelier.runtime.checks import check_float, check_int, check_type
from atelier.runtime.config import default_device, model_device, to_device

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ARTICLES = ("le", "la", "les", "un", "une", "des", "du")  # articles de la sonde linguistique


def train_tokenizer(text: str, vocab_size: int = 4000):
    """Tokeniseur BPE (``tokenizers``) entraîné sur ``text``, enveloppé en ``PreTrainedTokenizerFast``.

    Normalisation NFC, apostrophe typographique ’ ramenée à ', découpage à la
    SentencePiece (``▁`` marque le début d'un mot).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if not isinstance(text, str) or len(text) < 1000:
        raise ValueError("text doit être une chaîne d'au moins 1 000 caractères (le corpus d'entraînement).")
    if not isinstance(vocab_size, int) or not 100 <= vocab_size <= 100_000:
        raise ValueError(f"vocab_size doit être un entier entre 100 et 100 000, reçu {vocab_size!r}.")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace("’", "'")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  show_progress=False)
    lines = (line for line in text.splitlines() if line.strip())
    tok.train_from_iterator(lines, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def make_blocks(tokenizer, text: str, seq_len: int = 64) -> torch.Tensor:
    """Découpe le texte tokenisé en blocs (N, seq_len) : ``[CLS]`` + ``seq_len − 2`` jetons + ``[SEP]``.

    Les paragraphes sont mis bout à bout ; le reste final trop court est jeté.
    """
    if not isinstance(seq_len, int) or seq_len < 8:
        raise ValueError(f"seq_len doit être un entier ≥ 8, reçu {seq_len!r}.")
    check_type("text", text, str)
    if not callable(tokenizer) or getattr(tokenizer, "cls_token_id", None) is None:
        raise TypeError(f"tokenizer doit être un tokeniseur avec [CLS] et [SEP] (train_tokenizer), "
                        f"reçu {type(tokenizer).__name__}.")
    paragraphs = [p for p in text.split("\n\n") if p.strip()] if "\n\n" in text else [text]
    ids: list[int] = []
    for enc in tokenizer(paragraphs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
    body = seq_len - 2
    n = len(ids) // body
    if n == 0:
        raise ValueError(f"Texte trop court : {len(ids)} jetons pour des blocs de {seq_len}.")
    x = torch.tensor(ids[: n * body]).view(n, body)  # (N, seq_len - 2)
    cls = torch.full((n, 1), tokenizer.cls_token_id)
    sep = torch.full((n, 1), tokenizer.sep_token_id)
    return torch.cat([cls, x, sep], dim=1)  # (N, seq_len)


def encoder_configs(vocab_size: int, *, seq_len: int = 64, hidden: int = 128, layers: int = 4, heads: int = 4,
                    intermediate: int = 512, position_buckets: int = 32, pad_token_id: int = 0,
                    max_positions: int | None = None) -> dict:
    """Deux configurations jumelles ``{"RoBERTa": …, "DeBERTa-v2": …}`` (MLM).

    Mêmes largeur, profondeur, têtes, FFN, vocabulaire, dropout. RoBERTa :
    positions absolues apprises, ajoutées à l'entrée. DeBERTa-v2 (réglages de
    CamemBERTa) : pas de position absolue en entrée, attention c2p + p2c, clés
    partagées, seaux logarithmiques, table de positions normalisée ; la
    convolution de DeBERTa-v2 est désactivée pour que seule la gestion des
    positions diffère.

    ``max_positions`` (``seq_len`` par défaut) : taille de la table de
    positions absolues de RoBERTa, plus grande que ``seq_len`` pour évaluer
    sur des blocs plus longs ou décalés (ses lignes au-delà de ``seq_len``
    ne sont jamais entraînées). Les seaux de DeBERTa-v2 restent réglés sur
    ``seq_len`` ; au-delà, les distances partagent le seau extrême.
    """
    from transformers import DebertaV2Config, RobertaConfig

    vocab_size = check_int("vocab_size", vocab_size, min=8)
    seq_len, layers = check_int("seq_len", seq_len, min=2), check_int("layers", layers, min=1)
    hidden, heads = check_int("hidden", hidden, min=1), check_int("heads", heads, min=1)
    check_int("intermediate", intermediate, min=1)
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) doit être un multiple de heads ({heads}) : chaque tête a hidden / heads "
                         "dimensions.")
    check_int("pad_token_id", pad_token_id, min=0, max=vocab_size - 1)
    max_positions = seq_len if max_positions is None else max_positions
    if not isinstance(max_positions, int) or max_positions < seq_len:
        raise ValueError(f"max_positions doit être un entier ≥ seq_len ({seq_len}), reçu {max_positions!r}.")

    common = dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=intermediate, hidden_act="gelu", hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, initializer_range=0.02, pad_token_id=pad_token_id)
    roberta = RobertaConfig(max_position_embeddings=max_positions + pad_token_id + 1, type_vocab_size=1,
                            layer_norm_eps=1e-7, bos_token_id=None, eos_token_id=None, **common)
    deberta = DebertaV2Config(max_position_embeddings=max_positions, type_vocab_size=0, layer_norm_eps=1e-7,
                              relative_attention=True, position_buckets=position_buckets,
                              max_relative_positions=seq_len, norm_rel_ebd="layer_norm", share_att_key=True,
                              pos_att_type="p2c|c2p", position_biased_input=False, conv_kernel_size=0,
                              **common)
    return {"RoBERTa": roberta, "DeBERTa-v2": deberta}


def build_model(config):
    """Modèle MLM (poids aléatoires) à partir d'une configuration RoBERTa ou DeBERTa-v2, sur le GPU s'il y en a un."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_config(config)  # poids tirés sur CPU : mêmes valeurs partout
    device = default_device()
    return model.to(device) if device.type != "cpu" else model


def masked_batches(blocks: torch.Tensor, tokenizer, batch_size: int, seed: int,
                   mlm_probability: float = 0.15) -> list[dict[str, torch.Tensor]]:
    """Lots ``{"input_ids", "attention_mask", "labels"}`` masqués une fois pour toutes.

    Masquage BERT classique (``DataCollatorForLanguageModeling`` : 15 % des
    jetons, dont 80 % → ``[MASK]``, 10 % → jeton au hasard, 10 % inchangés),
    avec une graine fixe : les deux modèles voient exactement les mêmes lots.
    """
    from transformers import DataCollatorForLanguageModeling

    if not isinstance(blocks, torch.Tensor) or blocks.is_floating_point() or blocks.dtype == torch.bool:
        kind = f"un tenseur {blocks.dtype}" if isinstance(blocks, torch.Tensor) else type(blocks).__name__
        raise TypeError(f"blocks doit être un tenseur d'identifiants entiers (N, T) (make_blocks) ; reçu {kind}.")
    if blocks.dim() != 2 or blocks.size(0) < 1:
        raise ValueError("blocks doit être un tenseur (N, T) non vide.")
    seed = check_int("seed", seed, min=0)
    check_float("mlm_probability", mlm_probability, min=0, max=1, min_open=True, max_open=True)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size doit être un entier ≥ 1, reçu {batch_size!r}.")
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)
    order = torch.randperm(blocks.size(0), generator=torch.Generator().manual_seed(seed))
    out = []
    for start in range(0, blocks.size(0) - batch_size + 1, batch_size):
        rows = blocks[order[start:start + batch_size]]  # (B, T)
        batch = collator([{"input_ids": r} for r in rows])
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        out.append(dict(batch))
    return out


def unigram_loss(train_blocks: torch.Tensor, batches: list[dict[str, torch.Tensor]], vocab_size: int) -> float:
    """Perte d'un prédicteur qui ignore le contexte : fréquences des jetons d'entraînement (lissage +1).

    Entropie croisée moyenne, en nats, sur les jetons masqués de ``batches`` :
    le palier qu'un modèle MLM doit franchir pour montrer qu'il lit le contexte.
    """
    vocab_size = check_int("vocab_size", vocab_size, min=1)
    if not batches:
        raise ValueError("batches est vide : donnez les lots de validation (masked_batches).")
    if not isinstance(train_blocks, torch.Tensor) or train_blocks.is_floating_point() or (
            train_blocks.numel() and int(train_blocks.max()) >= vocab_size):
        raise ValueError(f"train_blocks doit être un tenseur d'identifiants entiers dans [0, {vocab_size - 1}].")
    counts = torch.bincount(train_blocks.reshape(-1), minlength=vocab_size).double() + 1.0
    logp = torch.log(counts / counts.sum())  # (V,)
    labels = torch.cat([b["labels"].reshape(-1) for b in batches])
    labels = labels[labels != -100]
    if labels.numel() == 0:
        raise ValueError("Aucun jeton masqué dans les lots de validation.")
    return float(-logp[labels].mean())


def position_ids(model, batch_size: int, length: int, offset: int = 0) -> torch.Tensor:
    """Positions absolues (B, T) que le modèle utiliserait, décalées de ``offset``, sur le périphérique du modèle.

    RoBERTa numérote à partir de ``pad_token_id + 1`` ; DeBERTa-v2 (sans
    position absolue en entrée) reçoit ces indices et les ignore.
    """
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset doit être un entier ≥ 0, reçu {offset!r}.")
    start = model.config.pad_token_id + 1 if model.config.model_type in ("roberta", "camembert") else 0
    return (torch.arange(length, device=model_device(model)) + start + offset).expand(batch_size, length)  # (B, T)


@torch.no_grad()
def mlm_loss(model, batches: list[dict[str, torch.Tensor]], offset: int = 0) -> float:
    """Perte MLM moyenne (par jeton masqué) sur des lots fixes, en mode évaluation.

    ``offset`` : décale toutes les positions absolues (test de décalage) ; le
    texte et les masques ne changent pas. Les lots vont sur le périphérique du modèle.
    """
    was = model.training
    model.eval()
    total, count, device = 0.0, 0, model_device(model)
    for b in batches:
        n = int((b["labels"] != -100).sum())  # compté sur le lot d'origine, sans attendre le GPU
        extra = {"position_ids": position_ids(model, *b["input_ids"].shape, offset)} if offset else {}
        total += float(model(**to_device(b, device), **extra).loss) * n
        count += n
    model.train(was)
    return total / max(count, 1)


def tokens_to_floor(history: list[dict], floor: float) -> int | None:
    """Jetons d'entraînement vus à la première évaluation sous ``floor`` (``None`` si jamais)."""
    check_float("floor", floor)
    if isinstance(history, (str, dict)) or not all(isinstance(r, dict) and {"tokens", "val_loss"} <= set(r)
                                                  for r in history):
        raise TypeError("history doit être la liste des évaluations de pretrain() ({'tokens', 'val_loss', …}).")
    below = [r["tokens"] for r in history if r["val_loss"] < floor]
    return int(below[0]) if below else None


def article_ids(tokenizer, words=ARTICLES) -> list[int]:
    """Identifiants des articles ``words`` comme mots entiers (``▁le``…) ; erreur si l'un manque."""
    ids = [tokenizer.convert_tokens_to_ids("▁" + w) for w in words]
    missing = [w for w, i in zip(words, ids) if i in (None, tokenizer.unk_token_id)]
    if missing:
        raise ValueError(f"Articles absents du vocabulaire comme mots entiers : {missing}.")
    return ids


@torch.no_grad()
def article_probe(model, blocks: torch.Tensor, tokenizer, words=ARTICLES, batch_size: int = 64,
                  return_proba: bool = False):
    """Sonde linguistique : chaque article de ``blocks`` est masqué, le modèle choisit parmi ``words``.

    Tous les articles d'un bloc sont masqués ensemble (le reste du texte est
    visible) ; la prédiction est l'article de plus forte probabilité.
    Renvoie ``(vrais, prédits)``, deux tableaux d'indices dans ``words`` ; avec
    ``return_proba=True``, aussi la probabilité que le modèle donne à l'article
    juste, softmax restreint aux seuls ``words`` (une mesure continue, qui
    bouge avant que l'article le plus probable ne change). Les
    entrées du modèle vont sur son périphérique ; masques et vérités restent sur celui de ``blocks``.
    """
    ids = torch.tensor(article_ids(tokenizer, words), device=blocks.device)
    device = model_device(model)
    was = model.training
    model.eval()
    truth, pred, proba = [], [], []
    for start in range(0, blocks.size(0), batch_size):
        x = blocks[start:start + batch_size].clone()  # (B, T)
        where = torch.isin(x, ids)  # (B, T) : positions des articles
        if not where.any():
            continue
        truth.append((x[where][:, None] == ids[None, :]).float().argmax(1))
        x[where] = tokenizer.mask_token_id
        x = x.to(device)
        logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits  # (B, T, V)
        scores = logits[where.to(logits.device)][:, ids.to(logits.device)].float()  # (n, len(words))
        pred.append(scores.argmax(1).cpu())
        proba.append(torch.softmax(scores, dim=1).cpu().gather(1, truth[-1].cpu()[:, None])[:, 0])  # (n,)
    model.train(was)
    if not truth:
        raise ValueError("Aucun article dans les blocs : impossible de sonder.")
    out = torch.cat(truth).cpu().numpy(), torch.cat(pred).numpy()
    return (*out, torch.cat(proba).numpy()) if return_proba else out


def pretrain(model, train_batches, val_batches, *, lr: float = 1e-3, warmup: int = 20, eval_every: int = 20,
             weight_decay: float = 0.01, seed: int = 0, desc: str = "pré-entraînement",
             progress: bool = True) -> list[dict]:
    """Entraîne ``model`` sur ``train_batches`` (une passe) ; renvoie l'historique.

    AdamW, montée linéaire du taux d'apprentissage sur ``warmup`` pas puis
    décroissance linéaire jusqu'à 0. Tous les ``eval_every`` pas (et à la fin),
    perte sur les lots de validation. Chaque ligne d'historique :
    ``step``, ``tokens`` (jetons vus), ``train_loss`` (moyenne depuis la
    dernière évaluation), ``val_loss``, ``seconds``. ``progress=False`` masque
    la barre de progression. Les lots vont sur le périphérique du modèle.
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not train_batches or not val_batches:
        raise ValueError("Il faut au moins un lot d'entraînement et un lot de validation.")
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = get_linear_schedule_with_warmup(opt, warmup, len(train_batches))
    hist = [{"step": 0, "tokens": 0, "train_loss": math.nan, "val_loss": mlm_loss(model, val_batches), "seconds": 0.0}]
    model.train()
    t0, running, n_run, tokens, device = time.perf_counter(), 0.0, 0, 0, model_device(model)
    for step, batch in enumerate(tqdm(train_batches, desc=desc, unit="pas", disable=not progress), start=1):
        batch = to_device(batch, device)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        running, n_run = running + loss.item(), n_run + 1
        tokens += batch["input_ids"].numel()
        if step % eval_every == 0 or step == len(train_batches):
            hist.append({"step": step, "tokens": tokens, "train_loss": running / n_run,
                         "val_loss": mlm_loss(model, val_batches), "seconds": time.perf_counter() - t0})
            running, n_run = 0.0, 0
    model.eval()
    return hist
