"""Settings for the pytest suite: the demo site's, plus the app holding test flows.

Worker-mode tests also run ``runworker`` subprocesses with these settings
(``DJANGO_SETTINGS_MODULE=tests.settings``), so the flows in
:mod:`tests.flowapp.flows` exist on both sides.
"""

import os

from demo_site.settings import *  # noqa: F403
from demo_site.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.flowapp"]

# Worker-mode fault tests run their workers with a short lease, to see failover quickly.
if _lease := os.environ.get("CARAVELA_FLOW_LEASE_SECONDS"):
    CARAVELA_FLOW = {**CARAVELA_FLOW, "LEASE_SECONDS": float(_lease)}  # noqa: F405

# A daphne child serving the WebSocket routes under another path.
if _websocket_path := os.environ.get("CARAVELA_FLOW_WEBSOCKET_PATH"):
    CARAVELA_FLOW = {**CARAVELA_FLOW, "WEBSOCKET_PATH": _websocket_path}
