"""Le chemin d'un lecteur qui télécharge un notebook : installation propre, hors du dépôt.

``make test-install`` (ou ``python -m tools.install_check [CHAPITRE…]``) :

1. construit la roue du paquet ``atelier`` (``pip wheel``) ;
2. crée un environnement virtuel neuf, avec seulement PyTorch préinstallé
   (comme Colab), et les outils pour exécuter un notebook (nbmake) ;
3. copie le notebook du chapitre dans un dossier hors du dépôt et l'exécute
   avec nbmake : sa cellule d'installation installe le paquet depuis la roue
   (variable ``ATELIER_SOURCE``, que la cellule honore) avec les versions que
   pip résout, les données viennent du dossier indiqué par ``ATELIER_DATA`` et
   les modèles d'un cache neuf (``ATELIER_CACHE``) ;
4. imprime la version de Python, les versions installées, leurs écarts au
   verrou (``requirements.txt``) et la durée.

L'interpréteur de l'environnement neuf est celui de ``--python`` (par défaut
celui qui lance l'outil, Python 3.11 comme le verrou). Colab est en Python 3.12 :
``--python python3.12`` là où PyTorch a une roue pour cette version.

Ce contrôle télécharge des paquets (PyPI) et convertit les modèles : il dure
plusieurs minutes, hors de ``make test`` ; il se lance avant chaque version
(``make release``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from atelier.runtime import config
from atelier.runtime.cli import Parser

REPO = config.REPO_ROOT
LIBRARIES = ("atelier-llm", "torch", "transformers", "sentence-transformers", "peft", "numpy", "pandas", "spacy")


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, text=True, **kw)


def notebooks(chapters: list[str]) -> list[Path]:
    """Les notebooks de ``chapters`` : noms (``01_anatomie``) ou débuts de noms (``01``), comme ``make bench``."""
    known = sorted(p for p in (REPO / "book").glob("[0-9][0-9]_*.ipynb") if not p.stem.startswith("9"))
    found = []
    for chapter in chapters:
        match = [nb for nb in known if nb.stem.startswith(chapter)]
        if len(match) != 1:
            raise ValueError(f"chapitre inconnu ou ambigu : {chapter!r} (attendu : le nom ou le numéro d'un "
                             f"notebook de book/ : {', '.join(nb.stem for nb in known)}).")
        found += match
    return found


def lock_differences(freeze: list[str], lock: Path = REPO / "requirements.txt") -> list[str]:
    """Paquets installés à une autre version que le verrou : ``nom verrou → installé``."""
    def versions(lines):
        out = {}
        for line in lines:
            line = line.split("#")[0].split(";")[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                out[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
        return out

    locked, installed = versions(lock.read_text("utf-8").splitlines()), versions(freeze)
    return [f"{name} {locked[name]} → {version}" for name, version in sorted(installed.items())
            if name in locked and version != locked[name]]


def check(chapters: list[str], python: str = sys.executable, keep: bool = False) -> dict:
    """Installe et exécute ``chapters`` dans un environnement neuf ; renvoie le compte rendu."""
    chapters = [nb.stem for nb in notebooks(chapters)]  # erreur avant d'installer quoi que ce soit
    tmp = Path(tempfile.mkdtemp(prefix="atelier-install-"))
    report: dict = {"dossier": str(tmp), "chapitres": {}}
    try:
        dist = tmp / "dist"
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
              str(REPO)])
        wheel = next(dist.glob("atelier_llm-*.whl"))
        venv = tmp / "venv"
        # Rien de l'environnement du dépôt : ni PYTHONPATH (pip y verrait le paquet du dépôt, code/*.egg-info,
        # comme déjà installé), ni virtualenv actif, ni réglages du livre.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "PYTHON", "VIRTUAL_ENV"))}
        _run([python, "-m", "venv", str(venv)], env=env)
        py = venv / "bin" / "python"
        _run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], env=env)
        # PyTorch seul d'abord, comme sur Colab (ici la roue CPU du verrou) : la cellule doit le garder.
        _run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0"], env=env)
        _run([str(py), "-m", "pip", "install", "-q", "nbmake", "pytest", "ipykernel"], env=env)
        reader = tmp / "lecteur"
        reader.mkdir()
        env = dict(env)
        env.update(ATELIER_SOURCE=wheel.resolve().as_uri(), ATELIER_DATA=str(config.data_dir()),
                   ATELIER_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TQDM_DISABLE="1", PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        for nb in notebooks(chapters):
            chapter = nb.stem
            shutil.copy(nb, reader / nb.name)
            t0 = time.perf_counter()
            run = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                                  "--nbmake-timeout=1800", nb.name], cwd=reader, env=env, capture_output=True,
                                 text=True)
            report["chapitres"][chapter] = {"réussi": run.returncode == 0, "secondes": time.perf_counter() - t0,
                                            "fin du journal": run.stdout[-3000:] if run.returncode else ""}
        freeze = _run([str(py), "-m", "pip", "freeze"], capture_output=True, env=env).stdout.splitlines()
        report["python"] = _run([str(py), "--version"], capture_output=True, env=env).stdout.strip()
        report["versions"] = [line for line in freeze if line.split("==")[0].split(" @ ")[0].lower() in LIBRARIES]
        report["écarts au verrou"] = lock_differences(freeze)
        return report
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m tools.install_check",
                    description="Installe le paquet dans un environnement neuf et exécute un notebook hors du dépôt.")
    parser.add_argument("chapters", nargs="*", default=["01_anatomie"],
                        help="chapitres, par nom ou numéro (défaut : 01_anatomie)")
    parser.add_argument("--python", default=sys.executable, help="interpréteur de l'environnement neuf")
    parser.add_argument("--keep", action="store_true", help="garder le dossier temporaire")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    report = check(args.chapters, python=args.python, keep=args.keep)
    print(f"{report['python']} ; {', '.join(report['versions'])}")
    print(f"Écarts au verrou (requirements.txt) : {', '.join(report['écarts au verrou']) or 'aucun'}")
    ok = True
    for chapter, r in report["chapitres"].items():
        ok &= r["réussi"]
        print(f"{chapter} : {'réussi' if r['réussi'] else 'ÉCHEC'} en {r['secondes']:.0f} s")
        if r["fin du journal"]:
            print(r["fin du journal"])
    print(f"Durée totale : {time.perf_counter() - t0:.0f} s.")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
