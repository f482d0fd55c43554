"""The `kawa` command: run a Fluentd config, check it (--dry-run), show it, list plugins, tools.

Exit codes: 0 clean stop, 1 runtime failure, 2 configuration problems (all of them are listed).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
from typing import TYPE_CHECKING, Sequence, TextIO

from kawa import __version__
from kawa.errors import ConfigError, KawaError, Problem
from kawa.log import LEVELS, LogSink, Logger

DEFAULT_CONFIGS = ("/fluentd/etc/fluent.conf", "/etc/kawa/kawa.conf", "/etc/kawa/fluent.conf",
                   "/etc/fluent/fluent.conf")
EXIT_CONFIG = 2

if TYPE_CHECKING:
    from kawa.config.element import Element
    from kawa.engine.pipeline import Pipeline


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the width found without `shutil` (0.6 MiB resident for the
    daemon otherwise: argparse imports it to ask the terminal size)."""

    def __init__(self, prog: str) -> None:
        try:
            width = os.get_terminal_size().columns - 2
        except OSError:
            width = 78
        super().__init__(prog, width=width)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kawa", description="A Fluentd-compatible log collector.",
                                formatter_class=_HelpFormatter)
    p.add_argument("-c", "--config", help="configuration file (Fluentd syntax)")
    p.add_argument("--dry-run", action="store_true", help="check the configuration and exit (0 ok, 2 problems)")
    p.add_argument("--check-aws", action="store_true",
                   help="with --dry-run: resolve AWS credentials (STS GetCallerIdentity) and check the "
                        "configured CloudWatch Logs groups exist or can be created")
    p.add_argument("--show-config", action="store_true",
                   help="print the expanded configuration (includes resolved, env interpolated, secrets masked)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for trace)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less log output (-qq for errors only)")
    p.add_argument("-o", "--log", help="write kawa's own log to this file")
    p.add_argument("--version", action="version", version=f"kawa {__version__}")
    p.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plugins":
        return _list_plugins(sys.stdout)
    if argv and argv[0] == "buffer":
        from kawa.buffer_tool import main as buffer_main

        return buffer_main(argv[1:])
    args = _parser().parse_args(argv)
    # --show-config prints the configuration on stdout; the log goes to stderr so the two never mix.
    sink = LogSink(sys.stderr if args.show_config else sys.stdout, level=_level(args))
    if args.log:
        sink.open_file(args.log)
    log = Logger(sink)
    try:
        return _run(args, log, argv)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error(str(problem))
        return EXIT_CONFIG
    except KawaError as exc:
        log.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 0


def _level(args: argparse.Namespace) -> str:
    index = LEVELS["info"] - args.verbose + args.quiet
    index = max(0, min(index, LEVELS["fatal"]))
    return next(name for name, value in LEVELS.items() if value == index)


def _config_path(args: argparse.Namespace) -> str:
    if args.config:
        return args.config
    env = os.environ.get("FLUENTD_CONF") and os.path.join("/fluentd/etc", os.environ["FLUENTD_CONF"])
    for candidate in ([env] if env else []) + list(DEFAULT_CONFIGS):
        if os.path.exists(candidate):
            return candidate
    raise ConfigError("no configuration file: pass -c PATH (looked in " + ", ".join(DEFAULT_CONFIGS) + ")")


