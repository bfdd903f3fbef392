"""tunesmith: customize language models on your own hardware, the Nova way."""

__version__ = "0.1.0"
