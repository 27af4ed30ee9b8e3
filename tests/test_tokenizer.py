"""azr.Tokenizer against Hugging Face `tokenizers` (the reference) on the real
tokenizers in ../shared/data, llama.cpp's test vectors (and their expected
ids), every stdlib .py file, generated strings, and a GPT-2/SmolLM-style
tokenizer trained here with HF's trainer."""
from __future__ import annotations

import json
import os
import random

import pytest

import tokenizers
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import azr
from azr.tokenizer import Tokenizer
from tokenizer_helpers import (gpt2_style_json, load_pair, stdlib_corpus, stdlib_files,
                               with_added_tokens)

ALL = ["qwen2.5", "qwen3", "llama3.1", "tinystories"]
BYTE_LEVEL = ["qwen2.5", "qwen3", "llama3.1"]


@pytest.fixture(scope="module", params=ALL)
def pair(request, shared_data):
    return request.param, *load_pair(str(shared_data), request.param)


def hf_ids(hf, text, allow_special=False, add_special_tokens=False):
    hf.encode_special_tokens = not allow_special
    return hf.encode(text, add_special_tokens=add_special_tokens).ids


def read_vectors(shared_data, name):
    d = shared_data / "tokenizers" / "test_vectors"
    inp = (d / f"ggml-vocab-{name}.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    if inp and inp[-1] == "":
        inp = inp[:-1]
    out = [[int(x) for x in line.split()] for line in
           (d / f"ggml-vocab-{name}.gguf.out").read_text(encoding="utf-8").split("\n")[:len(inp)]]
    return inp, out


# ------------------------------------------------------------------ test vectors

@pytest.mark.parametrize("vectors", ["qwen2", "llama-bpe"])
def test_llama_cpp_vectors_match_hf(pair, shared_data, vectors):
    name, ours, hf = pair
    inp, _ = read_vectors(shared_data, vectors)
    assert len(inp) == 46
    for text in inp:
        assert ours.encode(text) == hf_ids(hf, text), repr(text)


@pytest.mark.parametrize("name,vectors", [("qwen2.5", "qwen2"), ("qwen3", "qwen2"), ("llama3.1", "llama-bpe")])
def test_llama_cpp_vectors_expected_ids(shared_data, name, vectors):
    ours, _ = load_pair(str(shared_data), name)
    inp, out = read_vectors(shared_data, vectors)
    assert len(out) == 46
    for text, ids in zip(inp, out):
        assert ours.encode(text) == ids, repr(text)


# ------------------------------------------------------------------ stdlib corpus

def test_stdlib_corpus_matches_hf(pair):
    name, ours, hf = pair
    texts = list(stdlib_corpus())
    assert len(texts) == len(stdlib_files()) > 100
    if name == "tinystories":   # one BPE "word" per text for SentencePiece: keep HF's time down
        texts = [t[:600] for t in texts]
    got = ours.encode_batch(texts)
    hf.encode_special_tokens = True
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    assert not bad, f"{len(bad)} files differ, first: {stdlib_files()[bad[0]]}"
    # decode is lossless for byte-level tokenizers (after NFC for Qwen)
    if name in BYTE_LEVEL:
        import unicodedata
        norm = (lambda s: unicodedata.normalize("NFC", s)) if name != "llama3.1" else (lambda s: s)
        for t, ids in zip(texts[::7], got[::7]):
            assert ours.decode(ids) == norm(t)
    for ids in got[::11]:
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)


def test_batch_equals_single_and_threads(shared_data):
    ours, _ = load_pair(str(shared_data), "qwen2.5")
    texts = list(stdlib_corpus())[:200]
    single = [ours.encode(t) for t in texts]
    for n in (1, 2, 3):
        azr.set_num_threads(n)
        assert ours.encode_batch(texts) == single
    azr.set_num_threads(0)
    assert ours.encode_batch([]) == []
    assert ours.encode("") == []


# ------------------------------------------------------------------ generated strings

WS = [" ", "  ", "\t", "\n", "\r\n", "\r", "\v", "\f", "\u00a0", "\u3000", "\u2009", "\u200b", "\u0085",
      "\u2028", "\u1680", "\u202f", "\u205f", "\x1c", "\x1f"]
DIGITS = ["0", "7", "12", "345", "6789", "\u0663", "\u00b2", "\u216b", "\u2460", "\uff19", "\U0001d7d8"]
LETTERS = ["a", "Z", "hello", " world", "\u00e9", "e\u0301", "\u0391\u03b2", "\u0416", "\u017f", "I'm", "it's",
           "'S", "'RE", "'ll", "'\u017f", "'ve", "'D", "'M", "n't"]
