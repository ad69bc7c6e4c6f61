"""The teacher: layer choice, pooling under left/right padding, and the row-indexed, resumable cache."""

from __future__ import annotations

import json

import pytest
import torch

from surlib.feature_cache import build_feature_cache, dataset_fingerprint, ensure_feature_cache, load_feature_cache
from surlib.teacher import TEACHERS, LLMFeatureExtractor, pool_tokens, teacher_settings

WORDS = "a an the one two three red green blue cat cats dog dogs robot robots sitting jumping on grass".split()
PROMPTS = ["two red cats", "a robot", "three blue dogs jumping on the grass", "one green cat sitting",
           "two red cats", "the dog", "a red robot on grass", "three cats", "an dog", "blue"]


def _tokenizer(folder, padding_side: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<unk>", "<s>", "</s>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side=padding_side)


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    """A tiny random LLaMA (3 blocks, 32-d) and a word-level tokenizer (left padding), on disk."""
    from transformers import LlamaConfig, LlamaModel

    folder = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(WORDS) + 4, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=0, bos_token_id=2, eos_token_id=3)
    LlamaModel(cfg).eval().save_pretrained(folder)
    _tokenizer(folder, "left").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(llama_folder):
    return LLMFeatureExtractor.from_pretrained(str(llama_folder), layer=-1, pooling="mean", batch_size=4)


def _single(extractor, text):
    """The unpadded reference: one prompt per batch."""
    return extractor.encode_batch([text])[0]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_decoder_pooling_ignores_left_and_right_padding(llama, pooling):
    ref_tok = llama.tokenizer
    try:
        llama.pooling = pooling
        expect = torch.stack([_single(llama, t) for t in PROMPTS[:4]])
        assert ref_tok.padding_side == "left"
        left = llama.encode_batch(PROMPTS[:4])
        llama.tokenizer = _tokenizer(None, "right")
        right = llama.encode_batch(PROMPTS[:4])
    finally:
        llama.tokenizer, llama.pooling = ref_tok, "mean"
    assert torch.allclose(left, expect, atol=1e-5) and torch.allclose(right, expect, atol=1e-5)
    assert left.shape == (4, 32) and left.dtype == torch.float32


def test_layer_index_and_special_tokens(llama):
    enc = llama.tokenizer(["two red cats"], return_tensors="pt")
    with torch.no_grad():
        hs = llama.model(**enc, output_hidden_states=True).hidden_states
    assert len(hs) == 4  # embeddings + 3 blocks
    llama.layer = 0  # block 0's output is hidden_states[1]; BOS left out of the pool by default
    try:
        assert torch.allclose(_single(llama, "two red cats"), hs[1][0, 1:].mean(0), atol=1e-5)
        llama.pooling = "last"
        assert torch.allclose(_single(llama, "two red cats"), hs[1][0, -1], atol=1e-5)
    finally:
        llama.layer, llama.pooling = -1, "mean"
    with pytest.raises(ValueError, match="out of range"):
        LLMFeatureExtractor(llama.model, llama.tokenizer, layer=3)


def _manual_block_outputs(model, input_ids):
    """Each block's raw output for one unpadded prompt, written out: embeddings, rotary positions,
    a causal mask, then the decoder layers one by one (no final norm)."""
    length = input_ids.shape[1]
    h = model.embed_tokens(input_ids)
    positions = torch.arange(length)[None]
    rope = model.rotary_emb(h, position_ids=positions)
    causal = torch.full((length, length), float("-inf")).triu(1)[None, None]
    outs = []
    for block in model.layers:
        h = block(h, attention_mask=causal, position_ids=positions, position_embeddings=rope)
        h = h[0] if isinstance(h, tuple) else h
        outs.append(h)
    return outs


