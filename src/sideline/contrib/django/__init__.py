"""Django integration: push jobs on commit, run a worker, guard the dashboard.

Add `"sideline.contrib.django"` to INSTALLED_APPS and name your App in settings:

    SIDELINE = {"APP": "myproject.jobs:app"}

then `python manage.py sideline_worker -c 10 -q default` runs a worker, and
`enqueue_on_commit(job, ...)` pushes a job once the surrounding transaction commits.
`sideline.contrib.django.auth` guards the dashboard with Django's staff login.
Install with the `django` extra.
"""

from __future__ import annotations

from typing import Any, ParamSpec

from django.db import transaction  # type: ignore[import-untyped]  # Django ships no types

from sideline.contrib.django._settings import get_app
from sideline.runtime.jobs import Job

__all__ = ["enqueue_on_commit", "get_app"]

P = ParamSpec("P")


def enqueue_on_commit(job: Job[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
    """Push `job(*args, **kwargs)` when the current transaction of the default database
    commits (`django.db.transaction.on_commit`); nothing is pushed if it rolls back.

    Outside `atomic()` (autocommit) the job is pushed at once. Inside a savepoint
    (nested `atomic()`) that rolls back, the push is dropped with it. A push that
    raises after the commit propagates from the `atomic()` exit (Django's on_commit
    rule); the data is committed either way.
    """
    transaction.on_commit(lambda: job.enqueue(*args, **kwargs))
