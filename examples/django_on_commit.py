"""Django: push a job when the transaction commits, never when it rolls back.

Run: python examples/django_on_commit.py   (SQLite in memory and the embedded in-memory
backend: no server needed; the tests run the same against PostgreSQL)

In a project: add "sideline.contrib.django" to INSTALLED_APPS, set
SIDELINE = {"APP": "myproject.jobs:app"}, and run workers with
`python manage.py sideline_worker -c 10`.
"""

from __future__ import annotations

import django
from django.conf import settings

settings.configure(
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    INSTALLED_APPS=["sideline.contrib.django"],
    SIDELINE={"APP": "__main__:app"},
    USE_TZ=True,
)
django.setup()

from django.db import connection, transaction  # noqa: E402

from sideline import App  # noqa: E402
from sideline.contrib.django import enqueue_on_commit  # noqa: E402

app = App()


@app.job(name="mail.welcome")
def send_welcome(user_id: int) -> None:
    print(f"welcome mail for user {user_id}")


def queued() -> int:
    return app.admin.stats().enqueued


def main() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE users (id integer primary key, name text)")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO users VALUES (1, 'ada')")
        enqueue_on_commit(send_welcome, 1)
        print("inside the transaction, jobs queued:", queued())
        assert queued() == 0
    print("after the commit, jobs queued:", queued())
    assert queued() == 1
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO users VALUES (2, 'bob')")
            enqueue_on_commit(send_welcome, 2)
            raise RuntimeError("the signup failed")
    except RuntimeError:
        pass
    print("after the rollback, jobs queued:", queued())
    assert queued() == 1
    app.drain()


if __name__ == "__main__":
    main()
