"""Sphinx configuration for the sciml documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``. The build runs
every ``examples/*.py`` for the gallery (``SCIML_DOCS_GALLERY=off`` skips that).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "sciml"
author = "sciml contributors"
copyright = "sciml contributors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "gallery",  # docs/_ext/gallery.py: runs examples/*.py into docs/gallery/
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# The library's docstrings are Google style (Args / Returns / Raises).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# Gallery scripts are meant to run in under a minute on 2 cores; twice that stops the
# build (a script grown too long fails loudly instead of slowing every docs build).
gallery_timeout = 120

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": True}
autodoc_mock_imports: list[str] = []

# The docstrings name types in prose (``Tensor``, ``(B, C, *grid)``, ...) that are not
# cross-reference targets; nitpicky mode would turn each into a warning.
nitpicky = False
# Napoleon writes an ``Attributes:`` entry as ``:ivar name:``, and Sphinx links that name
# to any object called ``name``; ``shape`` is an attribute of four classes, so the link is
# ambiguous (``ref.python``). The entry still renders; only the link target is a guess.
suppress_warnings = ["ref.python"]

# benchmarks/README.md is included as markdown; its heading levels start at one.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

html_theme = "alabaster"
html_title = "sciml"
html_static_path: list[str] = []

_LITERAL_THEN_WORD = re.compile(r"(``[^`\s](?:[^`]*[^`\s])?``)(?=\w)")


def _escape_literal_suffix(app, what, name, obj, options, lines) -> None:
    """Let an inline literal run straight into a word (``nn.Module``s) as docutils allows.

    reStructuredText ends an inline literal only before whitespace or punctuation; a
    plural written as ````x````s is read as an unterminated literal. Inserting an escaped
    space (``\\ ``) after the closing backquotes renders the same text without a warning.
    """
    for i, line in enumerate(lines):
        lines[i] = _LITERAL_THEN_WORD.sub(r"\1\\ ", line)


def setup(app) -> dict[str, bool]:
    """Register the docstring hook."""
    app.connect("autodoc-process-docstring", _escape_literal_suffix)
    return {"parallel_read_safe": True}
