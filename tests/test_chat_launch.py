"""L'interface de conversation lancée depuis une cellule (:func:`atelier.lora_nf4.chat.launch`).

Les trois endroits où lisent les lecteurs, avec les tests de l'environnement remplacés :

- en local : serveur sur 127.0.0.1 seulement, la cellule rend la main, adresse affichée ;
- sur Colab (un faux ``google.colab``) : l'interface montrée par le relais de ports de Colab ;
- sur Binder (``JUPYTERHUB_SERVICE_PREFIX`` posée) : adresse ``…/proxy/PORT/`` de
  jupyter-server-proxy, et Gradio qui sert ses pages sous ce chemin.

Le lien public de Gradio (``share=True``) n'est jamais créé ici (il sortirait sur le
réseau) : un faux ``launch`` vérifie qu'il n'est demandé que si le lecteur le demande.
"""

import importlib.machinery
import importlib.util
import json
import sys
import time
import types
import urllib.request

import pytest

gr = pytest.importorskip("gradio")

from atelier.lora_nf4 import chat  # noqa: E402

PREFIX = "/user/lectrice-abc123/"


@pytest.fixture
def local(monkeypatch):
    """Ni Colab ni JupyterHub."""
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("google.colab") else real(name, *a))


@pytest.fixture
def colab(local, monkeypatch):
    """Un faux ``google.colab`` importable, dont ``output`` note les appels."""
    calls = []
    google = types.ModuleType("google")
    google.__path__ = []
    google.__spec__ = importlib.machinery.ModuleSpec("google", None, is_package=True)
    colab = types.ModuleType("google.colab")
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None, is_package=True)
    output = types.ModuleType("google.colab.output")
    output.serve_kernel_port_as_iframe = lambda port, **kw: calls.append(("iframe", port, kw))
    output.serve_kernel_port_as_window = lambda port, **kw: calls.append(("window", port, kw))
    colab.output = output
    google.colab = colab
    for name, mod in {"google": google, "google.colab": colab, "google.colab.output": output}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: sys.modules[name].__spec__
                        if name == "google.colab" else importlib.machinery.PathFinder.find_spec(name))
    return calls


@pytest.fixture
def binder(local, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    return shown


@pytest.fixture
def fake_launch(monkeypatch):
    """Remplace ``Blocks.launch`` : note ses arguments, ne lance rien, n'ouvre aucun tunnel."""
    seen = {}

    def launch(self, **kw):
        seen.update(kw)
        self.share_url = "https://0123abcd.gradio.live" if kw.get("share") else None

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    return seen


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, r.read().decode("utf-8", "replace")


def _listening(port: int) -> list[str]:
    import psutil

    return [c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def test_where_the_kernel_runs(local, monkeypatch):
    assert chat.notebook_host() == "local"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)
    assert chat.notebook_host() == "binder"


def test_colab_is_seen_before_jupyterhub(colab, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX)  # Colab passe avant : son relais est le bon
    assert chat.notebook_host() == "colab"


def test_local_launch_returns_at_once_on_loopback(local, capsys):
    t0 = time.perf_counter()
    app = chat.launch(None, None)  # le modèle ne sert qu'aux réponses : pas de message, pas de modèle
    try:
        assert time.perf_counter() - t0 < 60, "la cellule doit rendre la main"
        port = app.server_port
        assert _listening(port) == ["127.0.0.1"], "uniquement sur la boucle locale"
        assert app.share is False and app.share_url is None
        assert _get(f"http://127.0.0.1:{port}/")[0] == 200
        out = capsys.readouterr().out
        assert out.strip() == f"Interface sur http://127.0.0.1:{port}/ (app.close() pour l'arrêter)."
    finally:
        app.close()
    assert not _listening(port), "app.close() arrête le serveur"


def test_colab_shows_the_ui_through_its_port_proxy(colab, capsys):
    app = chat.launch(None, None, height=500)
    try:
        port = app.server_port
        assert colab == [("iframe", port, {"height": 500}),
                         ("window", port, {"anchor_text": "Ouvrir la conversation dans un nouvel onglet"})]
        assert _listening(port) == ["127.0.0.1"]
        assert app.share is False, "pas de lien public sans share=True, même sur Colab"
        assert "relais de ports de Colab" in capsys.readouterr().out
    finally:
        app.close()


def test_binder_serves_the_ui_under_the_proxy_path(binder, capsys):
    from IPython.display import HTML, IFrame

    app = chat.launch(None, None)
    try:
        port = app.server_port
        path = f"{PREFIX}proxy/{port}/"
        out = capsys.readouterr().out
        assert f"jupyter-server-proxy : {path} " in out
        iframe, link = binder
        assert isinstance(iframe, IFrame) and iframe.src == path
        assert isinstance(link, HTML) and f'href="{path}"' in link.data
        assert _listening(port) == ["127.0.0.1"]
        # jupyter-server-proxy retire le préfixe : Gradio répond sur « / », mais ses adresses portent le chemin.
        status, page = _get(f"http://127.0.0.1:{port}/")
        assert status == 200
        config = json.loads(_get(f"http://127.0.0.1:{port}/config")[1])
        assert config["root"].rstrip("/").endswith(path.rstrip("/")), config["root"]
    finally:
        app.close()


def test_share_link_only_when_asked(local, fake_launch, capsys):
    chat.launch(None, None, port=7861)
    assert fake_launch["share"] is False and fake_launch["server_name"] == "127.0.0.1"
    assert fake_launch["prevent_thread_lock"] is True and fake_launch["server_port"] == 7861
    assert "gradio.live" not in capsys.readouterr().out
    chat.launch(None, None, port=7861, share=True)
    assert fake_launch["share"] is True and fake_launch["server_name"] == "127.0.0.1"
    assert "Lien public, demandé par share=True" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, error", [
    ({"share": "oui"}, TypeError), ({"share": 1}, TypeError),
    ({"port": 80}, ValueError), ({"port": 70000}, ValueError), ({"port": "7860"}, TypeError),
    ({"height": 0}, ValueError),
])
def test_bad_arguments_are_refused_before_launching(local, fake_launch, kwargs, error):
    with pytest.raises(error):
        chat.launch(None, None, **kwargs)
    assert not fake_launch, "rien n'est lancé"


