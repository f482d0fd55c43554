"""Generates realistic nginx access-log lines (combined + X-Forwarded-For, ~200 bytes, 5 % /healthcheck)
for the demo, the end-to-end tests and the benchmarks; deterministic for a given seed."""

from __future__ import annotations

import random
import time
from typing import Iterator

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
PATHS = ("/", "/index.html", "/api/v1/orders?page=2&sort=desc", "/api/v1/users/42", "/static/js/app.9f8e7d.js",
         "/static/css/main.css", "/login", "/search?q=kawa+logs", "/images/logo.png", "/api/v1/cart/items")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
          "curl/7.64.0", "okhttp/3.12.1", "python-requests/2.31.0", "Googlebot/2.1 (+http://www.google.com/bot.html)")
REFERERS = ("-", "https://example.com/", "https://www.google.com/search?q=example")
HEALTHCHECK = "/healthcheck"


def lines(count: int, *, seed: int = 1, start: float | None = None, healthcheck_ratio: float = 0.05,
          per_second: int = 1000) -> Iterator[str]:
    """`count` lines (without newline), timestamps advancing one second every `per_second` lines."""
    rng = random.Random(seed)
    base = int(start if start is not None else time.time() - count // max(per_second, 1) - 60)
    for i in range(count):
        t = time.gmtime(base + i // per_second)
        stamp = f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
        if rng.random() < healthcheck_ratio:
            path, agent, code, size = HEALTHCHECK, "kube-probe/1.29", 200, 2
        else:
            path, agent = rng.choice(PATHS), rng.choice(AGENTS)
            code, size = rng.choice((200, 200, 200, 304, 404, 500)), rng.randint(0, 50000)
        ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        yield (f'{ip} - - [{stamp}] "GET {path} HTTP/1.1" {code} {size} "{rng.choice(REFERERS)}" '
               f'"{agent}" "-"')


def write(path: str, count: int, **kw: object) -> int:
    """Write `count` lines to `path`; returns how many are not /healthcheck (what should arrive)."""
    kept = 0
    with open(path, "w") as f:
        chunk: list[str] = []
        for line in lines(count, **kw):  # type: ignore[arg-type]
            if f'"GET {HEALTHCHECK} ' not in line:
                kept += 1
            chunk.append(line)
            if len(chunk) >= 10000:
                f.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            f.write("\n".join(chunk) + "\n")
    return kept
