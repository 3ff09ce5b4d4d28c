import os
import warnings

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# One torch/OpenMP thread per test process: with two, spinning OpenMP workers slowed the suite
# ~20x whenever other work held the cores (training runs already default to threads: 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def ray_cluster():
    """One real local Ray cluster per test module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    yield ray
    ray.shutdown()
