"""Une cellule en erreur fait échouer nbmake et le build du livre (fixtures, pas un vrai chapitre)."""

import shutil
import subprocess
import sys
from pathlib import Path

from atelier.runtime.config import REPO_ROOT

FIXTURES = Path(__file__).parent / "fixtures"


def test_nbmake_fails_on_cell_error(tmp_path):
    shutil.copy(FIXTURES / "echec.ipynb", tmp_path / "echec.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbmake", str(tmp_path / "echec.ipynb")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode != 0, run.stdout[-2000:]
    assert "échec voulu" in run.stdout


def test_book_build_fails_on_cell_error(tmp_path):
    """Le vrai _config.yml du livre, avec un seul chapitre qui échoue : le build doit échouer."""
    (tmp_path / "book").mkdir()
    shutil.copy(REPO_ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(FIXTURES / "01_echec.md", tmp_path / "book" / "01_echec.md")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/01_echec\n", "utf-8")
    bib = tmp_path / "book" / "refs"
    shutil.copytree(REPO_ROOT / "book" / "refs", bib)
    os = __import__("os")
    # tools.sphinx (extension du livre) n'est pas installé : jupyter-book le trouve par PYTHONPATH (comme le Makefile).
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "ATELIER_BUILD": str(tmp_path / "_build"), "PYTHONPATH": pythonpath}
    run = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--path-output", ".", "-W", "-n", "--keep-going"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env,
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert "échec voulu" in out or "Executing notebook failed" in out
