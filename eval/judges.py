"""Judges: did an image get the prompt's count, colour or action right?

One interface, `Judge.judge(images, rows) -> list[Verdict]` (images: PIL images or uint8 arrays,
one per suite row), and a registry (`make_judge("vqa")`, `register_judge`):

* ``vqa`` - BLIP VQA through transformers (default ``Salesforce/blip-vqa-base``; any
  BlipForQuestionAnswering folder or hub id): asks each row's questions and compares the
  normalised answers (`eval.answers`). Needs ``questions`` on every row.
* ``clip-color`` - GenEval-style zero-shot colour: CLIP scores "a photo of a {color} {object}"
  over the colour set and takes the best; color rows only.
* ``toy`` - the toy world's exact judge (`surlib.toy.judge.ToyJudge`, imported lazily): predicts
  count, colour and action of a 64x64 toy image; the row's category decides which is scored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .answers import COLORS, answer_matches, canonical_color, normalize_text
from surlib.names import CATEGORIES, CATEGORY_ATTRIBUTE

from .suites import Suite, SuiteRow

DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-base"
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


@dataclass
class Verdict:
    answer: str
    correct: bool
    details: dict[str, Any] = field(default_factory=dict)


class Judge(ABC):
    """Scores images against suite rows. Subclasses set `name`, `categories`, `needs_questions`."""

    name: str = "judge"
    categories: tuple[str, ...] = CATEGORIES
    needs_questions: bool = False

    @abstractmethod
    def judge(self, images: Sequence, rows: Sequence[SuiteRow]) -> list[Verdict]:
        """One Verdict per (image, row) pair, in order."""

    def describe(self) -> str:
        return self.name

    def check_suite(self, suite: Suite) -> None:
        """ValueError when the suite lacks what this judge needs (e.g. VQA questions)."""
        if self.needs_questions:
            suite.check_questions()

    @staticmethod
    def _check_lengths(images, rows) -> None:
        if len(images) != len(rows):
            raise ValueError(f"got {len(images)} images for {len(rows)} rows; pass one row per image")


def _pil(images) -> list:
    from PIL import Image

    return [im.convert("RGB") if hasattr(im, "convert") else Image.fromarray(np.asarray(im, np.uint8))
            for im in images]


def _device_dtype(device, fp16: bool | None):
    import torch

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    half = fp16 if fp16 is not None else device.type == "cuda"
    return device, (torch.float16 if half else torch.float32)


def _load_pretrained(processor_cls, model_cls, model_id: str, device=None, dtype=None):
    """(processor, model in eval mode) of two transformers classes, from a hub id or folder."""
    processor = processor_cls.from_pretrained(model_id)
    model = model_cls.from_pretrained(model_id, dtype=dtype).eval()
    if device is not None:
        model = model.to(device)
    return processor, model


# --------------------------------------------------------------------------- VQA

def load_blip_vqa(model_id: str = DEFAULT_VQA_MODEL, device=None, dtype=None):
    """(BlipProcessor, BlipForQuestionAnswering in eval mode) from a hub id or folder."""
    from transformers import BlipForQuestionAnswering, BlipProcessor

    return _load_pretrained(BlipProcessor, BlipForQuestionAnswering, model_id, device, dtype)


class VQAJudge(Judge):
    """Asks each row's questions with a BLIP VQA model; a row is right when every answer is."""

    name = "vqa"
    needs_questions = True

    def __init__(self, model_id: str = DEFAULT_VQA_MODEL, device=None, fp16: bool | None = None,
                 batch_size: int = 16, max_new_tokens: int = 10):
        self.model_id = model_id
        self.device, self.dtype = _device_dtype(device, fp16)
        self.processor, self.model = load_blip_vqa(model_id, self.device, self.dtype)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def describe(self) -> str:
        return f"vqa ({self.model_id})"

    def answer(self, images: Sequence, questions: Sequence[str]) -> list[str]:
        """Raw answers to (image, question) pairs, batched."""
        import torch

        out: list[str] = []
        for i in range(0, len(images), self.batch_size):
            ims, qs = images[i:i + self.batch_size], list(questions[i:i + self.batch_size])
            inputs = self.processor(images=ims, text=qs, return_tensors="pt", padding=True)
            inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                      for k, v in inputs.items() if k != "token_type_ids"}
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
            out += [s.strip() for s in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out

    def judge(self, images, rows) -> list[Verdict]:
        self._check_lengths(images, rows)
        for r in rows:
            if not r.questions:
                raise ValueError(f"row {r.id!r} has no 'questions'; the VQA judge needs them")
        pil = _pil(images)
        pairs = [(i, q) for i, r in enumerate(rows) for q in r.questions]
        answers = self.answer([pil[i] for i, _ in pairs], [q.question for _, q in pairs])
        per_row: list[list[tuple]] = [[] for _ in rows]
        for (i, q), a in zip(pairs, answers):
            per_row[i].append((q, a, answer_matches(a, q.answers, q.kind)))
        verdicts = []
        for qa in per_row:
            verdicts.append(Verdict(
                answer=" | ".join(a for _, a, _ in qa),
                correct=all(ok for _, _, ok in qa),
                details={"questions": [q.question for q, _, _ in qa], "answers": [a for _, a, _ in qa],
                         "correct_each": [ok for _, _, ok in qa], "model": self.model_id},
            ))
        return verdicts


# --------------------------------------------------------------------------- CLIP colour

def load_clip(model_id: str = DEFAULT_CLIP_MODEL, device=None, dtype=None):
    """(CLIPProcessor, CLIPModel in eval mode) from a hub id or folder."""
    from transformers import CLIPModel, CLIPProcessor

    return _load_pretrained(CLIPProcessor, CLIPModel, model_id, device, dtype)


class CLIPColorJudge(Judge):
    """GenEval-style zero-shot colour: argmax over "a photo of a {color} {object}"."""

    name = "clip-color"
    categories = ("color",)

    def __init__(self, model_id: str = DEFAULT_CLIP_MODEL, colors: Sequence[str] = COLORS,
                 template: str = "a photo of a {color} {object}", device=None, fp16: bool | None = None,
                 batch_size: int = 32):
        colors = [canonical_color(c) for c in colors]
        if len(set(colors)) < 2:
            raise ValueError("the CLIP colour judge needs at least two distinct colours")
        if "{color}" not in template or "{object}" not in template:
            raise ValueError("template must contain {color} and {object}")
        self.model_id, self.colors, self.template = model_id, list(dict.fromkeys(colors)), template
        self.device, self.dtype = _device_dtype(device, fp16)
        self.processor, self.model = load_clip(model_id, self.device, self.dtype)
        self.batch_size = batch_size
        self._text_cache: dict[str, Any] = {}

    def describe(self) -> str:
        return f"clip-color ({self.model_id}, {len(self.colors)} colours)"

    def check_suite(self, suite: Suite) -> None:
        bad = [r.id for r in suite if r.category == "color" and canonical_color(r.expect["color"]) not in self.colors]
        if bad:
            raise ValueError(f"rows {bad[:10]} expect colours outside the judge's set {self.colors}")

    def _text_features(self, obj: str):
        import torch

        if obj not in self._text_cache:
            texts = [self.template.format(color=c, object=obj) for c in self.colors]
            inputs = self.processor(text=texts, return_tensors="pt", padding=True).to(self.device)
            with torch.no_grad():
                f = self.model.get_text_features(**inputs)
            f = getattr(f, "pooler_output", f)
            self._text_cache[obj] = torch.nn.functional.normalize(f.float(), dim=-1)
        return self._text_cache[obj]

    def judge(self, images, rows) -> list[Verdict]:
        import torch

        self._check_lengths(images, rows)
        for r in rows:
            if r.category != "color" or "color" not in r.expect:
                raise ValueError(f"the CLIP colour judge scores color rows only; row {r.id!r} is {r.category}")
        pil = _pil(images)
        feats = []
        for i in range(0, len(pil), self.batch_size):
            inputs = self.processor(images=pil[i:i + self.batch_size], return_tensors="pt")
            with torch.no_grad():
                f = self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device, self.dtype))
            f = getattr(f, "pooler_output", f)
            feats.append(torch.nn.functional.normalize(f.float(), dim=-1))
        feats = torch.cat(feats)
        scale = float(self.model.logit_scale.detach().exp())
        out = []
        for f, r in zip(feats, rows):
            probs = (scale * f @ self._text_features(r.object).T).softmax(-1)
            pred = self.colors[int(probs.argmax())]
            want = canonical_color(r.expect["color"])
            out.append(Verdict(answer=pred, correct=pred == want,
                               details={"probs": {c: round(float(p), 4) for c, p in zip(self.colors, probs)},
                                        "model": self.model_id}))
        return out


