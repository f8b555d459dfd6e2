"""`qa eval`: scoring on evaluation sets (shared/eval/FORMAT.md) and the textbook LangChain baseline."""
