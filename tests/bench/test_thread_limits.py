"""``limit_threads`` must not break numba in a process whose numba thread pool already runs.

CI regression (2026-12-07): an in-process cell (``workers=0``) set ``NUMBA_NUM_THREADS=1`` in
``os.environ`` after an earlier test had launched numba's pool with 2 threads; numba re-reads its
environment at every compile, so every later ``@njit`` compile in that pytest process failed with
"Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched".
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os
    import numba
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True)
    def total(a):
        s = 0.0
        for i in prange(a.size):
            s += a[i]
        return s

    total(np.ones(1000))  # launches numba's thread pool at its default size
    assert numba.config.NUMBA_NUM_THREADS == 2, numba.config.NUMBA_NUM_THREADS

    from medseg_bench.bench.cells import limit_threads
    limit_threads(1)

    @njit
    def twice(x):  # a fresh compile re-reads the environment
        return 2 * x

    assert twice(3) == 6
    assert numba.get_num_threads() == 1, numba.get_num_threads()
    assert os.environ["OMP_NUM_THREADS"] == "1"
    print("ok")
    """
)


def test_limit_threads_after_numba_pool_started():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


CACHED_KERNEL_SCRIPT = textwrap.dedent(
    """
    import numba
    import numpy as np
    from numba import njit, prange

    # compiled now (as a kernel loaded from numba's on-disk cache would be): its first call below
    # starts the pool without re-reading the environment
    @njit("float64(float64[:])", parallel=True)
    def total(a):
        s = 0.0
        for i in prange(a.size):
            s += a[i]
        return s

    from medseg_bench.bench.cells import limit_threads
    limit_threads(1)  # numba imported, pool not started yet
    total(np.ones(1000))

    @njit
    def twice(x):
        return 2 * x

    assert twice(3) == 6
    assert numba.get_num_threads() == 1, numba.get_num_threads()
    print("ok")
    """
)


def test_limit_threads_before_a_cached_kernel_starts_the_pool():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["NUMBA_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", CACHED_KERNEL_SCRIPT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_limit_threads_before_numba_is_imported_sets_the_environment():
    script = (
        "import sys, os\n"
        "from medseg_bench.bench.cells import limit_threads\n"
        "limit_threads(1)\n"
        "import numba\n"
        "assert numba.config.NUMBA_NUM_THREADS == 1, numba.config.NUMBA_NUM_THREADS\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