CJK = ["\u4e16\u754c", "\u3053\u3093", "\ud55c\uae00", "\u1100\u1161\u11a8", "\uac00\u11a8"]
EMOJI = ["\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f44d\U0001f3fd", "\u2764\ufe0f",
         "\U0001f1fa\U0001f1f8"]
MARKS = ["\u0301", "\u0323", "\u0308\u0301", "\u0323\u0307", "\u05b7", "\u0e31", "\u094d", "\u3099"]
CTRL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\u200d", "\ufeff", "\ufffd", "\u0600"]
PUNCT = ["'", "\"", "...", "!?", "(){}", "->", "#", "$", "\\", "\\ud800", "\\udfff", "<|im_end|>", "<|im_start|>",
         "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<think>", "<|start_story|>", "<0x41>", "\u2581",
         "<unk>", "```", "    def f(x):\n        return x\n"]
ATOMS = WS + DIGITS + LETTERS + CJK + EMOJI + MARKS + CTRL + PUNCT

texts_strategy = st.one_of(
    st.lists(st.sampled_from(ATOMS), min_size=0, max_size=30).map("".join),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
    st.lists(st.sampled_from(WS + ["a", "1", ".", "'s"]), max_size=40).map("".join),
)


@pytest.mark.parametrize("name", ALL)
def test_generated_strings_match_hf(shared_data, name):
    ours, hf = load_pair(str(shared_data), name)

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(texts_strategy, st.booleans())
    def check(text, allow_special):
        ids = ours.encode(text, allow_special=allow_special)
        assert ids == hf_ids(hf, text, allow_special), repr(text)
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
        if name == "llama3.1":
            assert ours.decode(ids) == text   # no normaliser: lossless
        elif name in BYTE_LEVEL:
            assert ours.decode(ids) == hf.normalizer.normalize_str(text)   # lossless up to NFC
        elif ours.token_to_id("<unk>") not in ids and "\u2581" not in text and not allow_special:
            assert ours.decode(ids) == text   # byte fallback: lossless without unk / U+2581
        sd = ours.stream_decoder()
        assert "".join(sd.push(i) for i in ids) + sd.flush() == ours.decode(ids)

    check()


def test_lone_surrogates_are_rejected_clearly(shared_data):
    ours, _ = load_pair(str(shared_data), "qwen2.5")
    with pytest.raises(UnicodeEncodeError, match="surrogate"):
        ours.encode("abc\ud800def")
    # escaped (as text) they are ordinary characters
    assert ours.decode(ours.encode("\\ud800")) == "\\ud800"


# ------------------------------------------------------------------ special tokens

@pytest.mark.parametrize("name,special", [("qwen2.5", "<|im_end|>"), ("qwen3", "<|im_start|>"),
                                          ("llama3.1", "<|eot_id|>"), ("tinystories", "<|end_story|>")])
def test_special_tokens_need_allow_special(shared_data, name, special):
    ours, hf = load_pair(str(shared_data), name)
    text = f"user text {special} more"
    sid = ours.token_to_id(special)
    plain = ours.encode(text)
    assert sid not in plain and plain == hf_ids(hf, text, allow_special=False)
    allowed = ours.encode(text, allow_special=True)
    assert sid in allowed and allowed == hf_ids(hf, text, allow_special=True)
    assert ours.decode(allowed, skip_special_tokens=True) == hf.decode(allowed, skip_special_tokens=True)


def test_qwen3_think_is_not_special_and_always_matched(shared_data):
    ours, hf = load_pair(str(shared_data), "qwen3")
    ids = ours.encode("<think>\nhmm\n</think>")
    assert ids[0] == ours.token_to_id("<think>") == hf.token_to_id("<think>")
    assert ids == hf_ids(hf, "<think>\nhmm\n</think>")


@pytest.mark.parametrize("name", ALL)
def test_add_special_tokens_matches_hf(shared_data, name):
    ours, hf = load_pair(str(shared_data), name)
    for text in ["Once upon a time", "", "x <|eot_id|>"]:
        assert ours.encode(text, add_special_tokens=True) == hf_ids(hf, text, False, add_special_tokens=True)


@pytest.mark.parametrize("flags", [{"lstrip": True}, {"rstrip": True}, {"lstrip": True, "rstrip": True},
                                   {"single_word": True}, {"normalized": True}, {"special": True},
                                   {"special": True, "lstrip": True, "rstrip": True}])
