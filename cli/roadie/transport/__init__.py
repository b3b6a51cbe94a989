"""How roadie reaches hosts: a Transport (base.py) over SSH with Fabric (ssh.py) or SSM Run Command (ssm.py),
chosen by the inventory's roadie_connection (registry.py).

Each runs one step on one host (`run`, `put`) or one command on many at once
(`run_each` -> a Result per host, as Fabric's Group/GroupResult).
"""

from roadie.transport.base import Lines, OnLine, Result, Transport
from roadie.transport.registry import KINDS, SSH_KINDS, for_env, kind_of
from roadie.transport.ssh import (CONNECT_SECONDS, DEAD_PEER_SECONDS, FANOUT, KEEPALIVE_SECONDS, SSH, STEP_SECONDS,
                                  Jump, TimedOut, connect, dead_peer_bound, jump_of, nodelay, open_once, run,
                                  ssh_files)

__all__ = ["CONNECT_SECONDS", "DEAD_PEER_SECONDS", "FANOUT", "KEEPALIVE_SECONDS", "KINDS", "SSH", "SSH_KINDS",
           "STEP_SECONDS", "Jump", "Lines", "OnLine", "Result", "TimedOut", "Transport", "connect",
           "dead_peer_bound", "for_env", "jump_of", "kind_of", "nodelay", "open_once", "run", "ssh_files"]
