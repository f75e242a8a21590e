from django.db import models
from django.db.models import Q
from django.urls import reverse


class Book(models.Model):
    """A book in the demo catalogue, kept in sync with a (fake) external API."""

    title = models.CharField(max_length=200)
    author = models.CharField(max_length=200)
    isbn = models.CharField("ISBN", max_length=13, blank=True, default="")
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Written by the sync flow, not by the edit form.
    synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_version = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["title", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["isbn"],
                condition=~Q(isbn=""),
                name="library_book_unique_isbn",
                violation_error_message="A book with this ISBN already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("library:book_edit", args=[self.pk])
