"""A message-passing neural PDE solver (MP-PDE) learns Burgers' equation and rolls it out.

Shows :class:`sciml.operators.MPPDE` trained by :class:`sciml.train.Trainer` with the
pushforward trick (:class:`sciml.train.rollout.Pushforward`), then rolled out on held-out
trajectories with :func:`sciml.train.rollout.rollout` and scored with
:func:`sciml.train.rollout.accumulated_mse`. The data are made in the script by sciml's
own WENO5 solver: 64 trajectories of the E1 family of Brandstetter et al. (forced Burgers,
``u_t + (u^2/2)_x = delta(t, x)`` on a periodic interval of length 16, ``t`` in [0, 4], 250
stored steps), solved on 100 cells and block-averaged to the benchmark's 50 (48 to train,
16 to test).

What was chosen so that a tiny model learns in seconds on a laptop CPU: the paper's data
(E1, nx = 50) but a much smaller network (time window K = 10 instead of 25, 32 hidden
features, 2 message-passing layers, edges to 2 neighbours on either side: about 15k
parameters instead of 0.63M), 1000 Adam steps (cosine schedule, lr 3e-3) with up to two
pushforward unrolls (one allowed after 300 steps, two after 600), and a rollout of 100
steps (1.6 time units) from step 49. The learned model is scored beside two references at
the same 50 points: persistence (``u`` held at its last known value) and the WENO5 solver
itself restarted from the same data at step 49. Expect the model to beat persistence
clearly and the solver to beat the model by far (the truth is the same scheme on a grid
twice as fine, in the consistent conservative convention, so the coarse solve is close to
it by construction): this small, briefly trained network is a demonstration of the API,
not of the paper's accuracy. Writes
``examples_out/message_passing_pde.png`` (space-time plots of truth and rollout, and the
error per step of all three).

    python examples/message_passing_pde.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch.utils.data import TensorDataset

from sciml.operators import MPPDE
from sciml.pdes import FAMILIES, generate_trajectories, sample_parameters, solve_combined
from sciml.train import TrainConfig, Trainer
from sciml.train.rollout import Pushforward, accumulated_mse, rollout

OUT = Path("examples_out")
NX, NT, N_TRAIN, N_TEST = 50, 250, 48, 16
K, START, HORIZON = 10, 49, 100  # window, index of the last known step, steps rolled out
family = FAMILIES["E1"]
dt = family.T / (NT - 1)  # the stored times are linspace(0, T, NT)

torch.manual_seed(0)
params = sample_parameters("E1", N_TRAIN + N_TEST, generator=torch.Generator().manual_seed(0))
u = generate_trajectories(params, family="E1", resolutions=(2 * NX, NX), nt=NT)[NX].float()
theta = torch.zeros(len(u), 0)  # E1 has no varying coefficient (alpha = 1): no parameters
train = TensorDataset(u[:N_TRAIN], theta[:N_TRAIN])  # items: (trajectory (NT, NX), theta)

model = MPPDE(K, dt=dt, length=16.0, n_params=0, hidden=32, layers=2, neighbours=2,
              tmax=family.T)
push = Pushforward(max_unroll=2, grow_every=300)  # one more unroll allowed every 300 steps
config = TrainConfig(epochs=200, max_steps=1000, lr=3e-3, batch_size=8, schedule="cosine",
                     progress=False)
trainer = Trainer(model, push.loss, config, forward=push.forward)
push.trainer = trainer  # the pushforward reads the step count to grow its unrolls
result = trainer.fit(train)
print(f"MPPDE with {model.num_parameters()} parameters: {result.global_step} steps in "
      f"{result.elapsed:.1f} s, final training loss {result.history[-1]['train_loss']:.2e}")

test, p_test = u[N_TRAIN:], params[N_TRAIN:]
truth = test[:, START + 1:START + 1 + HORIZON]
model.eval()
with torch.no_grad():
    window = test[:, START - K + 1:START + 1]  # the last K known steps
    pred = rollout(model, window, torch.full((N_TEST,), START * dt), theta[N_TRAIN:],
                   steps=HORIZON)
persistence = test[:, START:START + 1].expand_as(truth)
times = torch.arange(START, START + HORIZON + 1, dtype=torch.float64) * dt
weno = solve_combined(test[:, START].double(), p_test, times, t0=float(times[0]))[:, 1:]
weno = weno.float()

print(f"accumulated MSE over {HORIZON} steps (t = {START * dt:.2f} .. "
      f"{(START + HORIZON) * dt:.2f}), {N_TEST} test trajectories, nx = {NX}:")
for name, v in (("MP-PDE rollout", pred), ("persistence", persistence),
                (f"WENO5 at nx = {NX}", weno)):
    print(f"  {name:18s} {float(accumulated_mse(v, truth)):.4f}")


extent = (float(times[1]), float(times[-1]), 0.0, 16.0)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
vmax = float(truth[0].abs().max())
for ax, field, title in zip(axes[:3], (truth[0], pred[0], pred[0] - truth[0]),
                            ("truth (WENO5 on 100 cells)", "MP-PDE rollout", "rollout - truth")):
    im = ax.imshow(field.T, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r",
                   vmin=-vmax, vmax=vmax)
    ax.set_title(title), ax.set_xlabel("t")
axes[0].set_ylabel("x")
fig.colorbar(im, ax=axes[2])
for v, label in ((pred, "MP-PDE"), (persistence, "persistence"), (weno, f"WENO5, nx = {NX}")):
    axes[3].semilogy(times[1:], ((v - truth) ** 2).mean((0, 2)), label=label)
axes[3].set_xlabel("t"), axes[3].set_title("MSE per step (test set)"), axes[3].legend()
OUT.mkdir(exist_ok=True)
fig.savefig(OUT / "message_passing_pde.png", dpi=110, bbox_inches="tight")
print(f"figure: {OUT / 'message_passing_pde.png'}")
