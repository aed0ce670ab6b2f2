"""EMIXER image-to-report decoder F (paper section 3.2.2, appendix 6.2.2): a hierarchical report generator.

An image encoder (MONAI DenseNet-121) gives a feature vector; a sentence LSTM, fed that vector at every
step, gives per sentence a stop logit (linear) and a topic vector (3-layer MLP); a 3-layer word LSTM reads
the topic, then ``<start>``, then the words, and predicts the next word. The word LSTM runs on all
``B * S`` sentences at once. With ``num_classes`` > 0 a linear head predicts the findings from the image
features and the sentence LSTM also reads their probabilities (the multi-label tag prediction of the hierarchical
report generators EMIXER builds on, Jing et al. 2018): trained on the real labels, it ties the sentences to the
findings long before the word model alone would learn to look at the image; the topic MLP reads them too. Options
for small CPU-trained decoders: ``topic_every_step`` and ``label_conditioned`` (see the class). Free-running
:meth:`ReportDecoder.sample` feeds each step's word distribution
(straight-through Gumbel-softmax) times the embedding matrix back in, so the generated report stays
differentiable with respect to the image, and so to the generator's output.
"""

from __future__ import annotations

import pickle
from os import PathLike

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets import DenseNet, DenseNet121

from bundle.data.errors import DataError
from bundle.losses import classification_loss
from bundle.networks.layers import END_ID, PAD_ID, START_ID

ENCODERS = ("densenet121", "small")


def build_image_encoder(encoder: str, in_channels: int, out_features: int) -> nn.Module:
    """MONAI DenseNet-121 (``"densenet121"``, the paper's) or a tiny MONAI DenseNet (``"small"``, for tests and
    CPU demos), both ending in a linear layer to ``out_features``."""
    if encoder == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=out_features)
    if encoder == "small":
        return DenseNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=out_features,
            init_features=8,
            growth_rate=8,
            block_config=(2, 2),
        )
    raise ValueError(f"encoder={encoder!r} is not one of {ENCODERS}")


def load_encoder_weights(encoder: nn.Module, path: str | PathLike) -> int:
    """Load a saved state dict into ``encoder``, keeping the entries whose names and shapes match (a classifier's
    head of another size is skipped). Returns how many tensors were loaded."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        raise DataError(path, f"cannot read encoder weights: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(path, f"encoder weights must be a state dict, got {type(state).__name__}")
    own = encoder.state_dict()
    matched = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    if not matched:
        raise DataError(path, "no tensor matches the encoder's parameter names and shapes")
    encoder.load_state_dict(matched, strict=False)
    return len(matched)


def stop_targets(report_num_sentences: torch.Tensor, max_sentences: int) -> torch.Tensor:
    """Stop targets ``[B, S]``: 1 at the last real sentence and after, 0 before it."""
    positions = torch.arange(max_sentences, device=report_num_sentences.device)
    return (positions[None] >= (report_num_sentences.long()[:, None] - 1)).float()


def count_sentences(report_tokens: torch.Tensor) -> torch.Tensor:
    """Number of sentences ``[B]``: the last row of ``report_tokens [B, S, W]`` that holds a non-pad token."""
    present = (report_tokens != PAD_ID).any(dim=-1)
    positions = torch.arange(1, report_tokens.shape[1] + 1, device=report_tokens.device)
    return (present * positions).amax(dim=-1)


def report_loss(
    word_logits: torch.Tensor,
    stop_logits: torch.Tensor,
    report_tokens: torch.Tensor,
    report_num_sentences: torch.Tensor | None = None,
    stop_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Teacher-forcing loss: cross-entropy over the non-pad words (``<end>`` included) + ``stop_weight`` x BCE
    of the stop logits. Returns ``{"loss", "word_loss", "stop_loss"}``."""
    vocab = word_logits.shape[-1]
    targets = report_tokens.reshape(-1)
    total = F.cross_entropy(word_logits.reshape(-1, vocab), targets, ignore_index=PAD_ID, reduction="sum")
    word_loss = total / (targets != PAD_ID).sum().clamp(min=1)
    if report_num_sentences is None:
        report_num_sentences = count_sentences(report_tokens)
    stop_loss = F.binary_cross_entropy_with_logits(
        stop_logits, stop_targets(report_num_sentences, stop_logits.shape[1]).to(stop_logits.dtype)
    )
    return {"loss": word_loss + stop_weight * stop_loss, "word_loss": word_loss, "stop_loss": stop_loss}


