"""Lancer un chapitre ailleurs qu'ici : la cellule d'installation (Colab) et l'environnement Binder.

La cellule d'installation est celle du squelette de `CONTRIBUTING.md` ; chaque
chapitre commence par elle. On l'exécute pour de bon, avec `subprocess.run`
remplacé par un enregistreur : en local elle ne fait rien ; sans `atelier`
(Colab), elle installe le paquet depuis le dépôt, au commit de la version
publiée (``make release``), avec ses extras, sans toucher au PyTorch déjà installé, puis les
paquets à installer sans dépendances.
"""

import importlib.metadata
import importlib.util
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from atelier.runtime import book, config
from atelier.runtime.config import REPO_ROOT
from tools import build, site

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))
CFG = site.book_config()
CELL, CELL_TAGS = site.contributing_install_cell()
NOTEBOOKS = [md.with_suffix(".ipynb") for md in build.chapter_sources()]
BINDER = REPO_ROOT / "binder"
COLAB_TORCH = "2.8.0+cu126"  # un torch de Colab, fictif


def _nodeps_requirements() -> list[str]:
    lines = (REPO_ROOT / "requirements-nodeps.txt").read_text("utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _run_cell(monkeypatch, atelier_installed: bool) -> list[tuple[list[str], dict]]:
    """Exécute la cellule d'installation ; renvoie les commandes qu'elle aurait lancées."""
    calls = []

    def fake_run(args, *a, **kw):
        calls.append((list(args), kw))
        return subprocess.CompletedProcess(args, 0)

    real_find_spec, real_version = importlib.util.find_spec, importlib.metadata.version
    monkeypatch.setattr(subprocess, "run", fake_run)
    if not atelier_installed:
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name.split(".")[0] == "atelier" else real_find_spec(name, *a)
        )
        monkeypatch.setattr(
            importlib.metadata, "version", lambda name: COLAB_TORCH if name == "torch" else real_version(name)
        )
    exec(compile(CELL, "<cellule d'installation>", "exec"), {"__name__": "__main__"})
    return calls


# --- la cellule elle-même ------------------------------------------------------------------

def test_template_is_found_and_hidden_on_the_site():
    assert "importlib" in CELL and "pip" in CELL
    # Sur le site, la page s'ouvre sur l'enseignement : la cellule disparaît (elle reste dans le notebook).
    assert "remove-cell" in CELL_TAGS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_chapter_starts_with_the_install_cell(notebook):
    code, tags = site.first_code_cell(notebook)
    assert code == CELL, f"{notebook.name} : la première cellule de code doit être celle de CONTRIBUTING.md"
    assert tags == CELL_TAGS


def test_install_cell_does_nothing_when_atelier_is_importable(monkeypatch):
    assert importlib.util.find_spec("atelier") is not None
    assert _run_cell(monkeypatch, atelier_installed=True) == []


def _atelier_requirement(calls) -> tuple[Requirement, list[str], dict]:
    found = []
    for args, kw in calls:
        for arg in args:
            try:
                req = Requirement(arg)
            except Exception:  # noqa: BLE001 - pas une exigence (option, chemin)
                continue
            if req.name == PYPROJECT["project"]["name"]:
                found.append((req, args, kw))
    assert len(found) == 1, f"le paquet du livre doit être installé une fois : {calls}"
    return found[0]


def test_install_cell_installs_the_release_from_the_repository(monkeypatch):
    calls = _run_cell(monkeypatch, atelier_installed=False)
    assert calls, "sans atelier, la cellule doit installer le paquet"
    req, args, kw = _atelier_requirement(calls)
    assert args[:4] == [sys.executable, "-m", "pip", "install"], args
    repo = CFG["repository"]["url"].rstrip("/")
    # Un commit (empreinte complète) : celui de la version, vérifié dans l'historique plus bas.
    assert re.fullmatch(re.escape(f"git+{repo}@") + "[0-9a-f]{40}", req.url), \
        f"installe {req.url}, attendu git+{repo}@<commit de la version {PYPROJECT['project']['version']}>"
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    assert {"light", "chapitres"} <= req.extras <= extras, f"extras {req.extras} (connus : {extras})"
    for args, kw in calls:
        assert kw.get("check") is True, f"une installation ratée doit arrêter le notebook : {args}"
        assert not {"-U", "--upgrade", "--force-reinstall", "--ignore-installed"} & set(args), args


def test_install_cell_keeps_the_runtimes_torch(monkeypatch):
    calls = _run_cell(monkeypatch, atelier_installed=False)
    _, args, _ = _atelier_requirement(calls)
    torch = [Requirement(a) for a in args if a.startswith("torch")]
    assert [str(r.specifier) for r in torch] == [f"=={COLAB_TORCH}"], (
        "la commande qui installe atelier doit épingler torch à la version déjà installée "
        f"(torch=={COLAB_TORCH} ici), pour que pip ne remplace jamais le PyTorch de Colab : {args}"
    )
    for args, _ in calls:
        assert not any(a.startswith("torch") and a != f"torch=={COLAB_TORCH}" for a in args), args


