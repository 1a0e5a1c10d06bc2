import os
import platform
import time

import numba
import numpy as np
import pytest
import scipy
import scipy.linalg  # loads scipy's BLAS (numba's np.dot calls it) before the limit below
from threadpoolctl import threadpool_info, threadpool_limits

from . import workloads

# One BLAS thread unless told otherwise (GRADCHECK_BENCH_BLAS_THREADS). Every contender here
# evaluates many small products one after another; on this 2-core machine, 2-thread OpenBLAS
# made one mlp-medium loss 8x slower (4.6 ms against 0.54 ms), and under any other load its
# spinning threads fight the numba engine's. Parallelism belongs to the coordinates.
BLAS_THREADS = int(os.environ.get("GRADCHECK_BENCH_BLAS_THREADS", "1"))
threadpool_limits(BLAS_THREADS, user_api="blas")

# Seconds: a peer or the course loop whose whole check would take longer than FULL_UP_TO is
# timed on about SUBSET_SECONDS of its run and scaled; each benchmark aims at ROUND_SECONDS
# of timed rounds in all. The normal test run (disabled) only needs every body to run once.
FULL_UP_TO = {"enabled": 20.0, "disabled": 0.05}
SUBSET_SECONDS = {"enabled": 5.0, "disabled": 0.02}
ROUND_SECONDS = 5.0
MAX_ROUNDS = 30
# Other processes on a shared machine skew timings: record how busy it was.
LOAD_AT_START = os.getloadavg()


def enabled(config) -> bool:
    """True when benchmarks are timed (``--benchmark-enable``), False in the normal run."""
    return not config.getoption("benchmark_disable") or config.getoption("benchmark_enable")


@pytest.fixture(scope="session")
def mode(request):
    return "enabled" if enabled(request.config) else "disabled"


@pytest.fixture(scope="session")
def subset_seconds(mode):
    """(whole check up to, else subset of): see FULL_UP_TO and SUBSET_SECONDS."""
    return FULL_UP_TO[mode], SUBSET_SECONDS[mode]


@pytest.fixture(scope="session")
def get_workload(mode):
    """Workloads built once per session, their jitted loss compiled (outside any timing).

    The normal test run (benchmarks disabled) uses the small "smoke" sizes: the same code,
    run once, in seconds.
    """
    size = "full" if mode == "enabled" else "smoke"
    cache = {}

    def get(name):
        if name not in cache:
            w = workloads.make(name, size)
            w.flat(w.theta())
            cache[name] = w
        return cache[name]

    return get


def rounds_for(estimate: float) -> dict:
    """pedantic() options: enough rounds to fill ROUND_SECONDS, one warm-up if cheap."""
    rounds = int(min(MAX_ROUNDS, max(1, ROUND_SECONDS // max(estimate, 1e-9))))
    return {"rounds": rounds, "iterations": 1, "warmup_rounds": 1 if estimate < 1.0 else 0}


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["numba"] = numba.__version__
    machine_info["numpy"] = np.__version__
    machine_info["scipy"] = scipy.__version__
    for name in ("numdifftools", "torch", "jax", "pytest_benchmark"):
        try:
            machine_info[name] = __import__(name).__version__
        except ImportError:
            machine_info[name] = None
    import gradcheck

    machine_info["gradcheck"] = gradcheck.__version__
    machine_info["numba_threads"] = numba.get_num_threads()
    try:  # the layer numba actually chose, once a parallel kernel has run
        machine_info["numba_threading_layer"] = numba.threading_layer()
    except ValueError:
        machine_info["numba_threading_layer"] = numba.config.THREADING_LAYER
    machine_info["blas_threads"] = BLAS_THREADS
    machine_info["blas"] = sorted(
        {
            f"{i['internal_api']} {i['version']}"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        }
    )
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["platform"] = platform.platform()
    machine_info["load_average_at_start"] = LOAD_AT_START
    machine_info["load_average_at_end"] = os.getloadavg()
    machine_info["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with open("/proc/meminfo") if os.path.exists("/proc/meminfo") else open(os.devnull) as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                machine_info["memory_kib"] = int(line.split()[1])
