"""pix2pixHD training step against a step that follows the official code's order, in one command.

Both steps use the same networks and initial weights (ours, whose layers and keys are the
official ones) and the same batch of label ids + instance ids + photo:

- **ours**: :func:`p2ptools_pix2pixhd.trainer.train_step` after :func:`encode_input`: D runs once on
  the detached fake and the real stacked in one batch, G's losses run with D frozen, then G and D
  are stepped;
- **official order**: one-hot by ``scatter_`` and edges by four comparisons (as ``encode_input`` /
  ``get_edges``), three separate D passes (fake detached, real, fake), ``loss_G.backward()``
  (which also fills D's gradients, cleared afterwards), G step, ``loss_D.backward()``, D step.

Printed: seconds per step of both (medians of interleaved repeats), the ratio, and the check that
they compute the same update: one step of each with SGD at lr 1 (so a weight's change is its
gradient) from the same weights, the largest difference of those changes and the largest change
(with instance norm the stacked D pass equals two passes up to float rounding; Adam would turn the
rounding noise of the conv biases before instance norms, whose gradients are zero in exact
arithmetic, into full-size steps, so it is not used for the check).

Usage: ``python benchmarks/pix2pixhd_step.py [--height 256] [--width 512] [--ngf 8] [--ndf 8]
[--steps 5] [--repeats 3] [--netG global|local] [--vgg] [--json PATH]`` (CPU, fp32; ``--vgg`` adds the
VGG19 loss with random weights, which dominates the step at this size).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from p2ptools_pix2pixhd.data import encode_input  # noqa: E402
from p2ptools_pix2pixhd.losses import VGG19Features, vgg_loss  # noqa: E402
from p2ptools_pix2pixhd.options import Pix2PixHDOptions  # noqa: E402
from p2ptools_pix2pixhd.trainer import Nets, build_discriminator, build_generator, train_step  # noqa: E402


def make_batch(options: Pix2PixHDOptions, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed (1, 2, H, W) label + instance ids and a photo in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, options.label_nc, (1, 1, h // 16, w // 16), generator=g).repeat_interleave(16, 2).repeat_interleave(16, 3)
    inst = labels * 1000 + (torch.arange(w) >= w // 2).view(1, 1, 1, w)
    real = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    return torch.cat([labels, inst], 1).int(), real


def official_encode(packed: torch.Tensor, label_nc: int) -> torch.Tensor:
    label, t = packed[:, :1].long(), packed[:, 1:]
    onehot = torch.zeros(label.shape[0], label_nc, *label.shape[2:]).scatter_(1, label, 1.0)
    edge = torch.zeros(t.shape, dtype=torch.uint8)
    edge[:, :, :, 1:] = edge[:, :, :, 1:] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, :, :-1] = edge[:, :, :, :-1] | (t[:, :, :, 1:] != t[:, :, :, :-1])
    edge[:, :, 1:, :] = edge[:, :, 1:, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    edge[:, :, :-1, :] = edge[:, :, :-1, :] | (t[:, :, 1:, :] != t[:, :, :-1, :])
    return torch.cat([onehot, edge.float()], 1)


def official_step(packed, real, G, D, opt_g, opt_d, vgg, options: Pix2PixHDOptions) -> None:
    def gan(preds, is_real):
        return sum(F.mse_loss(p[-1], torch.full_like(p[-1], 1.0 if is_real else 0.0)) for p in preds)

    x = official_encode(packed, options.label_nc)
    fake = G(x)
    pred_fake_pool = D(torch.cat([x, fake.detach()], 1))
    loss_d_fake = gan(pred_fake_pool, False)
    pred_real = D(torch.cat([x, real], 1))
    loss_d_real = gan(pred_real, True)
    pred_fake = D(torch.cat([x, fake], 1))
    loss_g = gan(pred_fake, True)
    feat_w, d_w = 4.0 / (options.n_layers_D + 1), 1.0 / options.num_D
    for i in range(options.num_D):
        for j in range(len(pred_fake[i]) - 1):
            loss_g = loss_g + d_w * feat_w * F.l1_loss(pred_fake[i][j], pred_real[i][j].detach()) * options.lambda_feat
    if vgg is not None:
        loss_g = loss_g + vgg_loss(vgg, fake, real, options.lambda_feat)
    loss_d = (loss_d_fake + loss_d_real) * 0.5
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--ngf", type=int, default=8)
    parser.add_argument("--ndf", type=int, default=8)
    parser.add_argument("--netG", default="global", choices=("global", "local"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vgg", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    options = Pix2PixHDOptions(netG=args.netG, ngf=args.ngf, ndf=args.ndf, vgg_loss=args.vgg, device="cpu")
    torch.manual_seed(0)
    G0, D0 = build_generator(options), build_discriminator(options)
    vgg = VGG19Features() if args.vgg else None
    packed, real = make_batch(options, args.height, args.width)
    runs: dict[str, list[float]] = {"ours": [], "official": []}
    for _ in range(args.repeats):
        for kind in ("ours", "official"):
            G, D = copy.deepcopy(G0), copy.deepcopy(D0)
            opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
            opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
            nets = Nets(G, G, D, D, D, vgg)
            scaler = torch.amp.GradScaler("cpu", enabled=False)
            start = time.perf_counter()
            for _ in range(args.steps):
                if kind == "ours":
                    train_step(encode_input(packed, options.label_nc, True), real, nets, {"G": opt_g, "D": opt_d}, scaler, options, None, [])
                else:
                    official_step(packed, real, G, D, opt_g, opt_d, vgg, options)
            runs[kind].append((time.perf_counter() - start) / args.steps)
    deltas = {}
    for kind in ("ours", "official"):
        G, D = copy.deepcopy(G0), copy.deepcopy(D0)
        opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=1.0), torch.optim.SGD(D.parameters(), lr=1.0)
        if kind == "ours":
            train_step(encode_input(packed, options.label_nc, True), real, Nets(G, G, D, D, D, vgg), {"G": opt_g, "D": opt_d},
                       torch.amp.GradScaler("cpu", enabled=False), options, None, [])
        else:
            official_step(packed, real, G, D, opt_g, opt_d, vgg, options)
        after = dict(G.named_parameters(prefix="G")) | dict(D.named_parameters(prefix="D"))
        before = dict(G0.named_parameters(prefix="G")) | dict(D0.named_parameters(prefix="D"))
        deltas[kind] = {k: (after[k] - before[k]).detach() for k in after}
    diff = max((deltas["ours"][k] - deltas["official"][k]).abs().max().item() for k in deltas["ours"])
    largest = max(v.abs().max().item() for v in deltas["official"].values())
    ours, official = statistics.median(runs["ours"]), statistics.median(runs["official"])
    report = {"size": [args.height, args.width], "netG": args.netG, "ngf": args.ngf, "ndf": args.ndf, "vgg": args.vgg,
              "threads": torch.get_num_threads(), "ours_s_per_step": round(ours, 4), "official_s_per_step": round(official, 4),
              "ratio": round(official / ours, 3), "max_update_difference": diff, "max_update": largest}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
