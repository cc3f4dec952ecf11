"""La roue (wheel) du paquet ``atelier-llm`` : le code des chapitres, rien de l'outillage du livre.

On construit la roue (sans réseau, sans isolation) à partir d'une copie du dépôt, puis on
vérifie qu'elle contient les sous-paquets et les fichiers de données, mais ni ``tools/``
ni aucun module qui importe Sphinx ou docutils (réservés au build du livre).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_ONLY = {"sphinx", "docutils", "myst_nb", "jupyter_book", "jupyter_cache", "jupytext", "nbformat"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "code", src / "code", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "tools", src / "tools", ignore=shutil.ignore_patterns("__pycache__"))  # ne doit pas y entrer
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out),
         str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    wheels = list(out.glob("atelier_llm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _imported_tops(code: str) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def test_wheel_has_the_chapter_packages_and_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("atelier/__init__.py", "atelier/runtime/book.py", "atelier/assets/models.py",
                     "atelier/assets/files/nsm_primes_fr.csv", "atelier/anatomie/attention.py",
                     "atelier/embeddings/serve.py", "atelier/camembert/nli.py", "atelier/lora_nf4/sft.py",
                     "atelier/finetuning/__init__.py", "atelier/metrics.py"):
        assert expected in names, f"{expected} manque dans {wheel.name}"


def test_wheel_has_no_book_tooling(wheel):
    zf = zipfile.ZipFile(wheel)
    names = zf.namelist()
    assert not [n for n in names if n.startswith("tools/")], "tools/ ne doit pas entrer dans la roue"
    offenders = {}
    for name in names:
        if name.endswith(".py"):
            bad = _imported_tops(zf.read(name).decode("utf-8")) & BUILD_ONLY
            if bad:
                offenders[name] = sorted(bad)
    assert not offenders, f"modules de la roue qui importent l'outillage du build : {offenders}"
