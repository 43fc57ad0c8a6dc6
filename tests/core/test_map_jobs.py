"""`map_jobs` / `in_processes`: job order kept, progress per job, errors surface, bad worker counts refused."""

import operator

import pytest

from tenfold.core.benchkit import map_jobs
from tenfold.core.errors import TenfoldError

JOBS = [(2, 10), (3, 3), (5, 1), (7, 2)]
EXPECTED = [2**10, 3**3, 5, 49]


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_job_order_and_every_job_reported(workers):
    seen = []
    out = map_jobs(operator.pow, JOBS, workers, on_done=lambda i, r: seen.append((i, r)))
    assert out == EXPECTED
    assert sorted(seen) == list(enumerate(EXPECTED))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_its_error(workers):
    with pytest.raises(ValueError):
        map_jobs(int, [("1",), ("not a number",)], workers)


def test_bad_worker_count_is_a_user_error():
    with pytest.raises(TenfoldError, match="workers"):
        map_jobs(operator.pow, JOBS, 0)
