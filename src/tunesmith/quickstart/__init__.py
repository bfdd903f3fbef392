"""The quickstart: build a task, take the advice, fine-tune micro, and measure the gain."""
