"""The documentation builds with warnings as errors and lists every public name."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = (
    "spectral",
    "pdes",
    "data",
    "operators",
    "solvers.linear",
    "solvers.ot",
    "constraints",
    "inverse",
    "train",
    "testing",
)


def _missing(name: str) -> str | None:
    try:
        importlib.import_module(name)
    except ImportError:
        return name
    return None


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the docs once, with ``-W``, into a temporary directory."""
    missing = [m for m in ("sphinx", "myst_parser") if _missing(m)]
    if missing:
        pytest.skip(f"docs need {', '.join(missing)}: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs_html")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_docs_build_without_warnings(html: Path) -> None:
    for page in ("index.html", "api/index.html", "benchmarks.html"):
        assert (html / page).is_file(), page


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_api_page_lists_every_public_name(html: Path, sub: str) -> None:
    module = importlib.import_module(f"sciml.{sub}")
    text = (html / "api" / f"{sub}.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="([^"]+)"', text))
    absent = [n for n in module.__all__ if f"sciml.{sub}.{n}" not in ids]
    assert not absent, f"sciml.{sub}: not in docs/api/{sub}.rst: {absent}"


def test_benchmark_page_is_the_generated_readme(html: Path) -> None:
    readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    page = (html / "benchmarks.html").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    rendered = [
        unescape(re.sub(r"<[^>]+>", "", h)).replace("\u2019", "'").strip()
        for h in re.findall(r"<h2>(.*?)<a class=\"headerlink\"", page, flags=re.DOTALL)
    ]
    assert headings and rendered == headings
    tables = len(re.findall(r"^\|---", readme, flags=re.MULTILINE))
    assert tables > 0 and page.count("<table") == tables
