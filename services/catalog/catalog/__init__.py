"""The catalog service: the music library API over PostgreSQL."""