def test_added_token_flags_match_hf(flags):
    js = with_added_tokens(gpt2_style_json("gpt2"), [{"content": "<mask>", **flags}, {"content": "zz", **flags},
                                                     {"content": "\u00e9t\u00e9", **flags}])
    hf = tokenizers.Tokenizer.from_str(js)
    ours = Tokenizer.from_hf_json_dict(json.loads(js))
    cases = ["a <mask> b", "a<mask>b", "  <mask>  x", "<mask>", "xzz zz zzy", " zz\n", "\t<mask>\t\n<mask>",
             "\u00e9t\u00e9 et \u00e9t\u00e9s", "<mask><mask> zz<mask>", "", "no tokens here"]
    for allow in (False, True):
        for text in cases:
            assert ours.encode(text, allow_special=allow) == hf_ids(hf, text, allow), (flags, allow, text)


# ------------------------------------------------------------------ GPT-2 / SmolLM style

@pytest.mark.parametrize("variant", ["smollm", "gpt2", "gpt2_prefix"])
def test_gpt2_style_trained_tokenizer_matches_hf(variant, shared_data):
    js = gpt2_style_json(variant)
    hf = tokenizers.Tokenizer.from_str(js)
    ours = Tokenizer.from_hf_json_dict(json.loads(js))
    texts = list(stdlib_corpus())[::3]
    hf.encode_special_tokens = True
    want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert ours.encode_batch(texts) == want
    inp, _ = read_vectors(shared_data, "llama-bpe")
    for text in inp:
        assert ours.encode(text) == hf_ids(hf, text)

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(texts_strategy)
    def check(text):
        ids = ours.encode(text)
        assert ids == hf_ids(hf, text), repr(text)
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)

    check()


# ------------------------------------------------------------------ decoding

@pytest.mark.parametrize("name", ALL)
def test_decode_random_ids_and_stream_match(shared_data, name):
    """Arbitrary id sequences (split UTF-8 characters, byte-fallback runs, special
    tokens): decode equals HF's, and streaming equals whole decoding."""
    ours, hf = load_pair(str(shared_data), name)
    rng = random.Random(1234)
    pool = list(range(min(ours.vocab_size, 2000))) + [rng.randrange(ours.vocab_size) for _ in range(3000)]
    pool = [i for i in pool if ours.id_to_token(i) is not None]
    for trial in range(300):
        ids = [rng.choice(pool) for _ in range(rng.randrange(0, 25))]
        for skip in (False, True):
            whole = ours.decode(ids, skip_special_tokens=skip)
            assert whole == hf.decode(ids, skip_special_tokens=skip), ids
            sd = ours.stream_decoder(skip_special_tokens=skip)
            parts = [sd.push(i) for i in ids]
            assert "".join(parts) + sd.flush() == whole


def test_stream_holds_back_incomplete_utf8(shared_data):
    ours, _ = load_pair(str(shared_data), "qwen2.5")
    text = "a\u4e16\U0001f600b"
    ids = ours.encode(text)
    sd = ours.stream_decoder()
    outs = [sd.push(i) for i in ids]
    assert all("\ufffd" not in o for o in outs)
    assert "".join(outs) + sd.flush() == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        sd.push(10 ** 7)
    with pytest.raises(ValueError, match="out of range|not in the vocabulary"):
        ours.decode([ours.vocab_size + 5])


# ------------------------------------------------------------------ vocab.json + merges.txt

def test_vocab_merges_files_equal_tokenizer_json(shared_data, tmp_path):
    src = shared_data / "tokenizers" / "qwen2.5"
    for f in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        os.symlink(src / f, tmp_path / f)
    vm = Tokenizer.from_pretrained(tmp_path)
    ours, hf = load_pair(str(shared_data), "qwen2.5")
    inp, out = read_vectors(shared_data, "qwen2")
    for text, ids in zip(inp, out):
        assert vm.encode(text) == ids
    text = "<|im_start|>user\nhi<|im_end|>"
    assert vm.encode(text, allow_special=True) == ours.encode(text, allow_special=True)
    assert vm.vocab_size == ours.vocab_size and vm.eos_token_id == ours.eos_token_id


def test_merges_as_strings_and_pairs_agree(shared_data):
    d = json.loads((shared_data / "tokenizers" / "qwen2.5" / "tokenizer.json").read_text(encoding="utf-8"))
    as_pairs = Tokenizer.from_hf_json_dict(d)
    d["model"]["merges"] = [" ".join(m) for m in d["model"]["merges"]]
    as_strings = Tokenizer.from_hf_json_dict(d)
    text = "".join(stdlib_corpus()[:20])
    assert as_pairs.encode(text) == as_strings.encode(text)


