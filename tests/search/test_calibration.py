"""Calibrated fusion, checked against plain numpy written out by hand."""

import numpy as np
import pytest

from search.calibration import (Separation, best_per_owner, fuse_parts, informed_share, lexical_z, photo_separation,
                                reference_moments, side_cosines, standardise)


def unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def test_side_cosines_take_each_products_best_image_and_mark_missing_sides():
    terms = unit([[1, 0, 0], [0, 1, 0]])
    text = unit([[1, 1, 0], [0, 0, 1], [1, 0, 0]])
    has_text = np.array([True, True, False])
    images = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    owner = np.array([0, 0, 1])
    text_cos, image_cos = side_cosines(terms, text, has_text, images, owner)
    assert text_cos.shape == image_cos.shape == (2, 3)
    np.testing.assert_allclose(text_cos[:, :2], terms @ text[:2].T, atol=1e-6)
    assert np.isnan(text_cos[:, 2]).all()
    np.testing.assert_allclose(image_cos[:, 0], [1.0, 1.0], atol=1e-6)  # both terms find their image of product 0
    np.testing.assert_allclose(image_cos[:, 1], [0.0, 0.0], atol=1e-6)
    assert np.isnan(image_cos[:, 2]).all()  # product 2 has no image


def test_best_per_owner_matches_a_loop():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(3, 20)).astype(np.float32)
    owner = rng.integers(0, 6, size=20)
    got = best_per_owner(sims, owner, 7)
    for t in range(3):
        for p in range(7):
            mine = sims[t][owner == p]
            assert (np.isnan(got[t, p]) if not len(mine) else got[t, p] == mine.max())


def test_standardise_is_a_z_score_against_the_reference_sample():
    rng = np.random.default_rng(1)
    ref_text, ref_image = rng.normal(0.2, 0.1, (2, 50)), rng.normal(0.6, 0.3, (2, 50))
    ref_image[0, :5] = np.nan
    moments = reference_moments(ref_text, ref_image)
    np.testing.assert_allclose(moments.text_mean, ref_text.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(moments.text_std, ref_text.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(moments.image_mean[0], np.nanmean(ref_image[0]), rtol=1e-5)
    np.testing.assert_allclose(moments.image_std[0], np.nanstd(ref_image[0]), rtol=1e-5)
    text_cos = np.array([[0.3, 0.5, np.nan], [0.1, 0.2, 0.3]], np.float32)
    image_cos = np.array([[0.9, np.nan, 0.6], [0.2, 0.4, 0.6]], np.float32)
    z_text, z_image = standardise(text_cos, image_cos, moments)
    expect_text = (text_cos - ref_text.mean(axis=1)[:, None]) / ref_text.std(axis=1)[:, None]
    expect_image = (image_cos - np.nanmean(ref_image, axis=1)[:, None]) / np.nanstd(ref_image, axis=1)[:, None]
    np.testing.assert_allclose(z_text[1], expect_text[1], rtol=1e-5)
    np.testing.assert_allclose(z_image[1], expect_image[1], rtol=1e-5)
    assert z_text[0, 2] == pytest.approx(expect_image[0, 2], rel=1e-5)  # no text: the image side's z
    assert z_image[0, 1] == pytest.approx(expect_text[0, 1], rel=1e-5)  # no image: the text side's z


def test_a_side_that_does_not_spread_is_not_amplified():
    moments = reference_moments(np.full((1, 10), 0.5), np.full((1, 10), 0.5))
    z_text, _ = standardise(np.array([[0.5001]]), np.array([[0.5]]), moments)
    assert abs(z_text[0, 0]) < 0.2


def test_lexical_z_is_a_capped_z_score_over_the_catalog():
    matched = np.array([12.0, 6.0, 3.0])
    bm25 = np.array([12.0, np.nan, 3.0], np.float32)
    got = lexical_z(bm25, matched, matches=3, products=100, cap=50)
    scores = np.zeros(100)
    scores[:3] = matched
    expect = (np.array([12.0, 3.0]) - scores.mean()) / scores.std()
    np.testing.assert_allclose(got[[0, 2]], expect, rtol=1e-5)
    assert got[1] == 0.0
    assert lexical_z(bm25, matched, matches=3, products=100, cap=2.0).max() == 2.0
    # when every product matches, a score at the catalog's typical level lifts nothing
    common = lexical_z(bm25, matched, matches=100, products=100, cap=50)
    assert common[2] == 0.0 < got[2]
    assert lexical_z(bm25, np.array([]), matches=0, products=100).tolist() == [0.0, 0.0, 0.0]


def test_fused_is_the_weighted_sum_of_its_parts():
    rng = np.random.default_rng(2)
    z_text, z_image = rng.normal(size=(2, 5)).astype(np.float32), rng.normal(size=(2, 5)).astype(np.float32)
    weights, shares = np.array([1.0, -0.5]), np.array([0.5, 0.9])
    lexical, field = rng.random(5).astype(np.float32), rng.random(5).astype(np.float32)
    parts = fuse_parts(z_text, z_image, weights, shares, lexical=lexical, lexical_weight=0.5, field=field, field_weight=3.0)
    w = weights / np.abs(weights).sum()
    np.testing.assert_allclose(parts.image, (w * shares) @ z_image, rtol=1e-5)
    np.testing.assert_allclose(parts.text, (w * (1 - shares)) @ z_text, rtol=1e-5)
    np.testing.assert_allclose(parts.lexical, 0.5 * lexical, rtol=1e-6)
    np.testing.assert_allclose(parts.field, 3.0 * field, rtol=1e-6)
    np.testing.assert_allclose(parts.fused, parts.image + parts.text + parts.lexical + parts.field, rtol=1e-6)


def test_photo_separation_measures_how_far_a_photo_lifts_its_own_product():
    rng = np.random.default_rng(3)
    n, d = 30, 16
    centres = unit(rng.normal(size=(n, d)))
    text = unit(centres + 0.3 * rng.normal(size=(n, d)))
    owner = np.repeat(np.arange(n), 2)
    images = unit(centres[owner] + 0.3 * rng.normal(size=(2 * n, d)))
    sep = photo_separation(text, np.ones(n, bool), images, owner)
    # by hand: product p's first photo against every text / every other product's best photo
    zs_text, zs_image = [], []
    for p in range(n):
        q = images[2 * p]
        t = text @ q
        zs_text.append((t[p] - np.delete(t, p).mean()) / np.delete(t, p).std())
        sims = images @ q
        sims[2 * p] = -np.inf
        best = np.array([sims[owner == o].max() for o in range(n)])
        zs_image.append((best[p] - np.delete(best, p).mean()) / np.delete(best, p).std())
    assert sep.text == pytest.approx(np.mean(zs_text), rel=1e-4)
    assert sep.image == pytest.approx(np.mean(zs_image), rel=1e-4)
    useless = photo_separation(unit(rng.normal(size=(n, d))), np.ones(n, bool), images, owner)
    assert useless.text < 1.0 < useless.image


def test_informed_share_discounts_an_uninformative_side():
    assert informed_share(0.8, Separation(image=3.0, text=3.0)) == pytest.approx(0.8)
    assert informed_share(0.8, Separation(image=3.0, text=0.0)) == pytest.approx(0.8 * 4 / (0.8 * 4 + 0.2 * 1))
    assert 0.75 < informed_share(0.8, Separation(image=0.0, text=0.04)) < 0.8  # noise is not a verdict
    assert informed_share(0.0, Separation(image=5.0, text=0.0)) == 0.0
