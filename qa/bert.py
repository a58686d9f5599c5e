"""BERT inference in plain torch, loaded straight from a model folder's ``config.json``,
``model.safetensors`` and ``tokenizer.json``.

This is what ``qa ask`` runs at question time for BERT-architecture models (the packaged reader
and all-MiniLM-L6-v2): importing transformers' model classes costs about 3 s, more than the
question itself (docs/BENCHMARKS.md, "Start-up"). It computes what ``BertModel`` and
``BertForQuestionAnswering`` compute in eval mode (tests/test_bert.py compares them on the same
inputs); :func:`read_config` returns None for anything it does not reproduce, and callers then
load the model with transformers as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qa.errors import QAError

WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int


def read_config(folder: str | Path, architecture: str | None = None) -> BertConfig | None:
    """The folder's BERT configuration, or None unless it is a plain BERT (absolute positions,
    exact GELU, no decoder) with safetensors weights and a ``tokenizer.json``, and, when
    ``architecture`` is given, its ``architectures`` name it."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    plain = (
        isinstance(config, dict)
        and config.get("model_type") == "bert"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act", "gelu") == "gelu"
        and not config.get("is_decoder", False)
        and not config.get("add_cross_attention", False)
        and (architecture is None or architecture in (config.get("architectures") or []))
        and (folder / WEIGHTS).is_file()
        and (folder / TOKENIZER).is_file()
    )
    if not plain:
        return None
    try:
        return BertConfig(
            **{name: config[name] for name in BertConfig.__dataclass_fields__ if name not in ("layer_norm_eps", "pad_token_id")},
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(config.get("pad_token_id") or 0),
        )
    except (KeyError, TypeError):
        return None


class _Layer(nn.Module):
    def __init__(self, c: BertConfig, device=None):
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size, device=device)
        self.key = nn.Linear(c.hidden_size, c.hidden_size, device=device)
        self.value = nn.Linear(c.hidden_size, c.hidden_size, device=device)
        self.attention_out = nn.Linear(c.hidden_size, c.hidden_size, device=device)
        self.attention_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps, device=device)
        self.intermediate = nn.Linear(c.hidden_size, c.intermediate_size, device=device)
        self.out = nn.Linear(c.intermediate_size, c.hidden_size, device=device)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps, device=device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def heads(t):
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=mask)
        x = self.attention_norm(x + self.attention_out(attended.transpose(1, 2).reshape(batch, length, width)))
        return self.norm(x + self.out(F.gelu(self.intermediate(x))))


def _embedding(rows: int, width: int, device) -> nn.Embedding:
    # Uninitialised: the weights are loaded next (and random initialisation on the meta device
    # imports a second of torch's reference implementations).
    return nn.Embedding(rows, width, _weight=torch.empty(rows, width, device=device))


class BertEncoder(nn.Module):
    """Token embeddings and transformer layers: ``BertModel``'s last hidden state."""

    def __init__(self, c: BertConfig, device=None):
        super().__init__()
        self.word_embeddings = _embedding(c.vocab_size, c.hidden_size, device)
        self.position_embeddings = _embedding(c.max_position_embeddings, c.hidden_size, device)
        self.token_type_embeddings = _embedding(c.type_vocab_size, c.hidden_size, device)
        self.embedding_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps, device=device)
        self.layers = nn.ModuleList(_Layer(c, device) for _ in range(c.num_hidden_layers))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings(token_type_ids)
        x = self.embedding_norm(x)
        mask = attention_mask[:, None, None, :].bool()  # (batch, 1, 1, keys): padding is never attended
        for layer in self.layers:
            x = layer(x, mask)
        return x