# ------------------------------------------------------------------ metadata

@pytest.mark.parametrize("name", ALL)
def test_metadata_matches_transformers(shared_data, name):
    ours, hf = load_pair(str(shared_data), name)
    d = shared_data / ("models" if name == "tinystories" else "tokenizers") / (
        "tinystories-656k" if name == "tinystories" else name)
    ref = transformers.AutoTokenizer.from_pretrained(str(d))
    assert ours.vocab_size == hf.get_vocab_size(with_added_tokens=True) == len(ref)
    assert ours.bos_token_id == ref.bos_token_id
    assert ours.eos_token_id == ref.eos_token_id
    assert ours.pad_token_id == ref.pad_token_id
    for i in [0, 1, 2, 100, ours.vocab_size - 1]:
        assert ours.id_to_token(i) == hf.id_to_token(i)
        assert ours.token_to_id(ours.id_to_token(i)) == hf.token_to_id(hf.id_to_token(i))
    assert ours.token_to_id("definitely-not-a-token-\u2603") is None
    assert ours.id_to_token(10 ** 8) is None


# ------------------------------------------------------------------ chat templates

CHATS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi \u4e16\u754c"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "def f(x):\n    return x"}],
]


@pytest.mark.parametrize("name", ["qwen2.5", "qwen3", "llama3.1"])
def test_chat_template_matches_transformers(shared_data, name):
    ours, _ = load_pair(str(shared_data), name)
    ref = transformers.AutoTokenizer.from_pretrained(str(shared_data / "tokenizers" / name))
    assert ours.chat_template == ref.chat_template
    for msgs in CHATS:
        for agp in (True, False):
            want = ref.apply_chat_template(msgs, add_generation_prompt=agp, tokenize=False)
            assert ours.apply_chat_template(msgs, add_generation_prompt=agp) == want
            want_ids = ref.apply_chat_template(msgs, add_generation_prompt=agp, tokenize=True, return_dict=False)
            if isinstance(want_ids, dict):
                want_ids = want_ids["input_ids"]
            got_ids = ours.apply_chat_template(msgs, add_generation_prompt=agp, tokenize=True)
            assert got_ids == list(want_ids)


def test_chat_template_raise_exception_and_missing(shared_data):
    import jinja2

    ours, _ = load_pair(str(shared_data), "tinystories")
    with pytest.raises(ValueError, match="no chat_template"):
        ours.apply_chat_template([{"role": "user", "content": "x"}])
    js = gpt2_style_json("gpt2")
    t = Tokenizer.from_hf_json_dict(json.loads(js), {"chat_template": "{{ raise_exception('bad role') }}"})
    with pytest.raises(jinja2.exceptions.TemplateError, match="bad role"):
        t.apply_chat_template([{"role": "user", "content": "x"}])


# ------------------------------------------------------------------ bad input

def _write(tmp_path, obj):
    p = tmp_path / "tokenizer.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return tmp_path


