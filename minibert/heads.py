"""Task heads: small layers on top of BertModel, one per kind of prediction.

The two pre-training heads of the paper (section 3.1): masked-token prediction, whose output layer
is the word-embedding matrix used a second time, and next-sentence prediction from the pooled [CLS]
vector. The fine-tuning heads (section 4): one label per sequence, per token, per answer choice, or
an answer span's start and end. Class names, forward arguments, output fields and losses are
transformers', so that a checkpoint, a training loop or a test written for one runs on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ACTIVATIONS
from .config import BertConfig
from .loading.pretrained import ModelOutput, PreTrainedBert, init_tensor_
from .model import BertModel, BertModelOutput


@dataclass
class TaskOutput(ModelOutput):
    """loss: a scalar, when labels are given. logits: (batch, num_labels) per sequence, (batch, seq,
    num_labels or vocab) per token, (batch, num_choices) per choice. hidden_states and attentions as
    in BertModelOutput, when asked for."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class PreTrainingOutput(ModelOutput):
    """loss: masked-LM loss + next-sentence loss. prediction_logits (batch, seq, vocab);
    seq_relationship_logits (batch, 2): index 0 = "B follows A", 1 = "B is a random sentence"."""

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    """loss: mean of the start and end losses. start_logits, end_logits (batch, seq): a score per token
    for being the first / last token of the answer."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (batch, seq, vocab), labels (batch, seq): the original token where the input was masked,
    -100 elsewhere (cross_entropy's ignore_index: those positions do not count)."""
    return F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1))


def next_sentence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (batch, 2), labels (batch,): 0 = B follows A, 1 = B is random."""
    return F.cross_entropy(logits.view(-1, 2), labels.view(-1))


def classifier_dropout(config: BertConfig) -> nn.Dropout:
    """Dropout before a fine-tuning classifier: classifier_dropout if set, else hidden_dropout_prob."""
    return nn.Dropout(config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob)


class MaskedLMHead(nn.Module):
    """Scores every vocabulary entry at every position: dense -> activation -> LayerNorm, then a dot
    product with each word embedding (the input embedding matrix, reused as the output layer: "tied")
    plus a bias per token."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.hidden_act]
        self.transform_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """hidden (batch, seq, hidden), word_embeddings (vocab, hidden) -> scores (batch, seq, vocab)."""
        hidden = self.transform_norm(self.activation(self.transform(hidden)))  # (batch, seq, hidden)
        return F.linear(hidden, word_embeddings, self.bias)  # (batch, seq, vocab)


class BertTaskModel(PreTrainedBert):
    """A BertModel under ``self.bert`` plus a head. Subclasses define ``predict`` (encoder output ->
    logits) and ``loss`` (logits, labels -> scalar); the heads with other labels override forward."""

    checkpoint_base_prefix = "bert."  # transformers' task checkpoints keep the encoder under "bert."
    uses_pooler = True  # transformers builds token-level heads without the pooler; so do we

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"{type(self).__name__} needs a BertConfig, got {type(config).__name__}")
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=self.uses_pooler)

    def init_head(self) -> None:
        """BERT's initialisation for the head (the encoder initialised itself); nothing on meta."""
        if any(parameter.is_meta for parameter in self.parameters()):
            return  # from_pretrained fills or initialises every tensor
        for name, module in self.named_modules():
            if name == "bert" or name.startswith("bert."):
                continue
            for parameter_name, parameter in module.named_parameters(recurse=False):
                init_tensor_(module, parameter_name, parameter, self.config)

    def encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
               output_attentions: bool, output_hidden_states: bool) -> BertModelOutput:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         position_ids=position_ids, inputs_embeds=inputs_embeds,
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> TaskOutput:
        """Inputs as BertModel.forward; ``labels`` as the head's ``loss`` describes."""
        encoded = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                              output_attentions, output_hidden_states)
        logits = self.predict(encoded)
        loss = None if labels is None else self.loss(logits, labels)
        return TaskOutput(loss, logits, encoded.hidden_states, encoded.attentions)

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BertForMaskedLM(BertTaskModel):
    """Predicts the tokens hidden behind [MASK]. labels (batch, seq): the token ids, -100 where unmasked."""

    uses_pooler = False
    fresh_head_prefixes = ("mlm_head.",)

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.mlm_head = MaskedLMHead(config)
        self.init_head()

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        return self.mlm_head(encoded.last_hidden_state, self.bert.embeddings.word_embeddings.weight)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return masked_lm_loss(logits, labels)


class BertForNextSentencePrediction(BertTaskModel):
    """Does segment B follow segment A? labels (batch,): 0 = yes, 1 = B is a random sentence."""

    # The pooler was trained with this head (checkpoints without it get it fresh, as transformers does).
    fresh_head_prefixes = ("next_sentence_head.", "bert.pooler.")

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.next_sentence_head = nn.Linear(config.hidden_size, 2)
        self.init_head()

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        return self.next_sentence_head(encoded.pooler_output)  # (batch, 2)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return next_sentence_loss(logits, labels)


