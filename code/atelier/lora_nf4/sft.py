"""Affinage supervisé (SFT) en QLoRA : point d'entrée unique, du CPU au multi-GPU.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``). Le même code tourne :

- dans un notebook (:func:`atelier.lora_nf4.chat.load_model`,
  :func:`atelier.adapters.add_lora`, :func:`train`, :func:`evaluate`) ;
- en ligne de commande : ``python -m atelier.lora_nf4.sft --model … --data … --output …`` ;
- sur plusieurs processus : ``accelerate launch --multi_gpu --num_processes 2 -m
  atelier.lora_nf4.sft …`` (sans GPU, chaque processus bascule sur CPU ; ``--cpu`` n'en lance qu'un) : ``accelerate``
  répartit les lots et moyenne les gradients.

Recette QLoRA : modèle de base chargé en NF4 par bitsandbytes
(``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", …)``), adaptateurs LoRA de peft
par-dessus, perte sur les seuls jetons de l'assistant (:func:`atelier.lora_nf4.chat.tokenize_conversation`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from atelier.adapters import add_lora
from atelier.lora_nf4.chat import IGNORE_INDEX, load_dialogues, load_model, split_by_first_prompt, tokenize_conversation, validate_dialogues
from atelier.lora_nf4.quantization import keep_4bit_trainable, packed_for_inference
from atelier.runtime.checks import check_float, check_int
from atelier.runtime.cli import Parser
from atelier.runtime.config import PRECISION_CHOICES, grad_scaler, model_device, precision_name, resolve_precision, seed_everything
from atelier.runtime.fmt import duree, nombre, octets

__all__ = [
    "DEFAULT_TARGETS",
    "build_examples",
    "collate",
    "evaluate",
    "train",
    "enable_checkpointing",
    "adapter_size",
    "keep_4bit_trainable",
    "packed_for_inference",
    "make_tiny_chat_model",
    "main",
]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


# ----------------------------------------------------------------------------
# Données
# ----------------------------------------------------------------------------
def build_examples(tokenizer, conversations, max_length: int = 256) -> tuple[list[dict], dict]:
    """Tokenise des conversations ; renvoie (exemples, bilan).

    Une conversation dont aucune réponse de l'assistant ne tient dans
    ``max_length`` jetons n'apprendrait rien : elle est mise de côté et
    **comptée** dans le bilan (``skipped``), jamais écartée en silence.
    """
    conversations = validate_dialogues(conversations, source="conversations")
    max_length = check_int("max_length", max_length, min=1)
    examples, skipped = [], 0
    for conv in conversations:
        ex = tokenize_conversation(tokenizer, conv["messages"], max_length=max_length)
        if any(lab != IGNORE_INDEX for lab in ex["labels"]):
            examples.append(ex)
        else:
            skipped += 1
    n_tokens = sum(len(e["input_ids"]) for e in examples)
    n_assistant = sum(sum(lab != IGNORE_INDEX for lab in e["labels"]) for e in examples)
    return examples, {"conversations": len(conversations), "examples": len(examples), "skipped": skipped,
                      "tokens": n_tokens, "assistant_tokens": n_assistant}


def collate(examples: Sequence[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Remplit à droite jusqu'au plus long exemple du lot ; étiquettes -100 sur le remplissage."""
    if isinstance(examples, (str, bytes, dict)) or not isinstance(examples, Sequence) or not examples:
        raise ValueError("examples doit être une liste non vide d'exemples {'input_ids', 'labels'} (build_examples).")
    pad_id = check_int("pad_id", pad_id, min=0)
    bad = next((i for i, e in enumerate(examples, start=1) if not isinstance(e, dict) or "input_ids" not in e
                or "labels" not in e or len(e["input_ids"]) != len(e["labels"])), None)
    if bad is not None:
        raise ValueError(f"examples, exemple {bad} : 'input_ids' et 'labels' de même longueur sont attendus.")
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ----------------------------------------------------------------------------
# Évaluation et entraînement
# ----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, examples: Sequence[dict], pad_id: int, batch_size: int = 8) -> dict:
    """Perte moyenne par jeton de l'assistant et perplexité = exp(perte)."""
    from torch.nn.functional import cross_entropy

    if not examples:
        raise ValueError("Aucun exemple à évaluer.")
    batch_size = check_int("batch_size", batch_size, min=1)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = model.get_input_embeddings().weight.device
    with keep_4bit_trainable(model):
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
            shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
            shift_labels = batch["labels"][:, 1:].reshape(-1)  # le jeton t est prédit à la position t-1
            total += float(cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((shift_labels != IGNORE_INDEX).sum())
    model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "n_tokens": count}


