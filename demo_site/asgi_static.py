"""The demo's ASGI application with static files served by Django's static handler.

For ``make demo-workers``, which runs plain daphne (no runserver): the pages
need Alpine.js, the Svelte bundle and the CSS. For real deployments serve
static files from ``collectstatic`` output behind your web server instead.
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from demo_site.asgi import application as site_application

application = ASGIStaticFilesHandler(site_application)
