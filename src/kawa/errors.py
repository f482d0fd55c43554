"""The exception tree every part of kawa raises, and the config Problem record.

    KawaError
    ├── ConfigError            user config is wrong; carries every Problem found; --dry-run exits 2
    │   └── ConfigParseError   syntax error at file:line (one Problem)
    ├── RetryableError         transient output failure; the buffer retries the same chunk later
    ├── UnrecoverableError     this chunk can never succeed; goes to <secondary> / dead-letter dir
    └── BufferOverflowError    the buffer is full (overflow_action throw_exception): back-pressure

Outputs never sleep or retry themselves: they raise RetryableError or UnrecoverableError and the
buffer owns the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Location:
    """Where a config element or value was written: file and 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration, with enough context to fix it at 3 a.m."""

    message: str
    location: Location | None = None
    path: tuple[str, ...] = field(default=())   # section path, e.g. ("<match app.**>", "<buffer>")
    option: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(f"{self.location}:")
        if self.path:
            parts.append(" ".join(self.path) + ":")
        if self.option:
            parts.append(f"{self.option}:")
        parts.append(self.message)
        return " ".join(parts)


class KawaError(Exception):
    """Base of every error kawa raises on purpose."""


class ConfigError(KawaError):
    """The configuration is wrong. Carries all problems at once, not just the first."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigParseError(ConfigError):
    """Syntax error in a config file (one problem, with file:line)."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__([Problem(message, location)])
        self.location = location
        self.bare_message = message


class RetryableError(KawaError):
    """A transient failure (throttling, 5xx, timeout): the buffer retries the same chunk.

    `slow_down` asks the buffer to back off the whole output (all flush threads), as for throttling.
    `progress`: this attempt delivered part of the chunk before failing (a multi-call output such as
    cloudwatch_logs resumes after it): the chunk is moving, so its backoff starts again from retry_wait
    instead of growing as for a chunk that gets nowhere.
    """

    def __init__(self, message: str, *, slow_down: bool = False, progress: bool = False) -> None:
        super().__init__(message)
        self.slow_down = slow_down
        self.progress = progress


class UnrecoverableError(KawaError):
    """This chunk can never be written as is: move it to <secondary> or the dead-letter directory."""


class BufferOverflowError(KawaError):
    """The buffer reached its limits and overflow_action is throw_exception: the input must hold back."""
