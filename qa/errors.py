"""One base class for the errors news-qa raises on purpose: the CLI turns any of them into one clear line."""


class QAError(Exception):
    """Something the user can act on; the message says what happened and what to do."""
