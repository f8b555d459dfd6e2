"""Stages 2-3: chunking articles into sentence runs, embedding them (in-process or on Ray), and the indexer that
embeds only what changed and commits in batches."""
