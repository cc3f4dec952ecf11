"""Bout en bout : une erreur pendant la génération arrive au lecteur, en français, dans le navigateur.

L'interface de :func:`atelier.lora_nf4.chat.build_app` est lancée dans ce
processus (127.0.0.1, sans bloquer) avec un modèle dont ``generate`` échoue ;
Chromium sans écran envoie un message et doit voir le message d'erreur
français, pas une page figée ni une trace anglaise.
"""

import socket

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def failing_app(tiny_chat_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from atelier.lora_nf4.chat import build_app

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_path)

    def broken_generate(**kwargs):
        raise RuntimeError("mémoire épuisée (simulée)")

    model.generate = broken_generate
    app = build_app(model, tokenizer)
    port = _free_port()
    app.queue(max_size=8).launch(server_name="127.0.0.1", server_port=port, share=False, inbrowser=False,
                                 prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_generation_error_is_shown_in_french(failing_app, chromium_page):
    page = chromium_page
    page.goto(failing_app, wait_until="domcontentloaded", timeout=120_000)
    box = page.get_by_placeholder("Écrivez votre message…")
    box.wait_for(timeout=120_000)
    box.fill("Bonjour !")
    box.press("Enter")
    bot = page.locator('[data-testid="bot"]').filter(has_text="La génération a échoué")
    bot.wait_for(timeout=60_000)
    text = bot.last.inner_text()
    assert "mémoire épuisée (simulée)" in text and "RuntimeError" in text, text
    assert "Traceback" not in text
