"""Writing the recipes' figures: laid out, written whole (atomically), closed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sciml.utils import atomic_write


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made, format from the suffix) and
    close it. The file is written under a temporary name and renamed, so a reader never
    sees a half-written image and a failed write leaves any earlier figure in place."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fmt = path.suffix.lstrip(".") or "png"
        atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=fmt))
    finally:
        plt.close(fig)
    return path
