from django import forms

from .models import Book


class BookForm(forms.ModelForm):
    """Create or edit a book; the ISBN is stored without hyphens or spaces."""

    isbn = forms.CharField(
        label="ISBN",
        max_length=17,
        required=False,
        help_text="Optional. ISBN-10 or ISBN-13; hyphens are fine.",
    )

    class Meta:
        model = Book
        fields = ["title", "author", "isbn", "year"]

    def clean_isbn(self) -> str:
        isbn: str = self.cleaned_data["isbn"].replace("-", "").replace(" ", "").upper()
        if not isbn:
            return ""
        valid = (len(isbn) == 13 and isbn.isdigit()) or (
            len(isbn) == 10 and isbn[:9].isdigit() and (isbn[9].isdigit() or isbn[9] == "X")
        )
        if not valid:
            raise forms.ValidationError("Enter a valid ISBN-10 or ISBN-13.", code="invalid")
        return isbn