def train(model, examples: Sequence[dict], pad_id: int, *, max_steps: int | None = None, epochs: float = 1.0,
          lr: float = 2e-4, batch_size: int = 4, grad_accum: int = 1, warmup_steps: int = 0, seed: int = 0,
          accelerator=None, progress: bool = True) -> dict:
    """Boucle d'entraînement (AdamW, décroissance linéaire) avec ``accelerate``.

    ``max_steps`` (pas d'optimisation) l'emporte sur ``epochs``. Avec
    plusieurs processus, chacun voit une part des lots et les gradients sont
    moyennés. Un modèle qui calcule en float16 (GPU sans bf16, comme le T4)
    s'entraîne avec un ``GradScaler`` (:func:`atelier.runtime.config.grad_scaler`).
    Renvoie l'historique des pertes, la durée et le débit.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not examples:
        raise ValueError("Aucun exemple d'entraînement.")
    batch_size = check_int("batch_size", batch_size, min=1)
    grad_accum = check_int("grad_accum", grad_accum, min=1)
    if max_steps is not None:
        max_steps = check_int("max_steps", max_steps, min=1)
    epochs = check_float("epochs", epochs, min=0, min_open=True)
    lr = check_float("lr", lr, min=0, min_open=True)
    warmup_steps = check_int("warmup_steps", warmup_steps, min=0)
    seed = check_int("seed", seed, min=0)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(list(examples), batch_size=batch_size, shuffle=True, generator=generator,
                        collate_fn=lambda b: collate(b, pad_id))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("Le modèle n'a aucun paramètre entraînable : ajoutez LoRA d'abord (add_lora).")
    if packed_for_inference(model):
        raise ValueError(
            f"{packed_for_inference(model)} couches 4 bits ont été réorganisées par bitsandbytes pour l'inférence "
            "sur CPU (un passage en mode eval sans gradient) : ce format ne rétropropage pas correctement. "
            "Rechargez le modèle, et évaluez-le avec sft.evaluate ou dans « with sft.keep_4bit_trainable(model) »."
        )
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    # GradScaler du type de calcul du modèle (inactif hors float16), là où accelerate l'a placé.
    scaler = grad_scaler(model_device(model), dtype=getattr(accelerator.unwrap_model(model), "dtype", None))
    steps_per_epoch = max(1, len(loader) // grad_accum)
    total_steps = max_steps if max_steps else max(1, math.ceil(epochs * steps_per_epoch))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    model.train()
    history: list[float] = []
    batches = iter(loader)
    epoch = 0
    bar = tqdm(range(total_steps), desc="entraînement", disable=not (progress and accelerator.is_main_process))
    start = time.perf_counter()
    for _step in bar:
        step_loss = 0.0
        for micro in range(grad_accum):
            try:
                batch = next(batches)
            except StopIteration:
                epoch += 1
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
                batches = iter(loader)
                batch = next(batches)
            sync = micro == grad_accum - 1
            ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
            with ctx:
                loss = model(**batch).loss / grad_accum
                accelerator.backward(scaler.scale(loss))
            step_loss += float(loss.detach())
        scaler.step(optimizer)  # gradients divisés par l'échelle ; pas sauté s'ils débordent (fp16)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad()
        mean_loss = float(accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), reduction="mean"))
        history.append(mean_loss)
        bar.set_postfix(perte=nombre(mean_loss, 3))
    seconds = time.perf_counter() - start
    return {"losses": history, "steps": total_steps, "seconds": seconds, "steps_per_second": total_steps / seconds,
            "processes": accelerator.num_processes, "examples_per_step": batch_size * grad_accum * accelerator.num_processes,
            "model": accelerator.unwrap_model(model), "accelerator": accelerator}


def enable_checkpointing(model):
    """Active le gradient checkpointing (non réentrant, compatible avec LoRA) ; renvoie ``model``.

    Seule l'entrée de chaque bloc est gardée pour la rétropropagation, le bloc est recalculé pendant
    celle-ci : beaucoup moins d'activations en mémoire (:func:`atelier.lora_nf4.memory.activation_memory`),
    environ un tiers de calcul en plus.
    """
    if callable(getattr(model, "activation_checkpointing_enable", None)):  # transformers 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif callable(getattr(model, "gradient_checkpointing_enable", None)):  # pragma: no cover - transformers 4
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        raise TypeError(f"model doit être un modèle Hugging Face (PreTrainedModel), reçu {type(model).__name__}.")
    return model


ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def adapter_size(folder) -> int:
    """Octets sur disque d'un adaptateur sauvegardé : poids (safetensors) + configuration."""
    folder = Path(folder)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} n'est pas un adaptateur peft complet : il manque {', '.join(missing)}.")
    return sum((folder / name).stat().st_size for name in ADAPTER_FILES)