def test_bad_files_give_clear_errors(tmp_path):
    base = json.loads(gpt2_style_json("gpt2"))
    raw = json.dumps(base)
    with pytest.raises(azr.FormatError, match="not valid JSON.*truncated"):
        Tokenizer.from_pretrained(_write(tmp_path, raw[: len(raw) // 2]))
    with pytest.raises(azr.FormatError, match="not valid JSON"):
        Tokenizer.from_pretrained(_write(tmp_path, "\x00\x01garbage"))
    with pytest.raises(azr.FormatError, match="expected a JSON object"):
        Tokenizer.from_pretrained(_write(tmp_path, "[1, 2]"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer.from_pretrained(tmp_path / "nope")

    def variant(fn):
        d = json.loads(raw)
        fn(d)
        return d

    with pytest.raises(azr.UnsupportedError, match="pre-tokenizer type 'Whitespace'"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d.__setitem__("pre_tokenizer", {"type": "Whitespace"})))
    with pytest.raises(azr.UnsupportedError, match="Split pattern"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d.__setitem__(
            "pre_tokenizer", {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"})))
    with pytest.raises(azr.UnsupportedError, match="model type 'WordPiece'"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"].__setitem__("type", "WordPiece")))
    with pytest.raises(azr.UnsupportedError, match="normalizer type 'Lowercase'"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d.__setitem__("normalizer", {"type": "Lowercase"})))
    with pytest.raises(azr.UnsupportedError, match="decoder type 'WordPiece'"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d.__setitem__("decoder", {"type": "WordPiece"})))
    with pytest.raises(azr.FormatError, match="missing field 'merges'"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"].pop("merges")))
    with pytest.raises(azr.FormatError, match="token 'NOPE' is not in the vocabulary"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["merges"].insert(5, "NOPE a")))
    with pytest.raises(azr.FormatError, match="token 'NOPE' is not in the vocabulary"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["merges"].insert(5, ["a", "NOPE"])))
    with pytest.raises(azr.FormatError, match="merged token 'zq' is not in the vocabulary"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["merges"].append("z q")))
    with pytest.raises(azr.FormatError, match="not two tokens separated by one space"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["merges"].append("a b c")))
    with pytest.raises(azr.FormatError, match="must be a \"a b\" string or a pair"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["merges"].append(7)))
    with pytest.raises(azr.FormatError, match="id of token 'a' must be an integer"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["vocab"].__setitem__("a", "x")))
    with pytest.raises(azr.FormatError, match="id 5 is used by two tokens"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["vocab"].__setitem__("NEWTOK", 5)))
    with pytest.raises(azr.FormatError, match="invalid id 1000000000"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"]["vocab"].__setitem__("NEWTOK", 10 ** 9)))
    with pytest.raises(azr.FormatError, match="invalid id"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["added_tokens"][0].__setitem__("id", 10 ** 9)))
    with pytest.raises(azr.FormatError, match="not valid JSON"):
        Tokenizer.from_pretrained(_write(tmp_path, "[" * 100000 + "]" * 100000))
    with pytest.raises(azr.FormatError, match="unk_token"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["model"].__setitem__("unk_token", "<nope>")))
    with pytest.raises(azr.FormatError, match=r"added_tokens\[0\]: missing field 'id'"):
        Tokenizer.from_hf_json_dict(variant(lambda d: d["added_tokens"][0].pop("id")))
    with pytest.raises(TypeError, match="encode expects str"):
        Tokenizer.from_hf_json_dict(json.loads(raw)).encode(b"bytes")


