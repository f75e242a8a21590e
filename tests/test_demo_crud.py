"""CRUD views of the demo's Book catalogue."""

from django.test import TestCase
from django.urls import reverse

from demo_site.library.models import Book


class BookCrudTests(TestCase):
    book: Book

    @classmethod
    def setUpTestData(cls) -> None:
        cls.book = Book.objects.create(
            title="Dune", author="Frank Herbert", isbn="9780441013593", year=1965
        )

    def test_list_shows_books(self) -> None:
        Book.objects.create(title="Emma", author="Jane Austen")
        response = self.client.get(reverse("library:book_list"))
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "library/book_list.html")
        self.assertContains(response, "Dune")
        self.assertContains(response, "Jane Austen")
        self.assertContains(response, reverse("library:book_edit", args=[self.book.pk]))

    def test_list_when_empty(self) -> None:
        Book.objects.all().delete()
        response = self.client.get(reverse("library:book_list"))
        self.assertContains(response, "No books yet")

    def test_create_form_renders(self) -> None:
        response = self.client.get(reverse("library:book_create"))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'name="title"')
        self.assertContains(response, "csrfmiddlewaretoken")

    def test_create_saves_and_redirects(self) -> None:
        response = self.client.post(
            reverse("library:book_create"),
            {"title": "Emma", "author": "Jane Austen", "isbn": "978-0-14-143958-7", "year": "1815"},
            follow=True,
        )
        self.assertRedirects(response, reverse("library:book_list"))
        book = Book.objects.get(title="Emma")
        self.assertEqual(book.author, "Jane Austen")
        self.assertEqual(book.isbn, "9780141439587")
        self.assertEqual(book.year, 1815)
        self.assertIsNone(book.synced_at)
        self.assertEqual(book.sync_version, 0)
        self.assertContains(response, "Added “Emma”.")

    def test_create_with_optional_fields_blank(self) -> None:
        response = self.client.post(
            reverse("library:book_create"), {"title": "Beowulf", "author": "Anonymous"}
        )
        self.assertRedirects(response, reverse("library:book_list"))
        book = Book.objects.get(title="Beowulf")
        self.assertEqual(book.isbn, "")
        self.assertIsNone(book.year)

    def test_create_invalid_shows_errors(self) -> None:
        response = self.client.post(
            reverse("library:book_create"), {"title": "", "author": "Someone", "isbn": "12345"}
        )
        self.assertEqual(response.status_code, 200)
        self.assertFormError(response.context["form"], "title", "This field is required.")
        self.assertFormError(response.context["form"], "isbn", "Enter a valid ISBN-10 or ISBN-13.")
        self.assertContains(response, "This field is required.")
        self.assertEqual(Book.objects.count(), 1)

    def test_create_duplicate_isbn_is_refused(self) -> None:
        response = self.client.post(
            reverse("library:book_create"),
            {"title": "Dune (again)", "author": "Frank Herbert", "isbn": "978-0441013593"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "A book with this ISBN already exists.")
        self.assertEqual(Book.objects.count(), 1)

    def test_edit_form_shows_current_values(self) -> None:
        response = self.client.get(reverse("library:book_edit", args=[self.book.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'value="Frank Herbert"')

    def test_edit_saves_and_redirects(self) -> None:
        before = self.book.updated_at
        response = self.client.post(
            reverse("library:book_edit", args=[self.book.pk]),
            {"title": "Dune Messiah", "author": "Frank Herbert", "isbn": "", "year": "1969"},
        )
        self.assertRedirects(response, reverse("library:book_list"))
        self.book.refresh_from_db()
        self.assertEqual(self.book.title, "Dune Messiah")
        self.assertEqual(self.book.isbn, "")
        self.assertEqual(self.book.year, 1969)
        self.assertGreater(self.book.updated_at, before)

    def test_edit_invalid_keeps_book_unchanged(self) -> None:
        response = self.client.post(
            reverse("library:book_edit", args=[self.book.pk]),
            {"title": "Dune", "author": "", "year": "not a year"},
        )
        self.assertEqual(response.status_code, 200)
        self.assertFormError(response.context["form"], "author", "This field is required.")
        self.assertFormError(response.context["form"], "year", "Enter a whole number.")
        self.book.refresh_from_db()
        self.assertEqual(self.book.author, "Frank Herbert")

    def test_edit_unknown_book_is_404(self) -> None:
        response = self.client.get(reverse("library:book_edit", args=[self.book.pk + 1]))
        self.assertEqual(response.status_code, 404)

    def test_delete_asks_for_confirmation(self) -> None:
        response = self.client.get(reverse("library:book_delete", args=[self.book.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "Delete “Dune”?")
        self.assertTrue(Book.objects.filter(pk=self.book.pk).exists())

    def test_delete_removes_and_redirects(self) -> None:
        response = self.client.post(
            reverse("library:book_delete", args=[self.book.pk]), follow=True
        )
        self.assertRedirects(response, reverse("library:book_list"))
        self.assertFalse(Book.objects.filter(pk=self.book.pk).exists())
        self.assertContains(response, "Deleted “Dune”.")
