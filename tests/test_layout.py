"""Organisation du code : le graphe des imports d'``atelier`` (et de ``tools``), lu avec ``ast``.

- aucun cycle d'imports, en comptant les imports faits à l'intérieur des fonctions ;
- aucun nom privé (``_nom``) importé d'un autre module, ni lu sur un module importé ;
- le paquet installé ``atelier`` n'importe jamais l'outillage du livre (``tools``) ;
- aucun module d'``atelier`` ne dépasse 400 lignes ;
- chaque sous-paquet a une docstring en français qui nomme son chapitre ;
- les imports des chapitres (``book/0*.md``) s'exécutent.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"atelier": ROOT / "code" / "atelier", "tools": ROOT / "tools"}
MAX_LINES = 400


def _modules() -> dict[str, tuple[Path, bool]]:
    """Nom complet -> (fichier, est un paquet) pour chaque module d'``atelier`` et de ``tools``."""
    found = {}
    for top, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(module importé, nom importé ou lu sur ce module, ligne) pour chaque import interne de ``module``."""
    path, is_package = MODULES[module]
    tree = ast.parse(path.read_text("utf-8"))
    out: list[tuple[str, str | None, int]] = []
    bound: dict[str, str] = {}  # nom local -> module interne qu'il désigne
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    out.append((alias.name, None, node.lineno))
                    if alias.asname:
                        bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:  # from paquet import module
                    out.append((sub, None, node.lineno))
                    bound[alias.asname or alias.name] = sub
                else:
                    out.append((base, alias.name, node.lineno))
    for node in ast.walk(tree):  # module._prive, sur un module interne importé
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            out.append((bound[node.value.id], node.attr, node.lineno))
    return out


GRAPH = {m: sorted({target for target, _, _ in _imports(m) if target != m}) for m in MODULES}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_modules_found():
    assert {"atelier.runtime.config", "atelier.anatomie.attention", "atelier.finetuning", "tools.build"} <= set(MODULES)


def test_no_import_cycle():
    """Parcours en profondeur : un module déjà « en cours » revu sur le chemin est un cycle."""
    state: dict[str, int] = {}  # 1 : en cours, 2 : fini
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in GRAPH.get(module, []):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "cycles d'imports :\n" + "\n".join(" → ".join(c) for c in cycles)


def test_no_private_name_crosses_modules():
    offenders = [
        f"{MODULES[m][0].relative_to(ROOT)}:{line} : {target}.{name}"
        for m in MODULES for target, name, line in _imports(m)
        if target != m and (_is_private(target.rsplit(".", 1)[-1]) or (name is not None and _is_private(name)))
    ]
    assert not offenders, "noms privés importés d'un autre module (rendez-les publics et documentés) :\n" + "\n".join(offenders)


def test_installed_package_never_imports_tools():
    offenders = [f"{m} → {t}" for m, targets in GRAPH.items() if m.startswith("atelier") for t in targets
                 if t.startswith("tools")]
    assert not offenders, offenders


def test_graph_is_seen_by_the_checks():
    """Garde-fou : le graphe voit les imports absolus, relatifs et dans les fonctions."""
    assert "atelier.lora_nf4.quantization" in GRAPH["atelier.lora_nf4.memory"]
    assert "atelier.lora_nf4.chat" in GRAPH["atelier.lora_nf4.sft"]
    assert "atelier.runtime.config" in GRAPH["atelier.lora_nf4.chat"]  # import dans une fonction
    assert "tools.build" in GRAPH["tools.sphinx"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("atelier")))
def test_module_at_most_400_lines(module):
    path = MODULES[module][0]
    n = len(path.read_text("utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} a {n} lignes (au plus {MAX_LINES}) : découpez-le par sujet."


CHAPTER_PACKAGES = {
    "atelier.anatomie": "01", "atelier.embeddings": "02", "atelier.camembert": "03",
    "atelier.lora_nf4": "04", "atelier.finetuning": "05",
}


@pytest.mark.parametrize("package", sorted(m for m, (p, pkg) in MODULES.items() if pkg and m.count(".") == 1
                                           and m.startswith("atelier")))
def test_subpackage_docstring_names_its_chapter(package):
    doc = ast.get_docstring(ast.parse(MODULES[package][0].read_text("utf-8"))) or ""
    assert doc, f"{package} : docstring manquante"
    if package in CHAPTER_PACKAGES:
        number = CHAPTER_PACKAGES[package]
        assert f"Chapitre {number}" in doc and f"book/{number}_" in doc, doc[:200]


# --- les imports des chapitres ------------------------------------------------------------

CHAPTERS = sorted((ROOT / "book").glob("0[0-9]_*.md"))
CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


def chapter_imports(md: Path) -> list[str]:
    """Les instructions ``import`` de premier niveau des cellules de code d'un chapitre."""
    found = []
    for cell in CELL.findall(md.read_text("utf-8")):
        code = "\n".join(line for line in cell.splitlines()
                         if not line.lstrip().startswith(("%", "!", ":")))  # magies et options de cellule
        for node in ast.parse(code).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(ast.get_source_segment(code, node))
    return found


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_imports_run(md):
    imports = chapter_imports(md)
    assert any("atelier" in line for line in imports), f"{md.name} n'importe rien d'atelier ?"
    namespace: dict = {}
    for line in imports:
        try:
            exec(line, namespace)  # noqa: S102 - les imports du chapitre, rien d'autre
        except ImportError as exc:
            pytest.fail(f"{md.name} : « {line} » échoue : {exc}")


def test_only_config_reads_the_environment():
    """``atelier.runtime.config`` est le seul module d'``atelier`` qui lit les variables d'environnement."""
    reading = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=)|\bin os\.environ\b")
    offenders = [f"{name} : ligne {i}"
                 for name, (path, _) in MODULES.items() if name.startswith("atelier") and name != "atelier.runtime.config"
                 for i, line in enumerate(path.read_text("utf-8").splitlines(), 1) if reading.search(line)]
    assert not offenders, f"Variables d'environnement lues hors de atelier.runtime.config : {offenders}"


def test_chapter_includes_point_to_existing_files():
    """Un ``literalinclude`` d'un chapitre vise un fichier qui existe (le build strict échouerait sinon, bien plus tard)."""
    missing = []
    for md in sorted((ROOT / "book").glob("*.md")):
        for n, line in enumerate(md.read_text("utf-8").splitlines(), 1):
            found = re.match(r"^`{3,}\{(?:literalinclude|include)\}\s+(\S+)", line)
            if found and not (md.parent / found.group(1)).resolve().is_file():
                missing.append(f"{md.name}:{n} : {found.group(1)}")
    assert not missing, f"fichiers inclus introuvables : {missing}"
