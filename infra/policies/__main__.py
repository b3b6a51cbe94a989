"""The pack the Pulumi CLI loads: `pulumi preview --policy-pack infra/policies`.

Constructing PolicyPack starts a gRPC server and blocks, so it lives only here;
the checks themselves are plain functions in roadie_policies.
"""

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy, StackValidationPolicy

from roadie_policies import RESOURCE_POLICIES, STACK_POLICIES

PolicyPack(
    name="roadie",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *(ResourceValidationPolicy(name=name, description=desc, validate=fn)
          for name, (fn, desc) in RESOURCE_POLICIES.items()),
        *(StackValidationPolicy(name=name, description=desc, validate=fn)
          for name, (fn, desc) in STACK_POLICIES.items()),
    ],
)