def _added(content, tid, special=True):
    return {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": special}


def test_added_tokens_that_disagree_with_the_vocabulary_are_refused(tmp_path):
    """An added token that reuses a vocabulary id with other content made the
    id decode as the added token while encoding still produced it for the
    vocabulary text. HF `tokenizers` keeps neither reading: it renumbers the
    added token (checked below), so azr refuses such files, naming the file,
    the token and the id; the forms HF keeps as written still load."""
    base = json.loads(gpt2_style_json("gpt2"))
    vocab = base["model"]["vocab"]
    self_id = vocab["self"]
    fresh = max(list(vocab.values()) + [a["id"] for a in base["added_tokens"]]) + 1
    cases = [
        ([_added("<zz>", self_id)], rf"token '<zz>' has id {self_id}, which the vocabulary gives to 'self'"),
        ([_added("self", fresh)], rf"token 'self' has id {fresh}, but the vocabulary gives it id {self_id}"),
        ([_added("<a>", fresh), _added("<b>", fresh)], rf"id {fresh} is given to two tokens, '<a>' and '<b>'"),
        ([_added("<a>", fresh), _added("<a>", fresh + 1)], rf"token '<a>' appears twice, with ids {fresh} and {fresh + 1}"),
    ]
    for extra, match in cases:
        d = json.loads(json.dumps(base))
        d["added_tokens"] += extra
        p = _write(tmp_path, d) / "tokenizer.json"
        with pytest.raises(azr.FormatError, match=match) as ei:
            Tokenizer.from_pretrained(p)
        assert str(p) in str(ei.value) and "added_tokens" in str(ei.value)
        hf = tokenizers.Tokenizer.from_str(json.dumps(d))  # HF loads it, with other ids
        assert [hf.token_to_id(a["content"]) for a in extra] != [a["id"] for a in extra]
    # what HF keeps as written: an added token on its own vocabulary entry, an exact duplicate
    d = json.loads(json.dumps(base))
    d["added_tokens"] += [_added("self", self_id), _added("<a>", fresh), _added("<a>", fresh)]
    ours, hf = Tokenizer.from_hf_json_dict(d), tokenizers.Tokenizer.from_str(json.dumps(d))
    for text in ("self <a> selfish", "<a>self"):
        ids = hf.encode(text).ids
        assert ours.encode(text, allow_special=True) == ids
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
    assert hf.token_to_id("<a>") == fresh and hf.token_to_id("self") == self_id


def test_malformed_numbers_and_fields_raise_format_error(tmp_path):
    """Each of these raised OverflowError, TypeError or a bare ValueError
    (Python's 4300-digit limit) before, or (a numeric chat_template) was
    silently dropped; now each is a FormatError naming the file and the field."""
    base = json.loads(gpt2_style_json("gpt2"))
    d = tmp_path / "t"
    d.mkdir()
    tj = d / "tokenizer.json"

    def load(obj, config=None):
        tj.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
        tc = d / "tokenizer_config.json"
        if config is None:
            tc.unlink(missing_ok=True)
        elif isinstance(config, bytes):
            tc.write_bytes(config)
        else:
            tc.write_text(config if isinstance(config, str) else json.dumps(config), encoding="utf-8")
        return Tokenizer.from_pretrained(d)

    def edited(fn):
        x = json.loads(json.dumps(base))
        fn(x)
        return x

    cases = [
        (edited(lambda x: x["added_tokens"][0].__setitem__("id", 10 ** 12)), None,
         r"tokenizer\.json: added_tokens: token '<\|endoftext\|>' has invalid id 1000000000000"),
        (edited(lambda x: x["added_tokens"][0].__setitem__("id", -(10 ** 30))), None,
         r"tokenizer\.json: added_tokens: token '<\|endoftext\|>' has invalid id -1000000000000000000000000000000"),
        (edited(lambda x: x["model"]["vocab"].__setitem__("a", 10 ** 30)), None,
         r"tokenizer\.json: vocab: token 'a' has invalid id 1000000000000000000000000000000"),
        (edited(lambda x: (x["model"].__setitem__("unk_token", "a"), x["model"]["vocab"].__setitem__("a", 10 ** 30))),
         None, r"tokenizer\.json: model\.vocab gives the unk_token 'a' the id 10{30}, not an id"),
        (edited(lambda x: (x["model"].__setitem__("unk_token", "a"), x["model"]["vocab"].__setitem__("a", "x"))),
         None, r"tokenizer\.json: model\.vocab gives the unk_token 'a' the id 'x'"),
        (json.dumps(base).replace('"merges":', '"dropout_seed": %s, "merges":' % ("1" * 5000), 1), None,
         r"tokenizer\.json: model\.dropout_seed is an integer of 5000 digits"),
        (base, '{"model_max_length": %s}' % ("9" * 5000),
         r"tokenizer_config\.json: model_max_length is an integer of 5000 digits"),
        (base, {"chat_template": 5}, r"tokenizer_config\.json: chat_template must be a string .* got int 5"),
        (base, {"chat_template": [{"name": "default", "template": 7}]},
         r"tokenizer_config\.json: chat_template\[0\] must be an object with string 'name' and 'template'"),
        (base, b'{"bos_token": "\xff"}', r"tokenizer_config\.json: not valid JSON: the file is not UTF-8"),
    ]
    for obj, config, match in cases:
        with pytest.raises(azr.FormatError, match=match):
            load(obj, config)
    # a chat_template in the dict API is checked too
    with pytest.raises(azr.FormatError, match="chat_template must be a string"):
        Tokenizer.from_hf_json_dict(base, {"chat_template": 3.5})
    # what still loads: a named-template list, no template
    assert load(base, {"chat_template": [{"name": "default", "template": "{{ 1 }}"}]}).chat_template == "{{ 1 }}"
    assert load(base, {"chat_template": None}).chat_template is None


def test_vocab_merges_files_that_python_cannot_read_raise_format_error(shared_data, tmp_path):
    src = shared_data / "tokenizers" / "qwen2.5"
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    for key, match in [("151643x", r"added_tokens_decoder key '151643x' is not a token id"),
                       ("1" * 5000, r"added_tokens_decoder key '1111.* is not a token id")]:
        bad = dict(cfg, added_tokens_decoder={key: {"content": "<x>"}})
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(bad))
        with pytest.raises(azr.FormatError, match=match):
            Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    (tmp_path / "merges.txt").write_bytes(b"#version: 0.2\n\xc4\xa0 t\n\xff\xfe q\n")
    with pytest.raises(azr.FormatError, match=r"merges\.txt: not valid UTF-8"):
        Tokenizer.from_pretrained(tmp_path)


def test_error_messages_cut_inside_a_character_are_still_format_errors():
    """C messages quote at most 64 bytes of a token, which can end inside a
    UTF-8 character: the binding turned such a message into a
    UnicodeDecodeError (an added token like this one raised it)."""
    base = json.loads(gpt2_style_json("gpt2"))
    long = "x" + "é" * 40  # byte 64 is the first half of an 'é'
    d = json.loads(json.dumps(base))
    d["model"]["vocab"][long] = 5
    with pytest.raises(azr.FormatError, match=r"id 5 is used by two tokens \('x(é){31}\ufffd' and another\)"):
        Tokenizer.from_hf_json_dict(d)
    d = json.loads(json.dumps(base))
    d["added_tokens"].append({"id": d["model"]["vocab"]["self"], "content": long, "special": True})
    with pytest.raises(azr.FormatError, match=r"added_tokens: token 'x(é){31}\ufffd' has id"):
        Tokenizer.from_hf_json_dict(d)