def test_failed_share_link_says_so(local, monkeypatch):
    def launch(self, **kw):
        print("Could not create share link. Please check your internet connection.")
        self.share_url = None

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.setattr(gr.Blocks, "close", lambda self, *a, **kw: None)
    with pytest.raises(RuntimeError, match="Lien public .* impossible à créer.; Gradio dit.: Could not create"):
        chat.launch(None, None, share=True)


@pytest.fixture
def server_proxy():
    """Un relais comme jupyter-server-proxy : ``/user/…/proxy/PORT/x`` → ``http://127.0.0.1:PORT/x``.

    Il retire le préfixe et transmet les en-têtes du navigateur (``Host`` compris), comme lui.
    """
    import http.client
    import http.server
    import re
    import threading

    pattern = re.compile(rf"^{re.escape(PREFIX)}proxy/(\d+)(/.*)?$")

    class Relay(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _relay(self):
            m = pattern.match(self.path)
            if not m:
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=30)
            conn.request(self.command, m.group(2) or "/", body=body,
                         headers={k: v for k, v in self.headers.items() if k.lower() != "connection"})
            r = conn.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = _relay

    relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{relay.server_address[1]}"
    relay.shutdown()
    relay.server_close()


def test_binder_page_and_its_files_load_through_the_proxy(binder, server_proxy):
    """Par le relais : la page, sa configuration (racine = adresse publique) et ses fichiers."""
    import re

    app = chat.launch(None, None)
    try:
        base = f"{server_proxy}{PREFIX}proxy/{app.server_port}"
        status, page = _get(f"{base}/")
        assert status == 200
        config = json.loads(_get(f"{base}/config")[1])
        assert config["root"].rstrip("/") == base, "l'interface appelle son API par le relais"
        assets = sorted(set(re.findall(r'(?:src|href)="\./(assets/[^"]+)"', page)))
        assert assets, page[:500]
        for asset in assets:  # chemins relatifs : résolus sous le préfixe du relais
            assert _get(f"{base}/{asset}")[0] == 200, asset
        info = json.loads(_get(f"{base}{config['api_prefix']}/info")[1])
        assert info, "l'API répond par le relais"
    finally:
        app.close()


def test_binder_reply_arrives_through_the_proxy(binder, server_proxy, tiny_chat_path):
    """Une vraie conversation (petit modèle aléatoire) par le relais, avec le client de Gradio."""
    from gradio_client import Client

    model, tokenizer = chat.load_model(tiny_chat_path)
    app = chat.launch(model, tokenizer)
    try:
        client = Client(f"{server_proxy}{PREFIX}proxy/{app.server_port}/", verbose=False, analytics_enabled=False)
        answer = client.predict("Bonjour !", 1.0, 0.9, 16, api_name="/respond")  # glouton : vide ici
        assert isinstance(answer, str) and answer.strip() and not answer.startswith("⚠️"), answer
    finally:
        app.close()
