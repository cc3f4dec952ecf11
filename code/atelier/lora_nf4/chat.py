"""Dialogues, modèle de conversation (chat template) et interface Gradio.

Utilisé par le chapitre « LoRA et NF4 : adapter un modèle de chat français »
(``book/04_lora_nf4.md``) et par :mod:`atelier.lora_nf4.sft` :

- :func:`load_dialogues`, :func:`validate_dialogues`, :func:`split_by_first_prompt`
  et :func:`check_messages` viennent de :mod:`atelier.lora_nf4.dialogues` (lecture
  et validation des dialogues) et sont réexportées ici ;
- :func:`tokenize_conversation` applique le chat template et met l'étiquette
  -100 sur tout ce qui n'est pas une réponse de l'assistant : la perte ne porte
  que sur ce que le modèle doit apprendre à dire ;
- ``python -m atelier.lora_nf4.chat --model … --adapter …`` ouvre une interface de
  conversation dans le navigateur, sur 127.0.0.1 uniquement.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Iterator, Sequence

import torch

from atelier.lora_nf4.dialogues import ROLES, check_messages, load_dialogues, split_by_first_prompt, validate_dialogues
from atelier.runtime.checks import check_float, check_int, check_type
from atelier.runtime.cli import Parser

__all__ = [
    "ROLES",
    "load_dialogues",
    "validate_dialogues",
    "split_by_first_prompt",
    "check_messages",
    "render",
    "tokenize_conversation",
    "stream_reply",
    "reply",
    "history_to_messages",
    "build_app",
    "notebook_host",
    "launch",
    "load_model",
    "main",
]

IGNORE_INDEX = -100  # étiquette ignorée par la perte d'entropie croisée


# ----------------------------------------------------------------------------
# Chat template et étiquettes
# ----------------------------------------------------------------------------
def render(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """Le texte exact que voit le modèle (chat template du tokeniseur)."""
    messages = check_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("Ce tokeniseur n'a pas de chat template : il faut un modèle de conversation (instruct/chat).")
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """Texte complet et intervalles de caractères des réponses de l'assistant (fin de tour comprise)."""
    full = render(tokenizer, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not (through.startswith(before) and full.startswith(through)):
            raise ValueError("Le chat template n'est pas cumulatif : impossible de repérer les réponses de l'assistant.")
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_conversation(tokenizer, messages: Sequence[dict], max_length: int | None = None) -> dict:
    """``input_ids``, ``attention_mask`` et ``labels`` d'une conversation.

    ``labels`` recopie ``input_ids`` sur les jetons des réponses de
    l'assistant (jeton de fin de tour compris : le modèle apprend à s'arrêter)
    et vaut -100 partout ailleurs (système, questions, balises de rôle).
    ``max_length`` tronque à droite.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("Un tokeniseur « rapide » (tokenizers) est nécessaire pour repérer les jetons de l'assistant.")
    if max_length is not None:
        max_length = check_int("max_length", max_length, min=1)  # ou None : pas de troncature
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [
        tok if any(a <= start < b for a, b in spans) else IGNORE_INDEX
        for tok, (start, _end) in zip(ids, enc["offset_mapping"])
    ]
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


# ----------------------------------------------------------------------------
# Génération (avec ou sans flux)
# ----------------------------------------------------------------------------
def _generation_kwargs(tokenizer, temperature: float, top_p: float, max_new_tokens: int) -> dict:
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, min=1)
    top_p = check_float("top_p", top_p, min=0, max=1, min_open=True)
    temperature = check_float("temperature", temperature, min=0)  # 0 = glouton
    kw = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id}
    if temperature == 0:
        kw.update(do_sample=False)
    else:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p)
    return kw


def _prompt_ids(model, tokenizer, messages) -> torch.Tensor:
    text = render(tokenizer, messages, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)


@torch.no_grad()
def reply(model, tokenizer, messages, temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 64) -> str:
    """Réponse complète de l'assistant à ``messages`` (glouton si ``temperature`` = 0)."""
    ids = _prompt_ids(model, tokenizer, messages)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         **_generation_kwargs(tokenizer, temperature, top_p, max_new_tokens))
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


