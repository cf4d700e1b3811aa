"""The joint linear fit: each geometry recovers what it models, weights and clipping work,
groups are tied to the reference and to each other."""
from __future__ import annotations

import numpy as np
import pytest

from aligner.fit import REFERENCE, Links, decompose, joint_fit


def _rot(deg):
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _observe(stars, matrix, shift, noise, rng):
    """Image positions whose correction p -> matrix p + shift gives the stars back."""
    return (stars - shift) @ np.linalg.inv(matrix).T + rng.normal(0, noise, stars.shape)


def _to_ref(group, obs, ref, w=None):
    n = len(obs)
    return Links(np.full(n, group), obs, np.full(n, REFERENCE), ref, np.ones(n) if w is None else w,
                 np.arange(n), np.arange(n))


MODELS = {
    "shift": (np.eye(2), np.array([0.4, -0.7])),
    "rshift": (_rot(0.015), np.array([-0.3, 0.5])),
    "rscale": (1.0002 * _rot(-0.01), np.array([0.2, 0.9])),
    "general": (np.array([[1.0001, 0.0002], [-0.0001, 0.9998]]) @ _rot(0.02), np.array([0.6, 0.1])),
}


@pytest.mark.parametrize("geom", list(MODELS))
def test_each_geometry_recovers_what_it_models(geom):
    rng = np.random.default_rng(1)
    stars = rng.uniform(-60, 60, (800, 2))
    m, s = MODELS[geom]
    obs = _observe(stars, m, s, 0.0005, rng)
    f = joint_fit(_to_ref(0, obs, stars), [0], {0: obs.mean(0)}, geom)
    t = f.transforms[0]
    assert np.allclose(t.matrix, m, atol=2e-6) and np.allclose(t.shift, s, atol=1e-4)
    assert f.rmse < 0.001


def test_rshift_ignores_a_scale_it_does_not_model_and_general_fits_it():
    rng = np.random.default_rng(2)
    stars = rng.uniform(-60, 60, (500, 2))
    obs = _observe(stars, 1.001 * _rot(0.01), np.array([0.1, 0.2]), 0.0, rng)
    rs = joint_fit(_to_ref(0, obs, stars), [0], {0: np.zeros(2)}, "rshift", nclip=0)
    assert decompose(rs.transforms[0].matrix)["geomean_scale"] == pytest.approx(1.0)
    gen = joint_fit(_to_ref(0, obs, stars), [0], {0: np.zeros(2)}, "general", nclip=0)
    assert decompose(gen.transforms[0].matrix)["geomean_scale"] == pytest.approx(1.001, abs=1e-9)
    assert decompose(gen.transforms[0].matrix)["rotation"] == pytest.approx(0.01, abs=1e-7)


def test_clipping_removes_outliers_and_clip_accum_keeps_them_out():
    rng = np.random.default_rng(3)
    stars = rng.uniform(-60, 60, (400, 2))
    obs = _observe(stars, _rot(0.01), np.array([0.3, 0.3]), 0.002, rng)
    obs[:20] += rng.uniform(0.2, 0.5, (20, 2))  # mismatches
    naive = joint_fit(_to_ref(0, obs, stars), [0], {0: np.zeros(2)}, "rshift", nclip=0)
    clipped = joint_fit(_to_ref(0, obs, stars), [0], {0: np.zeros(2)}, "rshift", nclip=3, sigma=3.0)
    assert not clipped.used[:20].any() and clipped.used[20:].mean() > 0.98
    assert np.abs(clipped.transforms[0].shift - [0.3, 0.3]).max() < 0.001 < np.abs(naive.transforms[0].shift - [0.3, 0.3]).max()
    acc = joint_fit(_to_ref(0, obs, stars), [0], {0: np.zeros(2)}, "rshift", nclip=3, clip_accum=True)
    assert not acc.used[:20].any()
    # Clipping never leaves fewer than minobj links.
    few = joint_fit(_to_ref(0, obs[:30], stars[:30]), [0], {0: np.zeros(2)}, "rshift", nclip=3, minobj=25)
    assert few.used.sum() >= 25


