"""The training loss log continues across machines: published beside the plot, seeded from there."""

from __future__ import annotations

from aigc_demo.training.common import LossLog


def test_loss_history_survives_a_fresh_machine(tmp_path):
    weights, run1, run2 = (
        tmp_path / "weights",
        tmp_path / "machine1" / "loss.csv",
        tmp_path / "machine2" / "loss.csv",
    )
    first = LossLog(run1, ["loss"], history=weights / "loss.csv")  # nothing published yet: a new log
    for step in (10, 20):
        first.append({"step": step, "wall_seconds": step, "loss": 1.0 / step})
    first.plot(weights / "loss.png", ["loss"], "test")
    assert (weights / "loss.png").is_file() and (weights / "loss.csv").read_text() == run1.read_text()

    second = LossLog(
        run2, ["loss"], history=weights / "loss.csv"
    )  # runs/ gone: starts from the published log
    second.append({"step": 30, "wall_seconds": 30, "loss": 0.03})
    steps = [line.split(",")[0] for line in run2.read_text().splitlines()]
    assert steps == ["step", "10", "20", "30"]


def test_a_log_begun_without_a_field_gets_its_column(tmp_path):
    import csv

    path = tmp_path / "loss.csv"
    old = LossLog(path, ["loss_d", "loss_g"])
    old.append({"step": 1, "wall_seconds": 1, "loss_d": 0.5, "loss_g": 0.25})
    new = LossLog(path, ["loss_d", "loss_g", "anchor"])
    new.append({"step": 2, "wall_seconds": 2, "loss_d": 0.4, "loss_g": 0.2, "anchor": 0.1})
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["anchor"] for r in rows] == ["", "0.1"] and [r["loss_g"] for r in rows] == ["0.25", "0.2"]
    plot = tmp_path / "published" / "loss.png"
    new.plot(plot, ["loss_d", "anchor"], "test")  # the column's empty rows are left out
    assert plot.stat().st_size > 0


def test_learning_rate_warms_up_then_holds_or_cools_down_over_the_run():
    from aigc_demo.training.train_diffusion import learning_rate, parse_args

    constant = parse_args(["--lr", "1e-4"])
    assert abs(learning_rate(constant, 0, 0.0) - 1e-4 / 200) < 1e-15  # the very first steps warm up
    assert learning_rate(constant, 5000, 0.9) == 1e-4  # a resumed run holds the rate

    cool = parse_args(["--lr", "1e-4", "--lr-final", "1e-5"])
    rates = [learning_rate(cool, 5000, p) for p in (0.0, 0.5, 1.0, 1.5)]
    assert rates[0] == 1e-4 and abs(rates[1] - 5.5e-5) < 1e-12 and rates[2] == rates[3] == 1e-5


def test_publish_rule_weighs_each_metric_against_its_noise(tmp_path):
    import json

    from aigc_demo.training.train_diffusion import should_publish

    committed = {"heldout_generated_top5": 0.685, "heldout_fd_vae": 5.24, "train_captions_fd_vae": 5.97}
    (tmp_path / "metrics.json").write_text(json.dumps(committed))

    def verdict(top5, fd, train_fd):
        metrics = {"heldout_generated_top5": top5, "heldout_fd_vae": fd, "train_captions_fd_vae": train_fd}
        return should_publish({**metrics, "heldout_items": 292}, tmp_path)[0]

    assert verdict(0.69, 5.40, 6.10)  # retrieval improved, FD within its slack
    assert not verdict(0.69, 5.60, 5.00)  # held-out FD worse beyond the slack vetoes everything
    assert verdict(0.675, 5.16, 5.41)  # 3 items of 292 fewer is noise; training-caption FD clearly better
    assert not verdict(0.675, 5.16, 5.80)  # training-caption FD better, but not beyond the slack
    assert not verdict(0.65, 5.16, 5.41)  # 10 items fewer is more than one standard error (0.027)
    assert not verdict(0.685, 5.24, 5.97)  # a tie publishes nothing
    assert should_publish({**committed, "heldout_items": 292}, tmp_path / "none")[0]  # nothing committed yet


def test_gan_publishes_on_better_retrieval_unless_fd_gets_clearly_worse(tmp_path):
    import json

    from aigc_demo.training.train_gan import should_publish

    (tmp_path / "metrics.json").write_text(
        json.dumps({"heldout_generated_top5": 0.394, "heldout_fd_vae": 7.81})
    )

    def verdict(top5, fd):
        return should_publish({"heldout_generated_top5": top5, "heldout_fd_vae": fd}, tmp_path)[0]

    assert verdict(0.42, 8.2)  # retrieval (the target) improved; FD within its noise
    assert not verdict(0.42, 8.5)  # FD worse beyond FD_SLACK
    assert not verdict(0.39, 7.0)  # a better FD alone does not publish
    assert should_publish({"heldout_generated_top5": 0.1, "heldout_fd_vae": 9.0}, tmp_path / "none")[0]


def test_diff_augment_moves_and_cuts_each_image_and_passes_gradients():
    import torch

    from aigc_demo.training.train_gan import diff_augment

    images = (torch.rand(6, 3, 64, 64) * 2 - 1).requires_grad_()
    out = diff_augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    cut = (out == 0).all(dim=1).flatten(1).sum(1)  # pixels zeroed in all channels: the cut-out square
    assert (cut >= 32 * 32).all()
    kept = out[out != 0]
    assert set(kept.detach().unique().tolist()) <= set(images.detach().unique().tolist()), (
        "pixels move, unchanged"
    )
    out.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_a_gan_run_tells_the_committed_architecture_from_the_one_asked_for():
    from aigc_demo.models import GANGenerator
    from aigc_demo.training.train_gan import parse_args, same_architecture

    plain = GANGenerator(z_dim=8, text_dim=16, cond_dim=8, width=8)
    args = parse_args(["--width", "8", "--conditional-norm"])
    assert not same_architecture(plain, args)
    assert same_architecture(
        GANGenerator(z_dim=8, text_dim=16, cond_dim=8, width=8, conditional_norm=True), args
    )
    assert not same_architecture(plain, parse_args(["--width", "8", "--latent"]))


def test_the_pixel_anchor_reaches_the_latent_but_leaves_the_decoder_frozen():
    import torch

    from aigc_demo.training.train_gan import pixel_anchor
    from tests.test_models import tiny_autoencoder, tiny_latent_gan

    gen = tiny_latent_gan(tiny_autoencoder())
    for module in gen.carried_decoder():
        module.requires_grad_(False)
    latents = torch.randn(2, 4, 16, 16, requires_grad=True)
    pictures = gen.decode(latents).detach()
    assert pixel_anchor(gen, latents, pictures, autocast=False) == 0, "a latent that draws the picture"
    loss = pixel_anchor(gen, latents, pictures.flip(-1), autocast=False)
    loss.backward()
    assert loss > 0 and latents.grad.abs().sum() > 0
    assert all(p.grad is None for m in gen.carried_decoder() for p in m.parameters())
