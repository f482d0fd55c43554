"""The copy output: hands every batch to each <store> in turn (Fluentd's out_copy), with copy_mode
and the `<store ignore_error>` / `<store ignore_if_prev_success>` arguments.
"""

from __future__ import annotations

import copy as _copy
from typing import Any, Callable

from kawa.config.schema import Options, option, section
from kawa.engine.registry import register
from kawa.errors import ConfigError
from kawa.event import Event
from kawa.ruby_values import Bare
from kawa.plugins.base import Output, PluginContext
from kawa.plugins.outputs._multi import MultiOutput


class CopyOptions(Options):
    deep_copy = option(False, "bool", deprecated="use 'copy_mode' parameter instead",
                       doc="Same as copy_mode shallow.")
    copy_mode = option("no_copy", "enum", choices=("no_copy", "shallow", "deep", "marshal"),
                       doc="Give each store its own copy of the records: no_copy, shallow (copy of each "
                       "record), deep / marshal (deep copy).")
    store = section(plugin_kind="output", multi=True, required=True, doc="An output that receives every event.")


def _copier(mode: str) -> Callable[[list[Event]], list[Event]] | None:
    if mode == "no_copy":
        return None
    if mode == "shallow":
        # Fluentd's es.dup copies the stream, and stores that inject or modify copy records themselves;
        # kawa copies each record so a store that mutates in place cannot affect the next one.
        return lambda events: [(t, dict(r)) for t, r in events]
    return lambda events: [(t, _copy.deepcopy(r)) for t, r in events]


@register("output", "copy")
class CopyOutput(MultiOutput):
    Options = CopyOptions

    def __init__(self, options: Any, ctx: PluginContext) -> None:
        super().__init__(options, ctx)
        specs = [s for s in options.store if s is not None]
        self.ignore_errors: list[bool] = []
        self.ignore_if_prev_success: list[bool] = []
        for i, spec in enumerate(specs):
            arg = spec.element.arg
            if i == 0 and "ignore_if_prev_success" in arg:
                raise ConfigError("ignore_if_prev_success must specify 2nd or later <store> directives")
            self.ignore_errors.append("ignore_error" in arg)
            self.ignore_if_prev_success.append("ignore_if_prev_success" in arg)
        if self.ignore_errors and all(self.ignore_errors) and not any(self.ignore_if_prev_success):
            self.log.warn("ignore_errors are specified in all <store>, but ignore_if_prev_success is not "
                          "specified. Is this intended?")
        self.outputs: list[Output] = [self.build_child(spec, f"store{i}")  # type: ignore[misc]
                                      for i, spec in enumerate(specs)]
        self._copy = _copier("shallow" if options.deep_copy else options.copy_mode)

    async def process(self, tag: str, events: list[Event]) -> None:
        success = [False] * len(self.outputs)
        copier = self._copy
        for i, out in enumerate(self.outputs):
            if i > 0 and success[i - 1] and self.ignore_if_prev_success[i]:
                self.log.debug(f"ignore copy because prev_success in {out.plugin_id}", index=i)
                continue
            try:
                await out.emit(tag, copier(events) if copier else events)
                success[i] = True
            except Exception as exc:
                if not self.ignore_errors[i]:
                    raise
                self.log.error(f"ignore emit error in {out.plugin_id}", error_class=Bare(type(exc).__name__),
                               error=str(exc))
