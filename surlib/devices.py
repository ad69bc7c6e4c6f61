"""Where models run by default: CUDA in fp16 when there is one, else the CPU in fp32."""

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device | str) -> torch.dtype:
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
