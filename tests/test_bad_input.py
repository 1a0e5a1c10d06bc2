"""Bad input gives a clear error naming the argument, block or entry; awkward but legal input
(non-finite f at some perturbed points, size-1 array losses) works; the caller's arrays are
never modified."""

import re

import numba
import numpy as np
import pytest

import gradcheck

from . import models


def _quadratic():
    """A small dict-of-arrays problem with an exact gradient: f = sum(W**2)/2 + sum(b**3)/3."""
    params = {"W1": np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]]), "b1": np.array([1.0, 2.0])}

    def f(p):
        return 0.5 * np.sum(p["W1"] ** 2) + np.sum(p["b1"] ** 3) / 3

    grads = {"dW1": params["W1"].copy(), "db1": params["b1"] ** 2}
    return f, params, grads


def _snapshot(params):
    return {k: (v.shape, v.dtype, v.tobytes()) for k, v in params.items()}


# ---------------------------------------------------------------- gradients


def test_mismatched_grad_shape_names_the_block():
    f, params, grads = _quadratic()
    grads["dW1"] = grads["dW1"].T
    with pytest.raises(ValueError, match=r"`grad` for block `W1` has shape \(2, 3\).*\(3, 2\)"):
        gradcheck.check(f, params, grads)


def test_missing_gradient_key_names_the_key_and_the_d_prefixed_alternative():
    f, params, grads = _quadratic()
    del grads["db1"]
    with pytest.raises(ValueError, match=r"no entry 'b1' or 'db1'.*\['dW1'\]"):
        gradcheck.check(f, params, grads)


def test_gradient_of_the_wrong_structure_is_a_type_error():
    f, params, _ = _quadratic()
    with pytest.raises(
        TypeError, match=r"`grad` should mirror params, or be one flat array of its 8 entries"
    ):
        gradcheck.check(f, params, np.zeros(7))
    with pytest.raises(TypeError, match=r"but is ndarray of shape \(2, 4\)"):
        gradcheck.check(f, params, np.zeros((2, 4)))


def test_a_flat_gradient_vector_for_a_dict_of_parameters():
    # What the course's gradients_to_vector returns: every block, flattened, in the order
    # of the parameters.
    f, params, grads = _quadratic()
    vector = np.concatenate([grads["dW1"].reshape(-1), grads["db1"]])
    before = vector.copy()
    report = gradcheck.check(f, params, vector, seed=0)
    assert report.verdict == "pass"
    assert list(report.blocks) == ["W1", "b1"]
    np.testing.assert_array_equal(vector, before)
    wrong = vector.copy()
    wrong[6] *= 2  # b1[0]
    assert gradcheck.check(f, params, wrong, seed=0).failing == ("b1",)


def test_a_flat_gradient_vector_for_nested_params_and_a_pair():
    params = [np.array([1.0, 2.0]), {"w": np.array([[3.0]])}]

    def f(p):
        return np.sum(p[0] ** 2) + np.sum(p[1]["w"] ** 3)

    assert gradcheck.check(f, params, np.array([2.0, 4.0, 27.0]), seed=0).passed
    pair = gradcheck.check(lambda p: (f(p), np.array([2.0, 4.0, 27.0])), params, seed=0)
    assert pair.passed


def test_grads_with_both_w1_and_dw1_that_differ_are_refused():
    f, params, grads = _quadratic()
    grads["W1"] = np.zeros_like(grads["dW1"])  # a stale copy beside the real gradient
    with pytest.raises(
        ValueError, match=r"`grad` has both 'W1' and 'dW1', with different values; keep one"
    ):
        gradcheck.check(f, params, grads)


def test_grads_with_both_w1_and_dw1_that_agree_are_accepted():
    f, params, grads = _quadratic()
    grads["W1"] = grads["dW1"].copy()
    grads["b1"] = grads["db1"]  # the very same array
    assert gradcheck.check(f, params, grads, seed=0).verdict == "pass"


def test_a_parameter_named_dw_is_not_taken_for_the_gradient_of_w():
    params = {"w": np.array([1.0, 2.0]), "dw": np.array([3.0])}

    def f(p):
        return np.sum(p["w"] ** 2) + np.sum(p["dw"] ** 2)

    grads = {"w": 2 * params["w"], "dw": 2 * params["dw"]}
    assert gradcheck.check(f, params, grads, seed=0).verdict == "pass"