@pytest.mark.parametrize("n_true", [5, 8, 12])
def test_one_wrong_pair_among_a_few_is_clipped(n_true):
    # A sparse field: a handful of true pairs at 2 mas and one chance pair 0.5" off. Against the
    # rmse of all links it hides itself (among 9 links its residual is ~0.89 of its offset, 3 x
    # rmse ~1.0); against the rmse of the others it stands out.
    rng = np.random.default_rng(n_true)
    stars = rng.uniform(-50, 50, (n_true + 1, 2))
    obs = _observe(stars, _rot(0.005), np.array([1.0, -2.0]), 0.002, rng)
    obs[-1] += [0.35, -0.35]
    fit = joint_fit(_to_ref(0, obs, stars), [0], {0: np.zeros(2)}, "rshift", nclip=3, sigma=3.0, minobj=5)
    assert fit.used[:-1].all() and not fit.used[-1]
    assert np.abs(fit.transforms[0].shift - [1.0, -2.0]).max() < 0.01


def test_weights_pull_the_fit():
    rng = np.random.default_rng(4)
    stars = rng.uniform(-60, 60, (200, 2))
    obs = _observe(stars, np.eye(2), np.array([0.1, 0.0]), 0.0, rng)
    ref = stars.copy()
    ref[100:] += [0.05, 0.0]  # half the reference is off by 50 mas
    w = np.r_[np.full(100, 1000.0), np.full(100, 0.001)]
    f = joint_fit(_to_ref(0, obs, ref, w), [0], {0: np.zeros(2)}, "shift", nclip=0)
    assert f.transforms[0].shift[0] == pytest.approx(0.1, abs=1e-5)
    f1 = joint_fit(_to_ref(0, obs, ref), [0], {0: np.zeros(2)}, "shift", nclip=0)
    assert f1.transforms[0].shift[0] == pytest.approx(0.125, abs=1e-9)


def test_joint_fit_ties_a_group_without_reference_stars_through_its_neighbour():
    rng = np.random.default_rng(5)
    stars = rng.uniform(-60, 60, (600, 2))
    t0, t1 = (_rot(0.01), np.array([0.5, -0.2])), (_rot(-0.02), np.array([-0.4, 0.3]))
    a = _observe(stars, *t0, 0.001, rng)
    b = _observe(stars, *t1, 0.001, rng)
    n = len(stars)
    links = Links.concat([
        _to_ref(0, a[:300], stars[:300]),  # only group 0 sees reference stars
        Links(np.zeros(n, np.intp), a, np.ones(n, np.intp), b, np.ones(n), np.arange(n), np.arange(n)),
    ])
    f = joint_fit(links, [0, 1], {0: np.zeros(2), 1: np.zeros(2)}, "rshift")
    for g, (m, s) in ((0, t0), (1, t1)):
        assert np.allclose(f.transforms[g].matrix, m, atol=1e-6) and np.allclose(f.transforms[g].shift, s, atol=2e-4)


