"""GradCache (Gao et al. 2021) as a loss: the loss and gradients of a whole batch in one chunk's activation memory.

The pattern of sentence-transformers' `CachedMultipleNegativesRankingLoss`: embed the batch chunk by chunk without
a graph, take the loss on the cached embeddings and its gradient w.r.t. them, and return the loss with a backward
hook that re-embeds each chunk (same RNG state, same autocast) and backpropagates its slice of that gradient. Who
calls `backward()` on the loss (Lightning's automatic optimization) keeps clipping, accumulation and precision.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch

from embedexp.model.embedder import Embedder
from embedexp.model.prompts import TokenizedPrompts


class RngState:
    """The torch CPU RNG state (and CUDA's, once CUDA is initialised), captured now and replayable later.

    GradCache embeds each chunk twice (without, then with a graph); replaying the state makes the second forward draw
    the same dropout masks as the first, so the cached embeddings are exactly the ones backpropagated through.
    """

    def __init__(self) -> None:
        """Capture the current states."""
        self.cpu = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        )

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the captured states; the global RNG continues afterwards as if it had not run."""
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


class GradCacheLoss:
    """`loss_of(embeddings of texts)`, computed and backpropagated `chunk_size` texts at a time.

    Not a `torch.nn.Module`: the embedder belongs to the LightningModule. `loss_of` may all-gather across ranks (its
    gradient w.r.t. this rank's embeddings then sums the ranks' shares, as in the plain step); it must have no
    parameters of its own. Under DDP the backward hook accumulates all chunks but the last outside autograd's
    parameter hooks (`torch.autograd.grad`), so DDP all-reduces the summed gradient once, on the last chunk; DDP must
    run with `find_unused_parameters: false` (the module checks it).
    """

    def __init__(self, embedder: Embedder, chunk_size: int) -> None:
        """`chunk_size`: texts per forward pass (anchors, positives and negatives alike)."""
        self.embedder, self.chunk_size = embedder, chunk_size

    def __call__(self, texts: list[str], loss_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The loss of the texts' embeddings, whose backward re-embeds the chunks (under no_grad: just the loss)."""
        chunks = [self.embedder.tokenize(texts[i : i + self.chunk_size]) for i in range(0, len(texts), self.chunk_size)]
        device = self.embedder.device.type  # the hook runs outside the precision plugin's autocast: replay this one
        autocast = functools.partial(
            torch.autocast, device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device)
        )
        states, cached = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(RngState())
                cached.append(self.embedder(chunk))
        if not torch.is_grad_enabled():
            return loss_of(torch.cat(cached))
        vectors = torch.cat(cached).requires_grad_()
        loss = loss_of(vectors)
        (vector_grads,) = torch.autograd.grad(loss, vectors)
        loss = loss.detach().requires_grad_()
        slices = vector_grads.split([len(chunk_vectors) for chunk_vectors in cached])
        loss.register_hook(functools.partial(self.backpropagate, chunks, states, slices, autocast))
        return loss

    def backpropagate(
        self,
        chunks: list[TokenizedPrompts],
        states: list[RngState],
        slices: tuple[torch.Tensor, ...],
        autocast: Callable[[], torch.autocast],
        grad_output: torch.Tensor,
    ) -> None:
        """Backward hook: re-embed each chunk with a graph and backpropagate `grad_output` × its cached gradient.

        `grad_output` carries what the caller did to the loss (accumulation's 1/k, the fp16 grad scaler).
        """
        params = [p for p in self.embedder.parameters() if p.requires_grad]
        with torch.enable_grad():
            for index, (chunk, state, grads) in enumerate(zip(chunks, states, slices)):
                with state.replay(), autocast():  # the forward autocasts, as the first one did; backward never does
                    vectors = self.embedder(chunk)
                surrogate = torch.dot(vectors.flatten().float(), grads.flatten().float()) * grad_output
                if index == len(chunks) - 1:
                    surrogate.backward()  # the parameters' hooks fire once: DDP all-reduces the sum here
                    continue
                for param, grad in zip(params, torch.autograd.grad(surrogate, params, allow_unused=True)):
                    if grad is None:
                        continue
                    if param.grad is None:
                        param.grad = grad
                    else:
                        param.grad.add_(grad)
