"""Train the toy world's base model ("toy SD"): first the VAE, then the UNet.

    python -m train.train_toy_base vae  --max-steps 2000 --minutes 15
    python -m train.train_toy_base unet --max-steps 6000 --minutes 80

Both stages render training images on the fly from the toy world's *train* split (test
combinations are never seen), seed everything, stop at `--max-steps` or when `--minutes` runs
out (whichever first), and write final weights to `assets/toy/{vae,unet}` plus a
`training.json` with the exact steps run, so `--max-steps <that> --minutes 0` reproduces them.
The UNet learns mostly from keyword spells (as real SD did), rarely from narrative captions,
and sometimes from the empty prompt (for classifier-free guidance).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from PIL import Image
from tqdm.auto import tqdm

from surlib.losses import noise_loss
from surlib.minilm import MINILM_DEPTH
from surlib.toy.base_model import (ASSETS, assemble, build_scheduler, build_toy_unet,
                                   build_toy_vae, load_scheduler, save_text_encoder_layers,
                                   text_encoder_layers)
from surlib.toy.dataset import sample_scenes
from surlib.toy.prompts import complex_prompt, simple_prompt
from surlib.toy.render import render_batch
from surlib.toy.scene import scenes as split_scenes


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) -> float (N,3,H,W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def save_grid(images: torch.Tensor, path: Path, cols: int = 8) -> None:
    """(N,3,H,W) in [-1,1] -> one PNG (for looking at progress, never committed)."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    rows = [np.concatenate(list(x[i:i + cols]), 1) for i in range(0, len(x) - len(x) % cols or len(x), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def random_crops(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Random size x size crops: the VAE is convolutional, so crops teach it as well at a
    quarter of the cost of whole 64x64 images (cost is what limits CPU training)."""
    if not size or size >= x.shape[-1]:
        return x
    ys, xs = rng.integers(0, x.shape[-2] - size + 1, len(x)), rng.integers(0, x.shape[-1] - size + 1, len(x))
    return torch.stack([im[:, y:y + size, x_:x_ + size] for im, y, x_ in zip(x, ys, xs)])


def cosine_lr(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train_vae(args) -> dict:
    acc = Accelerator(cpu=args.cpu)
    set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vae = AutoencoderKL.from_pretrained(args.init_from) if args.init_from else build_toy_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr or 1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, args.schedule_steps, 100))
    vae, opt = acc.prepare(vae, opt)
    start, step, log = time.time(), 0, []
    bar = tqdm(total=args.max_steps, desc="vae")
    while step < args.max_steps and not _out_of_time(start, args.minutes):
        scenes, seeds = sample_scenes(split_scenes("train"), args.batch_size, rng)
        x = random_crops(to_pixels(render_batch(scenes, seeds)), args.crop, rng).to(acc.device)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - x).abs().mean()
        loss = l1 + F.mse_loss(rec, x) + args.kl_weight * post.kl().mean()
        acc.backward(loss)
        acc.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        step += 1
        bar.update(1)
        bar.set_postfix(l1=f"{l1.item():.4f}")
        log.append({"step": step, "l1": l1.item(), "loss": loss.item()})
        if step % 250 == 0:
            save_grid(torch.cat([x[:8], rec[:8].detach()]), Path(args.work_dir) / f"vae_{step:05d}.png")
    vae = acc.unwrap_model(vae).eval()
    # Latents scaled to unit variance, as SD's VAE scaling factor does for its UNet.
    scenes, seeds = sample_scenes(split_scenes("train"), 512, np.random.default_rng(args.seed + 1))
    with torch.no_grad():
        z = vae.encode(to_pixels(render_batch(scenes, seeds))).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    out = Path(args.out) / "vae"
    vae.save_pretrained(out)
    return {"stage": "vae", "steps": step, "seed": args.seed, "batch_size": args.batch_size, "crop": args.crop,
            "lr": args.lr or 1e-3, "init_from": args.init_from,
            "final_l1": float(np.mean([r["l1"] for r in log[-50:]])), "minutes": (time.time() - start) / 60,
            "scaling_factor": vae.config.scaling_factor}


@torch.no_grad()
def build_text_pool(sd, spells: int, captions: int, seed: int) -> dict:
    """Text embeddings of `spells` keyword prompts and `captions` narrative prompts for every
    train scene. Encoding is the costly part on a CPU, so a fixed set of variants per scene is
    made once and reused (the images still vary: see build_latent_pool)."""
    rng = np.random.default_rng(seed)
    scenes = split_scenes("train")
    spell = [[complex_prompt(s, rng) for _ in range(spells)] for s in scenes]
    caption = [[simple_prompt(s, rng) for _ in range(captions)] for s in scenes]
    flat = [p for row in spell for p in row] + [p for row in caption for p in row] + [""]
    emb = torch.cat([_encode(sd, flat[i:i + 256]) for i in tqdm(range(0, len(flat), 256), desc="text")])
    n_sp = len(scenes) * spells
    return {"scenes": [s.to_dict() for s in scenes],
            "spell": emb[:n_sp].view(len(scenes), spells, *emb.shape[1:]),
            "caption": emb[n_sp:-1].view(len(scenes), captions, *emb.shape[1:]),
            "empty": emb[-1], "spell_text": spell, "caption_text": caption}


@torch.no_grad()
def build_latent_pool(vae, renders: int, seed: int) -> torch.Tensor:
    """(scenes, renders, 4, 16, 16) scaled VAE latents of `renders` layouts per train scene."""
    rng = np.random.default_rng(seed + 7)
    scenes = split_scenes("train")
    flat = [s for s in scenes for _ in range(renders)]
    seeds = rng.integers(0, 2**31 - 1, len(flat))
    out = []
    for i in tqdm(range(0, len(flat), 256), desc="latents"):
        x = to_pixels(render_batch(flat[i:i + 256], seeds[i:i + 256]))
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    lat = torch.cat(out)
    return lat.view(len(scenes), renders, *lat.shape[1:])


def _cached(path: Path, make):
    """torch.save cache in the (ignored) work dir: pools survive a restarted run."""
    if path.exists():
        return torch.load(path, weights_only=False)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return value


def _encode(sd, prompts):
    return sd.encode_prompt(prompts, sd.device, 1, False)[0].half()


def train_unet(args) -> dict:
    acc = Accelerator(cpu=args.cpu)
    set_seed(args.seed)
    vae = build_toy_vae() if args.text_only else AutoencoderKL.from_pretrained(Path(args.out) / "vae")
    unet = UNet2DConditionModel.from_pretrained(args.init_from) if args.init_from else build_toy_unet()
    # Separate schedulers: sampling (`_save_samples`) resets the pipeline's timesteps.
    noise_sched = build_scheduler(args.prediction_type)
    sd = assemble(vae, unet, scheduler=build_scheduler(args.prediction_type), text_layers=args.text_layers)
    t0 = time.time()
    work = Path(args.work_dir)
    depth = "" if args.text_layers == MINILM_DEPTH else f"_L{args.text_layers}"
    text = _cached(work / f"text_pool_s{args.seed}_{args.spells}x{args.captions}{depth}.pt",
                   lambda: build_text_pool(sd, args.spells, args.captions, args.seed))
    if args.text_only:
        return {}
    latents = _cached(work / f"latent_pool_s{args.seed}_{args.renders}.pt",
                      lambda: build_latent_pool(vae, args.renders, args.seed))
    pool_minutes = (time.time() - t0) / 60
    n_scenes = latents.shape[0]
    ema = EMAModel(unet.parameters(), decay=args.ema_decay)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr or 3e-4, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, args.schedule_steps, 200))
    unet.train()
    unet, opt = acc.prepare(unet, opt)
    gen = torch.Generator().manual_seed(args.seed)
    start, step, log = time.time(), 0, []
    bar = tqdm(total=args.max_steps, desc="unet")
    b = args.batch_size
    while step < args.max_steps and not _out_of_time(start, args.minutes):
        sc = torch.randint(0, n_scenes, (b,), generator=gen)
        x0 = latents[sc, torch.randint(0, latents.shape[1], (b,), generator=gen)]
        spell = text["spell"][sc, torch.randint(0, text["spell"].shape[1], (b,), generator=gen)]
        caption = text["caption"][sc, torch.randint(0, text["caption"].shape[1], (b,), generator=gen)]
        u = torch.rand(b, generator=gen)[:, None, None]
        cond = torch.where(u < args.p_caption, caption, spell)
        cond = torch.where(u > 1 - args.p_empty, text["empty"].expand_as(cond), cond).float()
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (b,), generator=gen)
        # The adapter trainer's loss: the target the scheduler names (velocity learns colour and
        # count, decided at high noise, far faster than epsilon), Min-SNR weighted unless
        # --snr-gamma 0 (which also trains those high-noise steps at full weight).
        dev = acc.device
        loss = noise_loss(unet, noise_sched, x0.to(dev), cond.to(dev), noise.to(dev), t.to(dev),
                          snr_gamma=args.snr_gamma)
        acc.backward(loss)
        acc.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad()
        ema.step(acc.unwrap_model(unet).parameters())
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        log.append({"step": step, "loss": loss.item()})
        if step % args.sample_every == 0:
            _save_unet(acc.unwrap_model(unet), ema, Path(args.out), args.text_layers)
            _save_samples(acc.unwrap_model(unet), ema, sd, work / f"unet_{step:05d}.png")
            unet.train()
    final = acc.unwrap_model(unet)
    _save_unet(final, ema, Path(args.out), args.text_layers)
    noise_sched.save_pretrained(Path(args.out) / "scheduler")
    _save_samples(final, ema, sd, work / "unet_final.png")
    return {"stage": "unet", "steps": step, "seed": args.seed, "batch_size": b,
            "spells": args.spells, "captions": args.captions, "renders": args.renders,
            "p_caption": args.p_caption, "p_empty": args.p_empty, "init_from": args.init_from,
            "ema_decay": args.ema_decay, "snr_gamma": args.snr_gamma, "prediction_type": args.prediction_type,
            "lr": args.lr or 3e-4, "text_layers": args.text_layers,
            "pool_minutes": pool_minutes,
            "final_loss": float(np.mean([r["loss"] for r in log[-100:]])), "minutes": (time.time() - start) / 60}


def _save_unet(unet, ema, out: Path, text_layers: int) -> None:
    """Save the EMA weights (what we ship) to out/unet, with the text-encoder depth they read,
    leaving the training weights untouched."""
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    unet.save_pretrained(out / "unet")
    save_text_encoder_layers(out, text_layers)
    ema.restore(unet.parameters())


@torch.no_grad()
def _save_samples(unet, ema, sd, path: Path) -> None:
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    unet.eval()
    rng = np.random.default_rng(123)
    test = split_scenes("test")
    scenes = [test[i] for i in rng.integers(0, len(test), 8)]
    prompts = [complex_prompt(s) for s in scenes] + [simple_prompt(s) for s in scenes]
    g = torch.Generator().manual_seed(0)
    imgs = sd(prompts, num_inference_steps=20, guidance_scale=4.0, generator=g, output_type="pt").images
    save_grid(imgs * 2 - 1, path)
    ema.restore(unet.parameters())


def _out_of_time(start: float, minutes: float) -> bool:
    return minutes > 0 and time.time() - start > minutes * 60


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["vae", "unet"])
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--schedule-steps", type=int, default=None,
                   help="length of the cosine learning-rate schedule (default: --max-steps)")
    p.add_argument("--minutes", type=float, default=0, help="wall-clock budget; 0 = none")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--crop", type=int, default=32, help="VAE training crop size (0 = whole image)")
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--spells", type=int, default=6, help="keyword prompts cached per train scene")
    p.add_argument("--captions", type=int, default=3, help="narrative prompts cached per train scene")
    p.add_argument("--renders", type=int, default=12, help="cached layouts (latents) per train scene")
    p.add_argument("--init-from", default=None, help="continue from this VAE/UNet folder")
    p.add_argument("--text-only", action="store_true", help="only build the text pool, then exit")
    p.add_argument("--p-caption", type=float, default=0.05, help="share of narrative captions")
    p.add_argument("--p-empty", type=float, default=0.10, help="share of empty prompts (for CFG)")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--snr-gamma", type=float, default=5.0,
                   help="Min-SNR gamma; 0 = plain MSE on the target, every timestep alike (with v-prediction, "
                        "Min-SNR down-weights the high-noise steps where layout and count are decided)")
    p.add_argument("--prediction-type", default=None, choices=["epsilon", "v_prediction"],
                   help="what the UNet predicts, saved with it as <out>/scheduler (default: that of "
                        "--init-from's model, else epsilon as the first runs; v_prediction learns colour far faster)")
    p.add_argument("--text-layers", type=int, default=None, choices=range(MINILM_DEPTH + 1),
                   metavar=f"0-{MINILM_DEPTH}",
                   help="MiniLM layers the UNet reads (0 = word-piece embeddings only), saved with it as "
                        "<out>/text_encoder.json (default: that of --init-from's model, else all 6)")
    p.add_argument("--sample-every", type=int, default=500)
    p.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    p.add_argument("--out", default=str(ASSETS))
    p.add_argument("--work-dir", default="runs/toy_base")
    main.parser = p
    args = p.parse_args(argv)
    if args.snr_gamma < 0:  # before minutes of pool building, not at the first step
        p.error(f"--snr-gamma must be > 0 for Min-SNR, or 0 for plain MSE; got {args.snr_gamma}")
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = {"vae": (2000, 32), "unet": (6000, 64)}[args.stage]
    args.max_steps = args.max_steps or defaults[0]
    args.batch_size = args.batch_size or defaults[1]
    args.schedule_steps = args.schedule_steps or args.max_steps
    if args.stage == "unet" and args.prediction_type is None:
        # Continuing a model must not silently change what it predicts.
        args.prediction_type = (load_scheduler(Path(args.init_from).parent).config.prediction_type
                                if args.init_from else "epsilon")
    if args.stage == "unet" and args.text_layers is None:
        args.text_layers = text_encoder_layers(Path(args.init_from).parent) if args.init_from else MINILM_DEPTH
    info = (train_vae if args.stage == "vae" else train_unet)(args)
    if not info:
        return
    out = Path(args.out)
    record_path = out / "training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    # A stage may be several runs, each continuing the last (--init-from): keep them all, in order.
    cmd = " ".join(["python -m train.train_toy_base", args.stage, "--max-steps", str(info["steps"]),
                    "--minutes 0", *(f"--{k.replace('_', '-')} {v}" for k, v in _changed(args).items())])
    runs = record.get(args.stage, [])
    runs = (runs if isinstance(runs, list) else [runs]) if args.init_from else []
    runs.append({**info, "command": cmd})
    record[args.stage] = runs
    record_path.write_text(json.dumps(record, indent=2))
    print(json.dumps(runs[-1], indent=2))


def _changed(args) -> dict:
    """Options that differ from their defaults, to write down an exact reproduction command."""
    skip = {"stage", "max_steps", "minutes", "threads", "out", "work_dir", "text_only", "sample_every", "parser"}
    defaults = vars(main.parser.parse_args([args.stage]))
    return {k: v for k, v in vars(args).items()
            if k not in skip and v != defaults.get(k) and v is not None and v is not False}


if __name__ == "__main__":
    main()
