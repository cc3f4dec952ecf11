"""Serveur d'embeddings compatible OpenAI (``POST /v1/embeddings``), sur 127.0.0.1.

Utilisé par le chapitre « Embeddings : local ou API ? » (``02_embeddings``) pour
emprunter **pour de vrai** le chemin d'une API : le client officiel ``openai``
parle à ce serveur avec ``base_url="http://127.0.0.1:PORT/v1"``. ::

    python -m atelier.embeddings.serve --port 8000                       # rôle sentence_multilingual
    python -m atelier.embeddings.serve --port 8000 --model sentence_english
    python -m atelier.embeddings.serve --port 8000 --model-path DOSSIER --name mon-modele

- La clé d'API éventuelle vient **uniquement** de la variable d'environnement
  ``ATELIER_API_KEY`` : si elle est définie, chaque requête doit porter
  ``Authorization: Bearer <clé>``. La clé n'est jamais affichée ni renvoyée.
- Les erreurs suivent le format d'OpenAI (``{"error": {"message", "type",
  "param", "code"}}``) avec le bon code HTTP : JSON illisible (400), entrée
  vide ou mal typée (400), texte trop long pour le modèle (400), trop de textes
  (400), modèle inconnu (404), clé absente ou fausse (401), route inconnue
  (404). Une erreur pendant le calcul donne un 500 sans arrêter le serveur.
- Les requêtes simultanées sont regroupées en lots (*dynamic batching*) : un
  seul calcul à la fois, mais sur tous les textes en attente.
- Avec ``--inject-faults``, ``POST /_atelier/faults`` programme des réponses
  429/5xx pour les prochaines requêtes : de quoi montrer les reprises du client.
"""


import argparse
import asyncio
import base64
import collections
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from atelier.embeddings.batching import Batcher, ServerBusy
from atelier.runtime.cli import Parser

API_KEY_ENV = "ATELIER_API_KEY"
MAX_INPUTS = 2048  # même limite que l'API d'OpenAI
MAX_BODY_BYTES = 2 * 1024 * 1024  # 2 Mio : 2 048 textes de 1 000 caractères
_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
                500: "server_error", 502: "server_error", 503: "server_error", 504: "server_error"}


@dataclass
class ServedModel:
    """Un modèle servi : son nom public, sa fonction d'encodage et son tokenizer de comptage."""

    name: str
    encode: Callable[[list[str]], np.ndarray]  # liste de n textes -> (n, H)
    count_tokens: Callable[[list[str]], list[int]]  # nombre de jetons de chaque texte
    max_tokens: int
    dim: int
    aliases: tuple[str, ...] = ()


@dataclass
class _Stats:
    requests: int = 0
    batches: int = 0
    texts: int = 0
    errors: dict[int, int] = field(default_factory=dict)


