"""Le site construit dans un vrai navigateur : Chromium de Debian piloté par Playwright.

Chaque page de `_build/html` est ouverte une fois, servie par un serveur HTTP
local (127.0.0.1, port libre) ; toute requête vers un autre hôte est bloquée
et notée. On vérifie ensuite, page par page : aucune erreur JavaScript,
aucune requête distante ni ressource locale manquante, des mathématiques
rendues par MathJax (plus de `\\(` ni de `$$` bruts), des figures plotly
dessinées, les boutons de lancement et de téléchargement (visibles, bonnes
URL), le tampon d'exécution des chapitres ; puis qu'une recherche en français
trouve le bon chapitre. Une capture de chaque page est écrite dans
`test-artifacts/captures/` (JPEG), le résumé (durées) dans `test-artifacts/navigateur.json`.

Lancés par `make test` après le build (`pytest -m site`). Chromium : paquet
Debian `chromium` (`make browser`) ; aucun navigateur n'est téléchargé.
"""

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pytest

from atelier.runtime.config import REPO_ROOT
from tools import site

pytestmark = pytest.mark.site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]
ROOT = Path(os.environ.get("ATELIER_SITE_SOURCE", REPO_ROOT)).resolve()  # autre livre source (essais)
SITE = site.site_dir()
BUILT = (SITE / "index.html").exists()
# index.html ne fait que rediriger vers la préface : testé à part.
PAGES = [p.relative_to(SITE).as_posix() for p in site.html_pages(SITE) if p.name != "index.html"] if BUILT else []
CHAPTERS = [f"{doc}.html" for doc in site.notebook_docnames(ROOT) if (SITE / f"{doc}.html").exists()]
ARTIFACTS = REPO_ROOT / "test-artifacts"
BUDGET_SECONDS = 240  # la visite complète doit rester de l'ordre de deux minutes

# État d'une page une fois MathJax et plotly passés.
STATE_JS = r"""
() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "NOSCRIPT", "MJX-CONTAINER"]);
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let el = n.parentElement, hidden = false;
    for (; el; el = el.parentElement) {
      if (skip.has(el.tagName) || el.classList.contains("highlight")) { hidden = true; break; }
    }
    if (!hidden && /\\\(|\\\[|\$\$/.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
  }
  const figs = [...document.querySelectorAll(".plotly-graph-div")];
  const hrefs = (sel) => [...document.querySelectorAll(sel)].map((a) => a.getAttribute("href"));
  return {
    title: (document.querySelector("main h1") || document.querySelector("h1") || {}).textContent || "",
    raw_math: raw,
    math: document.querySelectorAll(".math").length,
    typeset: document.querySelectorAll("mjx-container").length,
    math_errors: document.querySelectorAll("mjx-merror").length,
    figures: figs.length,
    drawn: figs.filter((d) => d._fullLayout && d._fullData && d._fullData.length && d.querySelector(".main-svg")).length,
    launch: hrefs(".dropdown-launch-buttons a.dropdown-item"),
    download: hrefs(".dropdown-download-buttons a.dropdown-item"),
    stamp: document.body.innerText.includes("Page exécutée le"),
  };
}
"""
PLOTLY_DRAWN_JS = """
() => [...document.querySelectorAll('.plotly-graph-div')]
        .every((d) => d._fullLayout && d.querySelector('.main-svg'))
"""


def _menu_visible(page, menu: str) -> bool:
    """Ouvre un menu déroulant de l'en-tête et dit si ses entrées sont visibles."""
    toggle = page.locator(f"{menu} > button").first
    if not toggle.count() or not toggle.is_visible():
        return False
    toggle.click()
    visible = page.locator(f"{menu} .dropdown-menu a").first.is_visible()
    page.keyboard.press("Escape")
    return visible


