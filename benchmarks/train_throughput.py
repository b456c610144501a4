"""Training throughput: genemask's masked-LM step against the plain Hugging Face step, in one process.

Contenders, on the same corpus, the same pieces in every step, the same batch size and row width, the same
initial weights and the same precision (bf16 autocast on a GPU that has it, fp32 otherwise):

  (a) baseline   transformers `BertForMaskedLM(input_ids, attention_mask, labels)` on padded batches masked by
                 transformers' `DataCollatorForLanguageModeling` (mlm_probability 0.15; padding and masking on
                 the CPU), torch's default AdamW, gradient clipping at 1.0. The plain Hugging Face way.
  (b) genemask   the step of `genemask.pretrain`: `[CLS] piece [SEP]` rows and their unpadded layout built on
                 the CPU (`genemask.models.unpad`), DNABERT random masking on the device (chapter 3),
                 `MaskedLM` (pieces unpadded, attention inside each piece, the output layer at the masked
                 positions only), AdamW as `genemask.pretrain.make_optimizer` builds it (fused on CUDA), clipping.
  (c) packed     (`--packed`) what unpadding was chosen over: pieces packed first-fit-decreasing into rows of
                 `max_len` positions, attention confined to each piece by a block-diagonal mask (SDPA through
                 Hugging Face's encoder with per-piece position ids), masking and output layer as in (b).

Measures: non-padding tokens per second (the tokens of the pieces, [CLS]/[SEP] included) over whole training
steps (batch assembly, masking, forward, backward, clipping, optimizer), and model FLOP utilisation: the model
FLOPs of the step (`genemask.models.bert_mlm_flops`: encoder on the real tokens, attention inside each piece,
MLM head at the masked positions, x3 for forward + backward; the same definition for every contender) per
second, over the peak FLOP/s of the device: the datasheet dense peak of known GPUs for the precision used
(else a measured matrix product), and on a CPU the fp32 matrix-product rate measured here on the same threads.
Timing: `--repeats` blocks of `--steps` steps per contender after `--warmup` steps, interleaved (a, b, b, a,
...), the device synchronised before every clock read; printed: the median tokens/s of each contender and the
median of the per-block ratios genemask / baseline.

`--same-results N` trains the tiny model N steps with the plain step (Hugging Face's padded forward) and with
genemask's step from the same weights, on the same batches with the same masks, and a third time with the
plain step and other masks (the size of "noise"); it prints the largest loss difference and writes the two
loss curves to `same_results.png` in `--out`.

Run: python benchmarks/train_throughput.py [--configs tiny logo] [--batch 8] [--max-len 512] [--threads 1]
                                            [--repeats 5] [--steps 1] [--packed] [--same-results 200] [--out DIR]
"""
import argparse, json, platform, statistics, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genemask.genome import Corpus, build_corpus, default_genome
from genemask.masking import get_collator
from genemask.models import MaskedLM, bert_mlm_flops, build_model, model_config, unpad
from genemask.pretrain import make_optimizer, model_rows
from genemask.tokenize import CLS_ID, PAD_ID, SEP_ID

# dense (no sparsity) datasheet peaks, FLOP/s: (bf16, fp32 without TF32); the first name found in the device name wins
GPU_PEAKS = [('H100 PCIe', 756e12, 51e12), ('H100 NVL', 835e12, 60e12), ('H100', 989e12, 67e12),
             ('H200', 989e12, 67e12), ('GH200', 989e12, 67e12), ('A100', 312e12, 19.5e12),
             ('L40S', 362e12, 91.6e12), ('L4', 121e12, 30.3e12), ('A10', 125e12, 31.2e12)]


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def measured_peak(dev, dtype, n=None, reps=5):
    "FLOP/s of a large square matrix product on `dev` (the best of `reps`)."
    n = n or (8192 if dev.type == 'cuda' else 1024)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    best = float('inf')
    for _ in range(reps + 1):
        sync(dev); t = time.perf_counter(); a @ b; sync(dev); best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def peak_flops(dev, bf16):
    "(peak FLOP/s, where the number comes from)."
    if dev.type == 'cuda':
        name = torch.cuda.get_device_name(dev)
        for key, p16, p32 in GPU_PEAKS:
            if key in name: return (p16 if bf16 else p32), f'datasheet {key} {"bf16" if bf16 else "fp32"} dense'
    dtype = torch.bfloat16 if bf16 else torch.float32
    return measured_peak(dev, dtype), f'measured {str(dtype)[6:]} matmul on {dev.type}'


