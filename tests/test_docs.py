"""The documentation builds with warnings as errors, lists every public name, and its
gallery runs every example script into a page with the script's output and figure."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
SUBPACKAGES = (
    "spectral",
    "pdes",
    "data",
    "operators",
    "solvers",
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
    """Build the docs once, with ``-W``, into a temporary directory, running the gallery."""
    missing = [m for m in ("sphinx", "myst_parser") if _missing(m)]
    if missing:
        pytest.skip(f"docs need {', '.join(missing)}: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs_html")
    env = {k: v for k, v in os.environ.items()
           if k not in ("SCIML_DOCS_GALLERY", "OMP_NUM_THREADS")}  # the gallery's one thread
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, f"sphinx failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_docs_build_without_warnings(html: Path) -> None:
    for page in ("index.html", "api/index.html", "benchmarks.html", "gallery/index.html"):
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


def _text(html_page: str) -> str:
    """The page's text; Sphinx's curly quotes back to straight ones."""
    text = unescape(re.sub(r"<[^>]+>", "", html_page))
    return text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')


def _printed_fragments(script: Path) -> list[str]:
    """The literal text of the script's unconditional (top-level) ``print`` calls."""
    frags = []
    for stmt in ast.parse(script.read_text(encoding="utf-8")).body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "print"
                and call.args):
            continue
        arg = call.args[0]
        parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
        frags += [p.value.strip() for p in parts
                  if isinstance(p, ast.Constant) and isinstance(p.value, str)
                  and len(p.value.strip()) >= 6]
    return frags


def test_gallery_index_lists_every_example(html: Path) -> None:
    assert len(EXAMPLES) >= 9
    index = _text((html / "gallery" / "index.html").read_text(encoding="utf-8"))
    for script in EXAMPLES:
        summary = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
        assert summary, f"{script.name} has no docstring"
        first = re.sub(r"`+", "", summary.splitlines()[0]).strip()
        assert first in " ".join(index.split()), script.name
    assert 'href="gallery/index.html"' in (html / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_gallery_page_has_source_output_and_figure(html: Path, script: Path) -> None:
    page = (html / "gallery" / f"{script.stem}.html").read_text(encoding="utf-8")
    text = _text(page)
    # the source listing: the script's import lines
    imports = [ln for ln in script.read_text(encoding="utf-8").splitlines()
               if ln.startswith("from sciml")]
    assert imports and all(ln.split(" import")[0] in text for ln in imports)
    # the output of running it, with its run time: every fixed text its top-level print
    # calls write
    out = text.split("Output", 1)[1]
    assert re.search(r"Ran in \d+\.\d s \(one thread\)", out), out[:300]
    frags = _printed_fragments(script)
    assert frags, f"{script.name} prints nothing at top level"
    missing = [f for f in frags if f not in out]
    assert not missing, f"{script.name}: output lacks {missing}"
    # the figure it saves (examples_out/NAME.png), copied into the site
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert f"../_images/{script.stem}.png" in srcs, srcs
    png = html / "_images" / f"{script.stem}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _gallery_module():
    spec = importlib.util.spec_from_file_location("_gallery_ext",
                                                  ROOT / "docs" / "_ext" / "gallery.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


GOOD = '''"""A tiny gallery script.

It prints a number and saves a figure.
"""
from pathlib import Path

import matplotlib.pyplot as plt

print("the answer is", 6 * 7)
Path("examples_out").mkdir()
plt.plot([0, 1], [1, 0])
plt.savefig("examples_out/good.png")
'''


def _mini_project(tmp_path: Path, scripts: dict[str, str]) -> tuple[Path, Path]:
    """A Sphinx project whose only content is the gallery of ``scripts``."""
    (tmp_path / "examples").mkdir()
    for name, code in scripts.items():
        (tmp_path / "examples" / f"{name}.py").write_text(code, encoding="utf-8")
    src = tmp_path / "docs"
    src.mkdir()
    (src / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'docs' / '_ext')!r})\n"
        "extensions = ['gallery']\nproject = 'mini'\n", encoding="utf-8")
    (src / "index.rst").write_text("Mini\n====\n\n.. toctree::\n\n   gallery/index\n",
                                   encoding="utf-8")
    return src, tmp_path / "html"


def _sphinx(src: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "SCIML_DOCS_GALLERY"} | env
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-E", "-b", "html",
                           str(src), str(out)], capture_output=True, text=True, timeout=300,
                          env=environ)


def test_gallery_extension_runs_a_script(tmp_path: Path) -> None:
    if _missing("sphinx"):
        pytest.skip("docs need sphinx: pip install -e '.[docs]'")
    src, out = _mini_project(tmp_path, {"good": GOOD})
    proc = _sphinx(src, out)
    assert proc.returncode == 0, proc.stderr
    page = (out / "gallery" / "good.html").read_text(encoding="utf-8")
    assert "the answer is 42" in _text(page)
    assert (out / "_images" / "good.png").read_bytes()[:4] == b"\x89PNG"
    assert "A tiny gallery script." in _text((out / "gallery" / "index.html").read_text())


def test_a_failing_script_fails_the_build(tmp_path: Path) -> None:
    if _missing("sphinx"):
        pytest.skip("docs need sphinx: pip install -e '.[docs]'")
    bad = '''"""A script that breaks."""\nraise RuntimeError("the bad example broke")\n'''
    src, out = _mini_project(tmp_path, {"good": GOOD, "bad": bad})
    proc = _sphinx(src, out)
    assert proc.returncode != 0
    assert "examples/bad.py failed" in proc.stderr and "the bad example broke" in proc.stderr


def test_gallery_off_skips_running(tmp_path: Path) -> None:
    """SCIML_DOCS_GALLERY=off: pages with text and source, no output, nothing run."""
    gallery = _gallery_module()
    assert not gallery.gallery_enabled({"SCIML_DOCS_GALLERY": "off"})
    assert gallery.gallery_enabled({})
    ran = tmp_path / "ran"
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "touch.py").write_text(
        f'"""Touch a file."""\nopen({str(ran)!r}, "w").close()\n', encoding="utf-8")
    gallery.build_gallery(tmp_path / "examples", tmp_path / "gallery", run=False)
    page = (tmp_path / "gallery" / "touch.rst").read_text(encoding="utf-8")
    assert "Touch a file." in page and "Not run in this build" in page
    assert not ran.exists()
    with pytest.raises(gallery.GalleryError, match="no module docstring"):
        (tmp_path / "examples" / "nodoc.py").write_text("x = 1\n", encoding="utf-8")
        gallery.build_gallery(tmp_path / "examples", tmp_path / "gallery", run=False)