def _visit(page, base: str, rel: str, log: dict, plotly_timeout_ms: int = 30_000) -> dict:
    for key in log:
        log[key].clear()
    started = time.perf_counter()
    page.goto(urljoin(base, rel), wait_until="load", timeout=90_000)
    page.evaluate("async () => { if (window.MathJax?.startup?.promise) await MathJax.startup.promise; }")
    if page.locator(".plotly-graph-div").count():
        try:
            page.wait_for_function(PLOTLY_DRAWN_JS, timeout=plotly_timeout_ms)
        except Exception:  # noqa: BLE001 - l'état est relevé et vérifié ensuite
            pass
    state = page.evaluate(STATE_JS)
    state["launch_visible"] = _menu_visible(page, ".dropdown-launch-buttons")
    state["download_visible"] = _menu_visible(page, ".dropdown-download-buttons")
    state["download_status"] = {
        href: page.request.get(urljoin(page.url, href)).status for href in state["download"]
    }
    shot = ARTIFACTS / "captures" / (rel.replace("/", "__").removesuffix(".html") + ".jpg")
    page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=60)
    state["screenshot"] = str(shot)
    state.update({k: list(v) for k, v in log.items()})
    state["seconds"] = round(time.perf_counter() - started, 2)
    return state


def _search(page, base: str, query: str) -> list[str]:
    page.goto(urljoin(base, f"search.html?q={quote(query)}"), wait_until="load", timeout=60_000)
    page.wait_for_function(
        "() => (document.querySelector('#search-results .search-summary') || {}).innerText", timeout=30_000
    )
    hrefs = page.evaluate("() => [...document.querySelectorAll('#search-results ul.search li a')].map(a => a.href)")
    return [urlsplit(h).path.removeprefix(urlsplit(base).path) for h in hrefs]


def _query_for(title: str) -> str:
    """Le mot le plus long (et le plus distinctif) du titre d'un chapitre."""
    words = [w.lower() for w in re.findall(r"[^\W\d_]{3,}", title)]
    return max(words, key=len) if words else ""


@contextlib.contextmanager
def browse(directory: Path):
    """Chromium sur un site servi en local : ``(page, url de base, journal)``, requêtes distantes bloquées."""
    assert CHROMIUM.exists(), "Chromium manque : `make browser` (paquet Debian « chromium »)."
    from playwright.sync_api import sync_playwright

    log = {"errors": [], "remote": [], "missing": []}
    with site.serve(directory) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")

        def route(r):
            url = r.request.url
            if url.startswith(base) or url.startswith(("data:", "blob:")):
                r.continue_()
            else:
                log["remote"].append(url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and log["errors"].append(f"console : {m.text}"))
        page.on("pageerror", lambda e: log["errors"].append(f"exception : {e}"))
        page.on("response", lambda r: r.status >= 400 and log["missing"].append(f"{r.status} {r.url}"))
        try:
            yield page, base, log
        finally:
            browser.close()


