"""Toy-world rendering: a fast, deterministic 64x64 RGB image of a scene.

Rendering is sprite based: each (kind, action, scale, mirrored) silhouette is drawn once with
PIL at 4x and box-downsampled to an antialiased 64-px alpha mask (plus a soft shadow mask for
``jumping``); a scene is then composited in numpy from a seeded ``numpy.random.Generator``
(layout, per-object size jitter and mirroring). ``render_array(scene, seed)`` is a pure function
of ``(scene, seed)``, and the pixels must stay exactly as they are: the shipped VAE, UNet and
judge were trained on them. Drawing is our own code on plain numpy and Pillow because a scene
library would not promise those pixels across its releases.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

from .scene import Scene

IMAGE_SIZE = 64
"""Images are IMAGE_SIZE x IMAGE_SIZE RGB, uint8."""

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 145, 45),
    "blue": (40, 75, 220),
    "yellow": (238, 208, 20),
    "purple": (135, 45, 175),
    "orange": (245, 115, 10),
}
"""Object fill colour of each colour name (all far from every background colour)."""


_SS = 4  # supersampling factor of sprite drawing
SCALES: tuple[float, ...] = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1)
"""Per-object size jitter factors (applied to the sprite drawing, then antialiased)."""

_FLAT_BG_RGB = {"white": (255, 255, 255), "gray": (200, 200, 200)}
_SHADOW_STRENGTH = 0.32  # a jump shadow darkens the background by up to this fraction


@lru_cache(maxsize=None)
def background(name: str) -> np.ndarray:
    """(64, 64, 3) float32 background in 0..255 (read-only; the palette distance reads it too)."""
    s = IMAGE_SIZE
    if name in ("white", "gray"):
        img = np.empty((s, s, 3), np.float32)
        img[:] = _FLAT_BG_RGB[name]
    elif name == "sky":
        t = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
        top = np.array([178, 212, 245], np.float32)
        bot = np.array([226, 240, 252], np.float32)
        img = np.broadcast_to(top * (1 - t) + bot * t, (s, s, 3)).copy()
    elif name == "grass":
        img = np.empty((s, s, 3), np.float32)
        img[:] = (226, 240, 208)
        img[44:] = (186, 216, 158)
        img[43] = (206, 228, 183)
    else:
        raise ValueError(f"unknown background {name!r}")
    img.setflags(write=False)
    return img



def _draw_person(action: str, L, E, W: float) -> None:
    """Stick figure. L(points, width) draws thick lines, E(cx, cy, r) a disc."""
    if action == "standing":
        E(6, 3.6, 3.0)
        L([(6, 6), (6, 12.5)], W)
        L([(2.3, 12), (6, 7.6), (9.7, 12)], W)
        L([(3.2, 18.6), (6, 12.5), (8.8, 18.6)], W)
    elif action == "jumping":
        E(7, 5.2, 3.0)
        L([(1.6, 1.4), (7, 8.2), (12.4, 1.4)], W)
        L([(7, 8), (7, 13)], W)
        L([(2.6, 15.6), (7, 13), (11.4, 15.6)], W)
    elif action == "sitting":
        E(4, 3.4, 3.0)
        L([(4, 6), (4, 11.2)], W)
        L([(4, 7.6), (10, 9.0)], W)
        L([(4, 11.2), (11, 11.2), (11.6, 12.8)], W)
    elif action == "lying":
        E(3.2, 4.6, 3.0)
        L([(6, 4.6), (12.6, 4.6)], W)
        L([(7.6, 4.6), (11, 1.6)], W)
        L([(19.2, 2.2), (12.6, 4.6), (19.2, 7.0)], W)


def _robot_torso(L, R, antenna, head, neck, body) -> None:
    """What every robot pose has: an antenna line and the head, neck and body boxes."""
    L(antenna, 1.2)
    for box in (head, neck, body):
        R(*box)


def _draw_robot(action: str, L, R, W: float) -> None:
    """Blocky robot: square head with antenna, rectangular body. R(x0, y0, x1, y1) fills."""
    if action == "standing":
        _robot_torso(L, R, [(6, 0.3), (6, 2.5)], (3, 2, 9, 7), (5, 7, 7, 8), (1.8, 8, 10.2, 13.5))
        L([(1.2, 8.6), (0.9, 13.6)], W)
        L([(10.8, 8.6), (11.1, 13.6)], W)
        R(3.0, 13.5, 5.2, 19)
        R(6.8, 13.5, 9.0, 19)
    elif action == "jumping":
        _robot_torso(L, R, [(7, 1.8), (7, 3.6)], (4, 3.2, 10, 8.2), (6, 8.2, 8, 9), (2.8, 9, 11.2, 14))
        L([(2.6, 9.6), (0.8, 2.6)], W)
        L([(11.4, 9.6), (13.2, 2.6)], W)
        L([(4.6, 13.6), (2.4, 17)], W + 0.4)
        L([(9.4, 13.6), (11.6, 17)], W + 0.4)
    elif action == "sitting":
        _robot_torso(L, R, [(4.5, 0.3), (4.5, 2.5)], (1.5, 2, 7.5, 7), (3.5, 7, 5.5, 8), (1, 8, 8, 13))
        L([(7.4, 9.2), (11.2, 9.8)], W)
        R(8, 10.6, 13.4, 12.8)
    elif action == "lying":
        _robot_torso(L, R, [(0.3, 4.5), (2.2, 4.5)], (2, 1.6, 7, 7.4), (7, 3.6, 8, 5.4), (8, 1.2, 14, 7.8))
        R(14, 1.6, 20, 3.8)
        R(14, 5.2, 20, 7.4)


def _cat_head(E, P, head, left_ear, right_ear) -> None:
    """A disc head E(*head) with two pointed ears, P(points) filling each ear's triangle."""
    E(*head)
    P(left_ear)
    P(right_ear)


