"""Cron schedules of ``coder_script.cron``, read as Coder's agent reads them
(robfig/cron with Second | Minute | Hour | Dom | Month | DowOptional): the
first field is **seconds**, so ``*/5 * * * *`` runs every five seconds and
``0 */5 * * * *`` every five minutes. Fields: ``*``, ``*/n``, ``a``, ``a-b``,
``a-b/n``, lists with ``,``, month and weekday names, ``?`` as ``*``.
Day-of-month and day-of-week combine as in cron: when both are restricted,
either may match.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (low, high, names) per field.
_FIELDS = (
    (0, 59, {}),
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
)


class CronError(ValueError):
    pass


def _value(text: str, low: int, high: int, names: dict[str, int]) -> int:
    text = text.lower()
    if text in names:
        return names[text]
    if not text.isdigit():
        raise CronError(f"bad value {text!r}")
    value = int(text)
    if value == 7 and high == 6:  # Sunday as 7
        value = 0
    if not low <= value <= high:
        raise CronError(f"{value} is outside {low}-{high}")
    return value


def _field(text: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    """(allowed values, restricted?)"""
    values: set[int] = set()
    restricted = True
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step {step_text!r}")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
            if not step_text:
                restricted = False
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, low, high, names), _value(b, low, high, names)
            if start > end:
                raise CronError(f"bad range {base!r}")
        else:
            start = _value(base, low, high, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values), restricted


@dataclasses.dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, spec: str) -> Schedule:
        parts = spec.split()
        if len(parts) == 5:
            parts.append("*")
        if len(parts) != 6:
            raise CronError(f"expected 5 or 6 fields (seconds first), got {len(parts)}: {spec!r}")
        fields = [_field(p, *_FIELDS[i]) for i, p in enumerate(parts)]
        return cls(
            fields[0][0],
            fields[1][0],
            fields[2][0],
            fields[3][0],
            fields[4][0],
            fields[5][0],
            fields[3][1],
            fields[5][1],
        )

    def _day_ok(self, t: dt.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first matching second strictly after ``t`` (within 5 years)."""
        t = t.replace(microsecond=0) + dt.timedelta(seconds=1)
        limit = t + dt.timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + dt.timedelta(days=32)).replace(
                    day=1
                )
                continue
            if not self._day_ok(t):
                t = t.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + dt.timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t += dt.timedelta(seconds=1)
                continue
            return t
        raise CronError("the schedule never matches")
