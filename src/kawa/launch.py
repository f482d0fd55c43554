"""Entry point of the `kawa` command: what must happen before the first import, then the CLI."""

from __future__ import annotations

from kawa import ssl_gate


def main() -> int:
    ssl_gate.defer()                 # before asyncio: see kawa.ssl_gate
    from kawa.cli import main as cli_main

    return cli_main()
