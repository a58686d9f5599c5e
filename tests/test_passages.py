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