class ReportDecoder(nn.Module):
    """Hierarchical image-to-report decoder F.

    Args:
        vocab_size: tokenizer vocabulary size (special ids ``<pad>``=0, ``<start>``=1, ``<end>``=2, ``<unk>``=3).
        max_sentences: sentences generated by :meth:`sample` (S).
        max_words: words per sentence generated by :meth:`sample` (W), ``<end>`` included.
        in_channels: image channels.
        encoder: ``"densenet121"`` (paper) or ``"small"`` (a tiny DenseNet for tests / CPU demos).
        encoder_features: size of the image feature vector (512 in the paper).
        embed_dim: word embedding size (the topic vector is mapped to it as the word LSTM's first input).
        sentence_hidden: sentence LSTM hidden size.
        topic_dim: width of the 3-layer topic MLP and of the topic vector.
        word_hidden: word LSTM hidden size.
        word_layers: word LSTM layers (3 in the paper).
        pretrained_encoder_path: optional state dict for the encoder (e.g. a DenseNet-121 trained on chest
            X-rays); entries of other names or shapes are skipped.
        num_classes: findings predicted by the label head that conditions the sentence LSTM (0: no head, the
            paper's decoder).
        topic_every_step: feed the topic to the word LSTM at every step, beside the word (the show-attend-tell
            way), instead of once as its first input (the paper's). A small word LSTM fed the topic once learns
            the corpus' most common sentences and forgets the image; fed it at every step, the sentence it writes
            follows the topic.
        label_conditioned: F reads the findings it is given instead of its head's predictions: the true labels
            of labelled real pairs in the teacher-forced loss, and the labels a generated image was drawn for when
            it writes that image's report (``labels`` of :meth:`sample`). Where none are given (a real image
            at report-generation time) it reads its head. Off: always the head (needs ``num_classes`` > 0).
    """

    def __init__(
        self,
        vocab_size: int,
        max_sentences: int = 8,
        max_words: int = 24,
        in_channels: int = 3,
        encoder: str = "densenet121",
        encoder_features: int = 512,
        embed_dim: int = 256,
        sentence_hidden: int = 512,
        topic_dim: int = 512,
        word_hidden: int = 512,
        word_layers: int = 3,
        pretrained_encoder_path: str | None = None,
        num_classes: int = 0,
        topic_every_step: bool = False,
        label_conditioned: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size <= max(PAD_ID, START_ID, END_ID) + 1:
            raise ValueError(f"vocab_size={vocab_size} must exceed the special tokens (<pad>, <start>, <end>, ...)")
        self.vocab_size, self.max_sentences, self.max_words = vocab_size, max_sentences, max_words
        self.encoder = build_image_encoder(encoder, in_channels, encoder_features)
        if pretrained_encoder_path:
            load_encoder_weights(self.encoder, pretrained_encoder_path)
        self.num_classes = int(num_classes)
        if label_conditioned and self.num_classes <= 0:
            raise ValueError("label_conditioned=True needs num_classes > 0 (the findings F is conditioned on)")
        self.label_conditioned = bool(label_conditioned)
        self.label_head = nn.Linear(encoder_features, self.num_classes) if self.num_classes > 0 else None
        self.sentence_lstm = nn.LSTMCell(encoder_features + self.num_classes, sentence_hidden)
        self.stop = nn.Linear(sentence_hidden, 1)
        self.topic = nn.Sequential(
            nn.Linear(sentence_hidden + self.num_classes, topic_dim),
            nn.ReLU(),
            nn.Linear(topic_dim, topic_dim),
            nn.ReLU(),
            nn.Linear(topic_dim, topic_dim),
        )
        self.topic_to_input = nn.Linear(topic_dim, embed_dim) if topic_dim != embed_dim else nn.Identity()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.topic_every_step = bool(topic_every_step)
        word_input = 2 * embed_dim if self.topic_every_step else embed_dim
        self.word_lstm = nn.LSTM(word_input, word_hidden, num_layers=word_layers, batch_first=True)
        self.word_out = nn.Linear(word_hidden, vocab_size)
        never = torch.zeros(vocab_size, dtype=torch.bool)
        never[[PAD_ID, START_ID]] = True  # never generated: pad is only filler, start only an input
        self.register_buffer("never_generated", never, persistent=False)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The sentence LSTM's input ``[B, encoder_features (+ num_classes)]``: the image features, followed by the
        label head's probabilities when there is a head; and the head's logits ``[B, num_classes]`` (else None)."""
        features = self.encoder(images)
        if self.label_head is None:
            return features, None
        label_logits = self.label_head(features)
        return torch.cat([features, torch.sigmoid(label_logits)], dim=1), label_logits

    def _with_given_labels(
        self, inputs: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor | None
    ) -> torch.Tensor:
        """Sentence-LSTM inputs with the head's probabilities replaced by ``labels`` on the labelled rows."""
        k = self.num_classes
        probs = inputs[:, -k:]
        truth = labels.to(probs.dtype).clamp(min=0)  # -1 (uncertain / unknown) -> 0, like the training labels
        keep = torch.ones_like(probs[:, :1]) if labelled is None else labelled.to(probs.dtype).reshape(-1, 1)
        return torch.cat([inputs[:, :-k], keep * truth + (1 - keep) * probs], dim=1)

    def image_reader_parameters(self) -> list[nn.Parameter]:
        """The parameters that read the image: the encoder and the label head (the rest writes the report)."""
        head = [] if self.label_head is None else list(self.label_head.parameters())
        return list(self.encoder.parameters()) + head

    def label_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Finding logits ``[B, num_classes]`` of the label head."""
        if self.label_head is None:
            raise RuntimeError("this ReportDecoder was built with num_classes=0 (no label head)")
        return self.encode(images)[1]

    def sentences(
        self, images: torch.Tensor, num_sentences: int, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence LSTM: images -> (word-LSTM topic inputs ``[B, S, embed_dim]``, stop logits ``[B, S]``). A
        ``label_conditioned`` decoder reads ``labels [B, num_classes]`` (the labels the images were drawn for),
        when given, in place of its head's predictions; other decoders ignore them."""
        features = self.encode(images)[0]
        if self.label_conditioned and labels is not None:
            features = self._with_given_labels(features, labels, None)
        return self._sentence_states(features, num_sentences)

    def _sentence_states(self, features: torch.Tensor, num_sentences: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Topic inputs and stop logits of the sentence LSTM fed ``features`` (from :meth:`encode`) at every step."""
        h = features.new_zeros(features.shape[0], self.sentence_lstm.hidden_size)
        c = torch.zeros_like(h)
        states = []
        for _ in range(num_sentences):
            h, c = self.sentence_lstm(features, (h, c))
            states.append(h)
        states = torch.stack(states, dim=1)
        topic_inputs = states
        if self.num_classes:  # the topic MLP reads the findings too, beside the sentence state
            findings = features[:, -self.num_classes :].unsqueeze(1).expand(-1, num_sentences, -1)
            topic_inputs = torch.cat([states, findings], dim=-1)
        return self.topic_to_input(self.topic(topic_inputs)), self.stop(states).squeeze(-1)

    def forward(self, images: torch.Tensor, report_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: images and ``report_tokens [B, S, W]`` -> (word logits ``[B, S, W, V]``, stop logits
        ``[B, S]``). Word ``j`` is predicted from the topic, ``<start>`` and words ``< j``."""
        if report_tokens.dim() != 3:
            raise ValueError(f"report_tokens must be [B, S, W], got {tuple(report_tokens.shape)}")
        topics, stop_logits = self.sentences(images, report_tokens.shape[1])
        return self._teacher_forced_words(topics, report_tokens), stop_logits

    def _teacher_forced_words(self, topics: torch.Tensor, report_tokens: torch.Tensor) -> torch.Tensor:
        """Word logits ``[B, S, W, V]`` of the word LSTM reading each topic, ``<start>`` and the true words."""
        b, s, w = report_tokens.shape
        start = self.embedding.weight[START_ID].expand(b, s, 1, -1)
        words = torch.cat([start, self.embedding(report_tokens[:, :, :-1])], dim=2)  # [B, S, W, E]
        if self.topic_every_step:
            outputs, _ = self.word_lstm(self._with_topic(words, topics.unsqueeze(2)).reshape(b * s, w, -1))
            return self.word_out(outputs).view(b, s, w, self.vocab_size)
        inputs = torch.cat([topics.unsqueeze(2), words], dim=2)
        outputs, _ = self.word_lstm(inputs.reshape(b * s, w + 1, -1))
        return self.word_out(outputs[:, 1:]).view(b, s, w, self.vocab_size)

    @staticmethod
    def _with_topic(words: torch.Tensor, topics: torch.Tensor) -> torch.Tensor:
        """Word inputs ``[..., T, E]`` with the topic ``[..., 1, E]`` beside each (``topic_every_step``)."""
        return torch.cat([words, topics.expand_as(words)], dim=-1)

    def loss(
        self,
        images: torch.Tensor,
        report_tokens: torch.Tensor,
        report_num_sentences: torch.Tensor | None = None,
        stop_weight: float = 1.0,
        labels: torch.Tensor | None = None,
        labelled: torch.Tensor | None = None,
        label_weight: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced :func:`report_loss` of this decoder on real pairs; with a label head and ``labels``
        ``[B, num_classes]`` also ``label_weight`` x the head's BCE (``label_loss``) over the rows where
        ``labelled`` ``[B]`` is 1 (all rows when None). A ``label_conditioned`` decoder writes from those labels
        on the labelled rows (its head's predictions on the others)."""
        if report_tokens.dim() != 3:
            raise ValueError(f"report_tokens must be [B, S, W], got {tuple(report_tokens.shape)}")
        features, label_logits = self.encode(images)
        if self.label_conditioned and labels is not None:
            features = self._with_given_labels(features, labels, labelled)
        topics, stop_logits = self._sentence_states(features, report_tokens.shape[1])
        word_logits = self._teacher_forced_words(topics, report_tokens)
        out = report_loss(word_logits, stop_logits, report_tokens, report_num_sentences, stop_weight)
        if label_logits is not None and labels is not None:
            label_loss = classification_loss(label_logits.float(), labels, labelled)
            out["label_loss"] = label_loss
            out["loss"] = out["loss"] + label_weight * label_loss
        return out

    @staticmethod
    def _word_distribution(logits: torch.Tensor, temperature: float, hard: bool, gumbel: bool) -> torch.Tensor:
        if gumbel:
            return F.gumbel_softmax(logits, tau=temperature, hard=hard)
        soft = torch.softmax(logits / temperature, dim=-1)
        if not hard:
            return soft
        one_hot = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
        return one_hot - soft.detach() + soft  # straight-through argmax

    def sample(
        self,
        images: torch.Tensor,
        temperature: float = 1.0,
        hard: bool = True,
        gumbel: bool = True,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Free-running decoding of ``max_sentences x max_words``, differentiable with respect to ``images``.

        ``gumbel=True`` samples words by Gumbel-softmax (straight-through one-hots when ``hard``) and the stop
        decision from Bernoulli(stop probability); ``gumbel=False`` takes the argmax word (straight-through when
        ``hard``, else the softmax) and stops when the probability exceeds 0.5. Each word's distribution times
        the embedding matrix is the next input. Words after a sentence's ``<end>`` and sentences after the stop
        become ``<pad>`` (one-hot pad in ``word_probs``), the layout of real report tensors.

        ``labels``: the labels the images were drawn for; a ``label_conditioned`` decoder writes their findings
        (see :meth:`sentences`).

        Returns ``word_probs [B, S, W, V]``, ``tokens [B, S, W]`` (long), ``stop_probs [B, S]`` and
        ``num_sentences [B]`` (long, at least 1).
        """
        b, s, w, v = images.shape[0], self.max_sentences, self.max_words, self.vocab_size
        topics, stop_logits = self.sentences(images, s, labels)
        n = b * s
        start = self.embedding.weight[START_ID].expand(n, 1, -1)
        topics = topics.reshape(n, 1, -1)
        if self.topic_every_step:
            outputs, state = self.word_lstm(self._with_topic(start, topics))
        else:
            outputs, state = self.word_lstm(torch.cat([topics, start], dim=1))
        hidden = outputs[:, -1]
        steps = []
        for t in range(w):
            logits = self.word_out(hidden).masked_fill(self.never_generated, float("-inf"))
            probs = self._word_distribution(logits, temperature, hard, gumbel)
            steps.append(probs)
            if t + 1 < w:
                word = (probs @ self.embedding.weight).unsqueeze(1)
                if self.topic_every_step:
                    word = self._with_topic(word, topics)
                outputs, state = self.word_lstm(word, state)
                hidden = outputs[:, 0]
        word_probs = torch.stack(steps, dim=1).view(b, s, w, v)

        tokens = word_probs.argmax(dim=-1)
        is_end = tokens == END_ID
        after_end = (is_end.cumsum(dim=-1) - is_end.long()) > 0
        stop_probs = torch.sigmoid(stop_logits)
        with torch.no_grad():
            stops = torch.bernoulli(stop_probs).bool() if gumbel else stop_probs > 0.5
            first_stop = stops.float().argmax(dim=1) + 1
            num_sentences = torch.where(stops.any(dim=1), first_stop, torch.full_like(first_stop, s)).long()
        in_report = torch.arange(s, device=images.device)[None] < num_sentences[:, None]
        keep = in_report[:, :, None] & ~after_end
        pad = F.one_hot(torch.tensor(PAD_ID, device=images.device), v).to(word_probs.dtype)
        word_probs = torch.where(keep[..., None], word_probs, pad)
        tokens = tokens.masked_fill(~keep, PAD_ID)
        return {"word_probs": word_probs, "tokens": tokens, "stop_probs": stop_probs, "num_sentences": num_sentences}

    @torch.no_grad()
    def greedy_decode(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Inference-time argmax decoding (no gradients): :meth:`sample` with ``gumbel=False``."""
        return self.sample(images, hard=True, gumbel=False, labels=labels)
