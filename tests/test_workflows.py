"""Les workflows GitHub Actions (`.github/workflows/`), vérifiés ici faute de pouvoir tourner ici.

- YAML valide et conforme au schéma des workflows (check-jsonschema, schéma embarqué, sans réseau) ;
- audit de sécurité zizmor (hors ligne) : actions de GitHub épinglées par version majeure,
  toute action tierce épinglée par empreinte ;
- chaque script `run:` passe `bash -n` ; chaque fichier et cible make appelés existe ;
- ce que chaque workflow doit faire : construire avec le cache d'exécution et publier
  `_build/html` (book.yml), relancer les chapitres avec les dernières versions et
  signaler la casse (nightly.yml).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atelier.runtime.config import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent
ZIZMOR_POLICY = """\
rules:
  unpinned-uses:
    config:
      policies:
        "actions/*": ref-pin
        "*": hash-pin
"""


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text("utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 lit « on » comme un booléen
    return data


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def runs(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in steps(job))


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} manque : pip install {'check-jsonschema' if name == 'check-jsonschema' else name}"
    return path


def test_both_workflows_exist():
    assert [p.name for p in FILES] == ["book.yml", "nightly.yml"]


def test_workflows_match_the_github_schema():
    run = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, FILES)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_zizmor_security_audit(tmp_path):
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_POLICY, "utf-8")
    run = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", "--config", str(config), str(WORKFLOWS)],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_run_scripts_are_valid_bash(path, tmp_path):
    data = load(path.name)
    for job_name, job in data["jobs"].items():
        for i, step in enumerate(steps(job)):
            if "run" not in step:
                continue
            script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
            check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
            assert check.returncode == 0, f"{job_name}, étape {i} : {check.stderr}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_actions_are_versioned_and_jobs_bounded(path):
    data = load(path.name)
    assert data["permissions"] == {"contents": "read"}, "droits minimaux par défaut"
    for job_name, job in data["jobs"].items():
        assert 0 < job.get("timeout-minutes", 0) <= 120, f"{job_name} : timeout-minutes manquant ou trop grand"
        for step in steps(job):
            if "uses" in step:
                assert re.search(r"@(v\d+(\.\d+)*|[0-9a-f]{40})$", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_called_files_and_make_targets_exist(path):
    makefile = (REPO_ROOT / "Makefile").read_text("utf-8")
    targets = set(re.findall(r"^([\w.-]+):", makefile, re.MULTILINE))
    data = load(path.name)
    for job in data["jobs"].values():
        script = runs(job)
        for target in re.findall(r"\bmake (\w+)", script):
            assert target in targets, f"cible make inconnue : {target}"
        for called in re.findall(r"(?:^|\s)(\.ci/\w+)", script):
            assert (REPO_ROOT / called).is_file() and (REPO_ROOT / called).stat().st_mode & 0o111, called


def test_containers_match_the_books_python():
    binder = (REPO_ROOT / "binder" / "runtime.txt").read_text("utf-8").strip().removeprefix("python-")
    for path in FILES:
        for name, job in load(path.name)["jobs"].items():
            if "container" in job:
                assert job["container"] == f"python:{binder}-bookworm", f"{path.name}/{name}"


def test_book_workflow_builds_with_cache_tests_and_deploys():
    data = load("book.yml")
    assert set(data["on"]) >= {"push", "pull_request"} and data["on"]["push"]["branches"] == ["main"]
    assert "download.pytorch.org/whl/cpu" in data["env"]["PIP_EXTRA_INDEX_URL"]
    build, test, deploy = data["jobs"]["build"], data["jobs"]["test"], data["jobs"]["deploy"]
    assert "make book" in runs(build)
    cached = "\n".join(s["with"]["path"] for s in uses(build, "actions/cache"))
    assert "_build/.jupyter_cache" in cached and "_build/runs" in cached, "cache d'exécution et tampons restaurés"
    execution = next(s for s in uses(build, "actions/cache") if "_build/.jupyter_cache" in s["with"]["path"])
    assert "hashFiles(" in execution["with"]["key"] and execution["with"].get("restore-keys")
    assert [s["with"]["path"] for s in uses(build, "actions/upload-pages-artifact")] == ["_build/html"]
    assert ".ci/run" in runs(test)
    assert set(deploy["needs"]) == {"build", "test"} and uses(deploy, "actions/deploy-pages")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert "refs/heads/main" in deploy["if"] and deploy["environment"]["name"] == "github-pages"


def test_nightly_runs_chapters_on_latest_releases_and_reports():
    data = load("nightly.yml")
    (cron,) = [entry["cron"] for entry in data["on"]["schedule"]]
    assert len(cron.split()) == 5
    latest, report = data["jobs"]["latest"], data["jobs"]["report"]
    script = runs(latest)
    assert re.search(r"pip install --upgrade transformers peft sentence-transformers", script)
    assert script.index("make venv") < script.index("--upgrade") < script.index("make test"), (
        "le verrou d'abord, puis les dernières versions, puis les chapitres"
    )
    assert report["needs"] == "latest" and report["if"] == "failure()"
    assert report["permissions"] == {"issues": "write"} and uses(report, "actions/github-script")