def test_missing_list_item_in_gradient():
    params = [np.array([1.0, 2.0]), np.array([3.0])]
    with pytest.raises(ValueError, match=r"`grad` has 1 items; params has more"):
        gradcheck.check(lambda p: p[0].sum() + p[1].sum(), params, [np.ones(2)])


def test_complex_gradient_names_the_block():
    f, params, grads = _quadratic()
    grads["db1"] = grads["db1"].astype(complex)
    with pytest.raises(TypeError, match=r"grad for `b1` has dtype complex128"):
        gradcheck.check(f, params, grads)


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("block", "where", "value", "name"),
    [
        ("W1", (0, 1), np.nan, "W1[0, 1]"),
        ("b1", (1,), np.inf, "b1[1]"),
        ("W1", (2, 0), -np.inf, "W1[2, 0]"),
    ],
)
def test_non_finite_params_name_the_entry(block, where, value, name):
    f, params, grads = _quadratic()
    params[block][where] = value
    with pytest.raises(ValueError, match=r"`params` must be finite, but " + re.escape(name)):
        gradcheck.check(f, params, grads)


def test_non_finite_nested_param_names_the_path():
    params = {"layer": [np.zeros(2), np.array([[0.0, 1.0], [np.nan, 2.0]])]}
    with pytest.raises(ValueError, match=re.escape("layer[1][1, 0]")):
        gradcheck.check(lambda p: 0.0, params, params)


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.array([1, 2, 3]), r"dtype int64; convert it with \.astype\(np\.float64\)"),
        (np.array([1.0, 2.0], dtype=np.float16), r"dtype float16; convert it"),
        (np.array([1.0 + 1j]), r"dtype complex128; complex parameters are not supported"),
        (np.array([1.0, "x"], dtype=object), r"dtype object; only float32 and float64"),
        (np.array([True, False]), r"dtype bool"),
    ],
)
def test_unsupported_param_dtypes_name_the_block(array, words):
    params = {"W": np.ones(2), "b": array}
    with pytest.raises(TypeError, match=r"params `b` has " + words):
        gradcheck.check(lambda p: 0.0, params, {"W": np.zeros(2), "b": np.zeros(array.shape)})


@pytest.mark.parametrize("leaf", ["abc", None, True, object()])
def test_non_array_params_are_type_errors(leaf):
    with pytest.raises(TypeError, match=r"params `x` must be a numpy array of floats"):
        gradcheck.check(lambda p: 0.0, {"x": leaf}, {"x": 0.0})


@pytest.mark.parametrize("params", [{}, [], (), {"a": {}, "b": []}])
def test_params_without_arrays(params):
    with pytest.raises(ValueError, match=r"`params` holds no arrays"):
        gradcheck.check(lambda p: 0.0, params, params)


def _with_an_empty_block():
    params = {"w": np.array([1.0, -2.0, 3.0]), "e": np.ones(0)}

    def f(p):
        return np.sum(p["w"] ** 2) + np.sum(p["e"])

    return f, params, {"w": 2 * params["w"], "e": np.zeros(0)}


@pytest.mark.parametrize("options", [{}, {"sample": 2}])
def test_an_empty_block_is_skipped_and_listed_as_empty(options):
    f, params, grads = _with_an_empty_block()
    report = gradcheck.check(f, params, grads, seed=0, **options)
    assert report.verdict == "pass"
    assert report.blocks["e"].checked == 0
    assert re.search(r"^  e +0 +0 +(- +)+empty +- +-$", str(report), re.M), str(report)


def test_an_empty_block_does_not_make_a_directions_check_inconclusive():
    # Once: the empty block got two "directions" of nothing, infinite thresholds and the
    # verdict "inconclusive", so a correct gradient never passed with directions=.
    f, params, grads = _with_an_empty_block()
    for options in ({"directions": 2}, {"directions": 2, "sample": 2}):
        report = gradcheck.check(f, params, grads, seed=0, **options)
        assert report.verdict == "pass", str(report)
        assert report.blocks["e"].verdict == "pass"
        assert "thresholds raised" not in str(report)
    # No evaluations are spent on it: 2 per direction on `w` alone.
    with_e = gradcheck.check(f, params, grads, seed=0, directions=3, noise=False)
    without = gradcheck.check(
        lambda p: np.sum(p["w"] ** 2),
        {"w": params["w"]},
        {"w": grads["w"]},
        seed=0,
        directions=3,
        noise=False,
    )
    assert with_e.nfev == without.nfev


