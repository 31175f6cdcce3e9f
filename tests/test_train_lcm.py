"""The few-step student's training matches the scheduler that serves it."""

from __future__ import annotations

import torch
from diffusers import LCMScheduler

from aigc_demo.training import train_diffusion
from aigc_demo.training.train_lcm import DDIM_STEPS, DDIMSolver, boundary_scalings, x0_and_eps


def serving_scheduler() -> LCMScheduler:
    return LCMScheduler.from_config(train_diffusion.new_scheduler().config)


def test_boundary_scalings_are_the_schedulers():
    sched = serving_scheduler()
    t = torch.tensor([0, 19, 259, 999])
    c_skip, c_out = boundary_scalings(t)
    for i, step in enumerate(t.tolist()):
        want_skip, want_out = sched.get_scalings_for_boundary_condition_discrete(step)
        assert abs(c_skip[i].item() - want_skip) < 1e-6 and abs(c_out[i].item() - want_out) < 1e-6


def test_the_skipping_schedule_holds_every_timestep_the_scheduler_samples():
    sched = serving_scheduler()
    assert sched.config.original_inference_steps == DDIM_STEPS
    solver = DDIMSolver(sched.alphas_cumprod)
    for steps in (1, 2, 4, 8):
        sched.set_timesteps(steps)
        assert set(sched.timesteps.tolist()) <= set(solver.timesteps.tolist()), steps


def test_a_ddim_step_with_exact_predictions_lands_on_the_earlier_point():
    acp = train_diffusion.new_scheduler().alphas_cumprod
    solver = DDIMSolver(acp)
    x0, eps = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    index = torch.tensor([10, 30])
    t = solver.timesteps[index]
    a, s = acp[t].sqrt()[:, None, None, None], (1 - acp[t]).sqrt()[:, None, None, None]
    xt = a * x0 + s * eps
    v = a * eps - s * x0  # the v-prediction target
    x0_hat, eps_hat = x0_and_eps(v, xt, a, s)
    assert torch.allclose(x0_hat, x0, atol=1e-4) and torch.allclose(eps_hat, eps, atol=1e-4)
    earlier = t - solver.skip
    a2, s2 = acp[earlier].sqrt()[:, None, None, None], (1 - acp[earlier]).sqrt()[:, None, None, None]
    assert torch.allclose(solver.step(x0_hat, eps_hat, index), a2 * x0 + s2 * eps, atol=1e-4)
