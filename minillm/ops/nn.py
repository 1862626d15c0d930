"""Fused neural-network ops, each with a hand-derived backward.

Composing these from primitives would work (the tests do exactly that, as the reference), but a
fused op saves only what its gradient needs and does the math in a few array passes. That is
where most of the speed and memory of training is won.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from ..backend import get_array_module, get_rng
from ..fast.threads import for_each_row_block
from .elementwise import sum_to


def _softmax_(x, axis):
    """Softmax computed in x's own buffer (x is overwritten): for scores nobody else holds."""
    xp = get_array_module(x)
    x -= x.max(axis=axis, keepdims=True)
    xp.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)
    return x


def _softmax(x, axis):
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


class Softmax(Function):
    """exp(x) / sum(exp(x)) along an axis."""

    def forward(self, x, axis=-1):
        self.axis = axis
        self.y = _softmax(x, axis)
        return self.y

    def backward(self, grad):
        # y_i = e^x_i / sum_j e^x_j  =>  dy_i/dx_k = y_i (delta_ik - y_k), so
        # dL/dx_k = sum_i g_i y_i (delta_ik - y_k) = y_k (g_k - sum_i g_i y_i).
        y = self.y
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """x - logsumexp(x) along an axis."""

    def forward(self, x, axis=-1):
        xp = get_array_module(x)
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        return self.out

    def backward(self, grad):
        # out_i = x_i - lse(x), d lse/dx_k = softmax_k  =>  dL/dx_k = g_k - softmax_k sum_i g_i
        xp = get_array_module(grad)
        return grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True)


class CrossEntropy(Function):
    """Mean negative log-likelihood of integer targets over the last axis of ``logits``."""

    def forward(self, logits, targets, ignore_index=-100, label_smoothing=0.0):
        xp = get_array_module(logits)
        targets = xp.asarray(targets)  # targets follow the logits' device
        num_classes = logits.shape[-1]
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"cross_entropy: logits {logits.shape} need targets of shape {logits.shape[:-1]}, "
                f"got {targets.shape}"
            )
        self.logits_shape = logits.shape
        x = logits.reshape(-1, num_classes)
        t = targets.reshape(-1)
        valid = t != ignore_index
        if bool(((t < 0) | (t >= num_classes))[valid].any()):
            raise ValueError(f"cross_entropy: targets must be in [0, {num_classes}) or {ignore_index}")
        safe_t = xp.where(valid, t, 0)
        shifted = x - x.max(axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)
        eps = label_smoothing
        # With label smoothing the target distribution is q = (1-eps) onehot + eps/C, and
        # loss_row = -sum_c q_c log p_c.
        nll = -log_probs[xp.arange(len(t)), safe_t]
        if eps:
            nll = (1 - eps) * nll - eps / num_classes * log_probs.sum(axis=1)
        self.count = max(int(valid.sum()), 1)
        self.log_probs, self.safe_t, self.valid, self.eps = log_probs, safe_t, valid, eps
        return (nll * valid).sum(dtype=logits.dtype) / self.count

    def backward(self, grad):
        # d loss_row / d x = softmax(x) - q: the predicted distribution minus the target one.
        xp = get_array_module(grad)
        n, c = self.log_probs.shape
        dx = xp.exp(self.log_probs)
        dx[xp.arange(n), self.safe_t] -= 1 - self.eps
        if self.eps:
            dx -= self.eps / c
        dx *= (self.valid * (grad / self.count)).astype(dx.dtype)[:, None]
        return dx.reshape(self.logits_shape), None