@pytest.mark.parametrize("params", [np.ones(0), {"a": np.ones(0), "b": np.ones((2, 0))}])
def test_params_that_are_all_empty_are_refused(params):
    with pytest.raises(ValueError, match=r"`params` holds no parameters to check: every array"):
        gradcheck.check(lambda p: 0.0, params, params)


# ---------------------------------------------------------------- what f returns


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (np.array([1.0, 2.0, 3.0]), r"got ndarray of shape \(3,\) and dtype float64"),
        (np.ones((2, 2)), r"got ndarray of shape \(2, 2\)"),
        ("1.5", r"got str"),
        (None, r"got NoneType"),
        (True, r"got bool"),
        (np.True_, r"got bool"),
        (np.array([True]), r"got ndarray of shape \(1,\) and dtype bool"),
        (1.0 + 2j, r"got complex"),
        ([1.0], r"got list"),
    ],
)
def test_f_returning_anything_but_one_real_number(value, words):
    with pytest.raises(TypeError, match=r"`f` must return one real number, " + words):
        gradcheck.check(lambda x: value, np.array([1.0, 2.0]), np.zeros(2))


def test_f_that_is_not_callable():
    with pytest.raises(TypeError, match=r"`f` must be callable, got float"):
        gradcheck.check(1.0, np.ones(2), np.ones(2))


def test_f_returning_loss_and_grads_with_grad_none():
    f, params, grads = _quadratic()
    report = gradcheck.check(lambda p: (f(p), {"dW1": p["W1"].copy(), "db1": p["b1"] ** 2}), params)
    assert report.verdict == "pass"
    np.testing.assert_allclose(report.gradapprox["b1"], grads["db1"], rtol=1e-9)
    assert report.loss == f(params)


def test_f_returning_size_one_array_loss_and_grads_with_grad_none():
    x = np.array([1.0, -2.0, 0.5])
    report = gradcheck.check(lambda x: (np.array([[x @ x]]), 2 * x), x)
    assert report.verdict == "pass"
    assert report.loss == 5.25


@pytest.mark.parametrize(
    ("ret", "words"),
    [
        (lambda x: x @ x, r"it returned float64"),
        (lambda x: [x @ x, 2 * x], r"it returned list"),
        (lambda x: (x @ x, 2 * x, None), r"it returned tuple"),
        (lambda x: None, r"it returned NoneType"),
    ],
)
def test_f_not_returning_a_pair_with_grad_none(ret, words):
    with pytest.raises(
        TypeError, match=r"with grad=None, `f` must return \(loss, grads\).*" + words
    ):
        gradcheck.check(ret, np.array([1.0, 2.0]))


def test_size_one_array_loss_like_a_course_cost():
    # The course computes its cost with np.dot, which gives a (1, 1) array.
    X = np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 2.0]])
    Y = np.array([[1.0, 0.0, 2.0]])
    w = np.array([[0.3, -0.2]])

    def cost(w):
        r = np.dot(w, X) - Y
        return 0.5 * np.dot(r, r.T)  # shape (1, 1)

    assert cost(w).shape == (1, 1)
    grad = np.dot(np.dot(w, X) - Y, X.T)
    report = gradcheck.check(cost, w, grad)
    assert report.verdict == "pass"
    assert report.loss == float(cost(w)[0, 0])
    np.testing.assert_allclose(report.gradapprox, grad, rtol=1e-9)


def test_f_returning_a_non_scalar_only_at_a_perturbed_point_names_it():
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        if x[1] != 2.0:
            return np.array([1.0, 2.0])
        return float(x @ x)

    with pytest.raises(TypeError, match=r"`f` must return one real number, but at perturbation 1"):
        gradcheck.check(f, x, 2 * x, noise=False)  # the noise probe would meet it first


