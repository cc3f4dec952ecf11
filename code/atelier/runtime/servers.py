"""Lancer un serveur local du livre et attendre qu'il réponde : toujours sur 127.0.0.1.

Utilisé par le chapitre « Embeddings : local ou API ? » (serveur compatible
OpenAI, :mod:`atelier.embeddings.serve`) et par les tests du serveur et de
l'interface de conversation (:mod:`atelier.lora_nf4.chat`).

>>> server = start_server("atelier.embeddings.serve", "--model", "sentence_multilingual", health="/health")
>>> server.url, server.seconds        # http://127.0.0.1:PORT, durée du démarrage
>>> server.stop()

Le serveur écrit sa sortie dans un journal (``server.log``) ; s'il s'arrête
avant d'être prêt, ou ne répond pas à temps, l'erreur cite la fin du journal.
Une fois prêt, on vérifie qu'il n'écoute que sur la boucle locale.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from atelier.runtime.checks import check_float, check_type

__all__ = ["HOST", "free_port", "Server", "start_server", "wait_until_ready"]

HOST = "127.0.0.1"  # la seule adresse où le livre écoute


def free_port() -> int:
    """Un port TCP libre sur 127.0.0.1 (choisi par le système)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """Un serveur lancé par :func:`start_server` : processus, port, adresse, journal, durée du démarrage."""

    process: subprocess.Popen
    port: int
    log: Path
    seconds: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self, last: int | None = None) -> str:
        """Le journal du serveur (ses ``last`` derniers caractères si donné)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-last:] if last else text

    def stop(self, timeout: float = 20) -> int | None:
        """Arrête le serveur (``terminate``, puis ``kill`` après ``timeout`` s) ; renvoie son code de sortie."""
        if not self._stopped:
            self._stopped = True
            atexit.unregister(self.stop)
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        return self.process.returncode

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _responds(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # jamais de mandataire pour 127.0.0.1
    try:
        with opener.open(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _listening_addresses(pid: int) -> list[str] | None:
    try:
        import psutil

        conns = psutil.Process(pid).net_connections(kind="inet")
    except Exception:  # noqa: BLE001 - psutil absent ou accès refusé : on ne peut pas vérifier
        return None
    return [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]


def wait_until_ready(server: Server, health: str = "/", *, timeout: float = 180, interval: float = 0.5) -> float:
    """Attend que ``GET server.url + health`` réponde 200 ; renvoie la durée d'attente (s).

    ``RuntimeError`` si le processus s'arrête avant, ou s'il écoute ailleurs que
    sur 127.0.0.1 ; ``TimeoutError`` (serveur arrêté) s'il ne répond pas en
    ``timeout`` secondes. Les deux messages citent la fin du journal.
    """
    if not isinstance(server, Server):
        raise TypeError(f"server doit être un Server (rendu par start_server) ; reçu {type(server).__name__}.")
    if not isinstance(health, str) or not health.startswith("/"):
        raise ValueError(f"health doit être un chemin commençant par « / » ; reçu {health!r}.")
    timeout = check_float("timeout", timeout, min=0, min_open=True)
    start = time.perf_counter()
    while not _responds(server.url + health):
        if server.process.poll() is not None:
            raise RuntimeError(f"Le serveur s'est arrêté (code {server.process.returncode}) avant d'être prêt :\n"
                               + server.output(3000))
        if time.perf_counter() - start > timeout:
            server.stop()
            raise TimeoutError(f"Le serveur n'a pas répondu sur {server.url + health} en {timeout:g} s :\n"
                               + server.output(3000))
        time.sleep(interval)
    addresses = _listening_addresses(server.pid)
    if addresses is not None and any(ip != HOST for ip in addresses):
        server.stop()
        raise RuntimeError(f"Le serveur écoute sur {sorted(set(addresses))} : le livre n'accepte que {HOST}.")
    return time.perf_counter() - start


def start_server(module: str, *args: str, port: int | None = None, health: str = "/", timeout: float = 180,
                 env: dict | None = None, log: str | Path | None = None) -> Server:
    """Lance ``python -m module --port PORT *args`` et attend qu'il réponde (:func:`wait_until_ready`).

    ``port`` : par défaut un port libre (:func:`free_port`) ; ``env`` : variables
    d'environnement du processus (défaut : celles du noyau) ; ``log`` : journal
    de sa sortie (défaut : un fichier temporaire). Le serveur est arrêté à la
    sortie de Python s'il ne l'a pas été avant (:meth:`Server.stop`).
    """
    check_type("module", module, str)
    port = free_port() if port is None else port
    log = Path(log) if log is not None else Path(tempfile.mkdtemp(prefix="atelier-serveur-")) / "serveur.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        process = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), *map(str, args)],
                                   stdout=fh, stderr=subprocess.STDOUT, env=env)
    server = Server(process=process, port=port, log=log)
    atexit.register(server.stop)  # filet de sécurité si le carnet s'arrête avant la fin
    wait_until_ready(server, health, timeout=timeout)
    server.seconds = time.perf_counter() - t0
    return server
