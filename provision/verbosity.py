"""How much a long task prints, by the usual convention: ``-q`` results and problems only, the
default its steps and live progress, ``-v`` also every command it runs on a target.

Host side only (the tasks): the boot agent logs at the default level to the journal.

* quiet: a log line passes only when it reports a problem (:data:`QUIET_KEEPS`); no live
  status is drawn and no "still running" line is written. What the task prints as its result
  (the status, the AMI ids) is printed, not logged, so it stays.
* verbose: each command a :class:`~provision.target.base.Target` runs is logged with its exit
  status and time (the command line only: secrets go on stdin, never on a command line).
"""

from __future__ import annotations

from . import progress
from .exceptions import ConfigError
from .steps import Log
from .target import base as target_base

QUIET, NORMAL, VERBOSE = -1, 0, 1
#: The start of a line a quiet run still shows: a build's failure and its cleanup, warnings, errors.
QUIET_KEEPS = ("!!!", "warning", "error", "could not")


def level(quiet: bool = False, verbose: bool = False) -> int:
    """The level the ``-q``/``-v`` flags ask for.

    Raises:
        ConfigError: both were given.
    """
    if quiet and verbose:
        raise ConfigError("-q (quiet) and -v (verbose) ask for opposite things", hint="give one of them")
    return QUIET if quiet else VERBOSE if verbose else NORMAL


def shown(line: str, at: int) -> bool:
    """True when ``line`` is printed at level ``at``."""
    return at > QUIET or line.lstrip().lower().startswith(QUIET_KEEPS)


def leveled(log: Log, at: int) -> Log:
    """``log``, keeping only the lines shown at level ``at``."""
    if at > QUIET:
        return log

    def quiet_log(line: str) -> None:
        if shown(line, at):
            log(line)

    return quiet_log


def apply(at: int, log: Log) -> None:
    """Make the progress display and the targets' command trace follow level ``at`` (``log``: where the trace goes)."""
    progress.set_live_allowed(at > QUIET)
    target_base.set_trace(log if at >= VERBOSE else None)
