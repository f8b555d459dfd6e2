"""news-qa: ask questions about a collection of news articles, every claim cited to its passage.

The public API is deliberately thin::

    import qa
    qa.index(["seeds/"])                  # -> IndexReport
    answer = qa.ask("Why did Russia decline?")
    print(answer.to_markdown())
"""

import os

# Nothing phones home: models load from disk, and no library reports usage.
for _var, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_var, _value)

from qa.api import Assistant, ask, ask_stream, index  # noqa: E402
from qa.schema import Answer, Article, Chunk, Citation, IndexReport, Passage  # noqa: E402
from qa.settings import Settings  # noqa: E402

__all__ = [
    "Answer",
    "Article",
    "Assistant",
    "Chunk",
    "Citation",
    "IndexReport",
    "Passage",
    "Settings",
    "ask",
    "ask_stream",
    "index",
]
