import importlib.util

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.indexer.passages import split_passages

texts = st.text(alphabet=st.sampled_from(list("ab é,.\n\t") + ["Ж", "😀"]), max_size=400)


@settings(max_examples=200, deadline=None)
@given(text=texts, max_words=st.integers(1, 20), overlap=st.integers(0, 19))
def test_passages_are_the_text_at_their_offsets_and_cover_every_word(text, max_words, overlap):
    overlap = min(overlap, max_words - 1)
    spans = list(split_passages(text, max_words, overlap))
    words = text.split()
    if not words:
        assert spans == []
        return
    covered = []
    for span in spans:
        passage = text[span.start : span.end]
        assert passage == passage.strip() and passage
        assert len(passage.split()) <= max_words
        covered.append(passage.split())
    # windows start at the first word, end at the last, and consecutive ones share `overlap` words
    assert spans[0].start == text.index(words[0])
    assert spans[-1].end == len(text.rstrip())
    for a, b in zip(covered, covered[1:]):
        assert len(a) == max_words
        assert a[max_words - overlap :] == b[:overlap]
    assert sum(len(c) for c in covered) - overlap * (len(covered) - 1) == len(words)


def test_window_boundaries_on_a_known_text():
    text = "one two three four five six seven"
    spans = [text[s.start : s.end] for s in split_passages(text, max_words=3, overlap_words=1)]
    assert spans == ["one two three", "three four five", "five six seven"]


def test_invalid_window_settings_raise():
    with pytest.raises(ValueError):
        list(split_passages("a b", max_words=0))
    with pytest.raises(ValueError):
        list(split_passages("a b", max_words=3, overlap_words=3))


def _chars_per_3(text, words):  # a stand-in tokenizer: one token per 3 characters of a word
    return [-(-(e - s) // 3) for s, e in words]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab é,.!?\n\t\"") + ["Ж", "😀"]), max_size=600),
    max_tokens=st.integers(1, 40),
    overlap=st.integers(0, 39),
    sentence_aware=st.booleans(),
)
def test_token_windows_are_whole_words_within_budget_and_cover_the_text(text, max_tokens, overlap, sentence_aware):
    from qa.indexer.passages import _WORD, split_token_windows

    overlap = min(overlap, max_tokens - 1)
    spans = list(split_token_windows(text, _chars_per_3, max_tokens, overlap, sentence_aware))
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        assert spans == []
        return
    starts, ends = {s for s, _ in words}, {e for _, e in words}
    covered = set()
    for span in spans:
        inside = [(s, e) for s, e in words if span.start <= s and e <= span.end]
        assert span.start in starts and span.end in ends and inside
        assert len(inside) == 1 or sum(_chars_per_3(text, inside)) <= max_tokens
        covered.update(inside)
    assert covered == set(words)
    assert all(a.start < b.start <= a.end + 1 or text[a.end : b.start].isspace() for a, b in zip(spans, spans[1:]))


def test_token_windows_end_and_start_at_sentences():
    from qa.indexer.passages import split_token_windows

    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    spans = [text[s.start : s.end] for s in split_token_windows(text, lambda t, w: [1] * len(w), max_tokens=7, overlap_tokens=3)]
    assert spans == ["One two three. Four five six.", "Four five six. Seven eight nine.", "Seven eight nine. Ten eleven twelve."]


def _counts_by_transformers(tokenizer, text, words):  # what tokenizer_counter counted with before: transformers' call
    lo, hi = words[0][0], words[-1][1]
    offsets = tokenizer(text[lo:hi], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    starts = [lo + s for s, e in offsets if e > s]
    return [sum(s <= start < e for start in starts) for s, e in words]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab Towerparis é,.!?-'\n\t\"1889") + ["Ж", "😀", "北", "京", "ﬁ", "Å", "\u0301"]),
                    max_size=300))
def test_token_counts_are_those_of_the_transformers_tokenizer(tiny_models, text):
    from transformers import AutoTokenizer

    from qa import bert
    from qa.indexer.passages import _WORD, tokenizer_counter

    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if words:
        count = tokenizer_counter(bert.load_tokenizer(tiny_models["encoder"]))
        assert count(text, words) == _counts_by_transformers(AutoTokenizer.from_pretrained(tiny_models["encoder"]), text, words)


def test_token_counts_are_those_of_the_transformers_tokenizer_for_minilm(minilm_path):
    from transformers import AutoTokenizer

    from qa.embedding import Embedder
    from qa.indexer.passages import _WORD, tokenizer_counter

    text = ("Interleukin-6 (IL-6) and TNF-α rose in 41% of SARS-CoV-2 patients [12]; Åkesson et al. (2020) "
            "found ﬁbrosis — 北京 cohort, n = 1,099. Naïve T-cells?! ") * 3
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    expected = _counts_by_transformers(AutoTokenizer.from_pretrained(minilm_path), text, words)
    backends = ["torch"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    for backend in backends:  # sentence-transformers' tokenizer (copied), or the folder's tokenizer.json (qa.bert)
        assert tokenizer_counter(Embedder(str(minilm_path), precision="fp32", backend=backend).tokenizer)(text, words) == expected
