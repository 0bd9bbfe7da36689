"""The ``siamtfa`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from siamtfa import config
from siamtfa.model import LOSS_KEYS, build_model
from siamtfa.ops import xywh_to_xyxy


def _load_config(args: argparse.Namespace) -> config.Config:
    return config.load(args.config) if args.config else config.preset(args.preset)


def model_summary(model: torch.nn.Module) -> str:
    rows = []
    total = trainable = 0
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        t = sum(p.numel() for p in child.parameters() if p.requires_grad)
        total, trainable = total + n, trainable + t
        rows.append(f"  {name:<12} {n / 1e6:8.2f} M params ({t / 1e6:.2f} M trainable)")
    rows.append(f"  {'total':<12} {total / 1e6:8.2f} M params ({trainable / 1e6:.2f} M trainable)")
    return "\n".join(rows)


def cmd_summary(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    model = build_model(cfg)
    print(
        f"SiamTFA, ResNet-{cfg.model.backbone.depth}-FPN, temporal shift "
        f"{'on' if cfg.model.temporal.enabled else 'off'}, adversarial dropout "
        f"{'on' if cfg.model.adversarial_dropout.enabled else 'off'}"
    )
    print(model_summary(model))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Model summary, one training step and one inference on synthetic tensors."""
    torch.manual_seed(args.seed)
    cfg = config.preset("lite")
    model = build_model(cfg)
    print("SiamTFA lite (untrained weights):")
    print(model_summary(model))
    size, clip_len = args.size, 3
    g = torch.Generator().manual_seed(args.seed)
    template = torch.randn(1, 3, size, size, generator=g)
    search = torch.randn(clip_len, 3, size, size, generator=g)
    box_xywh = torch.tensor([[size * 0.3, size * 0.35, size * 0.25, size * 0.3]])
    moves = torch.tensor([[0.0, 0, 0, 0], [4, 2, 0, 0], [8, 4, 0, 0]])
    search_boxes = xywh_to_xyxy(box_xywh + moves)
    x1, y1, x2, y2 = (int(v) for v in xywh_to_xyxy(box_xywh)[0])
    search[:, :, y1:y2, x1:x2] = template[:, :, y1:y2, x1:x2]  # the target, pasted
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=cfg.train.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay
    )
    model.train()
    start = time.perf_counter()
    losses = model(template, xywh_to_xyxy(box_xywh), search, clip_len, search_boxes)
    opt.zero_grad()
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
    opt.step()
    terms = ", ".join(f"{k} {losses[k].item():.4f}" for k in (*LOSS_KEYS, "loss"))
    print(
        f"one training step on a {clip_len}-frame synthetic clip ({size}x{size}) "
        f"in {time.perf_counter() - start:.2f} s: {terms}"
    )
    model.eval()
    with torch.inference_mode():
        start = time.perf_counter()
        dets = model(template, xywh_to_xyxy(box_xywh), search, clip_len)
    for t, det in enumerate(dets):
        box = ", ".join(f"{v:.1f}" for v in det["box"].tolist())
        print(
            f"frame {t}: top box [{box}] score {det['score']:.3f} ({len(det['boxes'])} candidates)"
        )
    print(
        f"inference on {clip_len} frames in {time.perf_counter() - start:.2f} s. "
        "Weights are untrained: boxes are not meaningful yet."
    )
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from siamtfa.data.synthetic import make_synthetic

    names = make_synthetic(
        args.out, args.sequences, args.frames, args.seed, (args.width, args.height)
    )
    print(f"{len(names)} sequences of {args.frames} frames in {args.out} (GOT-10k layout)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from siamtfa.training import train

    if args.resume:
        result = train(
            config.preset("paper"),
            [],
            args.resume,
            resume=True,
            device=args.device,
            stop_after=args.stop_after,
        )
    else:
        if not args.data or not args.out:
            raise ValueError("train needs --data KIND=PATH and --out RUN_DIR (or --resume RUN_DIR)")
        cfg = _load_config(args)
        if args.iterations is not None:
            cfg.train.iterations = args.iterations
        if args.backbone_weights:
            cfg.model.backbone.weights = args.backbone_weights
        result = train(cfg, args.data, args.out, device=args.device, stop_after=args.stop_after)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    print(f"iteration {result.iteration}: {losses}\ncheckpoint: {result.checkpoint}")
    return 0


def cmd_plot_log(args: argparse.Namespace) -> int:
    from siamtfa.training.plot import plot_losses

    print(plot_losses(args.run_dir, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamtfa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print the model's parts and parameter counts")
    p.add_argument("--preset", default="paper", choices=config.PRESETS)
    p.add_argument("--config", help="YAML config (overrides --preset)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("demo", help="the embedded default job (synthetic tensors, lite preset)")
    p.add_argument("--size", type=int, default=256, help="synthetic frame side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("make-synthetic", help="write synthetic sequences (GOT-10k layout)")
    p.add_argument("--out", required=True)
    p.add_argument("--sequences", type=int, default=20)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.set_defaults(func=cmd_make_synthetic)

    p = sub.add_parser("train", help="train (torchrun for several processes)")
    p.add_argument("--preset", default="paper", choices=config.PRESETS)
    p.add_argument("--config", help="YAML config (overrides --preset)")
    p.add_argument(
        "--data",
        action="append",
        metavar="KIND=PATH[:WEIGHT]",
        help="got10k, lasot, otb, uav123, uav20l, folder or synthetic; repeatable",
    )
    p.add_argument("--out", help="run folder (checkpoints, logs)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("--iterations", type=int, help="override train.iterations")
    p.add_argument("--stop-after", type=int, help="checkpoint and stop at this iteration")
    p.add_argument("--backbone-weights", help="local torchvision ImageNet ResNet checkpoint")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("plot-log", help="draw a run's loss curves (PNG)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="PNG path (default RUN_DIR/loss_curve.png)")
    p.set_defaults(func=cmd_plot_log)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # ConfigError, DatasetError are ValueErrors
        print(f"siamtfa: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
