"""Usage limits: when the agent says its limit resets, and how long a usage-limited task waits."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

MAX_LIMIT_WAIT = 7 * 86400.0  # a reset further away than this is clamped (a misread, or a weekly cap)
RESET_GROUPS = ("epoch", "seconds", "delay", "at", "daily")
DAILY_RESET_ZONE = "America/Los_Angeles"  # Google's daily API quotas reset at midnight Pacific time
_UNIT = r"(?:days?|d|hours?|hrs?|h|minutes?|mins?|ms|m|seconds?|secs?|s)(?![a-z])"
_DELAY = rf"(?:\d+(?:\.\d+)?\s*{_UNIT}[\s,]*(?:and\s+)?)+"
_CLOCK = r"\d{1,2}(?::\d{2})?\s*[ap]\.?m\.?|\d{1,2}:\d{2}"
_DATE = r"(?:[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:\d{4},?\s+)?)?"
_TZ = r"(?:\s*\((?P<tz>[A-Za-z][A-Za-z0-9_+\-/]*)\))?"
# The shapes the agent CLIs print (first pattern that matches wins), as seen from the pinned CLIs:
#   claude-code 2.1.332 (its native binary's strings; a Claude.ai plan, 429 + anthropic-ratelimit-unified-*):
#           "You've hit your 5-hour limit · resets 4am (Europe/Berlin)", "... · resets 3:59am (Europe/Berlin)",
#           "You've hit your weekly limit · resets Dec 4, 8:15pm (America/New_York)",
#           "... resets Jan 6, 2028, 12:43am (UTC)"; older CLIs: "Claude AI usage limit reached|<epoch>"
#   codex 0.171 (codex-rs protocol/src/error.rs, UsageLimitReachedError): "You’ve hit your usage limit.
#           ... or try again at 2:39 AM." / "try again at Dec 5th, 2026 12:36 AM." (local time, the
#           child's TZ), "try again in 2 hours 5 minutes"; {"resets_at": ..., "resets_in_seconds": ...}
#   gemini-cli 0.61 (classifyGoogleError): RetryableQuotaError "... Please retry in 37.5s."
#           (per minute), TerminalQuotaError "You have exhausted your daily quota on this model.";
#   http: "Retry-After: 20"; groq: "Please try again in 4.36s" / "try again in 1m26.4s"
RESET_PATTERNS = [
    # gemini's daily quota also says "Please retry in 37.5s": the day wins (else 10 waits burn in minutes)
    r"(?P<daily>exhausted your daily quota|PerDay(?:PerProject|PerUser)?)",
    r"limit reached\|(?P<epoch>\d{9,11})\b",
    r"resets_at\W{0,4}(?P<epoch>\d{9,11})\b",
    r"resets_in_seconds\W{0,4}(?P<seconds>\d+(?:\.\d+)?)",
    r"retryDelay\W{0,4}(?P<seconds>\d+(?:\.\d+)?)s",
    r"(?i)Retry-After:\s*(?P<seconds>\d+)",
    rf"(?i)(?:try again|retry) in\s+(?P<delay>{_DELAY})",
    rf"(?i)(?:resets?|try again)(?:\s+at)?\s+(?P<at>{_DATE}(?:{_CLOCK})){_TZ}",
]
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _delay_seconds(text: str) -> float:
    """'2 hours 5 minutes' / '1m30s' / '37.5s' -> seconds."""
    total = 0.0
    for num, unit in re.findall(rf"(\d+(?:\.\d+)?)\s*({_UNIT})", text, re.I):
        unit = unit.lower()
        total += float(num) * (0.001 if unit == "ms" else _UNIT_SECONDS[unit[0]])
    return total


def zone(name: str | None, local: dt.tzinfo | None = None) -> dt.tzinfo:
    """The zone ``name`` (an IANA name, e.g. from a message or a TZ variable); else ``local``, else this machine's."""
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return local or dt.datetime.now().astimezone().tzinfo or dt.timezone.utc


def _at_time(text: str, zone: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
    """'3pm', '3:30 PM', '15:30', 'Jul 5th, 2026 8:19 PM' -> the next such moment (a time passed
    less than 5 minutes ago is that moment, not tomorrow's: the message was printed just before)."""
    m = re.search(r"(\d{1,2})(?::(\d{2}))?\s*(?:([ap])\.?m\.?)?\s*$", text, re.I)
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3):
        hour = hour % 12 + (12 if m.group(3).lower() == "p" else 0)
    if hour > 23 or minute > 59:
        return None
    local_now = now.astimezone(zone)
    d = re.match(r"([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(?:(\d{4}),?\s+)?", text)
    step = dt.timedelta(days=1)
    try:
        if d and d.group(1).lower() in _MONTHS:
            year = int(d.group(3) or local_now.year)
            base = dt.datetime(year, _MONTHS[d.group(1).lower()], int(d.group(2)), hour, minute, tzinfo=zone)
            step = dt.timedelta(days=365) if not d.group(3) else dt.timedelta(0)
        else:
            base = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        return None
    if step and base < now - dt.timedelta(minutes=5):
        base += step
    return base


def _reset_from(m: re.Match[str], now: dt.datetime, local: dt.tzinfo | None) -> dt.datetime | None:
    g = m.groupdict()
    if g.get("daily"):
        day = now.astimezone(zoneinfo.ZoneInfo(DAILY_RESET_ZONE)).date() + dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(0), zoneinfo.ZoneInfo(DAILY_RESET_ZONE))
    if g.get("epoch"):
        return dt.datetime.fromtimestamp(int(g["epoch"]), dt.timezone.utc)
    if g.get("seconds"):
        return now + dt.timedelta(seconds=float(g["seconds"]))
    if g.get("delay"):
        secs = _delay_seconds(g["delay"])
        return now + dt.timedelta(seconds=secs) if secs > 0 else None
    if g.get("at"):
        return _at_time(g["at"].strip(), zone(g.get("tz"), local), now)
    return None


def usage_limit_reset(
    text: str, *, now: dt.datetime, patterns: list[str] | None = None, local: dt.tzinfo | None = None
) -> dt.datetime | None:
    """When a usage limit resets, read from the agent's output (UTC, clamped to now..now+7 days); None: not said.

    ``patterns`` (the agent's ``usage_limit_reset``) are tried before the built-in shapes;
    a time of day with no zone is in ``local`` (default: this machine's zone).
    """
    for pattern in [*(patterns or []), *RESET_PATTERNS]:
        for m in re.finditer(pattern, text):
            when = _reset_from(m, now, local)
            if when is not None:
                when = min(max(when, now), now + dt.timedelta(seconds=MAX_LIMIT_WAIT))
                return when.astimezone(dt.timezone.utc).replace(microsecond=0)
    return None


def limit_wait(
    reset: dt.datetime | None, previous: dict[str, Any], *, now: dt.datetime, backoff: float, max_waits: int
) -> tuple[dt.datetime, int] | None:
    """Until when a usage-limited task waits, and how many limit waits in a row this is.

    ``previous`` is the task's last result: a limit right after a limit counts on. With no
    reset in the output the wait is ``backoff`` seconds, doubling with each wait in a row
    (capped at 7 days). None once ``max_waits`` waits in a row are spent: then it is an
    ordinary failure (a limit that never lifts, e.g. no credit left, needs a person).
    """
    waits = int(previous.get("limit_waits") or 0) + 1 if previous.get("usage_limit") else 1
    if waits > max_waits:
        return None
    if reset is None:
        reset = now + dt.timedelta(seconds=min(backoff * 2 ** (waits - 1), MAX_LIMIT_WAIT))
    return reset, waits