@pytest.fixture(scope="module")
def run():
    assert BUILT, f"pas de site construit dans {SITE} : lancez `make book`."
    shutil.rmtree(ARTIFACTS / "captures", ignore_errors=True)  # pas de capture périmée d'une page disparue
    (ARTIFACTS / "captures").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results, searches = {}, {}
    with browse(SITE) as (page, base, log):
        for rel in PAGES:
            results[rel] = _visit(page, base, rel, log)
        page.goto(base, wait_until="load")
        page.wait_for_url(re.compile(r".*\.html.*"), timeout=30_000)
        index_target = urlsplit(page.url).path.removeprefix(urlsplit(base).path)
        queries = {"plongements": "book/90_glossaire.html"} if "book/90_glossaire.html" in PAGES else {}
        for rel in CHAPTERS:
            word = _query_for(results[rel]["title"])
            if word:
                queries[word] = rel
        for query, expected in queries.items():
            searches[query] = {"expected": expected, "found": _search(page, base, query)}
    seconds = round(time.perf_counter() - started, 1)
    summary = {"seconds": seconds, "pages": {k: {"seconds": v["seconds"]} for k, v in results.items()},
               "searches": searches, "index": index_target}
    (ARTIFACTS / "navigateur.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), "utf-8")
    print(f"\n[navigateur] {len(results)} pages et {len(searches)} recherches en {seconds} s")
    return {"pages": results, "searches": searches, "seconds": seconds, "index": index_target}


def test_checks_catch_a_broken_page(tmp_path):
    """Les vérifications savent échouer : une page fabriquée avec tous les défauts."""
    (tmp_path / "index.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<script src='https://cdn.example.org/absent.js'></script></head><body><main><h1>Cassée</h1>"
        "<p>Formule brute : \\(x^2\\) et $$y$$</p><img src='absente.png'>"
        "<div class='plotly-graph-div' style='height:100px'></div>"
        "<script>throw new Error('boum');</script></main></body></html>",
        "utf-8",
    )
    (ARTIFACTS / "captures").mkdir(parents=True, exist_ok=True)
    with browse(tmp_path) as (page, base, log):
        state = _visit(page, base, "index.html", log, plotly_timeout_ms=1_000)
    Path(state["screenshot"]).unlink()
    assert any("boum" in e for e in state["errors"])
    assert state["remote"] == ["https://cdn.example.org/absent.js"]
    assert any("absente.png" in m for m in state["missing"])
    assert len(state["raw_math"]) == 1 and state["figures"] == 1 and state["drawn"] == 0
    assert not state["stamp"] and not state["launch_visible"]


def test_site_has_pages():
    assert BUILT and PAGES, f"aucune page à visiter dans {SITE}"


@pytest.mark.parametrize("rel", PAGES)
def test_no_javascript_error(run, rel):
    assert run["pages"][rel]["errors"] == []


@pytest.mark.parametrize("rel", PAGES)
def test_nothing_requested_from_another_host_and_no_missing_asset(run, rel):
    state = run["pages"][rel]
    assert state["remote"] == [], "requêtes vers un autre hôte (le site doit marcher hors ligne)"
    assert state["missing"] == [], "ressources locales introuvables"


@pytest.mark.parametrize("rel", PAGES)
def test_math_is_rendered(run, rel):
    state = run["pages"][rel]
    assert state["raw_math"] == [], "mathématiques non rendues (délimiteurs bruts visibles)"
    assert state["math_errors"] == 0, "MathJax signale des erreurs de formule"
    assert state["typeset"] >= state["math"], f"{state['math']} formules, {state['typeset']} rendues"


@pytest.mark.parametrize("rel", PAGES)
def test_plotly_figures_are_drawn(run, rel):
    state = run["pages"][rel]
    assert state["drawn"] == state["figures"], f"{state['figures']} figures plotly, {state['drawn']} dessinées"


@pytest.mark.parametrize("rel", CHAPTERS)
def test_launch_and_download_buttons(run, rel):
    """Ce que seul un navigateur voit : les menus s'affichent et les téléchargements répondent.
    Les cibles des liens sont vérifiées sur le HTML par tests/test_site.py."""
    state = run["pages"][rel]
    assert state["launch_visible"] and state["download_visible"], "menus de lancement / téléchargement invisibles"
    assert state["download_status"] and all(status == 200 for status in state["download_status"].values()), (
        state["download_status"])


def test_index_opens_the_root_page(run):
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text("utf-8"))
    assert run["index"] == f"{toc['root']}.html"


def test_french_search_finds_the_chapter(run):
    assert run["searches"], "aucune recherche lancée"
    misses = {q: s for q, s in run["searches"].items() if s["expected"] not in s["found"]}
    assert not misses, f"recherches qui ne trouvent pas leur chapitre : {misses}"


def test_browser_run_stays_short(run):
    assert run["seconds"] < BUDGET_SECONDS, f"visite complète en {run['seconds']} s (budget {BUDGET_SECONDS} s)"
