"""Calendar months (``YYYY-MM``) as used by the catalog, prepare and inference."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from nationmap.errors import InputError

_MONTH = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> dt.datetime:
        return dt.datetime(self.year, self.month, 1, tzinfo=dt.timezone.utc)

    @property
    def end(self) -> dt.datetime:
        """First instant of the next month (exclusive end)."""
        return self.next().start

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def next(self) -> "Month":
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def contains(self, when: dt.datetime | dt.date) -> bool:
        return (when.year, when.month) == (self.year, self.month)

    @classmethod
    def of(cls, when: dt.date | dt.datetime) -> "Month":
        return cls(when.year, when.month)


# The months whose first and exclusive last instant Python's datetime can represent (years 1..9999).
FIRST, LAST = Month(1, 1), Month(9999, 11)


def parse_month(text: str) -> Month:
    """``"2022-09"`` -> Month(2022, 9); raises InputError for e.g. ``"2022-13"``."""
    m = _MONTH.match(text.strip())
    if m is None:
        raise InputError(f"malformed month {text!r}: expected YYYY-MM, e.g. 2022-09")
    year, month = int(m["y"]), int(m["m"])
    if not 1 <= month <= 12:
        raise InputError(f"malformed month {text!r}: month must be 01..12")
    if not FIRST <= Month(year, month) <= LAST:
        raise InputError(f"month {text!r} is outside the calendar: months run {FIRST}..{LAST}")
    return Month(year, month)


def parse_months(text: str) -> list[Month]:
    """Comma-separated months, sorted and de-duplicated."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        raise InputError("no month given: expected YYYY-MM[,YYYY-MM...]")
    return sorted(set(parse_month(p) for p in parts))