class BertForPreTraining(BertTaskModel):
    """Both pre-training heads. ``labels`` as BertForMaskedLM, ``next_sentence_label`` as the labels of
    BertForNextSentencePrediction; the loss (their sum) needs both."""

    fresh_head_prefixes = ("mlm_head.", "next_sentence_head.", "bert.pooler.")

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.mlm_head = MaskedLMHead(config)
        self.next_sentence_head = nn.Linear(config.hidden_size, 2)
        self.init_head()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> PreTrainingOutput:
        encoded = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                              output_attentions, output_hidden_states)
        word_embeddings = self.bert.embeddings.word_embeddings.weight
        prediction_logits = self.mlm_head(encoded.last_hidden_state, word_embeddings)  # (batch, seq, vocab)
        seq_relationship_logits = self.next_sentence_head(encoded.pooler_output)  # (batch, 2)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = masked_lm_loss(prediction_logits, labels) + next_sentence_loss(seq_relationship_logits,
                                                                                  next_sentence_label)
        return PreTrainingOutput(loss, prediction_logits, seq_relationship_logits, encoded.hidden_states,
                                 encoded.attentions)


class BertForSequenceClassification(BertTaskModel):
    """One prediction per sequence, from the pooled [CLS] vector.

    The loss follows config.problem_type; when it is None the first labels decide, as in transformers
    (and it is then recorded in the config, so save_pretrained keeps it): num_labels == 1 is
    regression (MSE, float labels (batch,)); integer labels (batch,) are single-label classification
    (cross-entropy); float labels (batch, num_labels) of 0/1 are multi-label (a sigmoid per label).
    """

    fresh_head_prefixes = ("classifier.", "bert.pooler.")

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_head()

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        return self.classifier(self.dropout(encoded.pooler_output))  # (batch, num_labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        num_labels = self.config.num_labels
        if self.config.problem_type is None:
            if num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "regression":
            if num_labels == 1:
                return F.mse_loss(logits.squeeze(), labels.squeeze())
            return F.mse_loss(logits, labels)
        if self.config.problem_type == "single_label_classification":
            return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels)


class BertForTokenClassification(BertTaskModel):
    """One label per token (named entities, parts of speech). labels (batch, seq), -100 = ignore
    (padding, the second and later pieces of a word)."""

    uses_pooler = False
    fresh_head_prefixes = ("classifier.",)

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_head()

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        return self.classifier(self.dropout(encoded.last_hidden_state))  # (batch, seq, num_labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))


class BertForQuestionAnswering(BertTaskModel):
    """Extractive answers (SQuAD): a start score and an end score per token; the answer is the span
    between the best start and end. start_positions, end_positions (batch,): token indices; an index
    outside the input (an answer cut off by truncation) does not count."""

    uses_pooler = False
    fresh_head_prefixes = ("span_classifier.",)

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        if config.num_labels != 2:
            raise ValueError(f"question answering scores a start and an end per token, so num_labels must be 2, "
                             f"got {config.num_labels}")
        self.span_classifier = nn.Linear(config.hidden_size, 2)
        self.init_head()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> QuestionAnsweringOutput:
        out = super().forward(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        start_logits, end_logits = out.logits.split(1, dim=-1)  # (batch, seq, 1) each
        start_logits = start_logits.squeeze(-1).contiguous()  # (batch, seq)
        end_logits = end_logits.squeeze(-1).contiguous()  # (batch, seq)
        loss = None
        if start_positions is not None and end_positions is not None:
            outside = start_logits.size(1)  # one past the last token: positions clamped here are ignored
            start_positions = start_positions.view(-1).clamp(0, outside)
            end_positions = end_positions.view(-1).clamp(0, outside)
            start_loss = F.cross_entropy(start_logits, start_positions, ignore_index=outside)
            end_loss = F.cross_entropy(end_logits, end_positions, ignore_index=outside)
            loss = (start_loss + end_loss) / 2
        return QuestionAnsweringOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions)

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        return self.span_classifier(encoded.last_hidden_state)  # (batch, seq, 2)


class BertForMultipleChoice(BertTaskModel):
    """Picks one of several candidate sequences (SWAG): each choice is encoded on its own and scored
    from its pooled vector; a softmax over the choices. Inputs are (batch, num_choices, seq)
    (inputs_embeds (batch, num_choices, seq, hidden)); labels (batch,): the index of the right choice."""

    fresh_head_prefixes = ("classifier.", "bert.pooler.")

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_head()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> TaskOutput:
        given = input_ids if input_ids is not None else inputs_embeds
        if given is None or given.dim() != (3 if input_ids is not None else 4):
            shape = None if given is None else tuple(given.shape)
            raise ValueError(f"multiple choice takes input_ids (batch, num_choices, seq) or inputs_embeds "
                             f"(batch, num_choices, seq, hidden); got shape {shape}")
        num_choices = given.shape[1]

        def flatten(ids: torch.Tensor | None) -> torch.Tensor | None:
            return None if ids is None else ids.reshape(-1, ids.size(-1))  # (batch * choices, seq)

        if inputs_embeds is not None:
            inputs_embeds = inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])  # (batch * choices, seq, hidden)
        out = super().forward(flatten(input_ids), flatten(attention_mask), flatten(token_type_ids),
                              flatten(position_ids), inputs_embeds, output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states)
        logits = out.logits.view(-1, num_choices)  # (batch, num_choices)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return TaskOutput(loss, logits, out.hidden_states, out.attentions)

    def predict(self, encoded: BertModelOutput) -> torch.Tensor:
        return self.classifier(self.dropout(encoded.pooler_output))  # (batch * choices, 1)


TASK_MODELS: dict[str, type[BertTaskModel]] = {
    model.__name__: model
    for model in (BertForPreTraining, BertForMaskedLM, BertForNextSentencePrediction, BertForSequenceClassification,
                  BertForTokenClassification, BertForQuestionAnswering, BertForMultipleChoice)
}