def _run(args: argparse.Namespace, log: Logger, argv: Sequence[str]) -> int:
    from kawa.config.parser import parse_config_file, parse_config_file_with_warnings
    from kawa.engine.pipeline import PipelineBuilder

    path = _config_path(args)
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")

    def parse(first: bool = False) -> "Element":
        # Fluentd's parser logs these itself ('include' is deprecated, '@' reserved prefix, ...),
        # before "parsing config file is succeeded", and again on each reload; at start, in the
        # log format <system><log> asks for.
        root, warnings = parse_config_file_with_warnings(path)
        if first:
            _apply_system_log(root, log, args)
        for warning in warnings:
            log.warn(warning.message)
        return root

    root = parse(first=True)
    log.info("parsing config file is succeeded", path=path)
    workers = _workers(root)
    if workers > 1 and args.worker_id is None and not (args.dry_run or args.show_config):
        return _supervise(root, workers, argv, log)
    # Fluentd's dry run configures every <worker N> section (root_agent.rb); kawa builds each worker
    # and lists every problem once, those of worker 0 first
    other_problems: list[Problem] = []
    if args.dry_run and workers > 1 and args.worker_id is None:
        for other in range(1, workers):
            try:
                PipelineBuilder(parse_config_file(path), Logger(LogSink(io.StringIO())), worker_id=other,
                                dry_run=True).build()
            except ConfigError as exc:
                other_problems += [p for p in exc.problems if p not in other_problems]
    worker_id = args.worker_id or 0
    fixed = bool(args.verbose or args.quiet)
    builder = PipelineBuilder(root, log, worker_id=worker_id, dry_run=args.dry_run or args.show_config,
                              log_level_fixed=fixed)
    if args.dry_run:
        log.info(f"starting kawa-{__version__} as dry run mode", python=platform.python_version())
    try:
        pipeline = builder.build()
    except ConfigError as exc:
        raise ConfigError(exc.problems + [p for p in other_problems if p not in exc.problems]) from None
    if other_problems:
        raise ConfigError(other_problems)
    if args.show_config:
        sys.stdout.write(builder.dump() + "\n")
        return 0
    if not pipeline.system.suppress_config_dump:
        log.info("using configuration file: " + builder.dump())
    if args.dry_run:
        for line in pipeline.no_effect:
            log.info(f"accepted without effect: {line}")
        if args.check_aws and not _check_aws(pipeline, log):
            return EXIT_CONFIG
        log.info("finished dry run mode")
        return 0
    log.info(f"starting kawa-{__version__}", pid=os.getpid(), python=platform.python_version())
    from kawa.engine.agent import Agent

    def reload() -> "Pipeline":
        new_root = parse()
        return PipelineBuilder(new_root, log, worker_id=worker_id, log_level_fixed=fixed).build()

    agent = Agent(pipeline, log, worker_id=worker_id, reload=reload)
    return asyncio.run(agent.run())


def _apply_system_log(root: "Element", log: Logger, args: argparse.Namespace) -> None:
    """`<system><log>` format, time_format and path, before anything else is logged: Fluentd also
    parses the config once quietly to set its logger up first. Bound here by the same schema as in
    the pipeline build, which reports any problem (this early bind's are dropped)."""
    from kawa.config.schema import BindContext
    from kawa.engine.pipeline import bind_system

    settings = bind_system(root, BindContext()).log
    if settings is None:
        return
    log.sink.format = settings.format
    log.sink.set_time_format(settings.time_format)
    if settings.path and settings.path != "-" and not args.log and not args.show_config:
        # -o wins over the config, as Fluentd's --log over <log> path
        os.makedirs(os.path.dirname(settings.path) or ".", exist_ok=True)
        log.sink.open_file(settings.path)


def _check_aws(pipeline: "Pipeline", log: Logger) -> bool:
    """Online checks of every cloudwatch_logs output (plain --dry-run stays offline)."""
    ok = True
    for plugin in pipeline.plugins:
        if plugin.type_name != "cloudwatch_logs":
            continue
        from kawa.plugins.outputs.cloudwatch_logs import check_aws

        problems = check_aws(plugin)  # type: ignore[arg-type]
        for problem in problems:
            log.error(f"check-aws: {plugin.plugin_id}: {problem}")
        if not problems:
            log.info(f"check-aws: {plugin.plugin_id}: credentials and log groups OK")
        ok = ok and not problems
    return ok


def _workers(root: "Element") -> int:
    """`<system> workers`, read without building anything (the supervisor stays small)."""
    from kawa.config.schema import BindContext
    from kawa.engine.pipeline import bind_system

    bind = BindContext()
    system = bind_system(root, bind)
    if bind.problems:
        raise ConfigError(bind.problems)
    return max(1, system.workers or 1)


def _supervise(root: "Element", workers: int, argv: Sequence[str], log: Logger) -> int:
    from kawa.engine.supervisor import Supervisor, worker_argv

    log.info(f"starting kawa-{__version__} supervisor", pid=os.getpid(), workers=workers,
             python=platform.python_version())
    return Supervisor(workers, worker_argv(argv), log).run()


def _list_plugins(out: TextIO) -> int:
    from kawa.engine import registry

    for kind, names in registry.available().items():
        if names:
            out.write(f"{kind}: {', '.join(names)}\n")
    return 0
