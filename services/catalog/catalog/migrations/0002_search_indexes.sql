-- Substring search on titles and artist names (ILIKE '%q%') through trigram
-- indexes. Additive only: the release before this one runs unchanged on it.
-- pg_trgm is a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX tracks_title_trgm ON tracks USING gin (title gin_trgm_ops);
CREATE INDEX artists_name_trgm ON artists USING gin (name gin_trgm_ops);