def test_the_layer_is_the_raw_block_output_taken_by_a_hook():
    """The release's vectors are block 39's raw output; HF's hidden_states[-1] is the last block
    *after* the final norm. The hook gives the raw one for every block, the last included."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(WORDS) + 4, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                      pad_token_id=0, bos_token_id=2, eos_token_id=3)
    model = LlamaModel(cfg).eval()
    with torch.no_grad():  # a visible final norm, so post-norm and raw states cannot coincide
        model.norm.weight.copy_(torch.linspace(0.5, 2.0, 16))
    tok = _tokenizer(None, "left")
    ids = tok(["three red robots jumping"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        manual = _manual_block_outputs(model, ids)
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        torch.testing.assert_close(hs[-1], model.norm(manual[-1]))  # what hidden_states[-1] is
    for layer in (0, 1, -1):
        ext = LLMFeatureExtractor(model, tok, layer=layer, pooling="mean")
        assert ext.blocks is model.layers
        got = ext.encode_batch(["three red robots jumping"])[0]
        torch.testing.assert_close(got, manual[layer][0, 1:].mean(0), rtol=0, atol=1e-5)
    assert not torch.allclose(got, hs[-1][0, 1:].mean(0), atol=1e-3)


def test_old_caches_of_a_last_decoder_layer_are_rebuilt(llama, tmp_path):
    """Caches written before the hook lack `layer_output`: kept where nothing changed (a block
    counted from the start), rebuilt for a layer counted from the end of a decoder."""
    for layer, rebuilt in ((1, 0), (-1, len(PROMPTS))):
        llama.layer = layer
        try:
            build_feature_cache(PROMPTS, Counting(llama), tmp_path / str(layer), shard_size=4, progress=False)
            path = tmp_path / str(layer) / "manifest.json"
            manifest = json.loads(path.read_text())
            assert manifest.pop("layer_output") == "block"
            path.write_text(json.dumps(manifest))
            again = Counting(llama)
            build_feature_cache(PROMPTS, again, tmp_path / str(layer), shard_size=4, progress=False)
        finally:
            llama.layer = -1
        assert again.texts == rebuilt, layer


def test_pool_tokens_is_nan_safe_on_padding():
    hidden = torch.randn(2, 4, 3)
    hidden[0, 0] = float("nan")  # a left-pad position
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])
    for pooling in ("mean", "last", "first"):
        assert torch.isfinite(pool_tokens(hidden, mask, pooling)).all()
    assert torch.allclose(pool_tokens(hidden, mask, "last")[1], hidden[1, 1])
    assert torch.allclose(pool_tokens(hidden, mask, "first")[0], hidden[0, 1])


def test_minilm_is_the_offline_default_teacher():
    s = teacher_settings("minilm")
    assert s["model"] == TEACHERS["minilm"].model and s["layer"] == -1 and s["pooling"] == "mean"
    ext = LLMFeatureExtractor.from_settings(s)
    feats = ext(["two red cats", "a robot on the grass"], progress=False)
    assert feats.shape == (2, 384) and torch.isfinite(feats).all()
    paper = teacher_settings("llama2-13b")
    assert (paper["model"], paper["layer"], TEACHERS["llama2-13b"].width) == ("meta-llama/Llama-2-13b-hf", 39, 5120)
    assert TEACHERS["qwen2.5-0.5b"].width == 896


class Counting:
    """Wraps an extractor; counts the texts it is asked for and can fail after `fail_after` calls."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.calls, self.texts = inner, fail_after, 0, 0
        self.width = inner.width

    def settings(self):
        return self.inner.settings()

    def __call__(self, texts, progress=True):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        self.texts += len(texts)
        return self.inner(texts, progress=False)


def test_cache_resumes_after_an_interruption(llama, tmp_path):
    straight = build_feature_cache(PROMPTS, Counting(llama), tmp_path / "straight", shard_size=4, progress=False)
    cut = Counting(llama, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(PROMPTS, cut, tmp_path / "cut", shard_size=4, progress=False)
    assert cut.texts == 4 and not json.loads((tmp_path / "cut" / "manifest.json").read_text())["complete"]
    with pytest.raises(FileNotFoundError, match="no complete"):
        load_feature_cache(tmp_path / "cut")
    rest = Counting(llama)
    resumed = build_feature_cache(PROMPTS, rest, tmp_path / "cut", shard_size=4, progress=False)
    assert rest.texts == len(PROMPTS) - 4  # only the missing shards
    assert torch.equal(resumed.features, straight.features) and len(resumed) == len(PROMPTS)
    # rows are keyed by index: the duplicated caption (rows 0 and 4) has two rows, both right
    assert torch.allclose(resumed.lookup(torch.tensor([4, 0]))[0], resumed.features[0])


def test_cache_is_reused_only_when_the_manifest_matches(llama, tmp_path):
    cache_dir = tmp_path / "c"
    first = Counting(llama)
    build_feature_cache(PROMPTS, first, cache_dir, shard_size=4, progress=False)
    again = Counting(llama)
    cache = build_feature_cache(PROMPTS, again, cache_dir, shard_size=4, progress=False)
    assert again.texts == 0 and cache.manifest["fingerprint"] == dataset_fingerprint(PROMPTS)
    m = cache.manifest
    assert (m["layer"], m["pooling"], m["width"], m["count"]) == (-1, "mean", 32, len(PROMPTS))

    changed = PROMPTS[:3] + ["three red robots"] + PROMPTS[4:]  # same count, one caption differs
    redo = Counting(llama)
    cache = build_feature_cache(changed, redo, cache_dir, shard_size=4, progress=False)
    assert redo.texts == len(changed) and cache.manifest["fingerprint"] == dataset_fingerprint(changed)

    llama.layer = 1
    try:
        other_layer = Counting(llama)
        cache = build_feature_cache(changed, other_layer, cache_dir, shard_size=4, progress=False)
    finally:
        llama.layer = -1
    assert other_layer.texts == len(changed) and cache.manifest["layer"] == 1
    with pytest.raises(ValueError, match="layer: 1 -> -1"):
        load_feature_cache(cache_dir, {**cache.manifest, "layer": -1})


def test_ensure_feature_cache_loads_the_teacher_only_when_needed(llama_folder, tmp_path, monkeypatch):
    settings = teacher_settings(str(llama_folder), layer=-1, pooling="last", dtype="float32")
    first = ensure_feature_cache(PROMPTS, tmp_path / "c", settings, shard_size=4, progress=False)
    assert first.width == 32 and first.manifest["pooling"] == "last"

    def boom(*a, **k):
        raise AssertionError("the teacher must not be loaded for a matching cache")

    monkeypatch.setattr(LLMFeatureExtractor, "from_settings", boom)
    again = ensure_feature_cache(PROMPTS, tmp_path / "c", settings, shard_size=4, progress=False)
    assert torch.equal(again.features, first.features)
    with pytest.raises(AssertionError, match="must not be loaded"):
        ensure_feature_cache(PROMPTS[:5], tmp_path / "c", settings, shard_size=4, progress=False)
