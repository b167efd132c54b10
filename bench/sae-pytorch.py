#!/usr/bin/python3
# PyTorch CPU baseline for bench/sae.ts: one Top-K SAE training step as usually written in PyTorch
# (dense decoder, autograd through a scatter of the top-k values, AuxK on dead latents, Adam,
# decoder-row gradient projection and renormalisation). Prints one JSON line {tokens_per_s, ...}.
# Run with Debian's torch: /usr/bin/python3 bench/sae-pytorch.py [--d 256 --m 4096 --k 32 ...]
import argparse
import json
import os
import sys
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--d', type=int, default=256)
    ap.add_argument('--m', type=int, default=4096)
    ap.add_argument('--k', type=int, default=32)
    ap.add_argument('--k-aux', type=int, default=128)
    ap.add_argument('--batch', type=int, default=4096)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--threads', type=int, default=os.cpu_count() or 1,
                    help='torch.set_num_threads (default: every core; Debian torch starts with one thread)')
    ap.add_argument('--matmul', type=int, default=0,
                    help='time an fp32 N×N×N matmul instead of the SAE step (the README matmul row)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f'torch threads: {torch.get_num_threads()}', file=sys.stderr)
    if a.matmul:
        n = a.matmul
        x, y = torch.randn(n, n), torch.randn(n, n)
        for _ in range(a.warmup):
            x @ y
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            x @ y
        dt = (time.perf_counter() - t0) / a.steps
        cpu = (time.process_time() - c0) / a.steps
        print(json.dumps({'impl': 'pytorch-cpu', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                          'matmul': n, 'ms': dt * 1e3, 'gflops': 2 * n ** 3 / dt / 1e9, 'cpu_ms': cpu * 1e3}))
        return
    torch.manual_seed(0)
    d, m, k, B = a.d, a.m, a.k, a.batch

    W_dec = torch.randn(m, d)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_dec.requires_grad_(True)
    W_enc = W_dec.detach().t().clone().requires_grad_(True)
    b_enc = torch.zeros(m, requires_grad=True)
    b_dec = torch.zeros(d, requires_grad=True)
    params = [W_enc, b_enc, W_dec, b_dec]
    opt = torch.optim.Adam(params, lr=2e-4, eps=6.25e-10)
    x = torch.randn(B, d)
    # a fixed quarter of the latents counts as dead, so the AuxK path does real work
    dead = torch.zeros(m, dtype=torch.bool)
    dead[: m // 4] = True

    def step() -> None:
        pre = (x - b_dec) @ W_enc + b_enc
        vals, idx = pre.topk(k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        x_hat = z @ W_dec + b_dec
        e = x - x_hat
        mse = e.pow(2).mean()
        loss = mse
        if a.k_aux > 0:
            aux_pre = pre.masked_fill(~dead, float('-inf'))
            avals, aidx = aux_pre.topk(a.k_aux, dim=-1)
            za = torch.zeros_like(pre).scatter(-1, aidx, torch.relu(avals))
            e_hat = za @ W_dec
            aux = (e.detach() - e_hat).pow(2).sum() / e.detach().pow(2).sum()
            loss = mse + aux / 32
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            g = W_dec.grad
            g.sub_((g * W_dec).sum(1, keepdim=True) * W_dec)
        opt.step()
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    cpu = (time.process_time() - c0) / a.steps
    print(json.dumps({
        'impl': 'pytorch-cpu',
        'torch': torch.__version__,
        'threads': torch.get_num_threads(),
        'd': d, 'm': m, 'k': k, 'k_aux': a.k_aux, 'batch': B, 'steps': a.steps,
        'ms_per_step': round(dt * 1000, 1),
        'tokens_per_s': round(B / dt, 1),
        # process CPU time (all threads): less sensitive to a busy machine
        'cpu_ms_per_step': round(cpu * 1000, 1),
    }))


if __name__ == '__main__':
    main()