class RMSNorm(Function):
    """T5's layer norm: y = w * x / sqrt(mean(x^2) + eps). No mean subtraction, no bias.

    Runs as row-block kernels (``minillm/fast/threads.py``): each row is normalised on its own.
    """

    def forward(self, x, weight, eps=1e-6):
        xp = get_array_module(x)
        self.x, self.weight = x, weight
        self.r = xp.empty(x.shape[:-1] + (1,), dtype=x.dtype)  # 1 / rms, one per row
        out = xp.empty_like(x)

        def block(x, r, out):
            xp.multiply(x, x, out=out)  # out is scratch until the last two lines
            out.mean(axis=-1, keepdims=True, out=r)
            r += eps
            xp.sqrt(r, out=r)
            xp.divide(1, r, out=r)
            xp.multiply(x, r, out=out)
            out *= weight

        for_each_row_block(block, x, self.r, out)
        return out

    def backward(self, grad):
        # With r = (mean(x^2) + eps)^(-1/2) and h = g * w (the gradient reaching x * r):
        #   dr/dx_j = -r^3 x_j / d, so dL/dx_j = r h_j - r^3 x_j mean(h * x).
        #   dL/dw = sum over rows of g * x * r.
        xp = get_array_module(grad)
        x, weight = self.x, self.weight
        gx = xp.empty_like(x) if self.needs_input_grad[0] else None
        gxr = xp.empty_like(x) if self.needs_input_grad[1] else None  # g * x * r, before the row sum

        def block(x, r, g, *outs):
            outs = list(outs)
            if gx is not None:
                out = outs.pop(0)
                h = g * weight
                xp.multiply(h, x, out=out)
                m = out.mean(axis=-1, keepdims=True)
                m *= r
                m *= r                              # r^2 mean(h * x), one per row
                xp.multiply(x, m, out=out)
                xp.subtract(h, out, out=out)
                out *= r
            if gxr is not None:
                out = outs.pop(0)
                xp.multiply(g, x, out=out)
                out *= r

        for_each_row_block(block, x, self.r, grad, *[o for o in (gx, gxr) if o is not None])
        gw = sum_to(gxr, weight.shape) if gxr is not None else None
        return gx, gw


class LayerNorm(Function):
    """y = w * (x - mean) / sqrt(var + eps) + b over the last axis."""

    def forward(self, x, weight, bias=None, eps=1e-5):
        xp = get_array_module(x)
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        self.r = 1.0 / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
        self.xhat, self.weight, self.has_bias = xc * self.r, weight, bias is not None
        out = weight * self.xhat
        return out + bias if bias is not None else out

    def backward(self, grad):
        # With xhat = (x - mu) r and h = g * w:
        #   dL/dx = r (h - mean(h) - xhat mean(h * xhat))
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            h = grad * self.weight
            gx = self.r * (h - h.mean(axis=-1, keepdims=True)
                           - self.xhat * (h * self.xhat).mean(axis=-1, keepdims=True))
        if self.needs_input_grad[1]:
            gw = sum_to(grad * self.xhat, self.weight.shape)
        if self.has_bias and self.needs_input_grad[2]:
            gb = sum_to(grad, self.weight.shape)
        return gx, gw, gb


class Dropout(Function):
    """Inverted dropout with a seeded keep-mask."""

    def forward(self, x, p=0.5):
        # Inverted dropout: keep with probability 1-p and scale by 1/(1-p) so E[y] = x.
        xp = get_array_module(x)
        self.scale = x.dtype.type(1.0 / (1.0 - p))
        if xp is not np:
            self.keep = keep_mask(x.shape, p, xp)
            return x * self.keep * self.scale
        # On the CPU, the random bits are drawn here, in order (so a seed gives one mask whatever
        # the thread count); comparing and scaling run as row blocks over the threads.
        bits, threshold = _random_bits16(x.shape), _threshold16(p)
        self.keep, out = np.empty(x.shape, dtype=bool), np.empty_like(x)

        def block(x, bits, keep, out):
            np.greater_equal(bits, threshold, out=keep)
            np.multiply(x, self.scale, out=out)
            out *= keep

        for_each_row_block(block, x, bits, self.keep, out)
        return out

    def backward(self, grad):
        xp = get_array_module(grad)
        out = xp.empty_like(grad)

        def block(grad, keep, out):
            xp.multiply(grad, self.scale, out=out)
            out *= keep

        for_each_row_block(block, grad, self.keep, out)
        return out


