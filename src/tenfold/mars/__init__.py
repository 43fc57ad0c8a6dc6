"""MARS: multimodal adaptive rank search for LoRA fine-tuning of multimodal LLMs (arXiv 2603.00720).

MARS picks the LoRA rank pair (vision-encoder rank, LLM rank) with two fitted scaling laws instead of a
grid search: Law-T predicts each module's convergence time, pairs whose modules converge together are
kept, and Law-P's predicted perplexity chooses among them.
"""