def test_install_cell_installs_the_nodeps_packages(monkeypatch):
    calls = _run_cell(monkeypatch, atelier_installed=False)
    wanted = set(_nodeps_requirements())
    installed = {a for args, _ in calls if "--no-deps" in args for a in args}
    assert wanted <= installed, (
        f"le profil light a besoin de {sorted(wanted)} (requirements-nodeps.txt), à installer avec --no-deps : {calls}"
    )


def test_pyproject_does_not_pin_torch():
    specs = [Requirement(d) for d in PYPROJECT["project"]["dependencies"]]
    torch = [r for r in specs if r.name == "torch"]
    assert torch and all(s.operator == ">=" for s in torch[0].specifier), torch


def test_full_profile_is_chosen_on_gpu_and_said(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("ATELIER_PROFILE", raising=False)
    monkeypatch.setenv("ATELIER_BUILD", str(tmp_path))
    monkeypatch.setattr(config, "_cuda_available", lambda: True)
    assert config.get_profile() == "full"
    book.setup("42_essai")
    out = capsys.readouterr().out
    assert "profil « full »" in out and "GPU" in out
    monkeypatch.setenv("ATELIER_PROFILE", "light")  # le choix automatique se contourne
    assert config.get_profile() == "light"


# --- Binder ---------------------------------------------------------------------------------

def test_binder_requirements_point_at_the_lock():
    lines = [ln.strip() for ln in (BINDER / "requirements.txt").read_text("utf-8").splitlines()]
    includes = [ln.split(maxsplit=1)[1] for ln in lines if ln.startswith(("-r ", "--requirement "))]
    assert [(BINDER / inc).resolve() for inc in includes] == [(REPO_ROOT / "requirements.txt").resolve()]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    assert not [ln for ln in lines if ln and not ln.startswith(("#", "-"))], "tout vient du verrou"


def test_binder_python_matches_the_lock():
    runtime = (BINDER / "runtime.txt").read_text("utf-8").strip()
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}"
    assert any(ln.startswith("jupytext==") for ln in (REPO_ROOT / "requirements.txt").read_text("utf-8").splitlines())


