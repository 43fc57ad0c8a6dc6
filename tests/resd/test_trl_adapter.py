"""RESD's teacher context inside TRL's SDPOTrainer: a few steps on a tiny Llama built here (offline)."""

import os

import pytest

pytest.importorskip("trl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in ("<pad>", "<eos>"):
        vocab[special] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            pre_tokenizers.Split("", "isolated"),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")


def test_sdpo_trainer_runs_with_resd_teacher_context(tmp_path):
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

    from tenfold.envs.manufactoria import task_pool
    from tenfold.resd.trl_adapter import attach

    tok = byte_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "m")  # TRL builds the EMA teacher from the path
    tok.save_pretrained(tmp_path / "m")
    tasks = {t.prompt(): t for t in task_pool(2, "train")}
    ds = Dataset.from_dict({"prompt": list(tasks) * 2})
    args = SDPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=8, max_steps=2, learning_rate=1e-4, logging_steps=1, report_to=[],
                      use_cpu=True, save_strategy="no", distillation_mode="topk_logits", distillation_topk=20,
                      bf16=False)  # fmt: skip

    def reward(completions, prompts, **kw):
        return [tasks[p].check(c).reward for p, c in zip(prompts, completions, strict=True)]

    trainer = SDPOTrainer(model=str(tmp_path / "m"), reward_funcs=reward, args=args, train_dataset=ds,
                          processing_class=tok)  # fmt: skip
    seen = []

    class Spy(TrainerCallback):  # TRL's callback hook: the teacher inputs it was given
        def on_teacher_context_built(self, teacher_input_ids, **kw):
            seen.append(tok.decode(teacher_input_ids[0], skip_special_tokens=True))

    trainer.add_callback(Spy())
    resd = attach(trainer, task_of=tasks.__getitem__)
    trainer.train()
    assert trainer.state.global_step == 2
    # a random model fails every task: the oracle's lessons reach the playbook and the teacher's prompt
    assert len(resd.ctx.playbook) > 0 and resd.ctx.stats.reflections >= 2
    assert seen and "feedback:" in seen[-1] and "reflection:" in seen[-1] and "playbook:" in seen[-1]
    logged = [h for h in trainer.state.log_history if "resd/playbook_entries" in h]
    assert logged and float(logged[-1]["resd/playbook_entries"]) == len(resd.ctx.playbook)
