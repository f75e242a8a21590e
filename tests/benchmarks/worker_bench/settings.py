"""Settings of the worker-mode benchmark: the demo site's, plus the benchmark's app.

Deployment (``REDIS_URL``, ``CARAVELA_FLOW_MODE``, ``CARAVELA_FLOW_REDIS_PREFIX``)
comes from the environment, as for the demo site.
"""

from demo_site.settings import *  # noqa: F403
from demo_site.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "worker_bench"]
ASGI_APPLICATION = "worker_bench.asgi.application"
