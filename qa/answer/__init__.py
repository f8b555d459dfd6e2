"""Stages 5-6: retrieval, reading sentences, the extractive answer, generation with an LLM and the citation
check; pipeline.py runs them in order for one question."""