class GenerationError(RuntimeError):
    """La génération a échoué ou ne répond plus : message en français, montré au lecteur par l'interface."""


def stream_reply(model, tokenizer, messages, temperature: float = 0.7, top_p: float = 0.9,
                 max_new_tokens: int = 128, timeout: float = 120.0) -> Iterator[str]:
    """Produit la réponse au fil de la génération : chaque valeur est le texte déjà écrit.

    La génération tourne dans un fil à part ; si elle lève une erreur, ou si
    aucun morceau n'arrive pendant ``timeout`` secondes, :class:`GenerationError`
    est levée ici (jamais d'attente sans fin).
    """
    import queue

    from transformers import TextIteratorStreamer

    timeout = check_float("timeout", timeout, min=0, min_open=True)
    gen_kwargs = _generation_kwargs(tokenizer, temperature, top_p, max_new_tokens)  # erreurs avant le fil
    ids = _prompt_ids(model, tokenizer, messages)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
    kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer, **gen_kwargs)
    failure: list[BaseException] = []

    def run():
        try:
            with torch.no_grad():
                model.generate(**kwargs)
        except Exception as exc:  # noqa: BLE001 - transmise au lecteur, pas perdue dans le fil
            failure.append(exc)
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    text = ""
    try:
        for piece in streamer:
            text += piece
            yield text
    except queue.Empty:
        raise GenerationError(f"La génération ne répond plus depuis {timeout:g} s ; réessayez avec moins de "
                              "jetons (max_new_tokens).") from None
    thread.join(timeout)
    if failure:
        exc = failure[0]
        raise GenerationError(f"La génération a échoué ({type(exc).__name__} : {exc}).") from exc


# ----------------------------------------------------------------------------
# Interface Gradio
# ----------------------------------------------------------------------------
def _content_text(content) -> str:
    """Texte d'un message Gradio (chaîne, ou liste de blocs {"type": "text", "text": …}) ; ``None`` : texte vide."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return _content_text(content.get("text"))
    if isinstance(content, (list, tuple)):
        return "".join(_content_text(c) for c in content)
    raise TypeError(f"Le contenu d'un message doit être du texte (chaîne, bloc {{'text': …}} ou liste de blocs) ; "
                    f"reçu {type(content).__name__} ({content!r}).")


def history_to_messages(history, message, system_prompt: str | None = None) -> list[dict]:
    """Historique Gradio + nouveau message → liste de messages pour le chat template."""
    if message is None or not _content_text(message).strip():
        raise ValueError(f"message doit contenir du texte ; reçu {message!r}.")
    if history is not None and not isinstance(history, list | tuple):
        raise TypeError(f"history doit être une liste de messages Gradio ; reçu {type(history).__name__}.")
    if system_prompt is not None:
        check_type("system_prompt", system_prompt, str)
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for i, turn in enumerate(history or [], start=1):
        if not isinstance(turn, dict):  # l'ancien format « tuples » de Gradio ([question, réponse]) n'est pas lu
            raise TypeError(f"history, tour {i} : un message {{'role': …, 'content': …}} (format « messages » de Gradio) "
                            f"est attendu ; reçu {type(turn).__name__}.")
        text = _content_text(turn.get("content"))
        if turn.get("role") in ("user", "assistant") and text.strip():  # tour vide (en attente) : ignoré
            messages.append({"role": turn["role"], "content": text})
    messages.append({"role": "user", "content": _content_text(message)})
    return messages


def build_app(model, tokenizer, title: str = "Atelier des LLM : conversation", system_prompt: str | None = None):
    """L'interface Gradio : réponse en flux, température, top_p et longueur maximale réglables."""
    import gradio as gr

    def respond(message, history, temperature, top_p, max_new_tokens):
        try:
            messages = history_to_messages(history, message, system_prompt)
            yield from stream_reply(model, tokenizer, messages, float(temperature), float(top_p), int(max_new_tokens))
        except (GenerationError, ValueError, TypeError) as exc:  # montré dans la conversation, en français
            yield f"⚠️ {exc}"

    return gr.ChatInterface(
        respond,
        title=title,
        description="Modèle de base + adaptateur LoRA, sur cette machine (127.0.0.1).",
        additional_inputs=[
            gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Température"),
            gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="top_p"),
            gr.Slider(8, 512, value=128, step=8, label="Jetons générés au plus (max_new_tokens)"),
        ],
        additional_inputs_accordion="Paramètres de génération",
        textbox=gr.Textbox(placeholder="Écrivez votre message…", label="Message", elem_id="message"),
        analytics_enabled=False,
        concurrency_limit=1,  # une génération à la fois : les autres attendent dans la file
    )


