"""The public API's types: mypy --strict (the repo's config, django-stubs) accepts
correct usage and rejects every mistake in ``tests/typing/usage_mistakes.py``.

mypy runs once, in-process (``mypy.api.run``), over both files; its cache
lives in the repository's ``.mypy_cache``, shared with ``make lint``.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections import defaultdict
from pathlib import Path
from typing import ClassVar

import mypy.api
from django.test import SimpleTestCase

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"
USAGE_OK = TYPING / "usage_ok.py"
USAGE_MISTAKES = TYPING / "usage_mistakes.py"

#: The mistakes a user study tried (issue: "Typing holes"); the file has more.
STUDIED_MISTAKES = 15

_ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*)$")
_MARK = "# mistake:"


def mistake_lines(path: Path) -> dict[int, str]:
    """Line number -> the mistake named by that line's ``# mistake: ...`` comment."""
    found: dict[int, str] = {}
    with path.open("rb") as source:
        for token in tokenize.tokenize(source.readline):
            if token.type == tokenize.COMMENT and token.string.startswith(_MARK):
                found[token.start[0]] = token.string[len(_MARK) :].strip()
    return found


def parse_errors(report: str) -> dict[Path, dict[int, list[str]]]:
    """mypy's report as file -> line -> messages (notes left out)."""
    errors: dict[Path, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for line in io.StringIO(report):
        match = _ERROR.match(line.rstrip("\n"))
        if match:
            path = Path(match["path"])
            if not path.is_absolute():
                path = Path.cwd() / path
            errors[path.resolve()][int(match["line"])].append(match["message"])
    return errors


class TypingTests(SimpleTestCase):
    report: ClassVar[str]
    status: ClassVar[int]
    errors: ClassVar[dict[Path, dict[int, list[str]]]]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        stdout, stderr, status = mypy.api.run(
            [
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(ROOT / ".mypy_cache"),
                "--strict",
                "--no-pretty",
                "--no-error-summary",
                "--show-error-codes",
                str(USAGE_OK),
                str(USAGE_MISTAKES),
            ]
        )
        cls.report, cls.status = stdout + stderr, status
        cls.errors = parse_errors(stdout)

    def test_mypy_ran(self) -> None:
        # 1: type errors found (the mistakes); 2 would be a crash or a bad config.
        self.assertEqual(self.status, 1, self.report)
        self.assertIn(USAGE_MISTAKES, self.errors, self.report)

    def test_correct_usage_is_clean(self) -> None:
        self.assertNotIn(USAGE_OK, self.errors, self.report)
        elsewhere = set(self.errors) - {USAGE_OK, USAGE_MISTAKES}
        self.assertEqual(elsewhere, set(), self.report)

    def test_the_mistakes_file_covers_the_studied_mistakes(self) -> None:
        named = mistake_lines(USAGE_MISTAKES)
        numbered = sorted(
            int(m.group(1)) for text in named.values() if (m := re.match(r"(\d+)\. ", text))
        )
        self.assertEqual(numbered, list(range(1, STUDIED_MISTAKES + 1)))

    def test_every_mistake_is_reported(self) -> None:
        reported = self.errors.get(USAGE_MISTAKES, {})
        missed = {
            line: name
            for line, name in mistake_lines(USAGE_MISTAKES).items()
            if line not in reported
        }
        self.assertEqual(missed, {}, "mistakes mypy accepted (line: mistake)")

    def test_nothing_else_in_the_mistakes_file_is_reported(self) -> None:
        marked = mistake_lines(USAGE_MISTAKES)
        unexpected = {
            line: messages
            for line, messages in self.errors.get(USAGE_MISTAKES, {}).items()
            if line not in marked
        }
        self.assertEqual(unexpected, {}, self.report)