def _tinystories_json(shared_data) -> dict:
    return json.loads((shared_data / "models" / "tinystories-656k" / "tokenizer.json").read_text())


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["post_processor"].__setitem__("single", [5]), r"post_processor\.single\[0\]: expected an object"),
    (lambda d: d["post_processor"].__setitem__("single", 7), r"post_processor: field 'single' has type int"),
    (lambda d: d["post_processor"].__setitem__("special_tokens", []), r"field 'special_tokens' has type list"),
    (lambda d: d["post_processor"]["single"][0]["SpecialToken"].__setitem__("id", ["a"]),
     r"post_processor\.single\[0\]: expected a Sequence or a SpecialToken with a string id"),
    (lambda d: d["post_processor"]["special_tokens"]["<|start_story|>"].__setitem__("ids", ["<|start_story|>"]),
     r"special_tokens\['<\|start_story\|>'\]\.ids must be a list of token ids"),
    (lambda d: d["post_processor"]["special_tokens"]["<|start_story|>"].__setitem__("ids", [2**40]),
     r"\.ids must be a list of token ids, got \[1099511627776\]"),
    (lambda d: d.__setitem__("post_processor", {"type": "Sequence", "processors": 3}),
     r"post_processor: field 'processors' has type int"),
    (lambda d: d["decoder"]["decoders"][3].__setitem__("start", "a b"),
     r"decoder\.decoders\[3\]: Strip decoder field 'start' must be a count of characters, got 'a b'"),
    (lambda d: d["decoder"]["decoders"][3].__setitem__("start", 2**64 + 8), r"field 'start' must be a count"),
], ids=["single-int", "single-not-list", "special-tokens-list", "id-list", "ids-strings", "ids-huge",
        "processors-int", "strip-start-str", "strip-start-huge"])
def test_hostile_post_processor_and_decoder_fields_raise_format_error(shared_data, tmp_path, edit, match):
    """Each raised TypeError, AttributeError, ValueError or (through the
    binding) a TypeError before; found by tests/test_format_fuzz.py."""
    d = _tinystories_json(shared_data)
    edit(d)
    with pytest.raises(azr.FormatError, match=match) as ei:
        Tokenizer.from_pretrained(_write(tmp_path, d))
    assert str(tmp_path / "tokenizer.json") in str(ei.value)


def test_lone_surrogates_in_tokenizer_files_raise_format_error(shared_data, tmp_path):
    """A \\ud800 escape alone decodes to a str Python cannot encode as UTF-8:
    the binding raised UnicodeEncodeError. HF (serde_json) refuses the file;
    azr names the field. Pairs (an escaped emoji) still load."""
    d = _tinystories_json(shared_data)
    d["model"]["vocab"]["ab\ud800"] = len(d["model"]["vocab"])
    with pytest.raises(azr.FormatError, match=r"tokenizer\.json: a key of model\.vocab holds a lone UTF-16 surrogate"):
        Tokenizer.from_pretrained(_write(tmp_path, json.dumps(d)))  # ensure_ascii: written as \ud800
    d = _tinystories_json(shared_data)
    d["added_tokens"][1]["content"] = "\udc00<x>"
    with pytest.raises(azr.FormatError, match=r"added_tokens\[1\]\.content holds a lone UTF-16 surrogate"):
        Tokenizer.from_pretrained(_write(tmp_path, json.dumps(d)))
    with pytest.raises(azr.FormatError, match="added token .* holds a lone UTF-16 surrogate"):
        Tokenizer.from_hf_json_dict(d)  # the dict API, through the binding
    d = _tinystories_json(shared_data)
    d["model"]["vocab"]["x\U0001F600"] = len(d["model"]["vocab"])
    assert "\\ud83d\\ude00" in json.dumps(d)
    tok = Tokenizer.from_pretrained(_write(tmp_path, json.dumps(d)))
    assert tok.token_to_id("x\U0001F600") == len(d["model"]["vocab"]) - 1


# ------------------------------------------------------------------ SentencePiece byte fallback