def _draw_cat(action: str, L, E, P, W: float) -> None:
    """Quadruped cat with pointed ears and a tail."""
    if action == "standing":
        E(8.6, 7.8, 5.0, ry=2.6)                   # body
        _cat_head(E, P, (14.2, 4.2, 2.6), [(12.0, 3.2), (12.4, 0.0), (13.8, 2.0)],
                  [(14.6, 2.0), (16.0, 0.0), (16.4, 3.2)])
        L([(4.6, 9.0), (4.4, 13.6)], W)            # legs
        L([(6.8, 9.4), (6.8, 13.6)], W)
        L([(10.6, 9.4), (10.6, 13.6)], W)
        L([(12.6, 9.0), (12.8, 13.6)], W)
        L([(4.0, 7.0), (1.6, 4.0), (1.4, 1.4)], W)  # tail up
    elif action == "jumping":
        E(9.0, 7.0, 5.4, ry=2.4)
        _cat_head(E, P, (15.4, 3.8, 2.6), [(13.2, 2.8), (13.6, -0.4), (15.0, 1.6)],
                  [(15.8, 1.6), (17.2, -0.4), (17.6, 2.8)])
        L([(12.4, 8.0), (16.4, 10.6)], W)           # front legs stretched forward
        L([(5.6, 8.6), (1.8, 11.6)], W)             # hind legs stretched back
        L([(4.4, 6.0), (1.0, 4.6)], W)              # tail straight back
    elif action == "sitting":
        E(5.6, 10.4, 3.6, ry=4.2)                  # upright body
        _cat_head(E, P, (6.4, 4.4, 2.8), [(4.0, 3.4), (4.4, 0.0), (5.8, 2.0)],  # head on top
                  [(6.8, 2.0), (8.2, 0.0), (8.8, 3.4)])
        L([(7.0, 8.6), (7.2, 14.4)], W)            # front leg
        L([(2.6, 13.6), (0.8, 11.6), (1.0, 8.6)], W)  # tail curled up
    elif action == "lying":
        E(9.0, 6.4, 7.0, ry=2.2)                   # long flat loaf
        _cat_head(E, P, (16.6, 4.8, 2.5), [(14.4, 3.6), (14.8, 0.6), (16.2, 2.4)],
                  [(17.0, 2.4), (18.4, 0.6), (18.8, 3.6)])
        L([(2.4, 7.0), (0.4, 8.2)], W)             # tail flat behind


