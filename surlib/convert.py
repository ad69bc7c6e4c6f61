"""Load checkpoints of the official SUR-adapter code (Qrange-group/SUR-adapter) into `SURAdapter`.

The official training script saves `adapter.state_dict()` of its `Adapter(depth, adapter_weight,
sd_text_size)` with `torch.save` (`adapter.pt`, `adapter_checkpoint<step>.pt`). Its key names and
ours:

    official                                        surlib
    transformer_encoder.layers.{i}.<layer keys>     transformer.layers.{i}.<layer keys>
    attention.query_layer.{weight,bias}             attention.to_q.{weight,bias}
    attention.key_layer.{weight,bias}               attention.to_k.{weight,bias}
    attention.output_layer.{0,2}.{weight,bias}      attention.ff.{0,2}.{weight,bias}
    fc.{weight,bias}                                fc.{weight,bias}
    encoder_layer.*                                 dropped (a copy the encoder never uses)
    attention.value_layer.*                         dropped (never used: values are the input)
    (absent)                                        llm_proj: kept at our seeded init, untrained

What the file does not hold: `eta` (the script's `--adapter_weight`; the official scripts write
it into the output folder name, `..._adapterw0.1/adapter_checkpoint1000.pt`, and the official demo
parses it from there, as `eta_from_path` does) and the LLM width.

The paper's released checkpoint (hub model repo `zhongshsh/SUR-adapter`) was trained on
`SG161222/Realistic_Vision_V2.0`, not SD 1.5, and gives broken images on SD 1.5: the converted
adapter records that base (`base_model`), and `SURPipeline` warns when it is paired with another.
`paper_adapter` downloads it with huggingface_hub and converts it once into a cache folder.

The official transformer ran with `batch_first=False` on (batch, tokens, width) input, so it
attended across the batch instead of across a prompt's tokens (see docs/method.md, defect
2). The weight layout is the same either way; a converted adapter applies them as intended, over
each prompt's tokens. It therefore does not reproduce the official code's outputs exactly: with
the official batch of one during training, each token's transformer only ever saw itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, Sequence

import torch

from .adapter import SURAdapter

logger = logging.getLogger(__name__)

PAPER_REPO = "zhongshsh/SUR-adapter"            # hub model repo of the paper's checkpoint
PAPER_BASE = "SG161222/Realistic_Vision_V2.0"   # the base that checkpoint was trained on
PAPER_ETA = 0.1  # the official run's --adapter_weight; used when a checkpoint's path does not say
_ETA_RE = re.compile(r"adapterw(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)")

# nn.TransformerEncoderLayer parameter names (the same in both codebases).
_LAYER_KEYS = frozenset({
    "self_attn.in_proj_weight", "self_attn.in_proj_bias",
    "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
})
_RENAMES = {
    "attention.query_layer.weight": "attention.to_q.weight",
    "attention.query_layer.bias": "attention.to_q.bias",
    "attention.key_layer.weight": "attention.to_k.weight",
    "attention.key_layer.bias": "attention.to_k.bias",
    "attention.output_layer.0.weight": "attention.ff.0.weight",
    "attention.output_layer.0.bias": "attention.ff.0.bias",
    "attention.output_layer.2.weight": "attention.ff.2.weight",
    "attention.output_layer.2.bias": "attention.ff.2.bias",
    "fc.weight": "fc.weight",
    "fc.bias": "fc.bias",
}
_DROPPED_PREFIXES = ("encoder_layer.", "attention.value_layer.")
_LAYER_RE = re.compile(r"^transformer_encoder\.layers\.(\d+)\.(.+)$")
OFFICIAL_NUM_HEADS = 8  # hard-coded in the official Adapter; not recoverable from the weights
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept `{"state_dict": {...}}` and DataParallel/DDP `module.` prefixes."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    state_dict = dict(state_dict)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official `Adapter` state dict to `SURAdapter` names, dropping unused layers.

    Raises ValueError listing every key it does not recognise. Completeness (missing keys) is
    checked by `load_official_adapter`, which knows the expected layer count.
    """
    state_dict = _strip_wrappers(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key.startswith(_DROPPED_PREFIXES):
            continue
        layer = _LAYER_RE.match(key)
        if layer and layer.group(2) in _LAYER_KEYS:
            converted[f"transformer.layers.{layer.group(1)}.{layer.group(2)}"] = value
        elif key in _RENAMES:
            converted[_RENAMES[key]] = value
        else:
            unknown.append(key)
    if unknown:
        hint = ""
        if any(k.startswith(("transformer.layers.", "attention.to_q", "llm_proj")) for k in unknown):
            hint = " (this looks like a surlib adapter already: load it with SURAdapter.from_pretrained)"
        raise ValueError(
            f"not an official SUR-adapter checkpoint: {len(unknown)} unknown key(s): "
            f"{_listing(sorted(unknown))}{hint}"
        )
    if not converted:
        raise ValueError("not an official SUR-adapter checkpoint: no adapter weights found")
    return converted


def eta_from_path(path: str | Path) -> float | None:
    """`eta` as the official scripts record it, in the output folder name (`..._adapterw0.1/...`),
    or None when the path does not say. The last occurrence wins, as in the official demo."""
    found = _ETA_RE.findall(str(path))
    return float(found[-1]) if found else None


def _read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise ValueError(f"expected exactly one checkpoint file ({'/'.join(_CHECKPOINT_SUFFIXES)}) "
                             f"in {path}, found: {found}; pass the file itself")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"no official SUR-adapter checkpoint at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            # weights_only: an official checkpoint is a plain state dict; refuse arbitrary pickles.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader error means the same thing to the user
        raise ValueError(
            f"cannot read the SUR-adapter checkpoint {path} ({path.stat().st_size} bytes): it is corrupt or "
            f"truncated (an interrupted download?) or not a torch.save/safetensors state dict "
            f"({type(e).__name__}: {e}). Delete it and download it again; nothing was loaded"
        ) from e
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_official_adapter(
    path_or_state_dict: str | Path | Mapping[str, torch.Tensor],
    eta: float | None = None,
    llm_dim: int = 5120,
    *,
    num_heads: int = OFFICIAL_NUM_HEADS,
    dropout: float = 0.1,
    init_seed: int = 0,
    base_model: str | None = None,
) -> SURAdapter:
    """An official checkpoint (file, folder with one file, or state dict) as a `SURAdapter`.

    `eta`: an explicit value wins; else it is read from the path when the path carries it
    (`adapterw0.1` anywhere in it, see `eta_from_path`); with neither, a ValueError asks for it.
    There is deliberately no silent default here: every image depends on eta, and a file of
    unknown origin may have been trained with another. (The `sur-paper` preset, which knows its
    checkpoint, uses the official run's documented 0.1, `PAPER_ETA`.)
    Text width, layer count and feed-forward width are read from the weights; `llm_proj` (absent
    from official files) keeps its seeded initialisation and a warning says so. `base_model`
    records the base it was trained on (`PAPER_BASE` for the paper's checkpoint). The result is in
    eval mode, float32. A corrupt or truncated file is refused (ValueError); nothing half-loaded.
    """
    if eta is None and not isinstance(path_or_state_dict, Mapping):
        eta = eta_from_path(path_or_state_dict)
    if eta is None:
        where = ("" if isinstance(path_or_state_dict, Mapping)
                 else f" and its path ({path_or_state_dict}) has no 'adapterw<eta>'")
        raise ValueError(
            f"eta is required: official SUR-adapter checkpoints do not store it{where}. Pass eta= the value "
            "the adapter was trained with (the training script's --adapter_weight, which the official "
            f"scripts put in the output folder name as 'adapterw<eta>'; the paper's run used {PAPER_ETA})"
        )
    eta = float(eta)
    if isinstance(path_or_state_dict, Mapping):
        state_dict = path_or_state_dict
    else:
        state_dict = _read_checkpoint(path_or_state_dict)
    converted = convert_official_state_dict(state_dict)

    layer_ids = {int(m.group(1)) for k in converted if (m := re.match(r"^transformer\.layers\.(\d+)\.", k))}
    if not layer_ids:
        raise ValueError("official SUR-adapter checkpoint is incomplete: no transformer_encoder.layers.<i>.* "
                         "keys, so the transformer depth and text width cannot be read")
    first = min(layer_ids)
    width_keys = [f"transformer.layers.{first}.self_attn.in_proj_weight", f"transformer.layers.{first}.norm1.weight",
                  f"transformer.layers.{first}.linear1.weight", "attention.to_q.weight", "fc.weight"]
    width_key = next((k for k in width_keys if k in converted), None)
    if width_key is None:
        raise ValueError("official SUR-adapter checkpoint is incomplete: none of "
                         f"{', '.join(width_keys)} is present to read the text width from")
    text_dim = int(converted[width_key].shape[-1])
    ff_key = f"transformer.layers.{first}.linear1.weight"
    ff_dim = int(converted[ff_key].shape[0]) if ff_key in converted else 2048

    adapter = SURAdapter(text_dim=text_dim, llm_dim=llm_dim, num_layers=max(layer_ids) + 1,
                         num_heads=num_heads, ff_dim=ff_dim, dropout=dropout, eta=eta,
                         init_seed=init_seed, base_model=base_model)
    expected = {k: v for k, v in adapter.state_dict().items() if not k.startswith("llm_proj.")}
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(f"official SUR-adapter checkpoint is incomplete: {len(missing)} missing key(s): "
                         + _listing([_official_name(k) for k in missing]))
    mismatched = [f"{_official_name(k)}: {tuple(converted[k].shape)}, expected {tuple(v.shape)}"
                  for k, v in expected.items() if converted[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"official SUR-adapter checkpoint has inconsistent shapes (text width {text_dim} "
                         f"read from {_official_name(width_key)}): " + "; ".join(mismatched))

    adapter.load_state_dict(converted, strict=False)
    warnings.warn(
        "official SUR-adapter checkpoints do not contain the LLM projection: `llm_proj` keeps its "
        f"seeded random initialisation (init_seed={init_seed}) and is untrained. Inference does not "
        "use it; retrain it before using the distillation loss.",
        UserWarning, stacklevel=2,
    )
    return adapter.eval()


def _listing(keys: list[str], limit: int = 40) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _official_name(key: str) -> str:
    """Our key name back in the official naming, for error messages."""
    for official, ours in _RENAMES.items():
        if key == ours:
            return official
    return key.replace("transformer.layers.", "transformer_encoder.layers.", 1)


# --------------------------------------------------------------------------- the released checkpoint
_HINT = ("set SUR_ADAPTER to a local adapter folder or official checkpoint file, or allow downloads "
         "(unset HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE and check the network)")


def default_cache_dir() -> Path:
    """Where converted adapters are kept: $SURLIB_CACHE, else <HF_HOME>/surlib (next to the hub
    cache, so one setting moves both)."""
    if os.environ.get("SURLIB_CACHE"):
        return Path(os.environ["SURLIB_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "surlib"


def with_eta(adapter: SURAdapter, eta: float | None) -> SURAdapter:
    """`adapter` with `eta` set in its config (None: unchanged); the blend reads it on every call."""
    if eta is not None:
        eta = float(eta)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")
        adapter.register_to_config(eta=eta)
    return adapter


def hub_files(repo_id: str) -> list[str]:
    """The files of a hub model repo: listed on the hub, else (offline, no network) those of its
    snapshot in the local hub cache, so a repo fetched earlier (`hf download <repo>`) works offline."""
    from huggingface_hub import list_repo_files, snapshot_download

    try:
        return list(list_repo_files(repo_id))
    except Exception as online:  # noqa: BLE001 - whatever the reason, the local cache may still have it
        try:
            local = Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached either: report the hub's answer
            raise online from None
        return sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())


def pick_checkpoint(files: Sequence[str], repo_id: str = PAPER_REPO) -> str:
    """The adapter checkpoint among a hub repo's files (names are never hard-coded: the listing
    decides). Files with a checkpoint suffix; among several, those named *adapter*; among those,
    the final `adapter.<ext>`, else the highest `checkpoint<step>`. Anything else is ambiguous."""
    found = [f for f in files if f.lower().endswith(_CHECKPOINT_SUFFIXES)]
    if not found:
        raise FileNotFoundError(f"hub repo {repo_id} has no adapter checkpoint ({'/'.join(_CHECKPOINT_SUFFIXES)}) "
                                f"among its files: {_listing(sorted(files), 20) or 'none'}")
    named = [f for f in found if "adapter" in PurePosixPath(f).name.lower()]
    found = named or found
    if len(found) == 1:
        return found[0]
    final = [f for f in found if PurePosixPath(f).stem.lower() == "adapter"]
    if len(final) == 1:
        return final[0]
    steps = {f: int(m.group(1)) for f in found if (m := re.search(r"checkpoint[-_]?(\d+)$", PurePosixPath(f).stem))}
    if len(steps) == len(found) and len(set(steps.values())) == len(found):
        return max(steps, key=steps.get)
    raise ValueError(f"hub repo {repo_id} has several adapter checkpoints ({', '.join(sorted(found))}): "
                     "pass filename= to choose one")


def paper_adapter_folder(repo_id: str = PAPER_REPO, cache_dir: str | Path | None = None, *,
                         filename: str | None = None, base_model: str = PAPER_BASE,
                         list_files: Callable[[str], Sequence[str]] | None = None,
                         download: Callable[[str, str], str] | None = None) -> Path:
    """A `SURAdapter` folder converted from an official checkpoint on the hub, made once.

    The first call lists the repo (`list_files`, default `hub_files`: the hub, or offline the
    local hub cache), picks the checkpoint (`pick_checkpoint`, or `filename`), downloads it
    (`download`, default `huggingface_hub.hf_hub_download`, which keeps its own cache), converts
    it with eta from its path or `PAPER_ETA`, and saves it under `cache_dir` (default
    `default_cache_dir()`) through a temporary folder, so a failed conversion leaves nothing behind. Later calls reuse the folder
    without touching the network (delete it to refresh). No network, offline mode or a missing
    file: FileNotFoundError naming the repo, the file and what to set. Corrupt file: ValueError.
    Tests pass fakes for `list_files` and `download`.
    """
    if download is None:
        from huggingface_hub import hf_hub_download as download
    list_files = list_files or hub_files
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = re.sub(r"[^\w.-]+", "_", filename) if filename else "auto"  # "auto": what the listing picks
    folder = root / "adapters" / repo_id.replace("/", "--") / name
    if (folder / "config.json").is_file():
        logger.info("SUR-adapter from %s: reusing the converted copy in %s", repo_id, folder)
        return folder
    if filename is None:
        try:
            files = list(list_files(repo_id))
        except Exception as e:  # noqa: BLE001 - offline, no network, no such repo: one message
            raise FileNotFoundError(f"cannot list hub repo {repo_id} to find its adapter checkpoint "
                                    f"({type(e).__name__}: {e}); {_HINT}") from e
        filename = pick_checkpoint(files, repo_id)
    try:
        local = download(repo_id, filename)
    except Exception as e:  # noqa: BLE001
        raise FileNotFoundError(f"cannot get {filename} from hub repo {repo_id} ({type(e).__name__}: {e}); "
                                f"{_HINT}") from e
    eta = eta_from_path(filename)
    eta_source = "its path" if eta is not None else "the official run's documented default"
    eta = PAPER_ETA if eta is None else eta
    with warnings.catch_warnings():  # the untrained llm_proj does not matter for inference
        warnings.filterwarnings("ignore", message=".*llm_proj.*")
        adapter = load_official_adapter(local, eta=eta, base_model=base_model)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    adapter.save_pretrained(tmp)
    (tmp / "source.json").write_text(json.dumps({"repo": repo_id, "file": filename, "eta": eta,
                                                 "eta_from": eta_source, "base_model": base_model}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    logger.info("converted %s/%s (eta %g from %s) to %s", repo_id, filename, eta, eta_source, folder)
    return folder


def paper_adapter(repo_id: str = PAPER_REPO, cache_dir: str | Path | None = None, eta: float | None = None,
                  **kwargs) -> SURAdapter:
    """The paper's released adapter as a `SURAdapter` (see `paper_adapter_folder`; kwargs go there),
    with `eta` overriding the converted one when given."""
    return with_eta(SURAdapter.from_pretrained(paper_adapter_folder(repo_id, cache_dir, **kwargs)), eta)


__all__ = ["convert_official_state_dict", "load_official_adapter", "eta_from_path", "pick_checkpoint", "hub_files",
           "paper_adapter", "paper_adapter_folder", "default_cache_dir", "with_eta", "PAPER_REPO",
           "PAPER_BASE", "PAPER_ETA"]
