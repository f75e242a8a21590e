from django.apps import AppConfig


class LibraryConfig(AppConfig):
    """The demo's book catalogue."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "demo_site.library"
    verbose_name = "Library"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
