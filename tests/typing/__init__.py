"""Files that ``tests/test_typing.py`` type-checks with mypy; they are not tests."""
