"""The BRISQUE SVR weights, offline: found, sha256-verified and installed where piq looks.

piq downloads ``brisque_svm_weights.pt`` with torch.hub on first use; evaluation machines are
often offline, so a verified copy from ``$SUR_BRISQUE_WEIGHTS`` or ``<repo>/../shared/brisque/``
is copied into torch hub's cache, where `piq.brisque` then finds it without network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

WEIGHTS_NAME = "brisque_svm_weights.pt"
WEIGHTS_SHA256 = "0e976ea2dcf746a966888565bc754484ec28f7318f60b5ac8080259033f27a37"
ENV_WEIGHTS = "SUR_BRISQUE_WEIGHTS"
DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "brisque"

# Files already hashed, by (resolved path, mtime, size): hashing on every scoring call would
# cost more than scoring a small batch.
_VERIFIED: set[tuple[str, int, int]] = set()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hub_weights_path() -> Path:
    """Where piq (through torch.hub) looks for the SVR weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


def _check(path: Path, origin: str) -> Path:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _VERIFIED:
        return path
    digest = _sha256(path)
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"BRISQUE weights at {path} ({origin}) have sha256 {digest}, expected "
                         f"{WEIGHTS_SHA256}: the file is corrupt or a different model; remove it")
    _VERIFIED.add(key)
    return path


def _is_verified_copy(path: Path) -> bool:
    try:
        _check(path, "")
        return True
    except (OSError, ValueError):
        return False


def ensure_brisque_weights(shared: str | Path | None = None, install: bool = True) -> Path:
    """Path of verified BRISQUE SVR weights, installing them into torch hub's cache for piq.

    Looks at ``$SUR_BRISQUE_WEIGHTS`` (a file, or a folder holding ``brisque_svm_weights.pt``)
    when set, else torch hub's cache, else ``<repo>/../shared/brisque/``. A copy found outside the
    cache is checked against its sha256 and (``install=True``) copied into the cache, so that
    `piq.brisque` finds it without network. Raises FileNotFoundError naming every place tried.
    """
    cache = hub_weights_path()
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        source = Path(env)
        if source.is_dir():
            source = source / WEIGHTS_NAME
        if not source.is_file():
            raise FileNotFoundError(f"${ENV_WEIGHTS} is set to {env!r} but there is no {WEIGHTS_NAME} there")
        origin = f"${ENV_WEIGHTS}"
    elif cache.is_file():
        return _check(cache, "torch hub cache")
    else:
        source = Path(shared) / WEIGHTS_NAME if shared is not None else DEFAULT_SHARED / WEIGHTS_NAME
        origin = "shared folder"
        if not source.is_file():
            raise FileNotFoundError(
                f"BRISQUE SVR weights not found: piq downloads them on first use, and this machine "
                f"is offline. Looked in torch hub's cache ({cache}) and in the shared folder "
                f"({source}). Copy {WEIGHTS_NAME} (sha256 {WEIGHTS_SHA256[:12]}...) into one of "
                f"them, or set ${ENV_WEIGHTS} to its path.")
    _check(source, origin)
    if install and not _is_verified_copy(cache):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".brisque-")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, cache)
        except OSError:  # read-only cache: the fast path reads `source` directly
            return source
    return cache if install and cache.is_file() else source


@lru_cache(maxsize=4)
def load_svr(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(support-vector coefficients, support vectors) of a verified weights file, as float32."""
    sv_coef, sv = torch.load(path, map_location="cpu", weights_only=True)
    return sv_coef.float(), sv.float()


__all__ = ["ensure_brisque_weights", "hub_weights_path", "load_svr", "WEIGHTS_NAME", "WEIGHTS_SHA256",
           "ENV_WEIGHTS", "DEFAULT_SHARED"]