def load_model(model_path, adapter=None, *, four_bit: bool = False, double_quant: bool = True, compute_dtype=None,
               device=None):
    """Charge (modèle, tokeniseur) : base en NF4 avec ``four_bit`` et, s'il y en a un, l'adaptateur LoRA ``adapter``.

    Sert à converser (:func:`main`) comme à entraîner (:mod:`atelier.lora_nf4.sft`) :
    le modèle est rendu en mode évaluation, :func:`atelier.lora_nf4.sft.train`
    le repasse en mode entraînement. Les poids vont sur ``device`` (par défaut le GPU s'il y en
    a un, sinon le CPU : :func:`atelier.runtime.config.default_device`), en NF4 comme en pleine précision.
    ``compute_dtype`` : type des calculs et des poids non quantifiés, par défaut
    :func:`atelier.runtime.config.compute_dtype` de ``device`` (bf16 seulement là où le matériel le calcule,
    fp32 sur un CPU sans bfloat16 natif, fp16 sur un GPU sans bf16 comme le T4). Sans jeton de remplissage,
    le tokeniseur prend celui de fin de texte.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atelier.lora_nf4.quantization import quantization_config
    from atelier.runtime import config

    device = config.default_device() if device is None else torch.device(check_type("device", device, (str, torch.device)))
    if compute_dtype is None:
        compute_dtype = config.compute_dtype(device)
    check_type("model_path", model_path, (str, os.PathLike))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    except OSError as exc:
        raise ValueError(f"model_path : modèle introuvable (ni dossier local, ni modèle du hub accessible) ; "
                         f"reçu {str(model_path)!r}.") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict = {"dtype": compute_dtype, "device_map": {"": device}}   # tout le modèle sur ce seul appareil
    if four_bit:
        kwargs.update(quantization_config=quantization_config("nf4", double_quant, compute_dtype))
    model = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval(), tokenizer


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="python -m atelier.lora_nf4.chat",
                                     description="Converser avec un modèle + adaptateur LoRA dans le navigateur.")
    parser.add_argument("--model", required=True, help="dossier (ou identifiant) du modèle de base")
    parser.add_argument("--adapter", default=None, help="dossier de l'adaptateur LoRA (facultatif)")
    parser.add_argument("--four-bit", action=argparse.BooleanOptionalAction, default=None,
                        help="charger le modèle de base en NF4 (défaut : oui s'il y a un GPU, non sur CPU)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--system", default=None, help="message système facultatif")
    args = parser.parse_args(argv)
    four_bit = torch.cuda.is_available() if args.four_bit is None else args.four_bit   # GPU : NF4, calcul bf16 ou fp16
    model, tokenizer = load_model(args.model, args.adapter, four_bit=four_bit, double_quant=False)
    app = build_app(model, tokenizer, system_prompt=args.system)
    print(f"Interface sur http://127.0.0.1:{args.port} (Ctrl+C pour arrêter).", flush=True)
    # Toujours sur la boucle locale : jamais exposé au réseau, jamais de lien public.
    app.queue(max_size=8)  # au-delà, Gradio refuse poliment au lieu d'empiler sans fin
    app.launch(server_name="127.0.0.1", server_port=args.port, share=False, inbrowser=False)


# ----------------------------------------------------------------------------
# L'interface depuis une cellule : en local, sur Colab, sur Binder
# ----------------------------------------------------------------------------
def notebook_host() -> str:
    """Où tourne le noyau : ``"colab"`` (``google.colab`` importable), ``"binder"`` (JupyterHub) ou ``"local"``."""
    import importlib.util

    from atelier.runtime import config

    try:
        if importlib.util.find_spec("google.colab") is not None:
            return "colab"
    except (ImportError, ValueError):  # pas de paquet « google » du tout
        pass
    return "binder" if config.jupyterhub_prefix() else "local"


def launch(model, tokenizer, *, port: int | None = None, share: bool = False, system_prompt: str | None = None,
           height: int = 620):
    """Ouvre l'interface de conversation depuis une cellule, sans la bloquer ; renvoie l'application Gradio.

    Le serveur écoute sur 127.0.0.1 seulement (``port`` : un port libre par défaut), dans un fil à part :
    la cellule rend la main, ``app.close()`` l'arrête. Le lecteur la voit :

    - en local : à l'adresse http://127.0.0.1:PORT/ affichée ;
    - sur Colab : dans la page (``height`` pixels) et dans un onglet, par le relais de ports de Colab
      (``google.colab.output``) ;
    - sur Binder (JupyterHub) : par jupyter-server-proxy, à l'adresse ``/user/…/proxy/PORT/`` du serveur.

    ``share=True``, seulement si le lecteur le demande, crée en plus un lien public temporaire (Gradio) :
    quiconque a ce lien converse avec le modèle, sur cette machine.
    """
    import contextlib
    import functools
    import io

    from atelier.runtime import config
    from atelier.runtime.checks import check_type
    from atelier.runtime.servers import HOST, free_port

    check_type("share", share, bool)
    port = free_port() if port is None else check_int("port", port, min=1024, max=65535)
    height = check_int("height", height, min=100)
    where = notebook_host()
    proxy = f"{config.jupyterhub_prefix().rstrip('/')}/proxy/{port}" if where == "binder" else None
    app = build_app(model, tokenizer, system_prompt=system_prompt)
    app.queue(max_size=8)  # au-delà, Gradio refuse poliment au lieu d'empiler sans fin
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):  # messages de Gradio (en anglais) : cités seulement en cas d'échec
            app.launch(server_name=HOST, server_port=port, share=share, root_path=proxy, prevent_thread_lock=True,
                       inline=False, inbrowser=False, quiet=True, ssr_mode=False)
    except OSError as exc:
        raise RuntimeError(f"Impossible de lancer l'interface sur {HOST}:{port} ({exc}) ; essayez un autre port.") from exc
    if share and not app.share_url:
        app.close()
        raise RuntimeError(f"Lien public (share=True) impossible à créer ; Gradio dit : {log.getvalue().strip()}")
    app.close = functools.partial(app.close, verbose=False)  # sans le message de Gradio (en anglais)
    local = f"http://{HOST}:{port}/"
    if where == "colab":
        from google.colab import output

        output.serve_kernel_port_as_iframe(port, height=height)
        output.serve_kernel_port_as_window(port, anchor_text="Ouvrir la conversation dans un nouvel onglet")
        print(f"Interface ci-dessus, par le relais de ports de Colab (serveur : {local}).")
    elif where == "binder":
        from IPython.display import HTML, IFrame, display

        display(IFrame(f"{proxy}/", width="100%", height=height))
        display(HTML(f'<a href="{proxy}/" target="_blank">Ouvrir la conversation dans un nouvel onglet</a>'))
        print(f"Interface par jupyter-server-proxy : {proxy}/ (à la suite de l'adresse de ce serveur).")
    else:
        print(f"Interface sur {local} (app.close() pour l'arrêter).")
    if share:
        print(f"Lien public, demandé par share=True (quiconque l'a converse avec ce modèle) : {app.share_url}")
    return app


if __name__ == "__main__":
    main()
