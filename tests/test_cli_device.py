"""``--device`` on every command of the ``sciml`` command line, and the one device rule.

Every ``train``, ``evaluate``, ``refine`` and ``generate`` subcommand takes ``--device``
(checked by :func:`sciml.utils.check_device` with ``resolve=True``): ``cpu``, ``cuda``,
``cuda:N`` or ``auto``. Under torchrun (``WORLD_SIZE > 1``) ``cuda`` and ``auto`` become
``cuda:LOCAL_RANK``, and an explicit ``cuda:N`` other than ``cuda:LOCAL_RANK`` is refused
with the fix (pass ``--device cuda``). The same rule gives the Trainer's default device,
the device of ``torch.distributed`` set-up and the data writers' default.

The GPU cases run under :class:`sciml.testing.SimCuda` (the ``simcuda`` fixture has one
device; ``SimCuda(device_count=4)`` is built directly for four).
"""

from __future__ import annotations

import argparse

import pytest
import torch

from sciml.testing import SimCuda
from sciml.utils import check_device
from sciml_recipes.cli import _build_parser, main

REAL_CUDA = torch.cuda.is_available()
NO_CUDA = pytest.mark.skipif(REAL_CUDA, reason="this machine has a GPU")

# the required arguments of each subcommand, with its default device kind: "train" (None:
# the Trainer's rule), "auto" (the GPU if any) or "cpu"
COMMANDS = {
    ("train", "fno"): (["--data", "d.npz", "--out", "o"], "train"),
    ("train", "sfno"): (["--data", "d.h5", "--out", "o"], "train"),
    ("train", "probconserv"): (["--out", "o"], "train"),
    ("train", "hardc"): (["--out", "o"], "train"),
    ("train", "dcdm"): (["--out", "o"], "train"),
    ("train", "learned-mg"): (["--out", "o"], "train"),
    ("train", "mppde"): (["--out", "o"], "train"),
    ("evaluate",): (["--model", "m.pt", "--out", "o"], "cpu"),
    ("refine",): (["--model", "m.pt", "--out", "o"], "cpu"),
    ("generate", "ns2d"): (["--preset", "fno", "--samples", "1", "--out", "o.h5"], "auto"),
    ("generate", "burgers"): (["--family", "E1", "--samples", "1", "--out", "o.h5"], "auto"),
    ("solve",): (["m.mtx", "--rhs", "b.npy"], "cpu"),
}


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of every runnable subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, p in subs[0].choices.items():
        yield from _leaves(p, (*path, name))


def _parse(command: tuple[str, ...], *extra: str) -> argparse.Namespace:
    return _build_parser().parse_args([*command, *COMMANDS[command][0], *extra])


