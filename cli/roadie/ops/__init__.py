"""On-call operations, one implementation behind two entry points: `roadie ops` and fabfile.py.

Every operation reuses the deploy machinery (inventory, transport, balancer,
engine, lock, audit); none re-implements draining, health gates or host
selection.
"""
