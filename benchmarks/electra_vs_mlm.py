"""ELECTRA against masked-LM pretraining at equal compute on a CPU: few-shot accuracy on Prom-core and Splice-40.

Contenders, all `tiny` encoders (2 layers, hidden size 64) trained by `genemask.pretrain.pretrain` for the same
training time (evaluation and checkpointing excluded), on the same genome:

  mlm-random     BERT, 6-mer tokens, DNABERT random masking          (chapters 3, 5, 6)
  cm-gems        BERT, 6-mer tokens, GeneMask -> Global curriculum   (chapter 4)
  electra        ELECTRA discriminator, single nucleotides, 15% per-nucleotide masking (chapter 05b)
  electra-pmi    the same with PMI-span corruption of the generator's input
  (+ each architecture with random weights, the floor pretraining has to beat)

Equal compute: each contender first trains for `--calibrate` steps to measure its training seconds per step
(one thread), then a fresh run gets `budget / seconds_per_step` steps, so its learning-rate schedule ends
within the budget. The machine is shared, so the measured training seconds of every run are printed too.
Few-shot: `genemask.evaluate.few_shot` with the paper's recipe (n examples per class, 10 repeats with
different seeds and draws), scored on a fixed, stratified subset of each published test set (`--test-size`).

Run: `python benchmarks/electra_vs_mlm.py [--budget 120] [--repeats 10] [--shots 10 50] [--test-size 1000]`.
Writes `fewshot.csv`, `pretraining.csv` and `table.csv` to `--out` and prints the table and paired t-tests
(same seeds and draws for every model); `--summarize` only re-reads `--out` and prints them again.
"""
import argparse, dataclasses, json, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genemask.genome import build_corpus, default_genome, published_data_dir
from genemask.npmi import count_kmers, npmi_table, write_ranking
from genemask.pretrain import pretrain
from genemask.evaluate import few_shot
from genemask.tasks import load_task, Split
from genemask.tokenize import NucleotideTokenizer

CONTENDERS = {
    'mlm-random':  dict(objective='mlm', strategy='random', corpus='kmer'),
    'cm-gems':     dict(objective='mlm', strategy='cm-gems', corpus='kmer'),
    'electra':     dict(objective='electra', corruption='random', corpus='nucleotide'),
    'electra-pmi': dict(objective='electra', corruption='pmi', corpus='nucleotide'),
}


def subset(task, n, seed=0):
    "The task with a stratified random subset of `n` test examples (all of them if n is None or too big)."
    y = task.test.labels
    if n is None or n >= len(y): return task
    rng = np.random.default_rng(seed)
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), round(n * np.mean(y == c)), replace=False)
                                  for c in np.unique(y)]))
    return dataclasses.replace(task, test=Split([task.test.seqs[i] for i in idx], y[idx]))


def train_seconds(summary):
    return summary['tokens'] / summary['tokens_per_s'] if summary['tokens_per_s'] else float('nan')


