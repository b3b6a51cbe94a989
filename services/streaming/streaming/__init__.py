"""The streaming service: a track's audio over HTTP range requests, from a bounded local cache."""
