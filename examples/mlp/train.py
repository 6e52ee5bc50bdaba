"""Tiny NumPy MLP classifier on a synthetic 3-arm spiral dataset.

Example training project for gitexp. Trains a fully connected ReLU network
with minibatch SGD and softmax cross-entropy, prints one line per epoch and,
when gitexp is importable, reports metrics and the final checkpoint to it.

    python train.py --lr 0.1 --hidden 32 --layers 2 --epochs 30 --out ckpt/
"""
import argparse
import os
import time

import numpy as np

try:
    import gitexp
except ImportError:
    gitexp = None

N_CLASSES = 3


def make_spirals(n, seed):
    """n points on N_CLASSES interleaved noisy spiral arms (2-D)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, size=n)
    r = rng.uniform(0.05, 1.0, size=n)
    theta = 2 * np.pi * y / N_CLASSES + 4.0 * r + rng.normal(0, 0.2, size=n)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return x.astype(np.float64), y


def init_params(sizes, rng):
    """He-initialised weights, zero biases."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        params.append([w, np.zeros(fan_out)])
    return params


def forward(params, x):
    """Return logits and the list of layer inputs (for backprop)."""
    acts = [x]
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = np.maximum(h, 0.0)
            acts.append(h)
    return h, acts


def softmax_xent(logits, y):
    """Stable mean cross-entropy and its gradient w.r.t. logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    grad = np.exp(logp)
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n


def sgd_step(params, acts, grad, lr):
    """Backpropagate grad (d loss / d logits) and update params in place."""
    for i in reversed(range(len(params))):
        w, b = params[i]
        gw, gb = acts[i].T @ grad, grad.sum(axis=0)
        if i > 0:
            grad = (grad @ w.T) * (acts[i] > 0)
        params[i][0] = w - lr * gw
        params[i][1] = b - lr * gb


def evaluate(params, x, y):
    logits, _ = forward(params, x)
    loss, _ = softmax_xent(logits, y)
    err = float(np.mean(logits.argmax(axis=1) != y))
    return float(loss), err


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--hidden", type=int, default=32, help="units per hidden layer")
    p.add_argument("--layers", type=int, default=2, help="number of hidden layers")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for model.npz")
    args = p.parse_args()

    x, y = make_spirals(1300, seed=1234)  # dataset is fixed; --seed varies the model
    x_tr, y_tr, x_va, y_va = x[:1000], y[:1000], x[1000:], y[1000:]
    rng = np.random.default_rng(args.seed)
    sizes = [2] + [args.hidden] * args.layers + [N_CLASSES]
    params = init_params(sizes, rng)

    start = time.time()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(1, args.epochs + 1):
            order = rng.permutation(len(x_tr))
            losses = []
            for i in range(0, len(order), args.batch):
                idx = order[i:i + args.batch]
                logits, acts = forward(params, x_tr[idx])
                loss, grad = softmax_xent(logits, y_tr[idx])
                sgd_step(params, acts, grad, args.lr)
                losses.append(loss)
            train_loss = float(np.mean(losses))
            val_loss, val_err = evaluate(params, x_va, y_va)
            print(f"epoch {epoch} train_loss={train_loss:.4f} "
                  f"val_err={val_err:.4f} val_loss={val_loss:.4f}", flush=True)
            if gitexp:
                gitexp.log(step=epoch, train_loss=train_loss,
                           val_err=val_err, val_loss=val_loss)
    print(f"done in {time.time() - start:.2f}s", flush=True)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "model.npz")
        arrays = {f"{k}{i}": a for i, (w, b) in enumerate(params)
                  for k, a in (("w", w), ("b", b))}
        np.savez(path, **arrays)
        print(f"saved {path}", flush=True)
        if gitexp:
            gitexp.checkpoint(path, step=args.epochs)


if __name__ == "__main__":
    main()