def summarize(out:Path):
    "The accuracy table (mean ± sd, %) and paired differences between contenders, from a finished run's CSVs."
    from scipy.stats import ttest_rel
    res = pd.read_csv(out / 'fewshot.csv')
    table = res.groupby(['model', 'task', 'shots']).accuracy.agg(['mean', 'std']).mul(100).reset_index()
    wide = table.assign(cell=lambda d: d['mean'].map('{:.1f}'.format) + ' ± ' + d['std'].map('{:.1f}'.format))
    wide = wide.pivot(index='model', columns=['task', 'shots'], values='cell')
    wide.to_csv(out / 'table.csv')
    if (out / 'pretraining.csv').exists():
        print('pretraining (equal training time):\n' + pd.read_csv(out / 'pretraining.csv').to_string(index=False))
    reps = res.groupby('model').repeat.nunique().max()
    print(f'\nfew-shot accuracy (%), mean ± sd over {reps} repeats, {res.n_test.iloc[0]} test sequences per task:\n' + wide.to_string())
    pairs = [('electra', 'mlm-random'), ('electra', 'cm-gems'), ('cm-gems', 'mlm-random'), ('electra-pmi', 'electra'),
             ('electra', 'random init (electra tiny)'), ('mlm-random', 'random init (bert tiny)')]
    print('\npaired differences (percentage points; t-test over repeats with the same seeds and draws):')
    for a, b in pairs:
        if not {a, b} <= set(res.model): continue
        cells = []
        for (t, n), g in res.groupby(['task', 'shots']):
            x = g[g.model == a].sort_values('repeat').accuracy.to_numpy(); y = g[g.model == b].sort_values('repeat').accuracy.to_numpy()
            cells.append(f'{t} n={n}: {100 * (x - y).mean():+.1f} (p={ttest_rel(x, y).pvalue:.2f})')
        print(f'  {a} - {b}: ' + '; '.join(cells))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--budget', type=float, default=120, help='training seconds per contender')
    ap.add_argument('--calibrate', type=int, default=12, help='steps of the calibration run')
    ap.add_argument('--repeats', type=int, default=10)
    ap.add_argument('--shots', type=int, nargs='+', default=[10, 50])
    ap.add_argument('--test-size', type=int, default=1000, help='test examples per task (stratified subset)')
    ap.add_argument('--max-tokens', type=int, default=2_000_000, help='corpus size (tokens) per tokenization')
    ap.add_argument('--contenders', nargs='+', default=list(CONTENDERS))
    ap.add_argument('--no-baselines', action='store_true', help='skip the random-weights baselines')
    ap.add_argument('--data', default=str((published_data_dir() or Path('missing')) / 'fewshot'), help='folder with Prom-core and Splice-40')
    ap.add_argument('--out', default='/tmp/genemask-electra-bench')
    ap.add_argument('--summarize', action='store_true', help='only print the tables of a finished run in --out')
    a = ap.parse_args(argv)
    if a.summarize: return summarize(Path(a.out))
    torch.set_num_threads(1)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    genome = default_genome()
    corpora = {'kmer': build_corpus(genome, out / 'corpus-6mer', k=6, seed=1, max_tokens=a.max_tokens, progress=False),
               'nucleotide': build_corpus(genome, out / 'corpus-nt', tokenizer=NucleotideTokenizer(), seed=1,
                                          max_tokens=a.max_tokens, progress=False)}
    ranking = out / 'npmi6.tsv'
    if not ranking.exists():
        write_ranking(npmi_table(count_kmers(corpora['kmer'], k=6, progress=False), k=6, min_count=20), ranking)
    print(f'corpora and ranking ready ({time.time() - t0:.0f} s): {genome.name}, {a.max_tokens:,d} tokens each', flush=True)

    common = dict(model='tiny', batch_size=16, grad_accum=1, lr=1e-3, max_len=256, valid_pieces=64, seed=42,
                  progress=False, tensorboard=False, log_every=10, overwrite=True, device='cpu')
    runs, checkpoints = [], {}
    for name in a.contenders:
        c = dict(CONTENDERS[name]); corpus = corpora[c.pop('corpus')]
        cal = pretrain(corpus, out / 'calibrate' / name, ranks=ranking, steps=a.calibrate, warmup=1,
                       eval_every=a.calibrate, save_every=a.calibrate, **c, **common)
        per_step = train_seconds(cal) / a.calibrate
        steps = max(10, int(a.budget / per_step))
        t1 = time.time()
        s = pretrain(corpus, out / 'runs' / name, ranks=ranking, steps=steps, warmup=max(1, steps // 10),
                     eval_every=max(1, steps // 6), save_every=steps, **c, **common)
        runs.append(dict(contender=name, steps=steps, seconds_per_step=round(per_step, 4),
                         train_seconds=round(train_seconds(s), 1), wall_seconds=round(time.time() - t1, 1),
                         tokens=s['tokens'], val_loss=round(s['val_loss'], 4), val_ppl=round(s['val_ppl'], 3),
                         switch_step=s.get('switch_step')))
        print(json.dumps(runs[-1]), flush=True)
        checkpoints[name] = out / 'runs' / name / 'final'
    pd.DataFrame(runs).to_csv(out / 'pretraining.csv', index=False)

    tasks = [subset(load_task(Path(a.data) / t), a.test_size) for t in ('Prom-core', 'Splice-40')]
    frames = []
    evals = [(n, ck, 'pretrained') for n, ck in checkpoints.items()]
    if not a.no_baselines:   # random weights of each architecture: the checkpoint folders give the architecture
        for arch, name in (('bert tiny', 'mlm-random'), ('electra tiny', 'electra')):
            if name in checkpoints: evals.append((f'random init ({arch})', checkpoints[name], 'random'))
    for label, ck, init in evals:
        for task in tasks:
            t1 = time.time()
            df = few_shot(ck, task, shots=tuple(a.shots), repeats=a.repeats, seed=42, init=init, model=label, progress=False)
            frames.append(df.drop(columns=['indices']))
            print(f'{label:28s} {task.name:10s} ' + '  '.join(f"n={n}: {g.accuracy.mean():.3f} ± {g.accuracy.std():.3f}"
                  for n, g in df.groupby('shots')) + f'  ({time.time() - t1:.0f} s)', flush=True)
    pd.concat(frames, ignore_index=True).to_csv(out / 'fewshot.csv', index=False)
    print(); summarize(out)
    print(f'\ntotal {time.time() - t0:.0f} s; results in {out}')


if __name__ == '__main__':
    main()
