"""Sonde linéaire puis affinage (*LP-FT*) : une tête de classification qui part de la sonde.

Utilisé par le chapitre « CamemBERT ou CamemBERTa ? L'attention
désentrelacée » (``book/03_camembert.md``), profil ``light`` :

* :class:`MeanPoolNLI` : encodeur + moyenne des jetons + couche linéaire,
  un modèle que le ``Trainer`` de Hugging Face entraîne tel quel (il rend
  la perte et les logits) ;
* :func:`pooled_features` : les vecteurs de la sonde (moyenne des jetons de
  l'encodeur gelé) et, du même passage, ceux d'une couche intermédiaire ;
* :class:`CachedPairs` et :func:`pad_cached` : les vecteurs d'une couche
  intermédiaire de l'encodeur gelé, calculés une fois (pendant la sonde) ;
  quand LoRA ne touche que les couches du haut, l'entraînement repart de
  là au lieu de refaire les couches gelées à chaque pas ;
* la tête part de la sonde : :func:`atelier.probe.head_from_probe` recopie
  une sonde ``StandardScaler`` + ``LogisticRegression`` de scikit-learn dans
  sa couche linéaire, normalisation comprise ;
* :func:`trainable_state`, :func:`restore_state` : garder et remettre les
  poids entraînables d'un pas (pour pouvoir retenir le pas 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from atelier.embeddings.pooling import mean_pool
from atelier.runtime.checks import check_int, check_type

__all__ = ["MeanPoolNLI", "pooled_features", "CachedPairs", "pad_cached", "trainable_state", "restore_state"]


class MeanPoolNLI(nn.Module):
    """Encodeur (``AutoModel``) + moyenne des vrais jetons de la paire + couche linéaire vers ``n_classes``.

    ``forward`` accepte ce que produit ``DataCollatorWithPadding`` (``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``labels``) et rend un
    ``SequenceClassifierOutput`` : perte d'entropie croisée si ``labels`` est
    donné, logits (B, ``n_classes``). Les vecteurs moyennés sont ceux de
    :func:`pooled_features` (sonde linéaire).

    Avec ``start_layer=k``, ``forward`` accepte aussi ``hidden_states`` (B, T, C),
    les vecteurs **à l'entrée** de la couche ``k`` (``hidden_states[k]`` de
    ``output_hidden_states=True``), à la place d'``input_ids`` : seules les
    couches ``k`` et suivantes sont alors calculées. Les couches d'avant
    doivent être gelées (sans LoRA), sinon ces vecteurs seraient périmés.
    """

    def __init__(self, encoder: nn.Module, n_classes: int = 3, start_layer: int | None = None):
        super().__init__()
        check_type("encoder", encoder, nn.Module)
        check_int("n_classes", n_classes, min=2)
        hidden = getattr(getattr(encoder, "config", None), "hidden_size", None)
        if not isinstance(hidden, int):
            raise ValueError(f"encoder doit avoir un config.hidden_size entier (un AutoModel), reçu {type(encoder).__name__}.")
        if start_layer is not None:
            layers = getattr(getattr(encoder, "encoder", None), "layer", None)
            if layers is None or not hasattr(encoder, "_create_attention_masks"):
                raise ValueError(f"start_layer demande un encodeur de type BERT (encoder.layer), reçu {type(encoder).__name__}.")
            check_int("start_layer", start_layer, min=0, max=len(layers) - 1)
        self.encoder = encoder
        self.config = encoder.config  # lu par peft et par le Trainer
        self.start_layer = start_layer
        self.head = nn.Linear(hidden, n_classes)

    def top(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Les couches ``start_layer`` et suivantes, à partir des vecteurs gardés : (B, T, C) → (B, T, C)."""
        mask, _ = self.encoder._create_attention_masks(attention_mask=attention_mask, encoder_attention_mask=None,
                                                       embedding_output=hidden_states, encoder_hidden_states=None,
                                                       past_key_values=None)   # le masque que construit BertModel
        for layer in self.encoder.encoder.layer[self.start_layer:]:
            hidden_states = layer(hidden_states, attention_mask=mask)   # (B, T, C)
        return hidden_states

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, hidden_states=None, labels=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        if hidden_states is not None:
            if self.start_layer is None:
                raise ValueError("hidden_states demande un modèle construit avec start_layer.")
            hidden = self.top(hidden_states, attention_mask)   # (B, T, C)
        else:
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, T, C)
        logits = self.head(mean_pool(hidden, attention_mask))  # (B, 3)
        loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


