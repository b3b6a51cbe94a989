"""One PostgreSQL connection per worker thread, reopened after a failure.

gthread workers serve requests on a fixed set of threads, so a thread-local
autocommit connection gives pooling without a pool library. A broken
connection is dropped so the next request reconnects once the database is back.
"""

import threading

import psycopg
from psycopg.rows import dict_row

CONNECT_TIMEOUT = 3
STATEMENT_TIMEOUT_MS = 5000


class Database:
    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                               connect_timeout=CONNECT_TIMEOUT,
                               options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")

    def conn(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = self.connect()
        return conn

    def run(self, fn, *args):
        """fn(conn, *args); on a connection failure drop the connection and re-raise."""
        try:
            return fn(self.conn(), *args)
        except psycopg.OperationalError:
            self.discard()
            raise

    def discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass
