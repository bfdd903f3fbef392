"""Serving models: which model an id names, a bounded cache of loaded models, answers whole
or streamed, and custom models downloaded from S3 on first use."""
