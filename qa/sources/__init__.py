"""Stage 1, where articles come from: files and formats (ingest), downloads (fetch), RSS/Atom feeds, watched
folders."""
