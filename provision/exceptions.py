"""Error types: one root, one kind per failure a user can act on."""

from __future__ import annotations


class ProvisionError(Exception):
    """Root of every error this project raises on purpose.

    The message is one sentence a user can act on; ``hint`` (optional) says what to do.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\nHint: {hint}" if hint else message)


class ConfigError(ProvisionError):
    """A setting, flag or spec string is invalid."""


class ConnectError(ProvisionError):
    """A target (container, SSH host, engine) cannot be reached."""


class CommandFailed(ProvisionError):
    """A command run on a target exited non-zero."""

    def __init__(self, target: str, command: str, exit_code: int, stdout: str = "", stderr: str = "") -> None:
        self.target = target
        self.command = command
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        msg = f"Command failed on {target} (exit {exit_code}): {command}"
        if tail:
            msg += f"\n--- last output ---\n{tail}"
        super().__init__(msg)


class MetadataError(ProvisionError):
    """The instance metadata service did not give an answer."""


class AwsError(ProvisionError):
    """An AWS (or moto) API call failed."""


class WaitTimeout(AwsError):
    """A bounded wait ended before the resource reached the wanted state."""


class AuditFailed(ProvisionError):
    """The secrets audit found something that must not be in a public image."""


class ImageTestFailed(ProvisionError):
    """The build's test stage found that an instance of the new image does not boot, reboot or report as it must."""


class TlsError(ProvisionError):
    """The instance's TLS certificate cannot be made or used (openssl missing, the owner's files wrong)."""


class SimError(ProvisionError):
    """The simulation cannot do what was asked (no sim running, engine missing, ...)."""


class NotYetImplemented(ProvisionError):
    """A task whose work belongs to an issue that has not landed yet."""


class DiskFull(ProvisionError):
    """The target has too little free disk to continue safely."""


class CephNotHealthy(ProvisionError):
    """The Ceph cluster did not reach the wanted state (HEALTH_OK, OSDs up) in time."""


class JoinError(ProvisionError):
    """A node cannot join the cluster: its join token is malformed, unknown, wrong, used or expired."""
