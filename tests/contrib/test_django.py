"""sideline.contrib.django against the real PostgreSQL.

Django is configured from tests/contrib/django_settings.py; its test database gets a
unique name (created through the `postgres` database, migrated, dropped afterwards),
so nothing is left behind in `test`; SIDELINE_PG_URL points it elsewhere. The tests
use real transactions (no wrapping TestCase), so `on_commit` fires as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from sideline.core.errors import ConfigurationError
from tests.contrib import django_jobs, django_settings
from tests.support_pg import pg_url, require_postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def django_db() -> Iterator[None]:
    require_postgres()
    import django  # noqa: PLC0415 (configured only once PostgreSQL is known reachable)
    from django.conf import settings  # noqa: PLC0415
    from django.db import connection  # noqa: PLC0415

    if not settings.configured:
        options = {name: getattr(django_settings, name) for name in dir(django_settings)
                   if name.isupper()}
        url = make_url(pg_url())  # SIDELINE_PG_URL moves Django too
        options["DATABASES"] = {"default": {
            **django_settings.DATABASES["default"], "NAME": url.database, "USER": url.username,
            "PASSWORD": url.password or "", "HOST": url.host, "PORT": url.port or 5432}}
        settings.configure(**options)
        django.setup()
    test_name = f"sideline_django_{uuid.uuid4().hex[:12]}"
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = test_name
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield
    finally:
        _terminate_other_connections(test_name)
        connection.creation.destroy_test_db(old_name, verbosity=0)


def _terminate_other_connections(name: str) -> None:
    """Connections other threads opened (sync_to_async) would block DROP DATABASE."""
    from django.db import connection  # noqa: PLC0415

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = %s AND pid <> pg_backend_pid()", [name])


@pytest.fixture
def queued(django_db: None) -> Any:
    app = django_jobs.app
    for name in app.backend.queue_sizes():
        app.admin.clear_queue(name)

    def count() -> int:
        return sum(app.backend.queue_sizes().values())

    return count


def test_get_app_reads_settings(django_db: None) -> None:
    from sideline.contrib.django import get_app  # noqa: PLC0415

    assert get_app() is django_jobs.app


def test_get_app_explains_a_bad_setting(django_db: None) -> None:
    from django.test import override_settings  # noqa: PLC0415

    from sideline.contrib.django import get_app  # noqa: PLC0415

    with override_settings(SIDELINE={"APP": "tests.contrib.django_jobs"}), \
            pytest.raises(ConfigurationError, match=r"package\.module:app"):
        get_app()
    with override_settings(SIDELINE={"APP": "tests.contrib.django_jobs:welcome"}), \
            pytest.raises(ConfigurationError, match="not a sideline App"):
        get_app()


def test_on_commit_pushes_after_the_commit(queued: Any) -> None:
    from django.contrib.auth.models import User  # noqa: PLC0415
    from django.db import transaction  # noqa: PLC0415

    from sideline.contrib.django import enqueue_on_commit  # noqa: PLC0415

    with transaction.atomic():
        user = User.objects.create(username=f"u{uuid.uuid4().hex[:8]}")
        enqueue_on_commit(django_jobs.welcome, user.pk)
        assert queued() == 0, "pushed before the commit"
    assert queued() == 1


def test_rollback_pushes_nothing(queued: Any) -> None:
    from django.contrib.auth.models import User  # noqa: PLC0415
    from django.db import transaction  # noqa: PLC0415

    from sideline.contrib.django import enqueue_on_commit  # noqa: PLC0415

    name = f"u{uuid.uuid4().hex[:8]}"
    with transaction.atomic():
        user = User.objects.create(username=name)
        enqueue_on_commit(django_jobs.welcome, user.pk)
        transaction.set_rollback(True)
    assert queued() == 0
    assert not User.objects.filter(username=name).exists()


def test_a_rolled_back_savepoint_drops_only_its_push(queued: Any) -> None:
    from django.db import transaction  # noqa: PLC0415

    from sideline.contrib.django import enqueue_on_commit  # noqa: PLC0415

    with transaction.atomic():
        enqueue_on_commit(django_jobs.welcome, 1)
        with transaction.atomic():  # a savepoint
            enqueue_on_commit(django_jobs.welcome, 2)
            transaction.set_rollback(True)
    assert [j.payload.args for j in django_jobs.app.admin.queue_jobs("default").jobs
            if j.payload] == [[1]]


def test_outside_a_transaction_the_push_is_immediate(queued: Any) -> None:
    from sideline.contrib.django import enqueue_on_commit  # noqa: PLC0415

    enqueue_on_commit(django_jobs.welcome, 1)
    assert queued() == 1


def test_capture_on_commit_callbacks_runs_the_push(queued: Any) -> None:
    """What a project's own django.test.TestCase does: the standard capture helper."""
    from django.db import transaction  # noqa: PLC0415
    from django.test import TestCase  # noqa: PLC0415

    from sideline.contrib.django import enqueue_on_commit  # noqa: PLC0415

    with transaction.atomic():  # stands in for the TestCase's own wrapping transaction
        with TestCase.captureOnCommitCallbacks(execute=True) as callbacks:
            enqueue_on_commit(django_jobs.welcome, 1)
        assert len(callbacks) == 1
        assert queued() == 1
        transaction.set_rollback(True)


def test_staff_auth_accepts_staff_and_refuses_others(django_db: None) -> None:
    from django.conf import settings  # noqa: PLC0415
    from django.contrib.auth.models import User  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415
    from starlette.testclient import TestClient  # noqa: PLC0415

    from sideline.contrib.django.auth import staff_auth, with_dashboard  # noqa: PLC0415
    from sideline.web import create_app  # noqa: PLC0415

    def session_of(user: User) -> str:
        browser = Client()
        browser.force_login(user)
        return str(browser.cookies[settings.SESSION_COOKIE_NAME].value)

    tag = uuid.uuid4().hex[:8]
    staff = User.objects.create(username=f"staff{tag}", is_staff=True)
    member = User.objects.create(username=f"member{tag}")
    retired = User.objects.create(username=f"retired{tag}", is_staff=True, is_active=True)
    retired_session = session_of(retired)
    User.objects.filter(pk=retired.pk).update(is_active=False)

    async def not_django(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})

    asgi = with_dashboard(not_django, create_app(django_jobs.app, auth=staff_auth))
    cookie = settings.SESSION_COOKIE_NAME

    def status(session_key: str | None, path: str = "/sideline/") -> int:
        # no lifespan (not `with`): Django's ASGI app does not speak it either
        client = TestClient(asgi, cookies={cookie: session_key} if session_key else None)
        return client.get(path).status_code

    assert status(session_of(staff)) == 200
    assert status(session_of(member)) == 403
    assert status(retired_session) == 403
    assert status("no-such-session") == 403
    assert status(None) == 403
    assert status(None, "/elsewhere") == 418  # everything else goes to Django


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_the_worker_command_runs_until_signalled(sig: signal.Signals) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.contrib.django_settings",
           "PYTHONWARNINGS": "error"}
    command = [sys.executable, "-m", "django", "sideline_worker", "-c", "2", "-q", "mail,default"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            first = process.stdout.readline()
            assert "concurrency=2 queues=mail,default" in first, first
            process.send_signal(sig)
            stdout, stderr = process.communicate(timeout=20)
        finally:
            process.kill()
    assert process.returncode == 0, stderr
    assert "stopped" in stdout
