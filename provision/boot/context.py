"""What a boot job is and what it is given: pure data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..instance import InstanceInfo
from ..settings import Settings
from ..steps import Log, StepResult
from ..target import Target


def log(message: str) -> None:
    """Log one line to stdout (the journal, when run from a unit)."""
    print(message, flush=True)


@dataclass
class BootContext:
    """What a job needs: where to act, the settings, and this instance's metadata."""

    target: Target
    settings: Settings
    info: InstanceInfo
    #: Where ``info`` came from: ``metadata`` (the service answered), ``last-known`` (this machine's
    #: last copy) or ``local`` (the service never answered on this machine: own address only).
    source: str
    log: Log = log
    #: The per-instance jobs already done for this instance (their markers say so).
    done_here: frozenset[str] = frozenset()

    @property
    def metadata_fresh(self) -> bool:
        """True when the metadata service answered at this boot."""
        return self.source == "metadata"

    @property
    def state_dir(self) -> str:
        """Directory holding the agent's state on the instance."""
        return self.settings.state_dir


JobFn = Callable[[BootContext], StepResult]


@dataclass(frozen=True)
class BootJob:
    """One boot job: its function and the systemd ordering its unit needs."""

    name: str
    per: str  # "boot" | "instance"
    description: str
    #: What the job does; None for a job whose unit runs ``command`` itself.
    fn: JobFn | None
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    #: argv the unit runs instead of the agent (a job that needs no Python and no metadata).
    command: tuple[str, ...] = ()
    #: Runs before the basic system is up (``DefaultDependencies=no``), e.g. before the network.
    early: bool = False
    #: Makes this instance's own secrets: the network stays fenced until it has succeeded.
    secrets: bool = False

    @property
    def unit(self) -> str:
        """The systemd unit name of this job."""
        return f"coa-{self.name}.service"
