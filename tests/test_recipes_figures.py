"""The recipes write every figure through one helper: whole or not at all, always closed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from sciml_recipes._figures import save_figure


def test_writes_a_png_in_new_folders_and_closes_the_figure(tmp_path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "a" / "b" / "fig.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in path.parent.iterdir()] == ["fig.png"]  # no temporary left


def test_a_failed_write_keeps_the_earlier_figure(tmp_path, monkeypatch) -> None:
    path = tmp_path / "fig.png"
    save_figure(plt.figure(), path)
    before = path.read_bytes()
    fig = plt.figure()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == before
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]
