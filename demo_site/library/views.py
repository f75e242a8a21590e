"""Book CRUD views."""

from typing import Any

from django.contrib.messages.views import SuccessMessageMixin
from django.urls import reverse_lazy
from django.views import generic

from .forms import BookForm
from .models import Book


class BookListView(generic.ListView):
    model = Book
    paginate_by = 25


class BookCreateView(SuccessMessageMixin, generic.CreateView):
    model = Book
    form_class = BookForm
    success_url = reverse_lazy("library:book_list")
    success_message = "Added “%(title)s”."


class BookUpdateView(SuccessMessageMixin, generic.UpdateView):
    model = Book
    form_class = BookForm
    success_url = reverse_lazy("library:book_list")
    success_message = "Saved “%(title)s”."


class BookDeleteView(SuccessMessageMixin, generic.DeleteView):
    model = Book
    success_url = reverse_lazy("library:book_list")

    def get_success_message(self, cleaned_data: dict[str, Any]) -> str:
        return f"Deleted “{self.object.title}”."
