"""tenfold-base: one pretrained small Llama-architecture LM that tenfold's LLM systems fine-tune from,
as the papers start from Qwen or Llama. Pretrained here, on 2 CPU cores, on a generated mixture that
teaches copying, recall, lists, worked arithmetic, program traces, text games and the chat format.

Like `core`, `rl` and `envs`, this is a shared layer: systems may import it; it imports no system.
"""