@pytest.mark.parametrize(
    "odd",
    [
        None,
        "2.5",
        np.array([1.0, 2.0]),
        True,
        np.False_,
    ],
)
def test_f_returning_a_non_number_at_a_perturbed_point_is_refused(odd):
    # At params f returns a number, so the first check passes; at perturbed points it returns
    # None (a forgotten return), a string, an array or a bool. Converting the results in
    # bulk once turned None into NaN ("f was not finite") and "2.5" into 2.5; a bool among
    # floats still becomes 1.0 or 0.0 instead of the documented TypeError.
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        if x[1] != 2.0:
            return odd
        return float(x @ x)

    with pytest.raises(TypeError, match=r"`f` must return one real number"):
        gradcheck.check(f, x, 2 * x)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_loss_at_params(value):
    with pytest.raises(ValueError, match=r"`f\(params\)` must be finite.*" + str(value)):
        gradcheck.check(lambda x: x.sum() * value, np.ones(2), np.ones(2))


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("eps", [0, 0.0, -1, -1e-7, np.nan, np.inf, -np.inf, "x", True, [1e-7]])
def test_invalid_eps(eps):
    f, params, grads = _quadratic()
    with pytest.raises(ValueError, match=r"`eps` must be a positive finite number or None"):
        gradcheck.check(f, params, grads, eps=eps)


@pytest.mark.parametrize("method", ["backward", "Central", "", None])
def test_invalid_method(method):
    f, params, grads = _quadratic()
    methods = r"\['central', 'complex', 'forward', 'richardson'\]"
    with pytest.raises(ValueError, match=r"`method` must be one of " + methods):
        gradcheck.check(f, params, grads, method=method)


@pytest.mark.parametrize("engine", ["gpu", "Python", "", None])
def test_invalid_engine(engine):
    f, params, grads = _quadratic()
    with pytest.raises(ValueError, match=r"`engine` must be one of"):
        gradcheck.check(f, params, grads, engine=engine)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", 2.0])
def test_invalid_seed(seed):
    f, params, grads = _quadratic()
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer or None"):
        gradcheck.check(f, params, grads, seed=seed)


@pytest.mark.parametrize(
    "tol",
    [
        (1e-3, 1e-5),
        0,
        0.0,
        -1e-3,
        (0.0, 1e-5),
        (-1e-7, 1e-5),
        (1e-7,),
        (1e-7, 1e-5, 1e-3),
        [1e-7, 1e-5],
        np.nan,
        np.inf,
        True,
        "1e-7",
    ],
)
def test_invalid_tol(tol):
    f, params, grads = _quadratic()
    with pytest.raises(ValueError, match=r"`tol` must be a positive number or a \(pass, fail\)"):
        gradcheck.check(f, params, grads, tol=tol)


@pytest.mark.parametrize("batched", [1, 0, "yes", None, np.True_])
def test_batched_must_be_a_bool(batched):
    f, params, grads = _quadratic()
    with pytest.raises(TypeError, match=r"`batched` must be True or False"):
        gradcheck.check(f, params, grads, batched=batched)


def test_batched_needs_grad():
    with pytest.raises(ValueError, match=r"with batched=True, pass `grad`"):
        gradcheck.check(lambda P: (P**2).sum(axis=1), np.ones(3), batched=True)


def test_batched_engine_needs_batched_true():
    f, params, grads = _quadratic()
    with pytest.raises(ValueError, match=r"engine='batched' needs batched=True"):
        gradcheck.check(f, params, grads, engine="batched")


@pytest.mark.parametrize("engine", ["python", "numba"])
def test_batched_runs_only_in_the_batched_engine(engine):
    with pytest.raises(
        ValueError, match=rf"batched=True runs in the batched engine, not engine='{engine}'"
    ):
        gradcheck.check(
            lambda P: (P**2).sum(axis=1), np.ones(3), 2 * np.ones(3), batched=True, engine=engine
        )


@numba.njit
def _sum_of_squares(x):
    return (x * x).sum()


@pytest.mark.parametrize(
    ("f", "params", "grad", "why"),
    [
        pytest.param(  # plain Python f
            lambda x: float(x @ x), np.ones(3), 2 * np.ones(3), "jitted", marks=models.needs_jit
        ),
        pytest.param(
            lambda p: float(p["x"] @ p["x"]),
            {"x": np.ones(3)},
            {"x": 2 * np.ones(3)},
            "jitted",
            marks=models.needs_jit,
        ),
        (_sum_of_squares, np.ones((2, 2)), 2 * np.ones((2, 2)), "1-D"),  # jitted, 2-D params
        (_sum_of_squares, np.ones(3, dtype=np.float32), 2 * np.ones(3), "float64"),
    ],
)
def test_numba_engine_refuses_what_it_cannot_run(f, params, grad, why):
    with pytest.raises(ValueError, match=r"engine='numba' needs .*" + why):
        gradcheck.check(f, params, grad, engine="numba")