def test_links_in_any_order_give_the_same_fit_and_per_link_results():
    # The fit works on runs of links between the same two groups; shuffled links (many short
    # runs) are sorted first and the residuals / used flags come back in the given order.
    rng = np.random.default_rng(6)
    stars = rng.uniform(-60, 60, (500, 2))
    t0, t1 = (_rot(0.01), np.array([0.5, -0.2])), (_rot(-0.02), np.array([-0.4, 0.3]))
    a, b = _observe(stars, *t0, 0.001, rng), _observe(stars, *t1, 0.001, rng)
    a[:10] += 0.5  # outliers, clipped
    n = len(stars)
    links = Links.concat([_to_ref(0, a, stars), _to_ref(1, b, stars),
                          Links(np.zeros(n, np.intp), a, np.ones(n, np.intp), b, np.ones(n), np.arange(n),
                                np.arange(n))])
    centers = {0: np.zeros(2), 1: np.zeros(2)}
    runs = joint_fit(links, [0, 1], centers, "rshift")
    perm = rng.permutation(len(links))
    shuffled = joint_fit(links.subset(perm), [0, 1], centers, "rshift")
    for g in (0, 1):
        assert np.allclose(runs.transforms[g].matrix, shuffled.transforms[g].matrix, atol=1e-12)
        assert np.allclose(runs.transforms[g].shift, shuffled.transforms[g].shift, atol=1e-10)
    assert np.array_equal(runs.used[perm], shuffled.used) and not runs.used[:10].any()
    assert np.allclose(runs.residuals[perm], shuffled.residuals, atol=1e-10)


def test_unknown_geometry_is_an_error():
    with pytest.raises(ValueError, match="fitgeometry"):
        joint_fit(Links.concat([]), [], {}, "affine")


def test_affine_is_matrix_times_points_plus_shift():
    from aligner.fit import affine

    rng = np.random.default_rng(8)
    m = np.array([[1.0002, -3e-4], [2.5e-4, 0.9997]])
    s = np.array([0.31, -0.72])
    p = rng.uniform(-400, 400, (5000, 2))
    np.testing.assert_allclose(affine(p, m, s), p @ m.T + s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(affine(p[7], m, s), m @ p[7] + s, rtol=0, atol=1e-12)
    assert affine(np.empty((0, 2)), m, s).shape == (0, 2)
    strided = p[::3]                                     # a view, as the fit passes slices
    np.testing.assert_allclose(affine(strided, m, s), strided @ m.T + s, rtol=0, atol=1e-12)


@pytest.mark.parametrize("geom", list(MODELS))
def test_a_step_from_moments_is_the_gauss_newton_step_over_every_link(geom):
    """The step from the segments' moments equals the one from the per-link residuals and a
    numerical Jacobian: two free groups with centres far from the plane's origin, links to
    the reference (fixed) and between them, weights, at parameters away from the solution."""
    from aligner.fit import NPARAMS, _Model, _solve_step

    rng = np.random.default_rng(9)
    stars = rng.uniform(300, 420, (400, 2))  # ~500" from the origin, as a mosaic's edge
    a = _observe(stars, 1.0001 * _rot(0.02), np.array([0.3, -0.1]), 0.002, rng)
    b = _observe(stars, _rot(-0.01), np.array([-0.2, 0.4]), 0.002, rng)
    n = len(stars)
    w = rng.uniform(0.2, 1.0, 3 * n)
    links = Links.concat([_to_ref(0, a, stars), _to_ref(1, b[:250], stars[:250]),
                          Links(np.zeros(n, np.intp), a, np.ones(n, np.intp), b, np.ones(n), np.arange(n),
                                np.arange(n))])
    links.w[:] = w[:len(links)]
    model = _Model(geom, [0, 1], {0: a.mean(0), 1: b.mean(0)}, links)
    k = NPARAMS[geom]
    model.params += rng.normal(0, 1e-3, model.params.shape)  # not at the solution
    step = _solve_step(model, model.moments(links.w))

    base = model.params.copy()
    r0 = model.residuals().ravel()
    jac = np.empty((len(r0), 2 * k))
    for i in range(2 * k):
        model.params = base.copy()
        model.params.flat[i] += 1e-6
        jac[:, i] = (model.residuals().ravel() - r0) / 1e-6
    model.params = base
    sw = np.sqrt(np.repeat(links.w, 2))
    expected = np.linalg.lstsq(jac * sw[:, None], -r0 * sw, rcond=None)[0].reshape(2, k)
    np.testing.assert_allclose(step, expected, rtol=1e-5, atol=1e-9)