@torch.no_grad()
def pooled_features(model, tokenizer, premises: Sequence[str], hypotheses: Sequence[str],
                    max_length: int = 128, batch_size: int = 64, keep_layer: int | None = None):
    """Moyenne des vecteurs de sortie des vrais jetons de chaque paire (tokenisée ensemble), encodeur gelé : (N, C).

    ``model`` : un encodeur nu (``AutoModel``) ou un classifieur (on lit ``base_model``) ; pour une sonde linéaire.
    Avec ``keep_layer=k``, renvoie aussi, du même passage, les vecteurs à l'entrée de la couche ``k``
    de chaque paire, sans remplissage (liste de N tenseurs (T_i, C), sur CPU) : ce que
    :class:`MeanPoolNLI` reprend quand seules les couches ``k`` et suivantes
    s'entraînent.
    """
    if isinstance(premises, str) or isinstance(hypotheses, str):
        raise TypeError("premises et hypotheses doivent être des listes de chaînes (utilisez [texte] pour une paire).")
    premises, hypotheses = list(premises), list(hypotheses)
    if len(premises) != len(hypotheses) or not premises:
        raise ValueError(f"Il faut autant de prémisses que d'hypothèses, et au moins une ({len(premises)} / {len(hypotheses)}).")
    encoder = getattr(model, "base_model", model)
    if keep_layer is not None:
        check_int("keep_layer", keep_layer, min=0, max=encoder.config.num_hidden_layers - 1)
    was_training = encoder.training
    encoder.eval()
    enc = tokenizer(premises, hypotheses, truncation=True, max_length=max_length)
    order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    device = next(encoder.parameters()).device
    out, kept = None, [None] * len(premises)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        feats = tokenizer.pad([{k: enc[k][i] for k in enc} for i in idx], return_tensors="pt")
        feats = {k: v.to(device) for k, v in feats.items()}
        result = encoder(**feats, output_hidden_states=keep_layer is not None)
        pooled = mean_pool(result.last_hidden_state, feats["attention_mask"]).float()  # (b, C) : la moyenne du chapitre 02
        if out is None:
            out = np.zeros((len(premises), pooled.size(-1)), dtype=np.float32)
        out[idx] = pooled.cpu().numpy()
        if keep_layer is not None:
            layer_in = result.hidden_states[keep_layer].float().cpu()  # (b, T, C) : entrée de la couche keep_layer
            for row, i in enumerate(idx):
                kept[i] = layer_in[row, : len(enc["input_ids"][i])].clone()  # (T_i, C)
    encoder.train(was_training)
    return out if keep_layer is None else (out, kept)


class CachedPairs(torch.utils.data.Dataset):
    """Paires déjà passées dans les couches gelées : ``hidden`` (liste de (T_i, C)) et étiquettes.

    Chaque élément est un dict ``hidden_states`` (T_i, C), ``labels`` ; :func:`pad_cached`
    en fait des lots pour le ``Trainer``.
    """

    def __init__(self, hidden: list, labels):
        labels = np.asarray(labels)
        if len(hidden) != len(labels) or not len(hidden):
            raise ValueError(f"Il faut autant de vecteurs que d'étiquettes, et au moins un ({len(hidden)} / {len(labels)}).")
        for i, h in enumerate(hidden):
            if not isinstance(h, torch.Tensor) or h.dim() != 2:
                raise TypeError(f"hidden[{i}] doit être un tenseur (T, C), reçu {type(h).__name__}"
                                + (f" de forme {tuple(h.shape)}" if isinstance(h, torch.Tensor) else "") + ".")
        self.hidden, self.labels = hidden, labels

    def __len__(self) -> int:
        return len(self.hidden)

    def __getitem__(self, i: int) -> dict:
        return {"hidden_states": self.hidden[i], "labels": int(self.labels[i])}


def pad_cached(items: list[dict]) -> dict[str, torch.Tensor]:
    """Lot de :class:`CachedPairs` : vecteurs complétés par des zéros, masque, étiquettes."""
    longest = max(item["hidden_states"].size(0) for item in items)
    width = items[0]["hidden_states"].size(1)
    hidden = torch.zeros(len(items), longest, width, dtype=items[0]["hidden_states"].dtype)   # (B, T, C)
    mask = torch.zeros(len(items), longest, dtype=torch.long)   # (B, T)
    for b, item in enumerate(items):
        n = item["hidden_states"].size(0)
        hidden[b, :n], mask[b, :n] = item["hidden_states"], 1
    return {"hidden_states": hidden, "attention_mask": mask,
            "labels": torch.tensor([item["labels"] for item in items])}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copie des paramètres entraînables de ``model`` (LoRA et tête), par nom."""
    check_type("model", model, nn.Module)
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def restore_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Remet dans ``model`` les paramètres gardés par :func:`trainable_state`."""
    check_type("model", model, nn.Module)
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise ValueError(f"Paramètres absents du modèle : {unknown[:5]}.")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