def test_binder_postbuild_runs_the_right_steps(tmp_path):
    """postBuild exécuté pour de bon, avec des Python factices qui notent leurs arguments."""
    post = BINDER / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR, "binder/postBuild doit être exécutable"
    assert subprocess.run(["bash", "-n", str(post)]).returncode == 0
    log = tmp_path / "log.txt"
    for prefix in ("kernel", "server"):
        (tmp_path / prefix / "bin").mkdir(parents=True)
        for exe in ("python", "jupytext-config"):
            shim = tmp_path / prefix / "bin" / exe
            shim.write_text(f'#!/usr/bin/env bash\necho "{prefix}/{exe} ATELIER_PROFILE=${{ATELIER_PROFILE:-}} $*" >> {log}\n')
            shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ATELIER_PROFILE"}
    env = {**env, "KERNEL_PYTHON_PREFIX": str(tmp_path / "kernel"), "NB_PYTHON_PREFIX": str(tmp_path / "server")}
    run = subprocess.run([str(post)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    steps = log.read_text().splitlines()
    jupytext = next(ln for ln in (REPO_ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("jupytext=="))
    assert steps == [
        "kernel/python ATELIER_PROFILE= -m pip install --no-cache-dir --no-deps -r requirements-nodeps.txt",
        "kernel/python ATELIER_PROFILE= -m pip install --no-cache-dir --no-deps -e .",
        f"server/python ATELIER_PROFILE= -m pip install --no-cache-dir {jupytext}",
        "server/jupytext-config ATELIER_PROFILE= set-default-viewer markdown myst",
        "server/python ATELIER_PROFILE= -m pip install --no-cache-dir jupyter-server-proxy==4.6.0",
        "kernel/python ATELIER_PROFILE=light -m atelier.assets.models prepare",
    ], "\n".join(steps)


def test_binder_files_are_the_ones_repo2docker_reads():
    assert sorted(p.name for p in BINDER.iterdir()) == ["postBuild", "requirements.txt", "runtime.txt"]


def test_sync_install_cell_tool(tmp_path):
    """L'outil qui remet la cellule de CONTRIBUTING.md en tête des chapitres (remplace ou insère)."""
    root = tmp_path
    (root / "CONTRIBUTING.md").write_text(
        "# Guide\n\n```markdown\n```{code-cell} ipython3\n:tags: [remove-output]\n"
        "import importlib.util\nif importlib.util.find_spec(\"atelier\") is None:\n    pass  # installe\n```\n```\n",
        "utf-8",
    )
    old = "```{code-cell} ipython3\n:tags: [remove-output]\nimport importlib.util\nif importlib.util.find_spec(\"atelier\") is None:\n    print('ancienne')\n```"
    chapter = tmp_path / "01_x.md"
    chapter.write_text(f"# Titre\n\n{old}\n\n```{{code-cell}} ipython3\nx = 1\n```\n", "utf-8")
    assert site.sync_install_cell(chapter, root)
    text = chapter.read_text("utf-8")
    assert "ancienne" not in text and "pass  # installe" in text and text.count("code-cell") == 2
    assert not site.sync_install_cell(chapter, root)  # idempotent
    bare = tmp_path / "02_y.md"
    bare.write_text("# Titre\n\n```{code-cell} ipython3\nx = 1\n```\n", "utf-8")
    assert site.sync_install_cell(bare, root)
    text = bare.read_text("utf-8")
    assert text.index("pass  # installe") < text.index("x = 1") and text.count("code-cell") == 2
    with pytest.raises(ValueError, match="aucune cellule"):
        (tmp_path / "90_z.md").write_text("# Glossaire\n", "utf-8")
        site.sync_install_cell(tmp_path / "90_z.md", root)


# --- le contrat d'installation : un commit de version qui existe ---------------------------------

def _git(*args):
    return subprocess.run(["git", *args], cwd=config.REPO_ROOT, capture_output=True, text=True)


def test_install_ref_is_a_release_commit_of_this_repository():
    """La cellule installe ``@<commit>`` : un commit de l'historique du dépôt, qui porte la version de pyproject.toml.

    ``make release`` le crée (commit « Version X.Y.Z ») puis l'écrit dans les cellules.
    """
    ref = re.search(r"latelier-des-llm@([0-9a-f]{40})\b", CELL)
    assert ref, f"la cellule n'installe pas un commit (empreinte complète) : {CELL}"
    sha = ref[1]
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("clone superficiel : l'historique complet manque pour retrouver le commit de version")
    assert _git("cat-file", "-t", sha).stdout.strip() == "commit", f"{sha} n'est pas un commit de ce dépôt : make release"
    assert _git("merge-base", "--is-ancestor", sha, "HEAD").returncode == 0, f"{sha} n'est pas dans l'historique de HEAD"
    current = re.search(r'(?m)^version = "([^"]+)"', (config.REPO_ROOT / "pyproject.toml").read_text("utf-8"))[1]
    released = _git("show", f"{sha}:pyproject.toml").stdout
    assert f'version = "{current}"' in released, f"le commit {sha[:10]} ne porte pas la version {current} de pyproject.toml"
    subject = _git("log", "-1", "--format=%s", sha).stdout.strip()
    assert subject == f"Version {current}", f"{sha[:10]} (« {subject} ») n'est pas le commit de version de make release"


@pytest.mark.parametrize("md", build.chapter_sources(), ids=lambda p: p.stem)
def test_release_commit_has_every_module_the_chapter_imports(md):
    """Sur Colab, le chapitre tourne avec le paquet du commit installé : chaque module qu'il importe doit y être."""
    ref = re.search(r"latelier-des-llm@([0-9a-f]{40})\b", CELL)
    if ref is None or _git("cat-file", "-t", ref[1]).stdout.strip() != "commit":
        pytest.skip("commit de version introuvable (voir test_install_ref_is_a_release_commit_of_this_repository)")
    missing = [name for name in build.chapter_modules(md)
               if _git("cat-file", "-e", f"{ref[1]}:{build.module_file(name).relative_to(config.REPO_ROOT).as_posix()}").returncode]
    assert not missing, f"{md.name} importe {missing}, absents du commit {ref[1][:10]} que la cellule installe : make release"


def test_release_sets_version_and_install_ref_everywhere(tmp_path):
    import shutil

    from tools import release

    root = tmp_path / "depot"
    shutil.copytree(config.REPO_ROOT / "book", root / "book", ignore=shutil.ignore_patterns("*.ipynb"))
    for name in ("pyproject.toml", "CONTRIBUTING.md"):
        shutil.copy(config.REPO_ROOT / name, root / name)
    changed = release.set_version("9.8.7", root)
    assert root / "pyproject.toml" in changed and 'version = "9.8.7"' in (root / "pyproject.toml").read_text("utf-8")
    sha = "0123456789abcdef0123456789abcdef01234567"
    release.set_install_ref(sha, root)
    for md in sorted((root / "book").glob("0[1-5]_*.md")):
        assert f"latelier-des-llm@{sha}" in md.read_text("utf-8"), md.name
        assert (root / "book" / f"{md.stem}.ipynb").is_file()
    with pytest.raises(ValueError, match="version"):
        release.set_version("9.8", root)
    with pytest.raises(ValueError, match="ref"):
        release.set_install_ref("v9.8.7", root)