# ----------------------------------------------------------------------------
# Petit modèle aléatoire (tests, essais rapides)
# ----------------------------------------------------------------------------
_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_FRENCH = (
    "Bonjour ! Comment allez-vous aujourd'hui ? Je vais bien, merci. Quelle est la capitale de la France ? "
    "La capitale de la France est Paris. Pouvez-vous m'expliquer la photosynthèse en quelques phrases ? "
    "Les plantes transforment la lumière du soleil, l'eau et le dioxyde de carbone en sucres et en oxygène. "
)


def make_tiny_chat_model(out_dir, hidden_size: int = 64, num_layers: int = 2, vocab_size: int = 400, seed: int = 0) -> Path:
    """Écrit un minuscule modèle Llama **aléatoire** avec tokeniseur BPE et chat template ChatML.

    Sert aux tests et aux essais rapides (aucun téléchargement) ; ses réponses
    n'ont aucun sens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([_FRENCH] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = _CHATML
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=512, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)  # safetensors
    return out


# ----------------------------------------------------------------------------
# Ligne de commande (et accelerate launch)
# ----------------------------------------------------------------------------
def _load_conversations(spec: str) -> list[dict]:
    """``chemin.jsonl`` ou ``nom:partie`` d'``atelier.assets.data`` (par exemple ``oasst1_fr:top1``)."""
    if Path(spec).suffix == ".jsonl" or Path(spec).is_file():
        return load_dialogues(spec)
    from atelier.assets import data

    name, _, split = spec.partition(":")
    return validate_dialogues(data.load(name, split or None), source=spec)


_EPILOG = ("Défauts prévus pour un T4 de 16 Go et un 7B (Mistral) : NF4 avec double quantification, --precision auto "
           "(bf16 si le GPU le calcule en matériel, fp16 avec GradScaler sur un T4, règle du processeur sur CPU), "
           "gradient checkpointing, lot 4 × 512 jetons. --dry-estimate affiche l'estimation de la calculatrice du "
           "chapitre 04 (atelier.lora_nf4.memory) pour ces réglages, sans rien entraîner (sans --model : Mistral-7B).")


def parser() -> Parser:
    """L'analyseur de la ligne de commande ``python -m atelier.lora_nf4.sft`` (options et défauts)."""
    p = Parser(prog="python -m atelier.lora_nf4.sft", description="Affinage QLoRA d'un modèle de conversation.",
               epilog=_EPILOG)
    p.add_argument("--model", default=None, help="dossier (ou identifiant du hub) du modèle de base (obligatoire, sauf avec --dry-estimate)")
    p.add_argument("--data", default="oasst1_fr:top1", help="fichier JSONL de dialogues ou nom:partie d'atelier.assets.data")
    p.add_argument("--output", default=None, help="dossier où écrire l'adaptateur (obligatoire, sauf avec --dry-estimate)")
    p.add_argument("--r", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default=",".join(DEFAULT_TARGETS))
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=0, help="nombre de pas (l'emporte sur --epochs si > 0)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--limit", type=int, default=0, help="ne garder que les N premières conversations d'entraînement")
    p.add_argument("--no-4bit", action="store_true", help="LoRA sans NF4 : poids dans la précision de calcul (--precision)")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="type des calculs et des poids non quantifiés (auto : atelier.runtime.config.compute_dtype)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="recalculer les activations de chaque bloc pendant la rétropropagation (défaut : oui)")
    p.add_argument("--dry-estimate", action="store_true", help="afficher l'estimation mémoire de ces réglages et quitter")
    p.add_argument("--seed", type=int, default=0)
    return p


