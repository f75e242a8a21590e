"""Settings for the pytest-django order cases.

As a fresh ``startproject`` has them: SQLite, so the test database is in
memory, and Django keeps such a connection open (closing it would drop the
database). One thread for sync step functions, so the second test's step
function runs on the thread whose connection the first test opened.
"""

from tests.settings import *  # noqa: F403
from tests.settings import BASE_DIR, CARAVELA_FLOW

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
CARAVELA_FLOW = {**CARAVELA_FLOW, "THREADS": 1}
