"""`esxi-suspend check --daily`: the check a timer runs every day, so that a broken path (a
moved address, a host reinstalled without our key or with a new host key, a hostd that stopped
answering) is found the next morning, not during an outage.

Silent when ready: nothing printed, one INFO line to syslog. When not: one WARNING to syslog,
and the reasons printed (cron mails what a job prints; systemd keeps it in the journal). It
does nothing while a shutdown is under way (a host's lock held, the outage record fresh) or
the UPS is on battery: a check then would only load the hosts and the battery.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from contextlib import redirect_stdout

from esxi_suspend import lock
from esxi_suspend.errors import ExitCode
from esxi_suspend.logs import LOGGER_NAME, QuietSysLogHandler
from esxi_suspend.nut import record, ups
from esxi_suspend.runner import run
from esxi_suspend.settings.envfile import validate
from esxi_suspend.settings.model import RestartSettings, Target, env_file_path

log = logging.getLogger(LOGGER_NAME)


def busy(
    targets: tuple[Target, ...],
    restart: RestartSettings,
    status: Callable[[tuple[str, ...]], ups.UpsStatus] = ups.read_status,
) -> str | None:
    """Why a daily check must leave the hosts alone now, or None. Reads only: it takes no
    lock and removes no record, so a shutdown starting meanwhile is never turned away."""
    path = record.record_path()
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        age = None
    if age is not None and age <= record.RECORD_FRESH:
        return f"a shutdown run follows an outage ({path} touched {age:.0f} s ago)"
    for target in targets:
        if lock.held(target.host, target.port):
            where = lock.lock_path(target.host, target.port)
            return f"a run holds host {target.host}:{target.port} ({where})"
    if restart.ups_names != ("none",):
        now = status(restart.ups_names)
        if now.on_battery:
            return f"the UPS is on battery ({now.describe()})"
    return None


class _Kept(logging.Handler):
    """The run's warnings and errors, kept to be printed only if the check fails."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_daily(env_file: str | None) -> ExitCode:
    """The check, quiet; its verdict once to syslog, its reasons printed when not ready."""
    path = env_file_path(env_file)
    validation = validate(path)
    targets = validation.settings.all_targets if validation.settings is not None else ()
    logger = logging.getLogger(LOGGER_NAME)
    handlers = list(logger.handlers)
    to_syslog = [h for h in handlers if isinstance(h, QuietSysLogHandler)]

    def say_to_syslog(level: int, message: str) -> None:
        entry = logger.makeRecord(logger.name, level, __file__, 0, message, (), None)
        for handler in to_syslog:
            handler.handle(entry)

    why = busy(targets, validation.restart)
    if why is not None:
        say_to_syslog(logging.INFO, f"daily check: not run: {why}")
        return ExitCode.OK
    kept = _Kept()
    for handler in handlers:
        logger.removeHandler(handler)
    logger.addHandler(kept)
    report = io.StringIO()
    try:
        with redirect_stdout(report):
            code = run(env_file, dry_run=True)
    finally:
        logger.removeHandler(kept)
        for handler in handlers:
            logger.addHandler(handler)
    if code == ExitCode.OK:
        say_to_syslog(logging.INFO, f"daily check: ready ({path})")
        return code
    reasons = list(dict.fromkeys(kept.lines)) or [
        line for line in report.getvalue().splitlines() if line.startswith("result:")
    ]
    verdict = f"NOT ready (exit {int(code)} {code.name})"
    say_to_syslog(
        logging.WARNING,
        f"daily check: {verdict}: {reasons[0]}; run `esxi-suspend check` for the whole report",
    )
    print(f"esxi-suspend daily check ({path}): {verdict}: a shutdown now would not go as planned:")
    for line in reasons:
        print(f"  {line}")
    print("Run `esxi-suspend check` for the whole report; it changes nothing.")
    return code
