"""gunicorn settings for bin/serve, all from STREAMING_* variables.

gthread workers keep many slow listeners from starving a worker; SIGTERM
stops accepting and lets responses in flight finish within graceful_timeout.
"""

from streaming.config import from_env

_cfg = from_env()

bind = _cfg.bind
workers = _cfg.workers
worker_class = "gthread"
threads = _cfg.threads
graceful_timeout = _cfg.graceful_timeout
timeout = 120
accesslog = "-"
errorlog = "-"
proc_name = "streaming"
control_socket_disable = True
worker_tmp_dir = "/dev/shm"
