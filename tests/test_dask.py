"""The Dask engine gives the serial engines' answer."""

import numpy as np
import pytest

import gradcheck

from . import models

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_dask_equals_serial_on_a_structure(client):
    X, y, params = models.mlp_data()
    grads = models.mlp_grad(params, X, y)

    def f(p):
        return models.mlp_loss(p, X, y)

    serial = gradcheck.check(f, params, grads, seed=4)
    spread = gradcheck.check(f, params, grads, engine="dask", client=client, seed=4)
    assert spread.engine == "dask"
    for k in params:
        np.testing.assert_array_equal(spread.gradapprox[k], serial.gradapprox[k])
    assert spread.difference == serial.difference
    assert spread.verdict == serial.verdict == "pass"


def test_dask_runs_a_jitted_flat_loss_and_finds_a_bug(client):
    theta = np.linspace(-2, 2, 101)
    grad = models.cubic_grad(theta)
    grad[17] += 1.0
    serial = gradcheck.check(models.cubic_flat, theta, grad, engine="numba")
    spread = gradcheck.check(models.cubic_flat, theta, grad, engine="dask", client=client)
    np.testing.assert_array_equal(spread.gradapprox, serial.gradapprox)
    assert spread.failing == ("params",)
    assert spread.worst[0].name == "params[17]"


def test_dask_with_a_sample_uses_the_current_client(client):
    model = models.Separable({"W": 3_000, "b": 8})
    serial = gradcheck.check(model.loss, model.params, model.grad(), sample=100, seed=9)
    spread = gradcheck.check(
        model.loss, model.params, model.grad(), sample=100, seed=9, engine="dask"
    )
    np.testing.assert_array_equal(spread.gradapprox["W"], serial.gradapprox["W"])
    assert spread.checked == serial.checked == 100