def openai_error(status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
    """Réponse JSON d'erreur au format d'OpenAI."""
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class _RequestError(Exception):
    """Requête refusée : code HTTP et champs de l'erreur au format d'OpenAI."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _parse_request(raw: bytes, by_name: dict[str, ServedModel], max_inputs: int):
    """Corps JSON -> ``(modèle, textes, format, nombres de jetons)`` ; ``_RequestError`` si invalide.

    Appelée hors de la boucle d'événements (décodage JSON et comptage des jetons
    peuvent être longs) : un gros corps ne ralentit pas les autres clients.
    """
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _RequestError(400, "Corps de requête illisible : ce n'est pas du JSON valide (UTF-8).") from None
    except RecursionError:
        raise _RequestError(400, "Corps de requête refusé : JSON imbriqué trop profondément.") from None
    if not isinstance(body, dict):
        raise _RequestError(400, "Le corps de la requête doit être un objet JSON.")
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise _RequestError(400, "Champ « model » manquant : donnez le nom d'un modèle servi.", "model")
    if name not in by_name:
        raise _RequestError(404, f"Le modèle « {name[:100]} » n'existe pas ici. Modèles servis : {', '.join(by_name)}.",
                            "model", "model_not_found")
    model = by_name[name]
    inp = body.get("input")
    if isinstance(inp, str):
        texts = [inp]
    elif isinstance(inp, list) and all(isinstance(t, str) for t in inp):
        texts = inp
    elif isinstance(inp, list) and inp and all(isinstance(t, (int, list)) for t in inp):
        raise _RequestError(400, "Les entrées déjà découpées en jetons ne sont pas prises en charge : envoyez du texte.",
                            "input")
    else:
        raise _RequestError(400, "Champ « input » invalide : une chaîne ou une liste de chaînes est attendue.", "input")
    if not texts or any(not t for t in texts):
        raise _RequestError(400, "Champ « input » vide : chaque texte doit contenir au moins un caractère.", "input")
    if len(texts) > max_inputs:
        raise _RequestError(400, f"Trop de textes dans une requête : {len(texts)} pour {max_inputs} au plus.", "input")
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise _RequestError(400, f"Le texte {i} contient un caractère Unicode invalide (substitut isolé).",
                                "input") from None
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise _RequestError(400, "encoding_format doit valoir « float » ou « base64 ».", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and dims != model.dim:
        raise _RequestError(400, f"Ce modèle ne produit que des vecteurs de dimension {model.dim}.", "dimensions")
    counts = model.count_tokens(texts)
    too_long = [i for i, c in enumerate(counts) if c > model.max_tokens]
    if too_long:
        i = too_long[0]
        raise _RequestError(400, f"Le texte {i} compte {counts[i]} jetons, au-delà de la limite de {model.max_tokens} "
                                 f"jetons du modèle « {model.name} ». Découpez-le.", "input", "context_length_exceeded")
    return model, texts, fmt, counts


def _response_body(model: ServedModel, vecs, fmt: str, counts: list[int]) -> bytes:
    """Réponse OpenAI sérialisée (hors de la boucle d'événements : des milliers de flottants)."""
    vecs = np.asarray(vecs, dtype="<f4")
    data = []
    for i, v in enumerate(vecs):
        emb = base64.b64encode(v.tobytes()).decode("ascii") if fmt == "base64" else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    total = int(sum(counts))
    return json.dumps({"object": "list", "data": data, "model": model.name,
                       "usage": {"prompt_tokens": total, "total_tokens": total}}).encode()


def create_app(models: list[ServedModel], *, api_key: str | None = None, fault_injection: bool = False,
               max_inputs: int = MAX_INPUTS, max_batch: int = 64, max_body_bytes: int = MAX_BODY_BYTES,
               max_queue: int = 256, request_timeout: float = 60.0):
    """Construit l'application FastAPI qui sert ``models`` (au moins un).

    Limites : corps de ``max_body_bytes`` octets au plus (413), ``max_queue``
    requêtes en attente par modèle (503 et ``Retry-After``), ``request_timeout``
    secondes par requête (504).
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request, Response
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if not models:
        raise ValueError("Il faut au moins un modèle à servir.")
    by_name: dict[str, ServedModel] = {}
    for m in models:
        for name in (m.name, *m.aliases):
            by_name[name] = m
    stats = _Stats()

    def counted(n: int) -> None:
        stats.batches += 1
        stats.texts += n

    batchers = {m.name: Batcher(m.encode, max_batch=max_batch, max_queue=max_queue, on_batch=counted) for m in models}
    parser_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atelier-parse")  # un tokenizer, un fil
    faults: collections.deque = collections.deque()

    @asynccontextmanager
    async def lifespan(app):
        for b in batchers.values():
            b.start()
        yield
        for b in batchers.values():
            await b.stop()
        parser_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="atelier — embeddings compatibles OpenAI", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(status, message, **kw):
        stats.errors[status] = stats.errors.get(status, 0) + 1
        return openai_error(status, message, **kw)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        msg = {404: "Route inconnue.", 405: "Méthode HTTP non autorisée pour cette route."}.get(
            exc.status_code, f"Requête refusée (code HTTP {exc.status_code}).")
        return error(exc.status_code, msg)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):  # dernier filet : une erreur imprévue reste au format d'OpenAI
        return error(500, "Erreur interne du serveur ; réessayez.")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):
        return error(400, "Requête invalide.")

    def authorized(request: Request) -> bool:
        if not api_key:
            return True
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return secrets.compare_digest(given.encode(), api_key.encode())

    def unauthorized():
        return error(401, "Clé d'API absente ou incorrecte : envoyez l'en-tête « Authorization: Bearer <clé> ».",
                     code="invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok", "requests": stats.requests, "batches": stats.batches, "texts": stats.texts,
                "errors": {str(k): v for k, v in sorted(stats.errors.items())}}

    @app.get("/v1/models")
    async def list_models(request: Request):
        if not authorized(request):
            return unauthorized()
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "atelier"} for name in by_name]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        if not authorized(request):
            return unauthorized()
        if faults:
            status = faults.popleft()
            headers = {"retry-after": "1"} if status == 429 else None  # RFC 9110 : un nombre entier de secondes
            msg = "Trop de requêtes (panne simulée)." if status == 429 else f"Panne simulée du serveur ({status})."
            return error(status, msg, code="rate_limit_exceeded" if status == 429 else None, headers=headers)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return error(413, f"Corps de requête trop gros : {declared} octets pour {max_body_bytes} au plus.")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body_bytes:
                return error(413, f"Corps de requête trop gros : plus de {max_body_bytes} octets.")
        loop = asyncio.get_running_loop()
        try:
            model, texts, fmt, counts = await loop.run_in_executor(
                parser_pool, _parse_request, bytes(raw), by_name, max_inputs)
        except _RequestError as exc:
            return error(exc.status, exc.message, param=exc.param, code=exc.code)
        stats.requests += 1
        try:
            vecs = await batchers[model.name].submit(texts, timeout=request_timeout)
        except ServerBusy:
            return error(503, "Serveur saturé : trop de requêtes en attente ; réessayez dans une seconde.",
                         headers={"retry-after": "1"})
        except TimeoutError:
            return error(504, f"Calcul trop long : pas de réponse en {request_timeout:g} s ; réessayez.")
        except Exception:
            return error(500, "Le calcul des embeddings a échoué ; réessayez.")
        body = await asyncio.to_thread(_response_body, model, vecs, fmt, counts)
        return Response(body, media_type="application/json")

    if fault_injection:
        @app.post("/_atelier/faults")
        async def program_faults(request: Request):
            if not authorized(request):
                return unauthorized()
            try:
                body = json.loads(await request.body())
                statuses = [int(s) for s in body["statuses"]]
            except (ValueError, KeyError, TypeError):
                return error(400, "Attendu : {\"statuses\": [429, 503, …]}.")
            if any(s not in (429, 500, 502, 503, 504) for s in statuses):
                return error(400, "Seuls les codes 429, 500, 502, 503 et 504 peuvent être simulés.")
            faults.extend(statuses)
            return {"pending": list(faults)}

    return app


# --------------------------------------------------------------------------- chargement des modèles
def model_alias(info: dict) -> str:
    """Nom public d'un modèle servi, tiré de sa fiche : l'identifiant d'origine sur le hub, sans espace.

    ``{"upstream": "intfloat/multilingual-e5-small", ...}`` → « multilingual-e5-small » ;
    à défaut d'identifiant, le nom affiché, ses blancs remplacés par des tirets
    (un nom de modèle d'API ne contient pas d'espace).
    """
    source = info.get("upstream") or info.get("hub_id") or info.get("name") or ""
    return "-".join(str(source).split("/")[-1].split())


def load_sentence_transformer(path: str, name: str, aliases: tuple[str, ...] = (), batch_size: int = 32) -> ServedModel:
    """Charge un dossier sentence-transformers et l'habille pour le serveur."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from atelier.runtime import config

    st = SentenceTransformer(path, device=config.default_device())  # le GPU s'il y en a un
    counter = AutoTokenizer.from_pretrained(path)  # tokenizer à part, réservé au comptage (pas de partage entre fils)
    max_tokens = int(st.max_seq_length or counter.model_max_length)

    def encode(texts):
        return st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)

    def count_tokens(texts):
        return [len(ids) for ids in counter(texts, add_special_tokens=True, truncation=False)["input_ids"]]

    dim = st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension") else st.get_sentence_embedding_dimension()
    return ServedModel(name=name, encode=encode, count_tokens=count_tokens, max_tokens=max_tokens, dim=int(dim),
                       aliases=aliases)


