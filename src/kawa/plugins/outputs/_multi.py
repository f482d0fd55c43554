"""What outputs made of <store> outputs share (Fluentd's MultiOutput): copy and roundrobin start, stop
and flush every store they were built with."""

from __future__ import annotations

from kawa.plugins.base import Output


class MultiOutput(Output):
    outputs: list[Output]

    async def start(self) -> None:
        for out in self.outputs:
            await out.start()

    async def stop(self) -> None:
        for out in self.outputs:
            await out.stop()

    async def flush(self) -> None:
        for out in self.outputs:
            await out.flush()