def _spm_with_bytes(shared_data, byte_values):
    """TinyStories' tokenizer.json with <0xXX> tokens added to the vocabulary for
    the given byte values (TinyStories itself has none, so everything unknown is
    <unk>): exercises byte fallback, and with a partial set its interplay with
    fused unk."""
    d = json.loads((shared_data / "models" / "tinystories-656k" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = d["model"]["vocab"]
    nid = max(vocab.values()) + 1
    for b in byte_values:
        vocab[f"<0x{b:02X}>"] = nid
        nid += 1
    return json.dumps(d)


@pytest.mark.parametrize("which", ["all_bytes", "some_bytes"])
def test_sentencepiece_byte_fallback_matches_hf(shared_data, which):
    byte_values = range(256) if which == "all_bytes" else [b for b in range(256) if b < 0xE0 and b % 5]
    js = _spm_with_bytes(shared_data, byte_values)
    hf = tokenizers.Tokenizer.from_str(js)
    ours = Tokenizer.from_hf_json_dict(json.loads(js))

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(texts_strategy)
    def check(text):
        ids = ours.encode(text)
        assert ids == hf_ids(hf, text), repr(text)
        whole = ours.decode(ids)
        assert whole == hf.decode(ids, skip_special_tokens=False)
        if which == "all_bytes" and "\u2581" not in text:
            assert whole == text
        sd = ours.stream_decoder()
        assert "".join(sd.push(i) for i in ids) + sd.flush() == whole

    check()
    # arbitrary byte-token runs (invalid UTF-8 groups -> one U+FFFD per byte, as HF)
    rng = random.Random(7)
    byte_ids = [ours.token_to_id(f"<0x{b:02X}>") for b in byte_values]
    for _ in range(200):
        ids = [rng.choice(byte_ids + [80, 81, 127]) for _ in range(rng.randrange(1, 12))]
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)
        sd = ours.stream_decoder()
        assert "".join(sd.push(i) for i in ids) + sd.flush() == ours.decode(ids)


@pytest.mark.parametrize("kind", ["qwen2", "llama3", "gpt2", "smollm"])
def test_hf_pre_tokenizer_json_builds_the_same_tokenizer_as_hf(kind, shared_data):
    from azr.tokenizer import hf_pre_tokenizer_json

    d = json.loads(gpt2_style_json("gpt2"))
    d["pre_tokenizer"] = hf_pre_tokenizer_json(kind)
    js = json.dumps(d)
    hf = tokenizers.Tokenizer.from_str(js)
    ours = Tokenizer.from_hf_json_dict(json.loads(js))
    inp, _ = read_vectors(shared_data, "llama-bpe")
    for text in inp + ["x 1234567 y", "it's 'S", "a\r\n\r\n  b"]:
        assert ours.encode(text) == hf_ids(hf, text), (kind, text)
    with pytest.raises(ValueError, match="unknown pre-tokenizer kind"):
        hf_pre_tokenizer_json("bert")


def test_concurrent_python_threads_share_one_tokenizer(shared_data):
    from concurrent.futures import ThreadPoolExecutor

    ours, _ = load_pair(str(shared_data), "llama3.1")
    texts = list(stdlib_corpus())[:120]
    want = [ours.encode(t) for t in texts]
    with ThreadPoolExecutor(max_workers=6) as ex:   # the GIL is released while encoding
        got = list(ex.map(ours.encode, texts))
        batches = list(ex.map(ours.encode_batch, [texts[:40], texts[40:80], texts[80:]]))
    assert got == want
    assert [x for b in batches for x in b] == want


@pytest.mark.parametrize("scheme,split", [("first", False), ("first", True), ("always", True), ("always", False),
                                          ("never", True)])
def test_metaspace_pre_tokenizer_matches_hf(shared_data, scheme, split):
    """Llama-2 / Mistral style SentencePiece files: no normaliser, a Metaspace
    pre-tokenizer (prepend_scheme 'first' only prepends at the start of the text,
    not after an added token)."""
    d = json.loads(_spm_with_bytes(shared_data, range(256)))
    d["normalizer"] = None
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}
    for a in d["added_tokens"]:
        a["normalized"] = False
    js = json.dumps(d)
    hf = tokenizers.Tokenizer.from_str(js)
    ours = Tokenizer.from_hf_json_dict(json.loads(js))

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(texts_strategy, st.booleans())
    def check(text, allow_special):
        ids = ours.encode(text, allow_special=allow_special)
        assert ids == hf_ids(hf, text, allow_special), repr(text)
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=False)

    check()
    for text in ["<|start_story|>Once upon", " two  spaces ", "\u2581already", "<unk> x<|end_story|> y"]:
        assert ours.encode(text, allow_special=True) == hf_ids(hf, text, True), text