# ---------------------------------------------------------------- the contenders
class Baseline:
    "The plain Hugging Face step: padded rows, DataCollatorForLanguageModeling, BertForMaskedLM's own loss."
    name = 'baseline'
    def __init__(self, cfg, tok, dev, bf16, seed=0):
        from transformers import DataCollatorForLanguageModeling
        self.model = build_model(cfg, seed=seed).to(dev).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
        self.collate = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15, return_tensors='pt')
        self.dev, self.bf16 = dev, bf16

    def step(self, split, idx, max_len, step_no):
        rows = [{'input_ids': np.concatenate([[CLS_ID], split[int(i)][:max_len - 2], [SEP_ID]]).tolist()} for i in idx]
        b = {k: v.to(self.dev, non_blocking=True) for k, v in self.collate(rows).items()}
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step(); self.opt.zero_grad(set_to_none=True)


class Genemask:
    "genemask's step, as `genemask.pretrain` runs it (one micro-batch per step)."
    name = 'genemask'
    def __init__(self, cfg, tok, dev, bf16, seed=0, compile=False):
        self.model = build_model(cfg, seed=seed).to(dev).train()
        self.objective = MaskedLM(self.model, compile=compile)
        self.opt, _ = make_optimizer(self.model, lr=1e-4, steps=10 ** 6, warmup=0)
        self.collator = get_collator('random', tok)
        self.dev, self.bf16 = dev, bf16

    def batch(self, split, idx, max_len, step_no):
        ids, att = model_rows(split, idx, max_len)
        layout = unpad(att).to(self.dev, non_blocking=True)
        ids, att = ids.to(self.dev, non_blocking=True), att.to(self.dev, non_blocking=True)
        g = torch.Generator(device=self.dev).manual_seed(step_no)
        masked, labels = self.collator.mask(ids, att, generator=g)
        return dict(input_ids=masked, attention_mask=att, labels=labels, layout=layout)

    def loss(self, b):
        out = self.objective(**b)
        return out['loss_sum'] / out['n'].clamp(min=1), out['n']

    def step(self, split, idx, max_len, step_no):
        b = self.batch(split, idx, max_len, step_no)
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss, n = self.loss(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step(); self.opt.zero_grad(set_to_none=True)


def pack_rows(pieces, width):
    "First-fit-decreasing packing: ids [R, width], piece numbers [R, width] (0 = padding), position ids."
    order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
    bins = []
    for i in order:
        for b in bins:
            if b[0] + len(pieces[i]) <= width: b[0] += len(pieces[i]); b[1].append(i); break
        else: bins.append([len(pieces[i]), [i]])
    ids = np.full((len(bins), width), PAD_ID, dtype=np.int64)
    num, pos = np.zeros_like(ids), np.zeros_like(ids)
    for r, (_, items) in enumerate(bins):
        c = 0
        for k, i in enumerate(items):
            l = len(pieces[i]); ids[r, c:c + l] = pieces[i]; num[r, c:c + l] = k + 1; pos[r, c:c + l] = np.arange(l); c += l
    return torch.from_numpy(ids), torch.from_numpy(num), torch.from_numpy(pos)


class Packed(Genemask):
    "Packed rows with a block-diagonal attention mask (the alternative to unpadding)."
    name = 'packed'
    def batch(self, split, idx, max_len, step_no):
        pieces = [np.concatenate([[CLS_ID], split[int(i)][:max_len - 2], [SEP_ID]]) for i in idx]
        ids, num, pos = (t.to(self.dev, non_blocking=True) for t in pack_rows(pieces, max_len))
        g = torch.Generator(device=self.dev).manual_seed(step_no)
        masked, labels = self.collator.mask(ids, num, generator=g)       # pieces are runs of non-special tokens
        key = torch.where(num > 0, num, 1 << 20)                         # padding attends to padding only
        return dict(input_ids=masked, labels=labels, position_ids=pos, mask=(key[:, None, :, None] == key[:, None, None, :]))

    def loss(self, b):
        hidden = self.model.bert(input_ids=b['input_ids'], attention_mask=b['mask'], position_ids=b['position_ids']).last_hidden_state
        where = b['labels'] != -100
        logits = self.model.cls(hidden[where]).float()
        return F.cross_entropy(logits, b['labels'][where]), where.sum()


# ---------------------------------------------------------------- throughput
def step_flops(cfg, split, idx, max_len, masked_share=0.15):
    "Model FLOPs of one training step on pieces `idx` (the same count for every contender)."
    lengths = [min(int(split.lengths[int(i)]), max_len - 2) + 2 for i in idx]
    return bert_mlm_flops(cfg, lengths, round(masked_share * sum(lengths))), sum(lengths)


def run_config(name, args, corpus, dev, bf16, peak):
    split, tok = corpus.train, corpus.tokenizer
    cfg = model_config(name, len(tok))
    kinds = [Baseline, Genemask] + ([Packed] if args.packed else [])
    contenders = [k(cfg, tok, dev, bf16) for k in kinds]
    rng = np.random.default_rng(args.seed)
    n_batches = args.warmup + args.repeats * args.steps
    batches = [rng.choice(len(split), args.batch, replace=False) for _ in range(n_batches)]
    for c in contenders:                                            # warm-up (kernels, allocator, lazy init)
        for s in range(args.warmup): c.step(split, batches[s], args.max_len, s)
    rates = {c.name: [] for c in contenders}
    flops = {c.name: [] for c in contenders}
    for r in range(args.repeats):
        chunk = batches[args.warmup + r * args.steps: args.warmup + (r + 1) * args.steps]
        tokens = sum(step_flops(cfg, split, idx, args.max_len)[1] for idx in chunk)
        fl = sum(step_flops(cfg, split, idx, args.max_len)[0] for idx in chunk)
        for c in (contenders if r % 2 == 0 else contenders[::-1]):   # interleaved: a b c, c b a, ...
            sync(dev); t = time.perf_counter()
            for s, idx in enumerate(chunk): c.step(split, idx, args.max_len, 10_000 + r * args.steps + s)
            sync(dev); dt = time.perf_counter() - t
            rates[c.name].append(tokens / dt); flops[c.name].append(fl / dt)
    out = dict(config=name, batch=args.batch, max_len=args.max_len, steps_per_block=args.steps, repeats=args.repeats)
    for c in contenders:
        out[c.name] = dict(tokens_per_s=statistics.median(rates[c.name]), mfu=statistics.median(flops[c.name]) / peak,
                           tokens_per_s_all=[round(x, 1) for x in rates[c.name]])
    ratios = [g / b for g, b in zip(rates['genemask'], rates['baseline'])]
    out['ratio'] = statistics.median(ratios); out['ratios'] = [round(x, 3) for x in ratios]
    if args.packed: out['ratio_packed'] = statistics.median(p / b for p, b in zip(rates['packed'], rates['baseline']))
    return out


# ---------------------------------------------------------------- same results
def same_results(args, corpus, out_dir, dev):
    "Loss curves of the plain step and genemask's step from the same weights, batches and masks (tiny model, fp32)."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    split, tok = corpus.train, corpus.tokenizer
    collator = get_collator('random', tok)
    def curve(unpadded, mask_seed=0, steps=args.same_results, batch=8, max_len=128):
        net = build_model('tiny', len(tok), seed=0, hidden_dropout_prob=0.0).to(dev).train()   # no random state in the step
        objective = MaskedLM(net)
        opt, sched = make_optimizer(net, lr=5e-3, steps=steps, warmup=steps // 10)
        losses = []
        for s in range(steps):
            idx = np.random.default_rng([args.seed, s]).choice(len(split), batch, replace=False)
            ids, att = model_rows(split, idx, max_len)
            ids, att = ids.to(dev), att.to(dev)
            masked, labels = collator.mask(ids, att, generator=torch.Generator(device=dev).manual_seed(mask_seed * 10 ** 6 + s))
            if unpadded: o = objective(masked, att, labels); loss = o['loss_sum'] / o['n']
            else: loss = net(input_ids=masked, attention_mask=att, labels=labels).loss
            loss.backward(); torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step(); sched.step(); opt.zero_grad(set_to_none=True); losses.append(loss.item())
        return np.array(losses)
    plain, ours, other = curve(False), curve(True), curve(False, mask_seed=1)
    diff, noise = np.abs(ours - plain), np.abs(other - plain)
    steps = np.arange(1, len(plain) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax1.plot(steps, plain, lw=1.2, label='plain step (Hugging Face, padded)')
    ax1.plot(steps, ours, lw=1.2, ls='--', label='genemask step (unpadded)')
    ax1.plot(steps, other, lw=0.8, alpha=0.6, label='plain step, other masks')
    ax1.set(xlabel='step', ylabel='training loss', title='tiny model, same weights, batches and masks'); ax1.legend(fontsize=8)
    floor = 1e-9
    ax2.semilogy(steps, np.maximum(noise, floor), lw=0.8, label='|other masks - plain|')
    ax2.semilogy(steps, np.maximum(np.maximum.accumulate(diff), floor), lw=1.5, label='largest |genemask - plain| so far')
    ax2.set(xlabel='step', ylabel='loss difference', ylim=(floor / 2, 10)); ax2.legend(fontsize=8)
    plt.tight_layout(); png = out_dir / 'same_results.png'; fig.savefig(png, dpi=110); plt.close(fig)
    return dict(steps=len(plain), max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                noise_median=float(np.median(noise)), noise_max=float(noise.max()),
                first_loss=float(plain[0]), last10_plain=float(plain[-10:].mean()), last10_genemask=float(ours[-10:].mean()),
                png=str(png))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', nargs='+', default=None, help='model configs (default: tiny logo on a CPU, + dnabert on a GPU)')
    ap.add_argument('--batch', type=int, default=None, help='pieces per step (default 8 on a CPU, 32 on a GPU)')
    ap.add_argument('--max-len', type=int, default=512, help='positions per row (pieces are cut to max_len - 2 tokens)')
    ap.add_argument('--steps', type=int, default=None, help='steps per timed block (default 1 on a CPU, 10 on a GPU)')
    ap.add_argument('--repeats', type=int, default=5, help='timed blocks per contender')
    ap.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 1 on a CPU, 5 on a GPU)')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (fixed for the whole run)')
    ap.add_argument('--precision', choices=['auto', 'bf16', 'fp32'], default='auto', help='auto: bf16 where the GPU has it')
    ap.add_argument('--packed', action='store_true', help='also time packed rows with a block-diagonal mask')
    ap.add_argument('--same-results', type=int, default=0, metavar='N', help='also compare loss curves over N steps (tiny)')
    ap.add_argument('--skip-throughput', action='store_true', help='only the --same-results comparison')
    ap.add_argument('--max-tokens', type=int, default=400_000, help='corpus size (tokens of TAIR10 chr1)')
    ap.add_argument('--corpus', default=None, help='an existing corpus folder instead of building one')
    ap.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if available)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default=None, help='folder for results.json and same_results.png (default: a temp folder)')
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    gpu = dev.type == 'cuda'
    args.configs = args.configs or (['tiny', 'logo', 'dnabert'] if gpu else ['tiny', 'logo'])
    args.batch = args.batch or (32 if gpu else 8)
    args.steps = args.steps or (10 if gpu else 1)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    bf16 = args.precision == 'bf16' or (args.precision == 'auto' and gpu and torch.cuda.is_bf16_supported())
    out_dir = Path(args.out or Path(tempfile.gettempdir()) / 'genemask-train-throughput'); out_dir.mkdir(parents=True, exist_ok=True)
    if args.corpus: corpus = Corpus(args.corpus)
    else:
        corpus = Corpus(build_corpus(default_genome(), out_dir / 'corpus', seed=42, max_tokens=args.max_tokens, progress=False))
    device = torch.cuda.get_device_name(dev) if gpu else f'{platform.processor() or platform.machine()} CPU, {args.threads} thread(s)'
    peak, peak_src = peak_flops(dev, bf16)
    lengths = corpus.train.lengths
    print(f'device: {device} | torch {torch.__version__} | precision {"bf16 autocast" if bf16 else "fp32"} | '
          f'peak {peak / 1e12:.3f} TFLOP/s ({peak_src})')
    print(f'corpus: {corpus.path} ({len(lengths)} training pieces, mean {lengths.mean():.0f} tokens, '
          f'{(lengths == lengths.max()).mean():.0%} full-length) | batch {args.batch} x max_len {args.max_len} | '
          f'{args.repeats} blocks of {args.steps} step(s) per contender, interleaved', flush=True)
    results = dict(device=device, torch=torch.__version__, precision='bf16' if bf16 else 'fp32', peak_flops=peak,
                   peak_source=peak_src, threads=args.threads, configs=[])
    if not args.skip_throughput:
        head = f"{'config':8s} {'contender':9s} {'tokens/s':>10s} {'MFU':>8s}   ratio to baseline (median of blocks)"
        print(head); print('-' * len(head))
        for name in args.configs:
            r = run_config(name, args, corpus, dev, bf16, peak)
            results['configs'].append(r)
            for c in ('baseline', 'genemask', 'packed'):
                if c not in r: continue
                ratio = '' if c == 'baseline' else f"{r['ratio'] if c == 'genemask' else r['ratio_packed']:.2f}x"
                if c == 'genemask': ratio += f"  (blocks: {', '.join(f'{x:.2f}' for x in r['ratios'])})"
                print(f"{name:8s} {c:9s} {r[c]['tokens_per_s']:10,.0f} {r[c]['mfu']:8.2%}   {ratio}", flush=True)
    if args.same_results:
        s = same_results(args, corpus, out_dir, dev)
        results['same_results'] = s
        print(f"same results, {s['steps']} steps (tiny, fp32, same weights/batches/masks): max |genemask - plain| loss "
              f"{s['max_abs_diff']:.2e} (mean {s['mean_abs_diff']:.2e}); masking noise |other masks - plain|: median "
              f"{s['noise_median']:.2e}, max {s['noise_max']:.2e}; loss {s['first_loss']:.3f} -> {s['last10_plain']:.3f} (plain), "
              f"{s['last10_genemask']:.3f} (genemask, mean of the last 10); plot: {s['png']}")
    (out_dir / 'results.json').write_text(json.dumps(results, indent=1))
    print(f'results: {out_dir / "results.json"}')
    return results


if __name__ == '__main__':
    main()