def _threshold16(p: float) -> int:
    return int(round(p * 65536))


def _random_bits16(shape):
    """Uniform 16-bit integers of ``shape`` from minillm's NumPy generator, four per 64-bit draw."""
    size = int(np.prod(shape, dtype=np.int64))
    return get_rng(np).bit_generator.random_raw((size + 3) // 4).view(np.uint16)[:size].reshape(shape)


def keep_mask(shape, p: float, xp=np):
    """A boolean mask that is True with probability 1 - p, from minillm's seeded generator.

    On the CPU each element compares 16 random bits with p * 65536 (p is rounded to a multiple of
    1/65536). The bits come straight from the generator, four elements per 64-bit draw: about
    four times faster than drawing floats. Dropout runs on every activation, so this shows in a
    training step.
    """
    if xp is not np:  # CuPy's generator: uniform floats
        return get_rng(xp).random(shape, dtype=np.float32) >= p
    return _random_bits16(shape) >= _threshold16(p)


class Embedding(Function):
    """Row lookup W[ids] with a scatter-add gradient."""

    def forward(self, weight, ids):
        xp = get_array_module(weight)
        ids = xp.asarray(ids)  # NumPy ids for a model on the GPU are fine: move them along
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= weight.shape[0]):
            raise IndexError(
                f"embedding: ids must be in [0, {weight.shape[0]}), got min {int(ids.min())} "
                f"max {int(ids.max())}"
            )
        self.ids, self.weight_shape = ids, weight.shape
        return xp.take(weight, ids, axis=0)

    def backward(self, grad):
        # out[n] = W[ids[n]]: each row of W receives the sum of the gradients of the positions
        # that looked it up (a scatter-add: a token may appear many times in a batch).
        xp = get_array_module(grad)
        gw = xp.zeros(self.weight_shape, dtype=grad.dtype)
        flat_ids = self.ids.reshape(-1)
        flat_grad = grad.reshape(-1, self.weight_shape[1])
        if xp is np:
            # Sort the positions by token, then sum each token's run of rows at once: the same
            # sums, in the same order, as np.add.at(gw, flat_ids, flat_grad), several times faster.
            order = np.argsort(flat_ids, kind="stable")
            sorted_ids = flat_ids[order]
            starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
            if len(order):
                gw[sorted_ids[starts]] = np.add.reduceat(flat_grad[order], starts, axis=0)
        else:
            xp.add.at(gw, flat_ids, flat_grad)
        return gw, None


def softmax(x, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, computed stably."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    """log(softmax(x)) along ``axis``, without forming the softmax."""
    return LogSoftmax.apply(x, axis=axis)


def cross_entropy(logits, targets, ignore_index: int = -100, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy of ``logits`` (..., C) against integer ``targets`` (...).

    Positions whose target equals ``ignore_index`` count neither in the sum nor in the mean.
    """
    targets = targets.data if isinstance(targets, Tensor) else np.asarray(targets) \
        if isinstance(targets, (list, tuple)) else targets
    return CrossEntropy.apply(logits, targets, ignore_index=ignore_index, label_smoothing=label_smoothing)


def rms_norm(x, weight, eps: float = 1e-6) -> Tensor:
    """T5's RMSNorm: ``weight * x / sqrt(mean(x**2, -1) + eps)``."""
    return RMSNorm.apply(x, weight, eps=eps)


def layer_norm(x, weight, bias=None, eps: float = 1e-5) -> Tensor:
    """Standard layer normalisation over the last axis."""
    return LayerNorm.apply(x, weight, bias, eps=eps)


def dropout(x, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` (seeded by ``manual_seed``); identity when not training."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return Dropout.apply(x, p=p)


def embedding(weight, ids) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by integer ``ids`` of any shape."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    return Embedding.apply(weight, ids)