class BertForQA(nn.Module):
    """``BertForQuestionAnswering``: start and end logits per token."""

    def __init__(self, c: BertConfig, device=None):
        super().__init__()
        self.bert = BertEncoder(c, device)
        self.qa_outputs = nn.Linear(c.hidden_size, 2, device=device)

    def forward(self, input_ids, token_type_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.qa_outputs(self.bert(input_ids, token_type_ids, attention_mask))
        return logits[..., 0], logits[..., 1]


# transformers' parameter names within a layer -> this module's (in this order)
_LAYER_RENAMES = (
    ("attention.self.", ""),
    ("attention.output.dense.", "attention_out."),
    ("attention.output.LayerNorm.", "attention_norm."),
    ("intermediate.dense.", "intermediate."),
    ("output.dense.", "out."),
    ("output.LayerNorm.", "norm."),
)


def _encoder_name(name: str) -> str | None:
    """This module's name for a ``BertModel`` parameter; None for those it does not use (the
    pooler: its outputs are not computed here)."""
    if name.startswith("embeddings."):
        rest = name.removeprefix("embeddings.")
        if rest == "position_ids":
            return None
        return "embedding_norm." + rest.removeprefix("LayerNorm.") if rest.startswith("LayerNorm.") else rest
    if name.startswith("encoder.layer."):
        name = "layers." + name.removeprefix("encoder.layer.")
        for old, new in _LAYER_RENAMES:
            name = name.replace(old, new)
        return name
    return None


def load_encoder(folder: str | Path, config: BertConfig) -> BertEncoder:
    """The encoder of a ``BertModel`` folder (or of a ``BertFor...`` one), in fp32, eval mode."""
    stored = _read_weights(folder)
    if not any(name.startswith("embeddings.") for name in stored):
        stored = {name.removeprefix("bert."): tensor for name, tensor in stored.items()}
    state = {new: t for name, t in stored.items() if (new := _encoder_name(name))}
    return _load(BertEncoder, config, state)


def load_qa(folder: str | Path, config: BertConfig) -> BertForQA:
    """A ``BertForQuestionAnswering`` folder's model, in fp32, eval mode."""
    state = {}
    for name, tensor in _read_weights(folder).items():
        if name.startswith("qa_outputs."):
            state[name] = tensor
        elif name.startswith("bert.") and (new := _encoder_name(name.removeprefix("bert."))):
            state["bert." + new] = tensor
    return _load(BertForQA, config, state)


def _read_weights(folder: str | Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(Path(folder) / WEIGHTS))
    except Exception as err:  # safetensors' own error type: damaged or truncated file
        raise ValueError(f"cannot read {WEIGHTS}: {err}") from None


def _load(cls, config: BertConfig, state: dict) -> nn.Module:
    model = cls(config, device="meta")  # no random initialisation of weights about to be replaced
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"the weights do not fit a BERT model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def load_tokenizer(folder: str | Path):
    """The folder's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` (what transformers' fast
    tokenizers wrap), with no truncation or padding set."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(Path(folder) / TOKENIZER))
    except Exception as err:  # tokenizers' own error type: not a tokenizer file
        raise ValueError(f"cannot read {TOKENIZER}: {err}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def copy_tokenizer(tokenizer):
    """A copy of ``tokenizer`` (a ``tokenizers.Tokenizer``) with no truncation or padding, whose
    settings are its own: the original keeps whatever its callers set on it."""
    copy = type(tokenizer).from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def check_windows(scratch) -> None:
    """Raise :class:`QAError` when the installed ``tokenizers`` cuts a long question-passage pair
    into windows that stop short of the passage's end.

    tokenizers 0.23.1 and 0.23.2 stop tokenizing once the truncation length is reached, so the
    overflowing windows that carry the rest of a long passage are missing or short
    (huggingface/tokenizers#2091): a reader would read only the start of long documents, and
    training would see only their first windows. ``scratch`` (a ``tokenizers.Tokenizer``) is
    probed as it is and left truncating at 32 tokens: pass a copy, or one whose truncation is set
    afterwards (copying a 700 KB tokenizer here cost about 20 ms of every reader's load)."""
    import tokenizers

    scratch.enable_truncation(32, stride=8, strategy="only_second")
    passage = " ".join(["passage"] * 100)
    first = scratch.encode("question", passage)
    windows = [first, *first.overflowing]
    reached = max((end for w in windows for (_, end), seq in zip(w.offsets, w.sequence_ids) if seq == 1), default=0)
    if reached < len(passage):
        raise QAError(
            f"tokenizers {tokenizers.__version__} drops the windows of long passages past the first "
            "(huggingface/tokenizers#2091, in 0.23.1 and 0.23.2): install another release, "
            "e.g. pip install 'tokenizers>=0.23.3'"
        )


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors that are not padding (sentence-transformers' mean pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

