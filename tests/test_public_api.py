from __future__ import annotations

import tinydj


def test_public_names_are_pinned() -> None:
    assert sorted(tinydj.__all__) == sorted(
        [
            "Config",
            "ConfigurationError",
            "CurrentJob",
            "DatabaseBusy",
            "DatabaseUnavailable",
            "HandlerError",
            "Job",
            "JobCancelled",
            "JobRunning",
            "NaiveDatetimeWarning",
            "SerializationError",
            "Task",
            "TinyDJError",
            "Worker",
            "__version__",
            "cancel",
            "clear",
            "configure",
            "create_tables",
            "cron",
            "current_job",
            "delete_job",
            "enqueue",
            "every",
            "get_config",
            "get_job",
            "job",
            "list_jobs",
            "retry_job",
            "schedule",
            "send_later",
            "sqlalchemy_url",
            "stats",
            "using",
        ]
    )
    for name in tinydj.__all__:
        assert hasattr(tinydj, name), name


def test_one_exception_root() -> None:
    for exc in (
        tinydj.ConfigurationError,
        tinydj.SerializationError,
        tinydj.HandlerError,
        tinydj.DatabaseBusy,
        tinydj.DatabaseUnavailable,
        tinydj.JobCancelled,
    ):
        assert issubclass(exc, tinydj.TinyDJError)
    assert issubclass(tinydj.SerializationError, TypeError)
