"""The Navier-Stokes inverse experiments: initial vorticity (solver and SFNO), viscosity.

:class:`NSInverseSetup` fixes one experiment: the FNO setting at ``n^2`` (``nu = 1e-3``,
forcing amplitude 0.1, the GRF(2.5, 7) initial field), the observation time ``T``, the
observed fraction of the grid and the noise (relative to the rms of ``w(T)``).
:meth:`NSInverseSetup.build` draws the truth, the points and the noisy data (seeded).

* :func:`recover_initial_condition`: the MAP initial vorticity under the GRF prior
  (:func:`~sciml.inverse.navier_stokes.grf_prior`) by whitened L-BFGS, then the low-rank
  Laplace posterior; reports the relative L2 error, the wall-clock and the calibration of
  the standard deviations against the actual error. The forward map is the solver or a
  trained surrogate; the data are always the solver's (the surrogate's own error then
  enters as an unmodelled bias, which is what a user of a surrogate faces).
* :func:`recover_parameters`: ``(log nu, A)`` from the same kind of observations with the
  initial vorticity known, for several independent noise draws at once (one batched
  solve): the bias of the estimates, their spread over the draws and the Laplace
  standard deviation (dense: two unknowns), which should agree with the spread.
* :func:`train_surrogate`: data from the solver (``w0 -> w(T)`` pairs, resumable HDF5 by
  :func:`sciml.data.generate_ns2d`) and an SFNO with one frame in and one out trained by
  the one :class:`~sciml.train.Trainer` (resumable); returns a
  :class:`~sciml.inverse.navier_stokes.SurrogateForward`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from sciml.inverse.laplace import Laplace
from sciml.inverse.map import MAP
from sciml.inverse.navier_stokes import (
    ParameterForward,
    SolverForward,
    SurrogateForward,
    calibration,
    grf_prior,
)
from sciml.inverse.observe import PointObservation, random_points
from sciml.inverse.prior import ScalarPrior
from sciml.inverse.problem import InverseProblem
from sciml.pdes import NavierStokes2D, fno_forcing, gaussian_random_field
from sciml.utils import check_bool, check_finite, check_int, check_real, check_tensor
from sciml_recipes._checks import (
    check_callable,
    check_instance,
    check_mapping,
    check_path,
    check_reals,
    check_seed,
    check_time_budget,
)
from sciml_recipes._figures import save_figure

__all__ = ["NSInverseData", "NSInverseSetup", "experiment_settings", "plot_ns_inverse",
           "recover_initial_condition", "recover_parameters", "run_ns_inverse",
           "train_surrogate"]

_DT = torch.float64
#: trajectories the surrogate holds out for testing (by default)
_TEST_SAMPLES = 32


@dataclass(frozen=True)
class NSInverseSetup:
    """One Navier-Stokes inverse experiment (see the module docstring).

    Attributes:
        n: grid size.
        time: observation time ``T``.
        fraction: observed fraction of the grid points.
        noise: noise standard deviation relative to the rms of the true ``w(T)``.
        viscosity, amplitude: the true ``nu`` and forcing amplitude ``A``.
        dt: the fixed step (``None``: the FNO preset's CFL-0.5 step ``0.5 / n / 0.4``).
        seed: seeds the truth, the points and the noise.
    """

    n: int = 64
    time: float = 1.0
    fraction: float = 0.05
    noise: float = 0.05
    viscosity: float = 1e-3
    amplitude: float = 0.1
    dt: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n", self.n, minimum=8)
        check_real("time", self.time, positive=True)
        check_real("fraction", self.fraction, positive=True,
                   fix="the observed fraction of the grid points, in (0, 1]")
        if self.fraction > 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction!r}")
        check_real("noise", self.noise, positive=True)
        check_real("viscosity", self.viscosity, positive=True)
        check_real("amplitude", self.amplitude)
        if self.dt is not None:
            check_real("dt", self.dt, positive=True)
        check_seed(self.seed)

    @property
    def step(self) -> float:
        return 0.5 / self.n / 0.4 if self.dt is None else self.dt

    def solver(self) -> NavierStokes2D:
        f = fno_forcing(self.n, amplitude=self.amplitude)
        return NavierStokes2D(viscosity=self.viscosity, forcing=f, method="ifrk4")

    def build(self, draws: int = 1) -> NSInverseData:
        """The truth, the observation and ``draws`` independent noisy data sets."""
        draws = check_int("draws", draws, minimum=1)
        g = torch.Generator().manual_seed(self.seed)
        w0 = gaussian_random_field(1, self.n, generator=g, dtype=_DT)
        ns = self.solver()
        forward = SolverForward(ns, self.time, self.step)
        with torch.no_grad():
            wT = forward(w0)
        sigma = self.noise * float(wT.square().mean().sqrt())
        obs = random_points((self.n, self.n), self.fraction, noise_std=sigma, generator=g)
        clean = obs(wT)
        data = clean + sigma * torch.randn((draws, clean.shape[1]), generator=g, dtype=_DT)
        return NSInverseData(self, w0, wT, ns, forward, obs, data)

    def summary(self, observations: int, noise_std: float) -> dict[str, Any]:
        return {**asdict(self), "dt": self.step, "observations": observations,
                "noise_std": noise_std}


@dataclass(frozen=True, eq=False)
class NSInverseData:
    """What :meth:`NSInverseSetup.build` draws: truth, solver, observation, data.

    Raises:
        TypeError, ValueError: a field of the wrong kind or shape (named).
    """

    setup: NSInverseSetup
    w0: torch.Tensor  # (1, n, n)
    wT: torch.Tensor  # (1, n, n)
    ns: NavierStokes2D
    forward: SolverForward
    observation: PointObservation
    data: torch.Tensor  # (draws, m)

    def __post_init__(self) -> None:
        check_instance("setup", self.setup, NSInverseSetup)
        n = self.setup.n
        for name in ("w0", "wT"):
            w = check_tensor(name, getattr(self, name), ndim=3, real=True)
            if tuple(w.shape) != (1, n, n):
                raise ValueError(f"{name} must have shape (1, {n}, {n}) (setup.n = {n}), got "
                                 f"{tuple(w.shape)}")
            check_finite(name, w)
        check_instance("ns", self.ns, NavierStokes2D)
        check_instance("forward", self.forward, SolverForward)
        check_instance("observation", self.observation, PointObservation)
        d = check_tensor("data", self.data, ndim=2, real=True)
        m = self.observation.num_obs
        if d.shape[0] < 1 or d.shape[1] != m:
            raise ValueError(f"data must have shape (draws >= 1, {m}) (one row of the {m} "
                             f"observed values per draw), got {tuple(d.shape)}")
        check_finite("data", d)


def recover_initial_condition(
    data: NSInverseData,
    forward: Any = None,
    *,
    max_iter: int = 300,
    rank: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The MAP initial vorticity and its Laplace posterior from the first data draw.

    Args:
        data: from :meth:`NSInverseSetup.build`.
        forward: the forward map ``w0 -> w(T)`` (default: the solver, ``data.forward``).
        max_iter: L-BFGS iterations.
        rank: Laplace eigenpairs (``None``: the number of observations, exact for a linear
            map; fewer gives upper bounds of the variances).
        progress: progress bars.

    Returns:
        ``estimate``, ``std`` (``(n, n)``), ``rel_l2`` (the prior mean, zero, scores 1),
        ``calibration_2sd``, ``map_s``,
        ``laplace_s``, ``time_s`` (both), ``iterations``, ``status``,
        ``data_misfit_rms`` (the rms residual over the noise std: about 1 at a good fit).

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any solve.
    """
    check_instance("data", data, NSInverseData, hint="build it with NSInverseSetup().build()")
    if forward is not None:
        check_callable("forward", forward)
    check_int("max_iter", max_iter, minimum=1)
    if rank is not None:
        check_int("rank", rank, minimum=1, fix="or None for one per observation")
    check_bool("progress", progress)
    forward = data.forward if forward is None else forward
    problem = InverseProblem(forward, data.observation, data.data[:1], prior=grf_prior())
    x0 = torch.zeros_like(data.w0)
    t = time.perf_counter()
    res = MAP(max_iter=max_iter, gtol=1e-6, ftol=1e-10, progress=progress)(problem, x0)
    t_map = time.perf_counter() - t
    t = time.perf_counter()
    post = Laplace(rank=rank)(problem, res.estimate)
    t_lap = time.perf_counter() - t
    est, truth = res.estimate[0], data.w0[0]
    err = est - truth
    with torch.no_grad():
        r = problem.predict(res.estimate) - problem.data
    sigma = data.observation.noise_std
    return {
        "estimate": est, "std": post.std[0], "error": err,
        "rel_l2": float(err.norm() / truth.norm()),
        "calibration_2sd": calibration(err, post.std[0]),
        "mean_std": float(post.std.mean()), "rms_error": float(err.square().mean().sqrt()),
        "map_s": t_map, "laplace_s": t_lap, "time_s": t_map + t_lap,
        "iterations": res.stats["iterations"], "status": res.status.name,
        "rank": post.stats.get("rank"),
        "data_misfit_rms": float(r.square().mean().sqrt()) / sigma,
    }


def recover_parameters(
    data: NSInverseData,
    *,
    prior_mean: tuple[float, float] = (math.log(2e-3), 0.05),
    prior_std: tuple[float, float] = (1.0, 0.1),
    max_iter: int = 100,
    progress: bool = False,
) -> dict[str, Any]:
    """``(log nu, A)`` from every data draw at once, the initial vorticity known.

    The prior is weak (by default ``log nu ~ N(log 2e-3, 1)``, ``A ~ N(0.05, 0.1)``, so
    the truth ``(1e-3, 0.1)`` sits a standard deviation or so off its mean) and the start
    is the prior mean.

    Returns:
        per parameter (``viscosity``, ``amplitude``): ``truth``, ``estimates`` (one per
        draw), ``bias`` (mean estimate minus truth), ``spread`` (std of the estimates
        over the draws), ``laplace_std`` (mean over the draws; for ``nu`` by the delta
        method from ``log nu``), ``z`` (``bias / laplace_std * sqrt(draws)``, the bias in
        standard errors); and ``time_s``, ``iterations``, ``status``.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any solve.
    """
    check_instance("data", data, NSInverseData, hint="build it with NSInverseSetup().build()")
    prior_mean = tuple(_pair("prior_mean", prior_mean))
    prior_std = tuple(_pair("prior_std", prior_std, positive=True))
    check_int("max_iter", max_iter, minimum=1)
    check_bool("progress", progress)
    s = data.setup
    f0 = fno_forcing(s.n, amplitude=1.0)
    forward = ParameterForward(data.w0[0], f0, s.time, s.step)
    prior = ScalarPrior(mean=prior_mean, std=prior_std)
    problem = InverseProblem(forward, data.observation, data.data, prior=prior)
    B = data.data.shape[0]
    x0 = torch.tensor([prior_mean], dtype=_DT).expand(B, 2).clone()
    t = time.perf_counter()
    res = MAP(max_iter=max_iter, gtol=1e-7, ftol=1e-12, progress=progress)(problem, x0)
    post = Laplace(method="dense")(problem, res.estimate)
    elapsed = time.perf_counter() - t
    est, sd = res.estimate, post.std
    nu = est[:, 0].exp()
    out: dict[str, Any] = {"time_s": elapsed, "iterations": res.stats["iterations"],
                           "status": res.status.name, "draws": B}
    for name, truth, values, lsd in (
        ("viscosity", s.viscosity, nu, nu * sd[:, 0]),
        ("amplitude", s.amplitude, est[:, 1], sd[:, 1]),
    ):
        bias = float(values.mean()) - truth
        spread = float(values.std()) if B > 1 else float("nan")
        lstd = float(lsd.mean())
        out[name] = {"truth": truth, "estimates": values.tolist(), "bias": bias,
                     "relative_bias": bias / truth, "spread": spread, "laplace_std": lstd,
                     "z": bias / lstd * math.sqrt(B)}
    return out


def _pair(name: str, v: object, *, positive: bool = False) -> list[float]:
    """Two finite numbers, one for ``log nu`` and one for ``A``."""
    values = check_reals(name, v, positive=positive, fix="one for log(viscosity), one for "
                         "the forcing amplitude")
    if len(values) != 2:
        raise ValueError(f"{name} must hold 2 numbers (log viscosity, amplitude), got "
                         f"{len(values)}: {v!r}")
    return values


def train_surrogate(
    out_dir: str | os.PathLike,
    setup: NSInverseSetup,
    *,
    samples: int = 512,
    test_samples: int = _TEST_SAMPLES,
    width: int = 20,
    modes: int = 12,
    steps: int = 2000,
    time_budget: float | None = None,
    batch_size: int = 16,
    lr: float = 3e-3,
    progress: bool = True,
    seed: int = 1,
) -> tuple[SurrogateForward, dict[str, Any]]:
    """Solver data ``w0 -> w(T)`` and a trained SFNO (one frame in, one out).

    Writes ``out_dir/ns_pairs.h5`` (:func:`sciml.data.generate_ns2d`, the FNO preset with
    the setup's viscosity, solved and stored at ``setup.n``, frames at 0 and ``T``) and
    trains ``SFNO(min(modes, n // 3), modes_t=1, width, out_steps=1)`` with the relative L2 loss
    (OneCycle, ``steps`` optimiser steps or ``time_budget`` seconds) into
    ``out_dir/sfno`` (a finished run is reused, an interrupted one resumed). The data
    seed differs from the experiment's, so the truth is not in the training set.

    Returns:
        the forward map (float64, eval mode) and ``{"test_rel_l2", "train_steps",
        "train_s", "samples"}``.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any data is
            generated or any file written.
    """
    check_path("out_dir", out_dir)
    check_instance("setup", setup, NSInverseSetup)
    check_int("test_samples", test_samples, minimum=1)
    check_int("samples", samples, minimum=test_samples + 1,
              fix=f"hold out fewer than samples (test_samples = {test_samples})")
    check_int("width", width, minimum=1)
    check_int("modes", modes, minimum=1)
    check_int("steps", steps, minimum=1)
    check_time_budget(time_budget)
    check_int("batch_size", batch_size, minimum=1)
    check_real("lr", lr, positive=True)
    check_bool("progress", progress)
    check_seed(seed)
    from sciml.data import generate_ns2d
    from sciml.data.ns2d import PRESETS, NS2DPreset
    from sciml.operators import SFNO
    from sciml.train import TrainConfig, read_metrics
    from sciml_recipes.sfno.pipeline import NSData, load_sfno, train_sfno

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = PRESETS["fno"]
    preset = NS2DPreset(**{**asdict(base), "viscosity": setup.viscosity,
                           "forcing_params": (("amplitude", setup.amplitude),)})
    path = generate_ns2d(out / "ns_pairs.h5", preset=preset, samples=samples,
                         resolution=setup.n, solver_resolution=setup.n, seed=seed + 1000,
                         batch_size=64, t_start=0.0, t_end=setup.time, snapshots=2,
                         dt=setup.step, progress=progress)
    nsdata = NSData(str(path), input_steps=1, output_steps=1, stride=1, test_stride=1,
                    test_samples=test_samples)
    run = out / "sfno"
    epochs = max(1, math.ceil(steps * batch_size / (samples - test_samples)))
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, max_steps=steps,
                         time_budget=time_budget, progress=progress, seed=seed,
                         eval_every=max(1, epochs // 4))
    if (run / "model.pt").exists():
        model, _ = load_sfno(run / "model.pt")
    else:
        torch.manual_seed(seed)
        model0 = SFNO(min(modes, setup.n // 3), 1, width, out_steps=1)
        model, _ = train_sfno(nsdata, run, config, model=model0,
                              resume=(run / "checkpoint.pt").exists())
    evaluated = [r for r in read_metrics(run) if "eval_rel_l2" in r]
    metrics = evaluated[-1] if evaluated else {}
    train = nsdata.dataset("train")
    model = model.to(_DT).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info = {"test_rel_l2": metrics.get("eval_rel_l2", float("nan")),
            "train_steps": metrics.get("step", float("nan")),
            "train_s": metrics.get("elapsed", float("nan")), "samples": samples,
            "test_samples": test_samples}
    return SurrogateForward(model, train.mean, train.std), info


def plot_ns_inverse(data: NSInverseData, results: dict[str, dict[str, Any]],
                    path: str | os.PathLike) -> Path:
    """Truth, observed points, and per forward map the estimate, |error| and the std.

    Args:
        data: from :meth:`NSInverseSetup.build`.
        results: per forward map (a name), the dict of :func:`recover_initial_condition`
            (may be empty: the truth and the observed points alone).
        path: the PNG to write.
    """
    check_instance("data", data, NSInverseData, hint="build it with NSInverseSetup().build()")
    check_mapping("results", results, hint="name -> recover_initial_condition(data, ...)")
    for name, r in results.items():
        check_mapping(f"results[{name!r}]", r, ("estimate", "error", "std", "rel_l2",
                                                "calibration_2sd"),
                      hint="pass the dict of recover_initial_condition(data, ...)")
    out = check_path("path", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(1 + len(names), 3, figsize=(10, 3.3 * (1 + len(names))),
                           squeeze=False)
    truth = data.w0[0].numpy()
    vmax = float(abs(truth).max())
    ax[0, 0].imshow(truth.T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax[0, 0].set_title("true w(0)")
    wT = data.wT[0].numpy()
    ax[0, 1].imshow(wT.T, origin="lower", cmap="RdBu_r")
    n = data.setup.n
    idx = torch.tensor(data.observation.indices)
    ax[0, 1].scatter((idx // n).numpy(), (idx % n).numpy(), s=3, c="k")
    ax[0, 1].set_title(f"w(T = {data.setup.time:g}) and the {len(idx)} observed points")
    ax[0, 2].axis("off")
    for i, name in enumerate(names, start=1):
        r = results[name]
        ax[i, 0].imshow(r["estimate"].numpy().T, origin="lower", cmap="RdBu_r",
                        vmin=-vmax, vmax=vmax)
        ax[i, 0].set_title(f"{name}: MAP w(0), rel L2 {r['rel_l2']:.3f}")
        emax = float(max(r["error"].abs().max(), 2 * r["std"].max()))
        ax[i, 1].imshow(r["error"].abs().numpy().T, origin="lower", cmap="magma", vmin=0,
                        vmax=emax)
        ax[i, 1].set_title("|error|")
        im = ax[i, 2].imshow(2 * r["std"].numpy().T, origin="lower", cmap="magma", vmin=0,
                             vmax=emax)
        ax[i, 2].set_title(f"2 sd (Laplace); {100 * r['calibration_2sd']:.0f}% within")
        fig.colorbar(im, ax=ax[i, 1:].tolist(), shrink=0.8)
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    save_figure(fig, out, dpi=90)
    return out


def run_ns_inverse(
    out_dir: str | os.PathLike,
    setup: NSInverseSetup | None = None,
    *,
    surrogate: bool = True,
    surrogate_samples: int = 512,
    surrogate_steps: int = 2000,
    surrogate_budget: float | None = None,
    draws: int = 8,
    max_iter: int = 300,
    rank: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """All three Navier-Stokes experiments, the result rows and the figure.

    Rows (shared benchmark shape, impl ``sciml``): case ``ns-ic-solver`` and
    ``ns-ic-sfno`` (method ``l2``: ``rel_l2``, ``time_s``, ``calibration_2sd``,
    ``iterations``; the SFNO case also ``surrogate_test_rel_l2``), case ``ns-viscosity``
    (methods ``viscosity`` and ``amplitude``: ``bias``, ``relative_bias``, ``spread``,
    ``laplace_std``; and ``time_s``).

    Returns:
        ``{"rows", "setup", "results", "parameters", "surrogate", "figure"}``.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any solve.
    """
    out = check_path("out_dir", out_dir)
    setup = NSInverseSetup() if setup is None else check_instance(
        "setup", setup, NSInverseSetup, optional=True)
    check_bool("surrogate", surrogate)
    check_int("surrogate_samples", surrogate_samples, minimum=_TEST_SAMPLES + 1,
              fix=f"the surrogate holds out {_TEST_SAMPLES} trajectories for testing")
    check_int("surrogate_steps", surrogate_steps, minimum=1)
    check_time_budget(surrogate_budget, "surrogate_budget")
    check_int("draws", draws, minimum=1)
    check_int("max_iter", max_iter, minimum=1)
    if rank is not None:
        check_int("rank", rank, minimum=1, fix="or None for one per observation")
    check_bool("progress", progress)
    data = setup.build(draws=draws)
    results: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def ic_rows(case: str, r: dict[str, Any]) -> None:
        for metric in ("rel_l2", "time_s", "calibration_2sd", "iterations", "map_s",
                       "laplace_s", "data_misfit_rms"):
            rows.append({"case": case, "impl": "sciml", "method": "l2", "metric": metric,
                         "value": float(r[metric])})
        rows.append({"case": case, "impl": "sciml", "method": "l2",
                     "metric": "map_converged", "value": float(r["status"] == "CONVERGED")})

    results["solver"] = recover_initial_condition(data, max_iter=max_iter, rank=rank,
                                                  progress=progress)
    ic_rows("ns-ic-solver", results["solver"])
    info: dict[str, Any] | None = None
    if surrogate:
        fwd, info = train_surrogate(out / "surrogate", setup, samples=surrogate_samples,
                                    steps=surrogate_steps, time_budget=surrogate_budget,
                                    progress=progress)
        with torch.no_grad():
            sur_err = float((fwd(data.w0) - data.wT).norm() / data.wT.norm())
        info["truth_rel_l2"] = sur_err
        results["sfno"] = recover_initial_condition(data, fwd, max_iter=max_iter, rank=rank,
                                                    progress=progress)
        ic_rows("ns-ic-sfno", results["sfno"])
        for metric, value in (("surrogate_test_rel_l2", info["test_rel_l2"]),
                              ("surrogate_truth_rel_l2", sur_err),
                              ("surrogate_train_steps", info["train_steps"]),
                              ("surrogate_train_s", info["train_s"])):
            rows.append({"case": "ns-ic-sfno", "impl": "sciml", "method": "l2",
                         "metric": metric, "value": float(value)})
    params = recover_parameters(data, progress=progress)
    for name in ("viscosity", "amplitude"):
        for metric in ("truth", "bias", "relative_bias", "spread", "laplace_std", "z"):
            rows.append({"case": "ns-viscosity", "impl": "sciml", "method": name,
                         "metric": metric, "value": float(params[name][metric])})
    rows.append({"case": "ns-viscosity", "impl": "sciml", "method": "viscosity+amplitude",
                 "metric": "time_s", "value": float(params["time_s"])})
    fig = plot_ns_inverse(data, results, out / "inverse_navier_stokes.png")
    summary = setup.summary(data.observation.num_obs, data.observation.noise_std)
    return {"rows": rows, "setup": summary, "results": results, "parameters": params,
            "surrogate": info, "figure": fig}


def experiment_settings(quick: bool = False, train_budget: float = 600.0
                        ) -> tuple[NSInverseSetup, dict[str, Any]]:
    """The setup and :func:`run_ns_inverse` keywords of the measured run (or a quick one).

    Full: 64^2, T = 1, 5% observed, 5% noise, 600 L-BFGS iterations at most; a surrogate
    on 512 solver pairs trained for 850 steps (or ``train_budget`` seconds); 8 noise draws
    for the parameters. Quick:
    32^2, 10% observed, 96 pairs and 100 steps, 4 draws, 100 L-BFGS iterations.

    Raises:
        TypeError, ValueError: ``quick`` is not a bool, or ``train_budget`` is not a
            positive number of seconds.
    """
    check_bool("quick", quick)
    check_real("train_budget", train_budget, positive=True, fix="seconds of training")
    if quick:
        return NSInverseSetup(n=32, fraction=0.1), {
            "surrogate_samples": 96, "surrogate_steps": 100, "draws": 4, "max_iter": 100}
    return NSInverseSetup(), {"surrogate_samples": 512, "surrogate_steps": 850,
                              "surrogate_budget": train_budget, "draws": 8, "max_iter": 600}