# Sprite box (width, height) of each (kind, action) at scale 1, in 64-px units; the jumping
# sprites get an extra shadow band below (see _sprite).
_BOX = {
    ("person", "standing"): (12, 19.5), ("person", "jumping"): (14, 16.5),
    ("person", "sitting"): (13, 14), ("person", "lying"): (20.5, 8.4),
    ("robot", "standing"): (12, 19.5), ("robot", "jumping"): (14, 18),
    ("robot", "sitting"): (14, 13.5), ("robot", "lying"): (20.5, 8.4),
    ("cat", "standing"): (17.5, 14.4), ("cat", "jumping"): (18.6, 11.6),
    ("cat", "sitting"): (10, 15), ("cat", "lying"): (19.6, 8.8),
}
_JUMP_GAP = 4.0      # free space between the feet of a jumping figure and its shadow
_SHADOW_H = 2.4      # shadow ellipse height


@lru_cache(maxsize=None)
def _sprite(kind: str, action: str, scale_idx: int, mirror: bool):
    """(alpha, shadow) float32 masks in [0,1] at 64-px resolution, same shape (h, w).

    ``shadow`` is zero except for jumping figures (an ellipse under the feet)."""
    from PIL import Image, ImageDraw

    s = SCALES[scale_idx]
    bw, bh = _BOX[(kind, action)]
    jump = action == "jumping"
    total_h = bh + (_JUMP_GAP + _SHADOW_H if jump else 0.0)
    w = int(np.ceil(bw * s)) + 2
    h = int(np.ceil(total_h * s)) + 2
    k = _SS * s
    off = _SS * 1.0  # 1 px padding (in 64-px units) on each side
    img = Image.new("L", (w * _SS, h * _SS), 0)
    d = ImageDraw.Draw(img)

    def tx(x, y):
        return (off + x * k, off + y * k)

    def L(pts, width):
        pp = [tx(x, y) for x, y in pts]
        wd = max(1, int(round(width * k)))
        d.line(pp, fill=255, width=wd, joint="curve")
        r = wd / 2.0
        for px, py in pp:  # round caps
            d.ellipse([px - r, py - r, px + r, py + r], fill=255)

    def E(cx, cy, r, ry=None):
        ry = r if ry is None else ry
        x0, y0 = tx(cx - r, cy - ry)
        x1, y1 = tx(cx + r, cy + ry)
        d.ellipse([x0, y0, x1, y1], fill=255)

    def R(x0, y0, x1, y1):
        a, b = tx(x0, y0)
        c, e = tx(x1, y1)
        d.rectangle([a, b, c, e], fill=255)

    def P(pts):
        d.polygon([tx(x, y) for x, y in pts], fill=255)

    W = 2.0
    if kind == "person":
        _draw_person(action, L, E, W)
    elif kind == "robot":
        _draw_robot(action, L, R, W)
    elif kind == "cat":
        _draw_cat(action, L, E, P, W)
    else:  # pragma: no cover - guarded by Scene
        raise ValueError(kind)

    shadow_img = None
    if jump:
        shadow_img = Image.new("L", img.size, 0)
        sd = ImageDraw.Draw(shadow_img)
        y0 = bh + _JUMP_GAP
        x0, yy0 = tx(bw * 0.18, y0)
        x1, yy1 = tx(bw * 0.82, y0 + _SHADOW_H)
        sd.ellipse([x0, yy0, x1, yy1], fill=255)

    if mirror:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if shadow_img is not None:
            shadow_img = shadow_img.transpose(Image.FLIP_LEFT_RIGHT)

    def down(im):
        a = np.asarray(im, np.float32).reshape(h, _SS, w, _SS).mean(axis=(1, 3)) / 255.0
        return a

    alpha = down(img)
    shadow = down(shadow_img) if shadow_img is not None else np.zeros_like(alpha)
    # trim empty border rows/cols (keeps 0 px of slack; layout adds its own gaps)
    m = (alpha + shadow) > 0.0
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    alpha = np.ascontiguousarray(alpha[y0:y1, x0:x1])
    shadow = np.ascontiguousarray(shadow[y0:y1, x0:x1])
    alpha.setflags(write=False)
    shadow.setflags(write=False)
    return alpha, shadow


def sprite_mask(kind: str, action: str, scale_idx: int = 3, mirror: bool = False) -> np.ndarray:
    """The antialiased alpha mask (h, w) float32 of one object (for tests and debugging)."""
    return _sprite(kind, action, scale_idx, mirror)[0]


MIN_GAP = 2
"""Minimum free pixels between the bounding boxes of two objects."""
_MARGIN = 1  # minimum distance of a box from the image border


