from __future__ import annotations

import sample_jobs

import tinydj


def test_enqueue_and_work_off(config: tinydj.Config, worker: tinydj.Worker) -> None:
    job = sample_jobs.record.send_later(1, b=2)
    assert job.id > 0
    assert worker.work_off() == (1, 0)
    assert sample_jobs.calls == [((1,), {"b": 2})]
    assert tinydj.get_job(job.id) is None
