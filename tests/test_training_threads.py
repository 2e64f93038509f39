"""The CPU thread setting of heavy work: one thread for small images on the CPU, PyTorch's own otherwise; a
service job runs under it (the job manager itself knows nothing of datasets or training)."""

import torch

from trend_core.runtime.jobs import JobManager
from trend_core.service.submit import in_threads
from trend_core.training.threads import dataset_threads


def test_small_images_on_the_cpu_use_one_thread_and_the_setting_is_restored():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with dataset_threads("digits", "cpu"):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        for dataset, lane in (("digits", "cuda:0"), ("cifar10", "cpu"), ("no-such-set", "cpu"), (None, "cpu")):
            with dataset_threads(dataset, lane):
                assert torch.get_num_threads() == 2, (dataset, lane)
    finally:
        torch.set_num_threads(before)


def test_a_service_job_on_digits_runs_on_one_cpu_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        job = JobManager(sync=True).submit(
            "threads-test", in_threads(lambda job: torch.get_num_threads(), "digits", "cpu"), title="t", device="cpu"
        )
        assert job.result == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