def test_numba_engine_accepts_a_jitted_flat_f():
    # The counterpart of the refusals: the same f on a 1-D float64 vector runs in numba.
    x = np.array([1.0, -2.0, 0.5])
    assert gradcheck.check(_sum_of_squares, x, 2 * x, engine="numba").engine == "numba"


@pytest.mark.parametrize(
    ("params", "name"),
    [(np.array([1.0, 1e10]), "params[1]"), ({"W": np.array([[0.5], [-1e10]])}, "W[1, 0]")],
)
def test_eps_below_the_resolution_of_a_large_parameter(params, name):
    grad = {k: 2 * v for k, v in params.items()} if isinstance(params, dict) else 2 * params

    def f(p):
        x = p["W"] if isinstance(p, dict) else p
        return float(np.sum(x**2))

    with pytest.raises(
        ValueError, match=r"`eps`=1e-10 is below the resolution of " + re.escape(name)
    ):
        gradcheck.check(f, params, grad, eps=1e-10)
    # The same step is fine where the parameters are small.
    small = {k: v / 1e10 for k, v in params.items()} if isinstance(params, dict) else params / 1e10
    assert gradcheck.check(f, small, grad, eps=1e-10).n == 2


# ---------------------------------------------------------------- non-finite at perturbed points


def _log_problem():
    """f = sum(log x): the entry 1e-9 lies closer to 0 than the step, so x - h < 0 there."""
    params = {"x": np.array([1.0, 2.0, 1e-9, 3.0]), "y": np.array([0.5, -1.5])}

    def f(p):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(p["x"]).sum() + 0.5 * np.sum(p["y"] ** 2)

    grads = {"x": 1 / params["x"], "y": params["y"].copy()}
    return f, params, grads


@pytest.mark.parametrize("eps", [None, 1e-6])
def test_non_finite_at_some_perturbed_points_is_inconclusive(eps):
    f, params, grads = _log_problem()
    report = gradcheck.check(f, params, grads, eps=eps)
    assert report.verdict == "inconclusive"
    assert not report.passed
    assert report.blocks["x"].verdict == "inconclusive"
    assert report.blocks["x"].nonfinite == ("x[2]",)
    assert report.blocks["x"].checked == 3
    assert report.blocks["x"].difference < 1e-7  # the other entries are right
    assert report.blocks["y"].verdict == "pass"
    assert report.blocks["y"].nonfinite == ()
    assert not np.isfinite(report.gradapprox["x"][2])
    assert "x[2]" in str(report)


def test_non_finite_points_do_not_hide_a_failing_block():
    f, params, grads = _log_problem()
    grads["y"] = -grads["y"]
    report = gradcheck.check(f, params, grads)
    assert report.verdict == "fail"
    assert report.failing == ("y",)
    assert report.blocks["x"].verdict == "inconclusive"
    assert report.blocks["x"].nonfinite == ("x[2]",)


def test_non_finite_and_wrong_in_the_same_block_fails():
    f, params, grads = _log_problem()
    grads["x"][0] *= 2.0
    report = gradcheck.check(f, params, grads)
    assert report.blocks["x"].verdict == "fail"
    assert report.blocks["x"].nonfinite == ("x[2]",)


def test_block_where_every_point_is_non_finite_is_inconclusive():
    # Every entry of z lies within a step of 0, so no entry of z can be judged: that is
    # inconclusive, not a failure (once a bug: d = NaN was judged "fail").
    params = {"x": np.array([1.0, 2.0]), "z": np.array([1e-9, 2e-9])}

    def f(p):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(p["x"]).sum() + np.log(p["z"]).sum()

    report = gradcheck.check(f, params, {"x": 1 / params["x"], "z": 1 / params["z"]})
    assert report.blocks["z"].nonfinite == ("z[0]", "z[1]")
    assert report.blocks["z"].verdict == "inconclusive"
    assert report.failing == ()


# ---------------------------------------------------------------- the caller's arrays


class _Boom(Exception):
    pass


