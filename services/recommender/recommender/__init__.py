"""The recommender batch job: nightly per-listener track recommendations from play history."""
