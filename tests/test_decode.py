import numpy as np

from qa.reader.decode import best_spans

NEG = -10.0


def logits(length, peaks):
    x = np.full(length, NEG, dtype=np.float32)
    for i, v in peaks.items():
        x[i] = v
    return x


def test_known_best_span_is_found():
    start = logits(10, {3: 5.0, 6: 1.0})
    end = logits(10, {5: 4.0, 8: 2.0})
    mask = np.ones(10, bool)
    s, e, sc = best_spans(start[None], end[None], mask[None], max_answer_tokens=30, n_best=3)
    assert (s[0, 0], e[0, 0], sc[0, 0]) == (3, 5, 9.0)
    assert (s[0, 1], e[0, 1], sc[0, 1]) == (3, 8, 7.0)
    assert list(sc[0]) == sorted(sc[0], reverse=True)


def test_end_before_start_is_excluded():
    start = logits(8, {5: 10.0, 1: -1.0})
    end = logits(8, {2: 10.0, 6: 0.0})
    s, e, sc = best_spans(start[None], end[None], np.ones((1, 8), bool), 30, 1)
    # (5, 2) would score 20 but ends before it starts
    assert (s[0, 0], e[0, 0], sc[0, 0]) == (5, 6, 10.0)


def test_spans_in_question_or_padding_are_excluded():
    # tokens 0-3: [CLS] question [SEP]; 4-7: passage; 8-9: [SEP] and padding
    mask = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 0, 0]], bool)
    start = logits(10, {1: 50.0, 5: 1.0, 9: 50.0})
    end = logits(10, {2: 50.0, 6: 1.0, 9: 50.0})
    s, e, sc = best_spans(start[None], end[None], mask, 30, 20)
    valid = np.isfinite(sc[0])
    assert (s[0, 0], e[0, 0]) == (5, 6)
    assert valid.sum() == 10  # all spans inside tokens 4..7: 4+3+2+1
    assert mask[0, s[0, valid]].all() and mask[0, e[0, valid]].all()


def test_max_answer_length_is_respected():
    start = logits(50, {2: 10.0, 30: 1.0})
    end = logits(50, {40: 10.0, 33: 1.0})
    s, e, sc = best_spans(start[None], end[None], np.ones((1, 50), bool), max_answer_tokens=5, n_best=50)
    valid = np.isfinite(sc[0])
    assert (e[0, valid] - s[0, valid] < 5).all() and (e[0, valid] >= s[0, valid]).all()
    assert (s[0, 0], e[0, 0]) == (30, 33)  # (2, 40) is 39 tokens long


def test_batched_equals_one_by_one_and_matches_brute_force():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 40)).astype(np.float32)
    end = rng.normal(size=(4, 40)).astype(np.float32)
    mask = rng.random((4, 40)) > 0.3
    s, e, sc = best_spans(start, end, mask, max_answer_tokens=6, n_best=5)
    for b in range(4):
        brute = sorted(
            (start[b, i] + end[b, j], i, j)
            for i in range(40)
            for j in range(i, min(i + 6, 40))
            if mask[b, i] and mask[b, j]
        )[::-1][:5]
        assert np.allclose(sc[b], [x[0] for x in brute])
        one = best_spans(start[b : b + 1], end[b : b + 1], mask[b : b + 1], 6, 5)
        assert np.array_equal(one[0][0], s[b]) and np.array_equal(one[1][0], e[b])
