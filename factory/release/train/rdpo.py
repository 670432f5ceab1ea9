"""Rationale-augmented DPO (RDPO, arXiv 2407.14477) on top of TRL's `DPOTrainer`.

    loss = DPO loss - log sigmoid(gamma * log p(rationale | comparison prompt))

`log p` is the policy's summed token log-probability of the pair's `rationale` written as the
assistant reply to a *comparison prompt*: the pair's user turns, then both answers, asking why the
first is better. Rows without a rationale add nothing (they are left out of the mean). The term is
computed with the same fused log-prob head TRL uses for the DPO terms, and logged as
`rationale/loss` and `rationale/logps`.

    trainer = RDPOTrainer(model="path/to/model", args=DPOConfig(...), train_dataset=ds,
                          processing_class=tokenizer, rationale_gamma=0.1)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer
from trl.data_utils import is_conversational

_KEYS = ("rationale_prompt_ids", "rationale_ids")


def comparison_messages(prompt: Any, chosen: Any, rejected: Any) -> list[dict[str, str]]:
    """The comparison prompt as one user message (conversational or plain-text rows)."""

    def text(value: Any) -> str:
        if isinstance(value, list):
            return "\n\n".join(str(m.get("content", "")) for m in value)
        return str(value)

    return [
        {
            "role": "user",
            "content": (
                f"{text(prompt)}\n\n[Response A]\n{text(chosen)}\n\n[Response B]\n{text(rejected)}\n\n"
                "Response A was preferred over Response B. Explain why Response A is better."
            ),
        }
    ]


def _ids(processing_class: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    if getattr(processing_class, "chat_template", None):
        out = processing_class.apply_chat_template(
            messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
        )
        return list(out["input_ids"])
    joined = "\n\n".join(m["content"] for m in messages)
    return list(processing_class(text=joined)["input_ids"])


class _RationaleCollator:
    """Wraps TRL's preference collator and adds the padded comparison+rationale sequences."""

    def __init__(self, inner: Any, pad_token_id: int, max_length: int | None) -> None:
        self.inner = inner
        self.pad_token_id = pad_token_id
        self.max_length = max_length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        seqs, masks = [], []
        for ex in examples:
            ids = list(ex["rationale_prompt_ids"]) + list(ex["rationale_ids"])
            mask = [0] * len(ex["rationale_prompt_ids"]) + [1] * len(ex["rationale_ids"])
            if self.max_length is not None:  # keep the end: the rationale is what is scored
                ids, mask = ids[-self.max_length :], mask[-self.max_length :]
            seqs.append(ids)
            masks.append(mask)
        width = max(len(s) for s in seqs)
        batch["rationale_input_ids"] = torch.tensor(
            [s + [self.pad_token_id] * (width - len(s)) for s in seqs]
        )
        batch["rationale_attention_mask"] = torch.tensor(
            [[1] * len(s) + [0] * (width - len(s)) for s in seqs]
        )
        batch["rationale_mask"] = torch.tensor([m + [0] * (width - len(m)) for m in masks])
        return batch


class RDPOTrainer(DPOTrainer):
    """`DPOTrainer` whose loss adds the rationale term; the dataset needs a `rationale` column."""

    def __init__(self, *args: Any, rationale_gamma: float = 0.1, **kwargs: Any) -> None:
        self.rationale_gamma = rationale_gamma
        super().__init__(*args, **kwargs)
        self.data_collator = _RationaleCollator(
            self.data_collator, self._tokenizer.pad_token_id, getattr(self.args, "max_length", None)
        )

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        if "rationale" not in dataset.column_names:
            raise ValueError(
                f"RDPO needs a 'rationale' column in the {dataset_name} dataset; "
                f"got columns {dataset.column_names}"
            )
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if "rationale_ids" in dataset.column_names:
            return dataset

        def tokenize(example: dict[str, Any]) -> dict[str, list[int]]:
            messages = comparison_messages(example["prompt"], example["chosen"], example["rejected"])
            prompt_ids = _ids(processing_class, messages, generation_prompt=True)
            if not example.get("rationale"):
                return {"rationale_prompt_ids": prompt_ids, "rationale_ids": []}
            reply = {"role": "assistant", "content": example["rationale"]}
            if is_conversational(example) or getattr(processing_class, "chat_template", None):
                full = _ids(processing_class, [*messages, reply], generation_prompt=False)
            else:
                full = prompt_ids + list(processing_class(text=example["rationale"])["input_ids"])
            common = 0
            while common < min(len(full), len(prompt_ids)) and full[common] == prompt_ids[common]:
                common += 1
            return {"rationale_prompt_ids": full[:common], "rationale_ids": full[common:]}

        return dataset.map(tokenize, desc=f"Tokenizing rationales of {dataset_name} dataset")

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        assert self._signature_columns is not None
        for key in _KEYS:
            if key not in self._signature_columns:
                self._signature_columns.append(key)

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        extra = {
            k: inputs.pop(k) for k in ("rationale_input_ids", "rationale_attention_mask", "rationale_mask")
        }
        result = super()._compute_loss(model, inputs, return_outputs)
        loss = result[0] if return_outputs else result
        mask = extra["rationale_mask"]
        has = mask.sum(dim=1) > 0
        if not bool(has.any()):
            return result
        ids = extra["rationale_input_ids"]
        labels = ids.masked_fill(mask == 0, -100)
        out = model(
            input_ids=ids,
            attention_mask=extra["rationale_attention_mask"],
            labels=labels,
            use_cache=False,
            fused_lm_head=True,
        )
        logps = out.log_probs.sum(dim=1)[has]  # positions whose label is -100 contribute 0
        term = -F.logsigmoid(self.rationale_gamma * logps).mean()
        mode = "train" if model.training else "eval"
        self._metrics[mode]["rationale/loss"].append(self.accelerator.gather(term.detach()).mean().item())
        self._metrics[mode]["rationale/logps"].append(self.accelerator.gather(logps.detach()).mean().item())
        loss = loss + term
        return (loss, result[1]) if return_outputs else loss
