"""ISBN clean-up shared by the book form and the catalogue import."""


def normalise_isbn(value: str) -> str:
    """``value`` without hyphens or spaces, upper-cased; "" stays "".

    Raises ``ValueError`` unless the result is empty, 13 digits, or 9 digits
    followed by a digit or ``X`` (ISBN-10). Check digits are not verified.
    """
    isbn = value.replace("-", "").replace(" ", "").upper()
    if not isbn:
        return ""
    valid = (len(isbn) == 13 and isbn.isdigit()) or (
        len(isbn) == 10 and isbn[:9].isdigit() and (isbn[9].isdigit() or isbn[9] == "X")
    )
    if not valid:
        raise ValueError(f"{value!r} is not a valid ISBN-10 or ISBN-13")
    return isbn
