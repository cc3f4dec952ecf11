"""Bout en bout : ``python -m atelier.lora_nf4.chat`` dans Chromium sans écran (Playwright).

Démarre l'application Gradio sur 127.0.0.1 avec un minuscule modèle aléatoire
et un adaptateur LoRA, tape un message dans le navigateur et vérifie que la
réponse arrive en flux (le texte affiché grandit plusieurs fois).
"""

import os
import re
import time
import urllib.request
from pathlib import Path

import pytest
import torch

playwright = pytest.importorskip("playwright.sync_api")

# Sans Chromium, pas de serveur à démarrer : la page vient de la fixture chromium_page (conftest.py).
pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").is_file(), reason="Chromium absent (apt-get install chromium)")


@pytest.fixture(scope="module")
def model_and_adapter(tmp_path_factory, tiny_chat_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("ui")
    path = tiny_chat_path
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    model.save_pretrained(root / "adapter")
    return path, root / "adapter"


@pytest.fixture(scope="module")
def server(model_and_adapter):
    from atelier.runtime.servers import start_server

    path, adapter = model_and_adapter
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1,localhost"}
    try:
        server = start_server("atelier.lora_nf4.chat", "--model", str(path), "--adapter", str(adapter),
                              health="/", timeout=300, env=env)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(str(exc))
    with server:
        yield server.process, server.port, server.url + "/"


def test_server_listens_on_loopback_only(server):
    import psutil

    proc, port, _ = server
    addrs = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert addrs, "aucune socket en écoute"
    assert all(a.ip == "127.0.0.1" for a in addrs), addrs
    assert any(a.port == port for a in addrs)


def test_message_gets_a_streamed_answer(server, chromium_page):
    _, _, url = server
    page = chromium_page
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    box = page.get_by_placeholder("Écrivez votre message…")
    box.wait_for(timeout=120_000)
    # Observateur : note chaque état du dernier message du bot pendant qu'il s'écrit.
    page.evaluate("""() => {
        window.__etats = [];
        const note = () => {
            const bots = document.querySelectorAll('[data-testid="bot"]');
            if (!bots.length) return;
            const t = bots[bots.length - 1].innerText.trim();
            if (t && window.__etats[window.__etats.length - 1] !== t) window.__etats.push(t);
        };
        new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")
    box.fill("Bonjour, peux-tu te présenter ?")
    box.press("Enter")
    page.locator('[data-testid="user"]').filter(has_text="Bonjour, peux-tu te présenter ?").wait_for(timeout=60_000)
    page.wait_for_function("() => window.__etats.length >= 1", timeout=180_000)
    # Fin du flux : l'état ne change plus pendant 3 s.
    last, stable_since = None, time.time()
    while time.time() - stable_since < 3:
        states = page.evaluate("() => window.__etats")
        if states != last:
            last, stable_since = states, time.time()
        time.sleep(0.3)
    assert last and last[-1], "aucune réponse affichée"
    # En flux : plusieurs états successifs, chacun prolongeant le précédent.
    assert len(last) >= 3, last
    # Chaque état prolonge le précédent. On compare lettres et chiffres seulement : un
    # caractère UTF-8 encore incomplet s'affiche « � », et le Markdown d'un texte quelconque
    # (celui d'un petit modèle aléatoire) change de rendu quand la suite arrive.
    norm = [re.sub(r"[^0-9A-Za-zÀ-ÿ]", "", t) for t in last]
    grows = [b.startswith(a[: max(0, len(a) - 3)]) for a, b in zip(norm, norm[1:])]
    assert sum(grows) >= len(grows) - 1, last
    assert len(norm[-1]) > len(norm[0]), last
