"""Banc d'essai du livre : chaque chapitre exécuté une fois, calcul en float32 imposé.

``make bench`` (ou ``python -m tools.bench [chapitres…]``) exécute chaque
notebook de ``book/`` dans un dossier temporaire avec ``ATELIER_FP32=1``, un
chapitre à la fois (chacun occupe déjà tous les cœurs), puis lit le tampon
d'exécution que le chapitre écrit (``_build/runs/<chapitre>.json``) : durée du
noyau, pic de mémoire résidente, précision de calcul. Il imprime ces chiffres
face au budget du livre :

- 10 minutes de noyau et 4 Go de pic par chapitre, 30 minutes pour tous,
  sur 2 cœurs AVX2 sans bfloat16 natif (la machine la plus lente visée) ;
- sur une machine AVX-512 ou AMX, le float32 va environ deux fois plus vite :
  on y vise la moitié.

C'est un banc d'essai, pas un test : il ne fait pas échouer le build. Avec
``--strict``, il renvoie un code de sortie non nul si un budget est dépassé.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from atelier.runtime.fmt import nombre
from atelier.runtime.cli import Parser

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
CHAPTER_SECONDS = 600.0
CHAPTER_RSS_BYTES = 4e9
TOTAL_SECONDS = 1800.0


def _chapters(names: list[str]) -> list[Path]:
    notebooks = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
    notebooks = [nb for nb in notebooks if not nb.stem.startswith("9")]
    if not names:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.stem.startswith(n) for n in names)]
    unknown = [n for n in names if not any(nb.stem.startswith(n) for nb in notebooks)]
    if unknown:
        raise SystemExit(f"Chapitres inconnus : {', '.join(unknown)} (attendus : "
                         f"{', '.join(nb.stem for nb in notebooks)}).")
    return chosen


def run_chapter(notebook: Path, workdir: Path, timeout: int = 1800) -> dict:
    """Exécute ``notebook`` dans ``workdir`` (float32 imposé) ; renvoie son tampon, ou l'erreur."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    copy = workdir / notebook.name
    shutil.copy(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:  # la première ligne suffit : le détail est dans le notebook
        error = str(exc).strip().splitlines()[-1][:200]
    wall = time.perf_counter() - start
    nbformat.write(nb, copy)  # le notebook exécuté (sorties et durées par cellule) reste lisible
    cells = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in t and "shell.execute_reply" in t:
            from datetime import datetime

            dt = (datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
                  - datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))).total_seconds()
            cells.append((round(dt, 1), i, cell.source.splitlines()[0][:70] if cell.source else ""))
    stamp = workdir / "_build" / "runs" / f"{notebook.stem}.json"
    record = json.loads(stamp.read_text(encoding="utf-8")) if stamp.is_file() and error is None else {}
    slowest = sorted(cells, reverse=True)[:5]
    return {"chapter": notebook.stem, "wall": wall, "error": error, "slowest_cells": slowest, **record}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="préfixes de chapitres (ex. 03 05) ; défaut : tous")
    parser.add_argument("--strict", action="store_true", help="code de sortie 1 si un budget est dépassé")
    parser.add_argument("--json", type=Path, default=None, help="écrire aussi les résultats dans ce fichier")
    parser.add_argument("--keep", type=Path, default=None, help="garder les notebooks exécutés dans ce dossier")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "code"))
    from atelier.runtime import config

    os.environ["ATELIER_FP32"] = "1"
    os.environ.setdefault("PYTHONHASHSEED", "0")
    fast = config.cpu_native_bf16()
    factor = 0.5 if fast else 1.0
    print(f"Banc d'essai : float32 imposé (ATELIER_FP32=1), {config.num_threads()} fils ; processeur "
          + ("à bfloat16 natif (AVX-512/AMX) : budget visé = moitié du budget du livre." if fast
             else "sans bfloat16 natif : budget du livre."), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="atelier-bench-") as tmp:
        tmp = Path(tmp)
        os.environ["ATELIER_BUILD"] = str(tmp / "_build")
        for nb in _chapters(args.chapters):
            print(f"… {nb.stem}", flush=True)
            results.append(run_chapter(nb, tmp))
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp / nb.name, args.keep / nb.name)
    over = False
    header = f"{'chapitre':<18} {'noyau (s)':>10} {'budget (s)':>10} {'pic RSS (Go)':>12} {'budget (Go)':>11} {'calcul':>7}  état"
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        if r["error"]:
            over = True
            print(f"{r['chapter']:<18} {'—':>10} {'—':>10} {'—':>12} {'—':>11} {'—':>7}  ÉCHEC : {r['error']}")
            continue
        seconds, rss = float(r["seconds"]), float(r["peak_rss_mb"]) * 2**20
        budget_s, budget_b = CHAPTER_SECONDS * factor, CHAPTER_RSS_BYTES
        state = []
        if seconds > budget_s:
            state.append("durée dépassée")
        if rss > budget_b:
            state.append("mémoire dépassée")
        over |= bool(state)
        print(f"{r['chapter']:<18} {nombre(seconds):>10} {nombre(budget_s):>10} {nombre(rss / 1e9, 2):>12} "
              f"{nombre(budget_b / 1e9, 1):>11} {r.get('precision', '?'):>7}  {', '.join(state) or 'dans le budget'}")
    total = sum(float(r.get("seconds", 0.0)) for r in results)
    total_budget = TOTAL_SECONDS * factor
    print("-" * len(header))
    print(f"{'total':<18} {nombre(total):>10} {nombre(total_budget):>10}"
          + ("   total dépassé" if total > total_budget else "   total dans le budget"))
    over |= total > total_budget
    print("\nCellules les plus longues (s, rang, début) :")
    for r in results:
        cells = "; ".join(f"{dt:.0f} s n°{i} « {src} »" for dt, i, src in r.get("slowest_cells", [])[:3])
        print(f"  {r['chapter']} : {cells or '—'}")
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 1 if (over and args.strict) else 0


if __name__ == "__main__":
    raise SystemExit(main())
