from django import forms

from .isbn import normalise_isbn
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
        try:
            return normalise_isbn(self.cleaned_data["isbn"])
        except ValueError:
            raise forms.ValidationError(
                "Enter a valid ISBN-10 or ISBN-13.", code="invalid"
            ) from None
