"""gunicorn settings for bin/serve, all from CATALOG_* variables.

gthread workers let one slow query not block a worker's other requests;
SIGTERM makes gunicorn stop accepting and wait up to graceful_timeout for
requests in flight, which is what a rolling deploy relies on.
"""

from catalog.config import from_env

_cfg = from_env()

bind = _cfg.bind
workers = _cfg.workers
worker_class = "gthread"
threads = _cfg.threads
graceful_timeout = _cfg.graceful_timeout
timeout = 60
accesslog = "-"
errorlog = "-"
proc_name = "catalog"
control_socket_disable = True
worker_tmp_dir = "/dev/shm"
