import os
import warnings

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def ray_cluster():
    """One real local Ray cluster per test module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="error", log_to_driver=False)
    yield ray
    ray.shutdown()
