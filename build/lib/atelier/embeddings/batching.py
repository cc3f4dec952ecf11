"""Regroupement des requêtes du serveur d'embeddings (*dynamic batching*), file bornée.

Utilisé par :mod:`atelier.embeddings.serve` (chapitre « Embeddings : local ou
API ? », ``02_embeddings``). Les requêtes en attente d'un même modèle sont
calculées en un seul appel ; la file a une taille maximale (au-delà, le serveur
répond 503 au lieu d'accumuler du retard), chaque requête a un délai (au-delà,
504), et un texte qui fait échouer le calcul ne fait échouer que sa requête :
le lot est alors recalculé requête par requête.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


class ServerBusy(Exception):
    """La file d'attente est pleine : le client doit réessayer plus tard (503)."""


class Batcher:
    """File bornée de requêtes ``(textes, future)`` d'un modèle, calculées par lots dans un fil à part."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], *, max_batch: int = 64,
                 max_wait: float = 0.002, max_queue: int = 256, on_batch: Callable[[int], None] | None = None):
        self.encode, self.max_batch, self.max_wait, self.max_queue = encode, max_batch, max_wait, max_queue
        self.on_batch = on_batch or (lambda n: None)  # appelé avec le nombre de textes de chaque lot calculé
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.max_queue)
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def submit(self, texts: list[str], timeout: float) -> np.ndarray:
        """Vecteurs ``(n, H)`` des ``texts`` ; ``ServerBusy`` si la file est pleine, ``TimeoutError`` après ``timeout`` s."""
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((texts, fut))
        except asyncio.QueueFull:
            raise ServerBusy from None
        return await asyncio.wait_for(fut, timeout)  # annule la future : le lot l'ignorera

    async def _collect(self) -> list[tuple[list[str], asyncio.Future]]:
        loop = asyncio.get_running_loop()
        items = [await self.queue.get()]
        n = len(items[0][0])
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            try:
                item = self.queue.get_nowait() if not self.queue.empty() else await asyncio.wait_for(
                    self.queue.get(), max(deadline - loop.time(), 0))
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            items.append(item)
            n += len(item[0])
        return [(texts, fut) for texts, fut in items if not fut.done()]  # requêtes expirées : écartées

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            if not items:
                continue
            flat = [t for texts, _ in items for t in texts]
            try:
                vecs = await asyncio.to_thread(self.encode, flat)  # (n, H)
            except Exception:  # un texte fautif : on recalcule requête par requête
                await self._one_by_one(items)
                continue
            self.on_batch(len(flat))
            start = 0
            for texts, fut in items:
                if not fut.done():
                    fut.set_result(vecs[start: start + len(texts)])
                start += len(texts)

    async def _one_by_one(self, items) -> None:
        for texts, fut in items:
            if fut.done():
                continue
            try:
                vecs = await asyncio.to_thread(self.encode, texts)  # (len(texts), H)
            except Exception as exc:  # jamais d'arrêt du serveur sur une erreur de calcul
                if not fut.done():
                    fut.set_exception(exc)
                continue
            self.on_batch(len(texts))
            if not fut.done():
                fut.set_result(vecs)
