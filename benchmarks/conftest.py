import numba
import numpy as np


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["numba"] = numba.__version__
    machine_info["numpy"] = np.__version__
    machine_info["numba_threads"] = numba.get_num_threads()
    machine_info["numba_threading_layer"] = numba.config.THREADING_LAYER