def _check_host(host: str) -> str:
    if host == "localhost":
        return host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"Hôte refusé : {host!r}. Ce serveur n'écoute que sur la boucle locale (127.0.0.1, ::1).")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog="python -m atelier.embeddings.serve",
                                     description="Serveur d'embeddings compatible OpenAI, sur 127.0.0.1.")
    parser.add_argument("--host", default="127.0.0.1", help="adresse de boucle locale (défaut : 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", action="append", default=[], metavar="RÔLE",
                        help="rôle atelier.assets.models à servir (répétable ; défaut : sentence_multilingual)")
    parser.add_argument("--model-path", help="dossier sentence-transformers à servir au lieu d'un rôle")
    parser.add_argument("--name", help="nom public du modèle donné par --model-path")
    parser.add_argument("--inject-faults", action="store_true", help="active POST /_atelier/faults (démonstrations)")
    parser.add_argument("--max-batch", type=int, default=64, help="textes au plus par calcul regroupé")
    parser.add_argument("--max-body", type=int, default=MAX_BODY_BYTES, help="octets au plus par requête (413 au-delà)")
    parser.add_argument("--max-queue", type=int, default=256, help="requêtes en attente au plus (503 au-delà)")
    parser.add_argument("--timeout", type=float, default=60.0, help="secondes au plus par requête (504 au-delà)")
    args = parser.parse_args(argv)
    try:
        host = _check_host(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < args.port < 65536:
        parser.error(f"Port invalide : {args.port}.")

    from atelier.runtime import config

    config.forbid_hub()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    served: list[ServedModel] = []
    if args.model_path:
        served.append(load_sentence_transformer(args.model_path, args.name or os.path.basename(args.model_path.rstrip("/"))))
    roles = args.model or ([] if args.model_path else ["sentence_multilingual"])
    if roles:
        from atelier.assets import models

        for role in roles:
            alias = model_alias(models.describe(role))
            served.append(load_sentence_transformer(str(models.model_id(role)), role,
                                                    aliases=(alias,) if alias and alias != role else ()))
    api_key = config.secret(API_KEY_ENV) or None
    app = create_app(served, api_key=api_key, fault_injection=args.inject_faults, max_batch=args.max_batch,
                     max_body_bytes=args.max_body, max_queue=args.max_queue, request_timeout=args.timeout)
    names = ", ".join(n for m in served for n in (m.name, *m.aliases))
    print(f"Serveur d'embeddings prêt sur http://{host}:{args.port}/v1 — modèles : {names} ; "
          f"clé d'API : {'exigée (variable ' + API_KEY_ENV + ')' if api_key else 'aucune'}.", flush=True)

    import uvicorn

    uvicorn.run(app, host=host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
