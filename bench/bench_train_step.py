"""Training-step cost of the SUR-adapter versus a plain UNet step, on the same batch.

    python bench/bench_train_step.py                 # toy-sized, CPU, 1 thread, median of 5
    python bench/bench_train_step.py --device cuda --repeats 20

All are measured in one run, interleaved (plain, adapter, adapter+cache_text, plain, ...) so that
load on a shared machine hits each alike; the figure is the ratio of medians (goal: <= 1.2), of wall
time and of process CPU time (the steadier one on a busy machine with 1 thread).

* adapter step = `surlib.training.compute_losses` exactly as the trainer runs it (adapter, frozen
  UNet, the three losses, teacher vectors looked up in the feature cache, VAE posteriors cached)
  + backward into the adapter + grad clip + AdamW step; measured twice: with the text encoder
  run on the simple and the complex prompt every step, and with `cache_text` (train/configs/
  toy.yaml: the frozen encoder's embeddings of each row kept after the first epoch).
* plain step = UNet forward + MSE + backward with the UNet's weights trainable and the text
  embeddings precomputed (an ordinary fine-tuning step without its optimizer update).

Sizes (the toy world): UNet block_out_channels (64, 128, 128), 16x16x4 latents, batch 32,
MiniLM text encoder (384-d, 32 tokens), adapter and loss weights from train/configs/toy.yaml.
Peak memory of a step: CUDA max_memory_allocated; on the CPU the process's peak resident set
growth during the step (VmHWM reset through /proc/self/clear_refs; Linux only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def toy_unet(text_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128, 128), norm_num_groups=32, cross_attention_dim=text_dim,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4)


def toy_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16)


class PeakMemory:
    """Peak memory growth (bytes) over a block: CUDA allocator stats or the CPU resident-set high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_ok = Path("/proc/self/clear_refs").exists()

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        elif self.cpu_ok:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            except OSError:
                self.cpu_ok = False
            self.start = self._status("VmRSS") if self.cpu_ok else 0
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self.peak = self._status("VmHWM") - self.start if self.cpu_ok else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5, help="measured steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train_step.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from surlib.adapter import SURAdapter
    from surlib.feature_cache import FeatureCache
    from surlib.losses import LossWeights
    from surlib.minilm import load_minilm
    from surlib.training import (AdapterWithTeacher, Frozen, RowStore, compute_losses, encode_batch_text,
                                 encode_latent_params, encode_prompts, make_config, sample_latents)
    from diffusers import DDPMScheduler

    from surlib.data import collate

    cfg = make_config(ROOT / "train" / "configs" / "toy.yaml")
    torch.manual_seed(0)
    text_encoder, tokenizer = load_minilm()
    dim = text_encoder.config.hidden_size
    sd = SimpleNamespace(unet=toy_unet(dim), vae=toy_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
                         scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"))
    frozen = Frozen.from_pipeline(sd, device)
    n = args.batch_size
    items = [{"pixel_values": torch.rand(3, 64, 64) * 2 - 1, "text": f"{i % 5 + 1} red robots jumping on the grass",
              "prompt": f"masterpiece, {i % 5 + 1} robots, red, jumping, grass background, best quality", "index": i}
             for i in range(n)]
    batch = collate(items)
    batch["pixel_values"] = batch["pixel_values"].to(device)
    cache = FeatureCache(torch.randn(n, dim), {"width": dim})  # the trainer's cached teacher vectors
    latent_params = encode_latent_params(frozen.vae, batch["pixel_values"])  # cache_latents
    weights = LossWeights(cfg.noise_weight, cfg.llm_weight, cfg.quality_weight)

    adapter = SURAdapter(text_dim=dim, llm_dim=dim, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                         ff_dim=cfg.ff_dim, dropout=cfg.dropout, eta=cfg.eta).to(device).train()
    module = AdapterWithTeacher(adapter)
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    text_store = RowStore()
    rows = batch["index"].tolist()
    text_store.get(rows, lambda: encode_batch_text(frozen, batch), device)  # filled in the first epoch

    def adapter_step(cache_text: bool):
        llm = cache.lookup(batch["index"]).to(device)
        text = text_store.get(rows, None, device) if cache_text else None
        terms = compute_losses(module, frozen, batch, weights, llm_features=llm, latent_params=latent_params,
                               text=text)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # The plain step: its own trainable UNet (same architecture and weights), same batch.
    plain_unet = toy_unet(dim).to(device).train()
    plain_unet.load_state_dict(frozen.unet.state_dict())
    cond, _ = encode_prompts(tokenizer, frozen.text_encoder, batch["text"])
    latents = sample_latents(frozen.vae, latent_params)
    sched = frozen.noise_scheduler

    def plain_step():
        noise = torch.randn_like(latents)
        t = torch.randint(0, sched.config.num_train_timesteps, (n,), device=device)
        pred = plain_unet(sched.add_noise(latents, noise, t), t, cond).sample
        F.mse_loss(pred, noise).backward()
        plain_unet.zero_grad(set_to_none=True)

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        with PeakMemory(device) as mem:
            fn()
        return time.perf_counter() - t0, time.process_time() - c0, mem.peak

    variants = {"plain": plain_step, "adapter": lambda: adapter_step(False),
                "adapter_cache_text": lambda: adapter_step(True)}
    for _ in range(args.warmup):
        for fn in variants.values():
            fn()
    res = {k: [] for k in variants}
    for _ in range(args.repeats):  # interleaved, so machine load hits every variant alike
        for k, fn in variants.items():
            res[k].append(timed(fn))
    wall = {k: statistics.median(r[0] for r in v) for k, v in res.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in res.items()}
    peak = {k: max(r[2] for r in v) / 2**20 for k, v in res.items()}
    report = {
        "device": str(device), "threads": args.threads, "batch_size": n, "repeats": args.repeats,
        "unet_channels": [64, 128, 128], "latents": [4, 16, 16],
        "text": f"MiniLM {dim}-d, {tokenizer.model_max_length} tokens",
        "adapter": {k: getattr(cfg, k) for k in ("num_layers", "num_heads", "ff_dim", "eta")},
        "median_wall_s": wall, "median_cpu_s": cpu, "peak_mib": peak,
        "ratio_wall": {k: wall[k] / wall["plain"] for k in variants if k != "plain"},
        "ratio_cpu": {k: cpu[k] / cpu["plain"] for k in variants if k != "plain"},
        "all_wall_s": {k: [round(r[0], 4) for r in v] for k, v in res.items()},
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"device {device} ({args.threads} thread(s)), batch {n}, median of {args.repeats}; "
          f"load average {report['load_average']}")
    print(f"  {'step':32s} {'wall ms':>9s} {'cpu ms':>9s} {'ratio wall':>11s} {'ratio cpu':>10s} {'peak MiB':>9s}")
    for k in variants:
        rw = report["ratio_wall"].get(k, 1.0)
        rc = report["ratio_cpu"].get(k, 1.0)
        print(f"  {k:32s} {wall[k] * 1e3:9.1f} {cpu[k] * 1e3:9.1f} {rw:11.2f} {rc:10.2f} {peak[k]:+9.0f}")
    print(f"  goal: adapter / plain <= 1.2; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
