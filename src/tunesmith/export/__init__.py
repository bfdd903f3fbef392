"""Export a training result for other runtimes: GGUF for llama.cpp and Ollama (``export.py``).

``gguf_writer.py`` and ``gguf_vocab.py`` write the file, ``modelfile.py`` Ollama's recipe,
``model_card.py`` the README, ``check.py`` reads the GGUF back and compares greedy answers.
"""

from tunesmith.export.export import ExportConfig, export_run

__all__ = ["ExportConfig", "export_run"]
