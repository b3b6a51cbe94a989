"""Entry point the Pulumi CLI runs: settings first, then the estate."""

import pulumi

from roadie_infra import program, settings

try:
    stack_settings = settings.from_pulumi()
except settings.ConfigError as exc:
    raise pulumi.RunError(str(exc)) from None

for key, value in program.build(stack_settings).items():
    pulumi.export(key, value)