def _refused(command: tuple[str, ...], device: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        _parse(command, "--device", device)
    assert e.value.code == 2
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture
def torchrun(monkeypatch):
    """``torchrun(world, local)``: the environment torchrun gives one process."""
    def set_env(world: int, local: int) -> None:
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_RANK", str(local))
        monkeypatch.setenv("RANK", str(local))

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return set_env


def test_every_training_evaluation_refinement_and_generation_command_has_device() -> None:
    leaves = {path: p for path, p in _leaves(_build_parser()) if path[0] != "demo"}
    assert set(leaves) == set(COMMANDS), "a new subcommand: add it to COMMANDS"
    for path, p in leaves.items():
        opts = {o for a in p._actions for o in a.option_strings}
        assert "--device" in opts, f"sciml {' '.join(path)} has no --device"


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_device_is_accepted_and_defaults_to_the_commands_old_behaviour(command, torchrun
                                                                        ) -> None:
    assert _parse(command, "--device", "cpu").device == "cpu"
    default = _parse(command).device
    kind = COMMANDS[command][1]
    if kind == "train":
        assert default is None  # the Trainer's rule: the CPU unless torchrun on CUDA
    elif kind == "cpu":
        assert default == "cpu"
    else:
        assert default == ("cuda:0" if REAL_CUDA else "cpu")


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_cuda_and_auto_resolve_to_an_indexed_gpu(command, torchrun, simcuda) -> None:
    for value in ("cuda", "auto", "cuda:0"):
        assert _parse(command, "--device", value).device == "cuda:0"
    if COMMANDS[command][1] == "auto":
        assert _parse(command).device == "cuda:0"  # generation picks the GPU


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_under_torchrun_cuda_is_the_local_rank_and_another_index_is_refused(
        command, torchrun, capsys) -> None:
    torchrun(4, 2)
    with SimCuda(device_count=4):
        for value in ("cuda", "auto", "cuda:2"):
            assert _parse(command, "--device", value).device == "cuda:2"
        assert _parse(command, "--device", "cpu").device == "cpu"
        msg = _refused(command, "cuda:0", capsys)
        assert "argument --device:" in msg
        assert "LOCAL_RANK=2" in msg and "cuda:2" in msg and "--device cuda" in msg
        if COMMANDS[command][1] == "auto":
            assert _parse(command).device == "cuda:2"


def test_outside_torchrun_any_visible_gpu_may_be_named(torchrun) -> None:
    with SimCuda(device_count=4):
        assert _parse(("train", "hardc"), "--device", "cuda:3").device == "cuda:3"
        torchrun(1, 0)  # a single-process "job" is no job: no rule
        assert _parse(("train", "hardc"), "--device", "cuda:3").device == "cuda:3"


def test_more_processes_than_gpus_is_refused_with_the_count(torchrun, capsys) -> None:
    torchrun(8, 5)
    with SimCuda(device_count=4):
        msg = _refused(("train", "sfno"), "cuda", capsys)
        assert "LOCAL_RANK=5" in msg and "--nproc_per_node 4" in msg
        with pytest.raises(ValueError, match="nproc_per_node 4"):
            check_device(None, resolve=True)


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_bad_devices_are_refused_with_a_clear_message(command, torchrun, capsys) -> None:
    msg = _refused(command, "bogus", capsys)
    assert "'bogus' is not a device" in msg and "cpu, cuda or cuda:N" in msg and "auto" in msg
    with SimCuda():
        msg = _refused(command, "cuda:7", capsys)
        assert "this machine has 1 CUDA device(s)" in msg and "--device cpu" in msg


@NO_CUDA
def test_cuda_on_a_machine_without_one_says_so(torchrun, capsys) -> None:
    msg = _refused(("train", "dcdm"), "cuda", capsys)
    assert "CUDA is not available" in msg and "--device cpu" in msg
    # auto falls back to the CPU instead
    assert _parse(("train", "dcdm"), "--device", "auto").device == "cpu"


def test_the_rule_in_the_library(torchrun) -> None:
    """check_device(resolve=True): None, auto, cuda, cuda:N; the Trainer's default and the
    data writers' choice follow it."""
    from sciml.data._ns2d_writer import _device as writer_device
    from sciml.train._distributed import default_device

    assert check_device(None, resolve=True) == torch.device("cpu")
    with pytest.raises(TypeError, match="device must be"):
        check_device(None)  # without resolve, None is no device
    with pytest.raises(ValueError, match="is not a device"):
        check_device("auto")
    with SimCuda(device_count=4):
        assert check_device(None, resolve=True) == torch.device("cpu")  # one process: CPU
        assert check_device("auto", resolve=True) == torch.device("cuda", 0)
        assert check_device("cuda", resolve=True) == torch.device("cuda", 0)
        assert check_device(torch.device("cuda"), resolve=True) == torch.device("cuda", 0)
        assert check_device("cuda", resolve=False) == torch.device("cuda")
        assert writer_device(None) == torch.device("cuda", 0)
        assert default_device() == torch.device("cpu")
        torchrun(4, 3)
        for d in (None, "auto", "cuda", "cuda:3", torch.device("cuda", 3)):
            assert check_device(d, resolve=True) == torch.device("cuda", 3), d
        assert default_device() == torch.device("cuda", 3)
        assert writer_device(None) == torch.device("cuda", 3)
        assert writer_device("cpu") == torch.device("cpu")
        with pytest.raises(ValueError, match=r"pass device 'cuda' without an index"):
            check_device("cuda:0", resolve=True)
        with pytest.raises(ValueError, match="LOCAL_RANK=3"):
            writer_device("cuda:1")
        # without resolve the plain check is unchanged (any visible GPU)
        assert check_device("cuda:0") == torch.device("cuda", 0)


def test_distributed_setup_refuses_another_ranks_gpu_before_joining(torchrun) -> None:
    """Under torchrun, Distributed sets this process's GPU by the rule: cuda:N of another
    rank is refused with the fix (torch.cuda.set_device('cuda') used to raise a bare
    ValueError; cuda:0 on every rank put them all on one GPU)."""
    import torch.distributed as dist

    from sciml.train._distributed import Distributed

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group")
    torchrun(2, 1)
    with SimCuda(device_count=2), pytest.raises(ValueError, match="--device cuda"):
        with Distributed(torch.device("cuda", 0)):
            pass  # pragma: no cover - refused on entry
    assert not dist.is_initialized()


def test_generate_refuses_another_ranks_gpu_before_writing(torchrun, tmp_path, capsys
                                                          ) -> None:
    from sciml.data import generate_burgers

    torchrun(2, 1)
    out = tmp_path / "b.h5"
    with SimCuda(device_count=2):
        with pytest.raises(ValueError, match="LOCAL_RANK=1"):
            generate_burgers(out, family="E1", samples=1, resolutions=(20,), nt=6,
                             device="cuda:0", progress=False)
        with pytest.raises(SystemExit) as e:  # the command line: refused by argparse
            main(["generate", "burgers", "--family", "E1", "--samples", "1", "--out",
                  str(out), "--device", "cuda:0"])
        assert e.value.code == 2
    assert not out.exists()
    assert "--device cuda" in " ".join(capsys.readouterr().err.split())


def test_learned_mg_trains_on_the_device(torchrun, tmp_path, capsys) -> None:
    out = tmp_path / "o"
    with SimCuda():
        code = main(["train", "learned-mg", "--out", str(out), "--device", "cuda", "--dim",
                     "2", "--size", "48", "--scenes", "1", "--width", "4", "--errors", "2",
                     "--steps", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert (out / "learned_mg_2d.pt").is_file()
