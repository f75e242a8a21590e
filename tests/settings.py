"""Settings for the pytest suite: the demo site's, plus the app holding test flows.

Worker-mode tests also run ``runworker`` subprocesses with these settings
(``DJANGO_SETTINGS_MODULE=tests.settings``), so the flows in
:mod:`tests.flowapp.flows` exist on both sides.
"""

from demo_site.settings import *  # noqa: F403
from demo_site.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.flowapp"]