def estimate(args) -> dict:
    """Estimation mémoire (:func:`atelier.lora_nf4.memory.recipe_estimate`) des options ``args`` de :func:`parser`,
    précision comprise (``"precision"`` : ``bf16``, ``fp16`` ou ``fp32`` sur le GPU s'il y en a un)."""
    from atelier.lora_nf4 import memory

    device = "cuda" if torch.cuda.is_available() else "cpu"
    resolve_precision(args.precision, device)  # fp16 sur CPU, bf16 sur un T4 : erreur en français
    name = precision_name(device) if args.precision == "auto" else args.precision
    est = memory.recipe_estimate(args.model, r=args.r, target_modules=[t for t in args.target_modules.split(",") if t],
                                 batch_size=args.batch_size, seq_len=args.max_length, precision=name,
                                 gradient_checkpointing=args.gradient_checkpointing, four_bit=not args.no_4bit)
    return {**est, "precision": name}


def main(argv: list[str] | None = None) -> dict:
    from accelerate import Accelerator

    from atelier.lora_nf4 import memory
    from atelier.runtime.fmt import nombre

    p = parser()
    args = p.parse_args(argv)
    if args.dry_estimate:
        est = estimate(args)
        what = args.model or "Mistral-7B (configuration publique)"
        print(f"{what}, {'QLoRA (NF4)' if not args.no_4bit else 'LoRA'}, {est['precision']}, lot {nombre(args.batch_size)} × "
              f"{nombre(args.max_length)} jetons, gradient checkpointing {'oui' if args.gradient_checkpointing else 'non'}. "
              f"{memory.describe_estimate(est)}", flush=True)
        return est
    if not (args.model and args.output):
        p.error("arguments obligatoires manquants : --model et --output (facultatifs avec --dry-estimate seulement)")

    seed_everything(args.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    dtype = resolve_precision(args.precision, accelerator.device)  # erreur en français avant tout chargement
    name = precision_name(accelerator.device) if args.precision == "auto" else args.precision
    conversations = _load_conversations(args.data)
    train_convs, test_convs = split_by_first_prompt(conversations, args.test_fraction, args.seed)
    if args.limit:
        train_convs = train_convs[: args.limit]
    model, tokenizer = load_model(args.model, four_bit=not args.no_4bit, compute_dtype=dtype, device=accelerator.device)
    if args.gradient_checkpointing:
        enable_checkpointing(model)
    model = add_lora(model, [t for t in args.target_modules.split(",") if t], task="CAUSAL_LM",
                     r=args.r, alpha=args.alpha, dropout=args.dropout)
    train_ex, train_info = build_examples(tokenizer, train_convs, args.max_length)
    test_ex, _ = build_examples(tokenizer, test_convs, args.max_length)
    result = train(model, train_ex, tokenizer.pad_token_id, max_steps=args.max_steps or None, epochs=args.epochs,
                   lr=args.lr, batch_size=args.batch_size, grad_accum=args.grad_accum, seed=args.seed,
                   accelerator=accelerator)
    model = result.pop("model")
    result.pop("accelerator")
    summary = {**{k: v for k, v in result.items()}, "train": train_info, "test_conversations": len(test_convs),
               "precision": name, "gradient_checkpointing": args.gradient_checkpointing}
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(args.output)
        model.save_pretrained(out)  # adapter_model.safetensors + adapter_config.json
        summary["adapter_bytes"] = adapter_size(out)
        (out / "train_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
        print(f"Adaptateur écrit dans {out} ({octets(summary['adapter_bytes'])}) ; {nombre(summary['steps'])} pas en "
              f"{duree(summary['seconds'])} ({nombre(summary['steps_per_second'], 2)} pas/s) "
              f"sur {summary['processes']} processus.", flush=True)
    return summary


if __name__ == "__main__":
    main()
