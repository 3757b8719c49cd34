import numpy as np
import pytest

from search.fusion import FusionError, align_scores, combine_terms, fuse, modality_scores, normalise_lexical, top_k


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_combine_terms_is_the_normalised_weighted_sum():
    e = np.stack([unit([1, 0, 0]), unit([0, 1, 0]), unit([1, 1, 1])])
    w = np.array([1.0, 0.5, -0.3])
    expected = (e * w[:, None]).sum(0)
    np.testing.assert_allclose(combine_terms(e, w), expected / np.linalg.norm(expected), rtol=1e-6)


def test_negative_weight_moves_the_query_away():
    red, dress = unit([1, 0.2, 0]), unit([0.2, 1, 0])
    q_plain = combine_terms(np.stack([dress]), np.array([1.0]))
    q_not_red = combine_terms(np.stack([dress, red]), np.array([1.0, -0.5]))
    assert q_not_red @ red < q_plain @ red


def test_cancelling_terms_raise():
    v = unit([1, 2, 3])
    with pytest.raises(FusionError):
        combine_terms(np.stack([v, v]), np.array([1.0, -1.0]))


def test_modality_scores_take_the_best_image_per_product():
    q = unit([1, 0])
    text = np.stack([unit([1, 1]), np.zeros(2, np.float32), unit([0, 1])])
    has_text = np.array([True, False, True])
    images = np.stack([unit([0, 1]), unit([1, 0.1]), unit([1, 1]), unit([-1, 0])])
    owner = np.array([0, 0, 1, 1])
    text_s, image_s, best = modality_scores(q, text, has_text, images, owner)
    np.testing.assert_allclose(text_s[[0, 2]], [text[0] @ q, 0.0], atol=1e-6)
    assert np.isnan(text_s[1])
    np.testing.assert_allclose(image_s[:2], [images[1] @ q, images[2] @ q], rtol=1e-6)
    assert list(best) == [1, 2, -1] and np.isnan(image_s[2])


def test_fuse_weights_and_missing_modalities():
    text = np.array([0.2, np.nan, 0.4], np.float32)
    image = np.array([0.6, 0.5, np.nan], np.float32)
    np.testing.assert_allclose(fuse(text, image, 0.75), [0.75 * 0.6 + 0.25 * 0.2, 0.5, 0.4], rtol=1e-6)
    np.testing.assert_allclose(fuse(text, image, 0.0), [0.2, 0.5, 0.4], rtol=1e-6)
    with pytest.raises(ValueError):
        fuse(text, image, 1.5)


def test_top_k_orders_by_score_then_id_and_pages():
    ids = np.array([5, 3, 9, 1])
    scores = np.array([0.5, 0.9, 0.5, np.nan], np.float32)
    assert list(ids[top_k(ids, scores, 3)]) == [3, 5, 9]
    assert list(ids[top_k(ids, scores, 2, offset=1)]) == [5, 9]


def test_lexical_part_is_normalised_and_weighted():
    text = np.array([0.2, 0.3, 0.1], np.float32)
    image = np.array([0.4, 0.1, 0.5], np.float32)
    raw = align_scores(np.array([7, 3, 9]), np.array([9, 7]), np.array([2.0, 8.0], np.float32))
    assert np.isnan(raw[1]) and raw[0] == 8.0 and raw[2] == 2.0
    lexical = normalise_lexical(raw)
    np.testing.assert_allclose(lexical[[0, 2]], [1.0, 0.25])
    expected = 0.5 * image + 0.5 * text + 0.2 * np.array([1.0, 0.0, 0.25])
    np.testing.assert_allclose(fuse(text, image, 0.5, lexical=lexical, lexical_weight=0.2), expected, rtol=1e-6)
