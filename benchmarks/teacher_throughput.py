"""Local teacher generation: batched (length-grouped, KV cache) against one prompt at a time.

    python benchmarks/teacher_throughput.py [--prompts 48] [--batch 16] [--model micro]

Both answer the same prompts (the quickstart task) greedily with the same token budget, in
one run; prints generated tokens/s for each and the ratio (target: batched >= 5x).
"""

from __future__ import annotations

import argparse
import time

from tunesmith.evaluation.generation import GenerationSettings, generate
from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.models.registry import resolve_model
from tunesmith.quickstart.task import make_splits
from tunesmith.training.examples import chat_messages


def timed(model, tokenizer, chats, settings) -> tuple[float, int]:
    started = time.perf_counter()
    completions = generate(model, tokenizer, chats, settings)
    return time.perf_counter() - started, sum(c.output_tokens for c in completions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--model", default="micro")
    args = parser.parse_args()
    source = resolve_model(args.model)
    model, tokenizer = load_model(source), load_tokenizer(source)
    records, _ = make_splits(args.prompts, 0, seed=11)
    chats = [chat_messages(r)[:-1] for r in records]
    single_s, single_tokens = timed(model, tokenizer, chats, GenerationSettings(args.max_new_tokens, batch_size=1))
    batched_s, batched_tokens = timed(model, tokenizer, chats, GenerationSettings(args.max_new_tokens, batch_size=args.batch))
    single, batched = single_tokens / single_s, batched_tokens / batched_s
    print(f"{args.prompts} prompts, up to {args.max_new_tokens} new tokens each, model {args.model}")
    print(f"one at a time: {single_tokens:5d} tokens in {single_s:6.1f} s = {single:7.1f} tokens/s")
    print(f"batched ({args.batch:>3}): {batched_tokens:5d} tokens in {batched_s:6.1f} s = {batched:7.1f} tokens/s")
    print(f"speed-up: {batched / single:.2f}x")


if __name__ == "__main__":
    main()
