"""The two ways a roadie command fails, mapped to the exit codes CI relies on."""

import click


class BadInput(click.ClickException):
    """The user asked for something wrong; nothing was changed. Exit 2."""

    exit_code = 2


class OperationFailed(click.ClickException):
    """A well-formed operation did not succeed. Exit 1."""

    exit_code = 1


class HostUnreachable(OperationFailed):
    """A host did not answer (no connection, a dead link, a command past its bound): what it did is unknown,
    so nothing more is asked of it and it is not put back in rotation."""
