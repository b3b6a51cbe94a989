"""loadkit: the load generator (loadgen) and the database writer (writer) used by the fleet tests,
the benchmarks (bench) and `make demo`, run from the repository root.

Not installed with roadie: an operator's install does not need them. loadkit may import roadie
(installed in the venv); roadie never imports loadkit.
"""