def test_exception_in_f_midway_propagates_and_leaves_params_alone():
    f, params, grads = _quadratic()
    before = _snapshot(params)
    calls = []

    def exploding(p):
        calls.append(p["W1"].copy())
        if len(calls) == 6:
            raise _Boom("call 6")
        return f(p)

    with pytest.raises(_Boom, match="call 6"):
        gradcheck.check(exploding, params, grads, engine="python")
    assert len(calls) == 6
    # f was seeing perturbed values when it raised...
    assert not np.array_equal(calls[-1], params["W1"])
    # ...but the caller's arrays are bitwise what they were.
    assert _snapshot(params) == before


def test_f_modifying_its_input_in_place_is_refused():
    f, params, grads = _quadratic()
    before = _snapshot(params)

    def sloppy(p):
        p["W1"][0, 0] += 1.0
        return f(p)

    with pytest.raises(
        ValueError,
        match=r"f or grad modified its input in place: W1\[0, 0\] changed from \S*1\.0\S* to \S*2",
    ):
        gradcheck.check(sloppy, params, grads)
    assert _snapshot(params) == before


def test_f_modifying_its_input_later_is_refused():
    # The first call is clean; a later call writes into a block other than the perturbed one.
    f, params, grads = _quadratic()
    before = _snapshot(params)
    calls = []

    def sloppy(p):
        calls.append(None)
        if len(calls) == 4:
            p["b1"][1] = 7.0
        return f(p)

    with pytest.raises(
        ValueError,
        match=r"f modified its input in place: b1\[1\] changed from \S*2\.0\S* to \S*7\.0",
    ):
        gradcheck.check(sloppy, params, grads, engine="python", noise=False)
    assert _snapshot(params) == before


def test_grad_callable_modifying_its_input_is_refused():
    f, params, grads = _quadratic()
    before = _snapshot(params)

    def grad(p):
        p["b1"] *= 2
        return grads

    with pytest.raises(ValueError, match=r"f or grad modified its input in place: b1\[0\]"):
        gradcheck.check(f, params, grad)
    assert _snapshot(params) == before


def test_a_successful_check_leaves_params_alone():
    X, y, params = models.mlp_data()
    before = _snapshot(params)
    grads = models.mlp_grad(params, X, y)
    gradcheck.check(lambda p: models.mlp_loss(p, X, y), params, grads)
    assert _snapshot(params) == before


def test_grad_callable_is_called_once_with_the_params_structure():
    f, params, _ = _quadratic()
    seen = []

    def grad(p):
        seen.append({k: v.copy() for k, v in p.items()})
        assert isinstance(p, dict)
        return {"dW1": p["W1"].copy(), "db1": p["b1"] ** 2}

    report = gradcheck.check(f, params, grad)
    assert report.verdict == "pass"
    assert len(seen) == 1
    assert list(seen[0]) == list(params)
    for k in params:
        assert seen[0][k].shape == params[k].shape
        np.testing.assert_array_equal(seen[0][k], params[k])


def test_scipy_style_args_reach_f_and_a_callable_grad():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = np.array([1.0, -1.0])
    x = np.array([0.5, -1.0])

    def f(x, A, b):
        return 0.5 * x @ A @ x - b @ x

    def grad(x, A, b):
        return A @ x - b

    assert gradcheck.check(f, x, grad, args=(A, b), seed=0).verdict == "pass"
    wrong = gradcheck.check(f, x, lambda x, A, b: A @ x + b, args=(A, b), seed=0)
    assert wrong.verdict == "fail"
    with pytest.raises(TypeError, match=r"`args` must be a tuple"):
        gradcheck.check(f, x, grad, args=[A, b])


def test_f_that_rebinds_a_key_of_its_input_is_told_what_it_did():
    params = {"W1": np.ones(3), "b1": np.ones(2)}

    def f(p):
        p["W1"] = p["W1"] * 2  # rebinds: later perturbations would never reach f
        return (p["W1"] ** 2).sum() + p["b1"].sum()

    grads = {"W1": 8 * np.ones(3), "b1": np.ones(2)}
    with pytest.raises(ValueError, match=r"f replaced `W1` in the structure it was given"):
        gradcheck.check(f, params, grads)
    assert params["W1"] is not None
    assert np.array_equal(params["W1"], np.ones(3))
