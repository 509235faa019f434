"""The thin Ray layer: the worker environment is set once, at Ray's start, for every worker."""

import os

import pytest

from nationmap.parallel import WORKER_ENV, run_tasks

pytestmark = pytest.mark.ray


def test_tasks_and_actors_start_with_the_worker_environment(ray_local):
    keys = tuple(WORKER_ENV)

    def worker_env(_item=None) -> dict:  # nested: Ray pickles it by value (tests are not a package)
        return {key: os.environ.get(key) for key in keys}

    assert run_tasks(worker_env, [0, 1], desc="env") == [WORKER_ENV, WORKER_ENV]

    @ray_local.remote(num_cpus=0)
    class Probe:  # a Ray Train worker or a Ray Data predictor is an actor like this one
        def env(self):
            return worker_env()

    probe = Probe.remote()
    try:
        assert ray_local.get(probe.env.remote(), timeout=120) == WORKER_ENV
    finally:
        ray_local.kill(probe)
