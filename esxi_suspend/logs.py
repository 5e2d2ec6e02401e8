"""Logging set up first, before anything can fail: syslog is the admin's only trace of a run.

upsmon runs us with no terminal, so syslog gets every step at INFO. stderr gets warnings (more
with -v) for a person running `check` by hand.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import stat
import sys

PROGRAM = "esxi-suspend"
SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
LOGGER_NAME = "esxi_suspend"


# A syslog daemon that stops reading lets its socket queue fill up; a blocking send would then
# hang us. Each send waits at most this long, then the record is dropped (stderr still has it
# when there is no syslog, and the shutdown must go on).
SYSLOG_SEND_TIMEOUT = 0.2


class QuietSysLogHandler(logging.handlers.SysLogHandler):
    """A syslog handler that never blocks for long and never prints a traceback."""

    def _connect_unixsocket(self, address: str) -> None:
        # Called on creation and on every reconnect after a failed send (not in typeshed).
        getattr(super(), "_connect_unixsocket")(address)  # noqa: B009
        sock: socket.socket | None = getattr(self, "socket", None)
        if sock is not None:
            sock.settimeout(SYSLOG_SEND_TIMEOUT)

    def handleError(self, record: logging.LogRecord) -> None:
        return


class NoTracebackFormatter(logging.Formatter):
    """stderr shows one line per record: a traceback goes to syslog only."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


def syslog_socket() -> str | None:
    """The first syslog socket that exists: SysLogHandler without one fails on every record.

    A socket, not merely a path: Debian 12 has a /var/run/log directory.
    """
    for path in SYSLOG_SOCKETS:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return path
        except OSError:
            continue
    return None


def setup(verbosity: int = 0) -> logging.Logger:
    """Send our records to syslog (INFO) and stderr (WARNING; -v INFO; -vv DEBUG)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()

    path = syslog_socket()
    to_syslog: logging.Handler | None = None
    if path is not None:
        try:
            to_syslog = QuietSysLogHandler(
                address=path, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
        except OSError:  # a socket nobody reads (syslog daemon gone): as if there were none
            to_syslog = None
        else:
            # Python 3.11 and later swallow the refused connect and keep a closed socket.
            sock = getattr(to_syslog, "socket", None)
            if sock is None or sock.fileno() < 0:
                to_syslog.close()
                to_syslog = None
    stderr_level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if to_syslog is None:
        # Without syslog, stderr (captured by upsmon's journal) is the only trace left.
        stderr_level = min(stderr_level, logging.INFO)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(stderr_level)
    to_stderr.setFormatter(NoTracebackFormatter(f"{PROGRAM}: %(levelname)s: %(message)s"))
    logger.addHandler(to_stderr)

    if to_syslog is not None:
        to_syslog.setLevel(logging.INFO)
        to_syslog.setFormatter(
            logging.Formatter(f"{PROGRAM}[{os.getpid()}]: %(levelname)s: %(message)s")
        )
        logger.addHandler(to_syslog)
    else:
        logger.debug(
            "no usable syslog socket (%s); logging to stderr only", ", ".join(SYSLOG_SOCKETS)
        )
    # paramiko logs its own transport errors (with tracebacks) on its logger: keep them out of
    # stderr; we report each failure ourselves in one line.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    return logger
