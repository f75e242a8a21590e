from django.apps import AppConfig


class LibraryConfig(AppConfig):
    """The demo's book catalogue."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo_site.library"
    verbose_name = "Library"