# --------------------------------------------------------------------------- toy world

def _as_prediction(p) -> dict:
    if isinstance(p, dict):
        return dict(p)
    if hasattr(p, "to_dict"):
        return dict(p.to_dict())
    return {k: getattr(p, k) for k in ("count", "color", "action", "kind") if hasattr(p, k)}


def _plain(v):
    return v if v is None or isinstance(v, (int, float, str, bool)) else (v.item() if hasattr(v, "item") else str(v))


def _same(attr: str, got, want) -> bool:
    if got is None:
        return False
    if attr == "count":
        try:
            return int(got) == int(want)
        except (TypeError, ValueError):
            return False
    if attr == "color":
        try:
            return canonical_color(str(got)) == canonical_color(str(want))
        except ValueError:
            return False
    return normalize_text(str(got)) == normalize_text(str(want))


class ToyWorldJudge(Judge):
    """Adapter around `surlib.toy.judge.ToyJudge` (``judge(images) -> [{count, color, action}]``).

    The row's category attribute decides `correct`; `details` keeps every prediction and whether
    all predicted attributes that the row expects match (``all_correct``)."""

    name = "toy"

    def __init__(self, **kwargs):
        """kwargs go to ``ToyJudge.load`` (``path`` of the weights, ``device``)."""
        try:
            from surlib.toy.judge import ToyJudge
        except ImportError as e:
            raise ImportError(f"the toy judge needs surlib.toy.judge (the toy world's judge model): {e}") from e
        self._judge = ToyJudge.load(**kwargs) if hasattr(ToyJudge, "load") else ToyJudge(**kwargs)

    def judge(self, images, rows) -> list[Verdict]:
        self._check_lengths(images, rows)
        arrays = np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im, np.uint8) for im in images])
        preds = list(self._judge.judge(arrays))
        if len(preds) != len(rows):
            raise RuntimeError(f"toy judge returned {len(preds)} predictions for {len(rows)} images")
        out = []
        for p, r in zip(preds, rows):
            p = _as_prediction(p)
            attr = CATEGORY_ATTRIBUTE[r.category]
            checks = {a: _same(a, p.get(a), r.expect[a]) for a in ("count", "color", "action", "kind")
                      if a in r.expect and a in p}
            details = {"predicted": {k: _plain(p[k]) for k in ("count", "color", "action", "kind") if k in p},
                       "all_correct": bool(checks) and all(checks.values())}
            if isinstance(p.get("confidence"), dict):
                details["confidence"] = {k: round(float(v), 4) for k, v in p["confidence"].items()}
            out.append(Verdict(answer=str(p.get(attr)), correct=_same(attr, p.get(attr), r.expect[attr]),
                               details=details))
        return out


# --------------------------------------------------------------------------- registry

JUDGES: dict[str, Callable[..., Judge]] = {
    "toy": ToyWorldJudge,
    "vqa": VQAJudge,
    "clip-color": CLIPColorJudge,
}


def register_judge(name: str, factory: Callable[..., Judge]) -> None:
    """Make a judge available by name (to `make_judge` and ``python -m eval.run --judge``)."""
    JUDGES[name] = factory


def make_judge(name: str, **kwargs) -> Judge:
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; available: {', '.join(sorted(JUDGES))}")
    return JUDGES[name](**kwargs)


def default_judge(preset: str | None) -> str:
    """The toy preset is judged by the toy judge; everything else by VQA."""
    return "toy" if preset and preset.startswith("toy") else "vqa"


__all__ = ["Judge", "Verdict", "VQAJudge", "CLIPColorJudge", "ToyWorldJudge", "JUDGES", "register_judge",
           "make_judge", "default_judge", "load_blip_vqa", "load_clip", "DEFAULT_VQA_MODEL", "DEFAULT_CLIP_MODEL"]