def layout(scene: Scene, seed: int) -> list[tuple[int, int, int, bool]]:
    """Object placements ``[(x, y, scale_idx, mirror), ...]`` (top-left corner of each sprite
    box in pixels) for a scene and seed; non-overlapping with at least MIN_GAP pixels between
    boxes. Deterministic in ``(scene, seed)``."""
    rng = np.random.default_rng(int(seed))
    return _layout(scene, rng)


def _layout(scene: Scene, rng: np.random.Generator):
    n = scene.count
    S = IMAGE_SIZE
    for attempt in range(60):
        # shrink the size jitter range a bit after repeated failures
        hi = len(SCALES) - min(attempt // 15, 3)
        placed: list[tuple[int, int, int, int]] = []
        out = []
        ok = True
        for _ in range(n):
            si = int(rng.integers(0, hi))
            mir = bool(rng.integers(0, 2))
            a, _s = _sprite(scene.kind, scene.action, si, mir)
            h, w = a.shape
            for _try in range(40):
                x = int(rng.integers(_MARGIN, S - _MARGIN - w + 1))
                y = int(rng.integers(_MARGIN, S - _MARGIN - h + 1))
                if all(x + w + MIN_GAP <= px or px + pw + MIN_GAP <= x or
                       y + h + MIN_GAP <= py or py + ph + MIN_GAP <= y
                       for px, py, pw, ph in placed):
                    placed.append((x, y, w, h))
                    out.append((x, y, si, mir))
                    break
            else:
                ok = False
                break
        if ok:
            return out
    # Deterministic grid fallback (never reached in practice for the shipped vocabularies).
    out = []
    a, _s = _sprite(scene.kind, scene.action, 0, False)
    h, w = a.shape
    cols = max(1, (S - 2 * _MARGIN + MIN_GAP) // (w + MIN_GAP))
    for i in range(n):
        r, c = divmod(i, cols)
        out.append((_MARGIN + c * (w + MIN_GAP), _MARGIN + r * (h + MIN_GAP), 0, False))
    return out


def render_array(scene: Scene, seed: int) -> np.ndarray:
    """Render a scene to a (64, 64, 3) uint8 array. Pure function of ``(scene, seed)``."""
    img = background(scene.background).copy()
    _composite(img, scene, int(seed))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _composite(img: np.ndarray, scene: Scene, seed: int) -> None:
    rng = np.random.default_rng(seed)
    col = np.asarray(COLOR_RGB[scene.color], np.float32)
    for x, y, si, mir in _layout(scene, rng):
        a, sh = _sprite(scene.kind, scene.action, si, mir)
        h, w = a.shape
        reg = img[y:y + h, x:x + w]
        if scene.action == "jumping":
            reg *= (1.0 - _SHADOW_STRENGTH * sh)[..., None]
        a3 = a[..., None]
        reg *= 1.0 - a3
        reg += a3 * col


def render(scene: Scene, seed: int):
    """Render a scene to a 64x64 RGB ``PIL.Image``. Pure function of ``(scene, seed)``."""
    from PIL import Image
    return Image.fromarray(render_array(scene, seed), "RGB")


def render_batch(scenes_: Sequence[Scene], seeds: Iterable[int]) -> np.ndarray:
    """Render many scenes: returns uint8 ``(N, 64, 64, 3)``; ``seeds`` pairs with ``scenes_``."""
    seeds = list(seeds)
    if len(seeds) != len(scenes_):
        raise ValueError(f"got {len(scenes_)} scenes but {len(seeds)} seeds")
    out = np.empty((len(scenes_), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    buf = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    for i, (sc, sd) in enumerate(zip(scenes_, seeds)):
        np.copyto(buf, background(sc.background))
        _composite(buf, sc, int(sd))
        buf += 0.5
        np.clip(buf, 0, 255, out=buf)
        out[i] = buf
    return out


def object_boxes(scene: Scene, seed: int) -> list[tuple[int, int, int, int]]:
    """Pixel boxes ``(x0, y0, x1, y1)`` (exclusive end) of the objects (shadow included)."""
    out = []
    for x, y, si, mir in layout(scene, seed):
        h, w = _sprite(scene.kind, scene.action, si, mir)[0].shape
        out.append((x, y, x + w, y + h))
    return out
