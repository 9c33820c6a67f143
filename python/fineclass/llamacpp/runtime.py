"""One GGUF model in llama.cpp: loading, a context sized for scoring, batches of tokens in many sequences.

A thin layer over llama-cpp-python's low-level bindings. The context uses one unified KV cache for all its
sequences, so copying a sequence (``copy_seq``) only tags the cells it already has with another sequence id:
the prompt head, evaluated once into sequence 0, is shared by every document without being copied or computed
again. A token may belong to several sequences; it then attends to the cells of its first one (llama.cpp's
mask), which is what lets a whole tree of candidate answers be evaluated in one batch.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from ..errors import FineclassError
from .tools import bindings, llama_cpp_version

MAX_SEQ = 256  # llama.cpp's LLAMA_MAX_SEQ


def default_threads() -> int:
    """Torch's thread count (it follows OMP_NUM_THREADS), so both engines use the same cores.

    Returns:
        The number of threads.
    """
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except ImportError:
        return max(1, os.cpu_count() or 1)


class Runtime:
    """A llama.cpp model (memory-mapped) and, once ``ensure()`` sized it, a context to run it.

    Args:
        path: the GGUF file.
        threads: CPU threads (default: torch's setting).
        argument: the argument to name in errors.
    """

    def __init__(self, path: str | Path, threads: int | None = None, argument: str = "path"):
        self.lib = lib = bindings(argument)
        self.path = str(path)
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        self.model = lib.llama_model_load_from_file(self.path.encode(), params)
        if not self.model:
            raise FineclassError(
                f"`{argument}`: llama.cpp {llama_cpp_version()} could not load {self.path!r} (not a GGUF file, a "
                f"damaged one, or an architecture this llama.cpp does not know).",
                argument,
            )
        self.n_vocab = int(lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(self.model)))
        self.threads = int(threads) if threads else default_threads()
        # an f32 file keeps its keys and values in f32 too, without flash attention (llama.cpp's default cache
        # is f16, and its flash attention casts keys and values to f16, which rounds them to 11 bits: about 1e-3
        # in the probabilities), so that it reproduces the torch model to float precision
        self.kv_f32 = self.meta("general.file_type") == "0"
        self.ctx = None
        self.sizes = (0, 0, 0)  # n_ctx, n_batch, n_outputs of the context
        self.head: tuple = ()  # the token ids held by sequence 0

    # ------------------------------------------------------------------ metadata
    def meta(self, key: str) -> str | None:
        """A metadata value of the GGUF file as a string (None when the key is absent).

        Args:
            key: the metadata key.

        Returns:
            The value, or None.
        """
        buf = ctypes.create_string_buffer(4096)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return None if n < 0 else buf.value.decode("utf-8", errors="replace")

    def description(self) -> str:
        """llama.cpp's one-line description of the model (architecture, size, file type).

        Returns:
            The description.
        """
        buf = ctypes.create_string_buffer(256)
        self.lib.llama_model_desc(self.model, buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def size_bytes(self) -> int:
        """The bytes of the model's tensors.

        Returns:
            The size in bytes.
        """
        return int(self.lib.llama_model_size(self.model))

    # ------------------------------------------------------------------ context
    def ensure(self, n_ctx: int, n_batch: int, n_outputs: int) -> None:
        """A context with at least these sizes (made again, and the head forgotten, when one is too small).

        Args:
            n_ctx: context tokens.
            n_batch: tokens per batch.
            n_outputs: sequences.
        """
        want = (max(n_ctx, self.sizes[0]), max(n_batch, self.sizes[1]), max(n_outputs, self.sizes[2]))
        if self.ctx is not None and want == self.sizes:
            return
        self._free_context()
        lib = self.lib
        p = lib.llama_context_default_params()
        p.n_ctx = int(want[0])
        p.n_batch = p.n_ubatch = int(want[1])
        p.n_seq_max = MAX_SEQ
        p.n_outputs_max = int(want[2])
        p.n_threads = p.n_threads_batch = self.threads
        p.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED  # masked cells are skipped, not multiplied
        p.kv_unified = True
        if self.kv_f32:
            p.type_k = p.type_v = lib.GGML_TYPE_F32
            p.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        p.no_perf = True
        p.embeddings = False
        ctx = lib.llama_init_from_model(self.model, p)
        if not ctx:
            raise FineclassError(
                f"llama.cpp could not make a context of {want[0]} tokens for {self.path!r} (out of "
                f"memory?); lower `batch_tokens` or `max_length`.",
                "batch_tokens",
            )
        self.ctx, self.sizes, self.head = ctx, want, ()
        self.memory = lib.llama_get_memory(ctx)

    def set_threads(self, threads: int) -> None:
        """Use ``threads`` CPU threads from the next decode on.

        Args:
            threads: CPU threads.
        """
        self.threads = int(threads)
        if self.ctx is not None:
            self.lib.llama_set_n_threads(self.ctx, self.threads, self.threads)

    def copy_seq(self, src: int, dst: int) -> None:
        """Give sequence ``dst`` the cached keys and values of sequence ``src`` (shared, not copied).

        Args:
            src: the sequence to copy.
            dst: the sequence that receives it.
        """
        self.lib.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def remove_seq(self, seq: int) -> None:
        """Drop sequence ``seq`` from the cache.

        Args:
            seq: the sequence id.
        """
        self.lib.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def set_head(self, head_ids: list[int]) -> None:
        """Evaluate ``head_ids`` into sequence 0 (kept until another head is set).

        Args:
            head_ids: the token ids of the prompt head.
        """
        head = tuple(int(t) for t in head_ids)
        if head == self.head:
            return
        self.remove_seq(0)
        self.head = ()
        step = self.sizes[1]
        for start in range(0, len(head), step):  # a long codebook: several batches, in order
            piece = np.array(head[start : start + step], dtype=np.int32)
            n = len(piece)
            self.decode(
                piece,
                np.arange(start, start + n, dtype=np.int32),
                np.zeros((n, 1), dtype=np.int32),
                np.ones(n, dtype=np.int32),
                np.zeros(n, dtype=bool),
            )
        self.head = head

    # ------------------------------------------------------------------ running
    def decode(
        self, tokens: np.ndarray, pos: np.ndarray, seqs: np.ndarray, n_seqs: np.ndarray, outputs: np.ndarray
    ) -> np.ndarray:
        """Run one batch; return the logits (float32, one row per token flagged in ``outputs``, in order).

        ``seqs`` (n, w) holds each token's sequence ids in its first ``n_seqs[i]`` columns.

        Args:
            tokens: (n,) token ids.
            pos: (n,) positions.
            seqs: (n, w) sequence ids.
            n_seqs: (n,) how many of each row's sequence ids are used.
            outputs: (n,) bool: the tokens whose logits are returned.

        Returns:
            (outputs, vocabulary) float32 logits.

        Raises:
            RuntimeError: a batch larger than the context's, or a failed ``llama_decode``.
        """
        lib = self.lib
        n = len(tokens)
        if n > self.sizes[1]:
            raise RuntimeError(f"a batch of {n} tokens exceeds the context's batch size {self.sizes[1]}")
        tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        pos = np.ascontiguousarray(pos, dtype=np.int32)
        seqs = np.ascontiguousarray(seqs, dtype=np.int32)
        n_seqs = np.ascontiguousarray(n_seqs, dtype=np.int32)
        flags = np.ascontiguousarray(outputs, dtype=np.int8)
        rows = np.ascontiguousarray(seqs.ctypes.data + np.arange(n, dtype=np.uintp) * seqs.strides[0], dtype=np.uintp)
        batch = lib.llama_batch()
        batch.n_tokens = n
        batch.token = tokens.ctypes.data_as(ctypes.POINTER(lib.llama_token))
        batch.embd = None
        batch.pos = pos.ctypes.data_as(ctypes.POINTER(lib.llama_pos))
        batch.n_seq_id = n_seqs.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(rows.ctypes.data, ctypes.POINTER(ctypes.POINTER(lib.llama_seq_id)))
        batch.logits = flags.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        rc = lib.llama_decode(self.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} on a batch of {n} tokens")
        where = np.flatnonzero(flags)
        out = np.empty((len(where), self.n_vocab), dtype=np.float32)
        for k, i in enumerate(where):
            ptr = lib.llama_get_logits_ith(self.ctx, int(i))
            out[k] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return out

    # ------------------------------------------------------------------ lifetime
    def _free_context(self) -> None:
        if self.ctx is not None:
            self.lib.llama_free(self.ctx)
            self.ctx = None
            self.head = ()

    def close(self) -> None:
        """Free the context and the model (also done when the object is collected)."""
        self._free_context()
        if getattr(self, "model", None):
            self.lib.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def eval(self):
        """Nothing to switch (scoring calls ``module.eval()`` on torch modules); returns the runtime."""
        return self

    def __repr__(self) -> str:
        return f"Runtime({Path(self.path).name!r}, {self.description()}, threads={self.threads})"
