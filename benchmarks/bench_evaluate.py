"""Scoring a few-shot test set: the straightforward way against `genemask.evaluate.predict`.

Both score the published Prom-core test set (5,920 sequences of 70 nt) with the same tiny classifier, in
one process on one CPU thread, and must give the same predictions.

baseline: the Hugging Face tokenizer's `__call__` on every evaluation (padding to the longest sequence),
          batches of 32 (Trainer's usual eval batch), `torch.no_grad`, the attention mask always passed.
ours:     the split tokenized once with `batch_encode_dna`, length-sorted batches of 256 trimmed to their
          longest sequence, `torch.inference_mode`, no mask for unpadded batches (SDPA's fast path).

Times are CPU seconds of this process (`time.process_time`), so other jobs on the machine do not
inflate them; wall seconds are printed too. Run: `python benchmarks/bench_evaluate.py [--repeats 3]`.
"""
import argparse, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from genemask.evaluate import encode, load_classifier, predict
from genemask.models import build_model, save_checkpoint
from genemask.tasks import load_task
from genemask.genome import published_data_dir
from genemask.tokenize import KmerTokenizer, load_tokenizer


def baseline(model, tok, seqs, batch_size=32):
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(seqs), batch_size):
            enc = tok(seqs[i:i + batch_size], padding='longest', return_tensors='pt', return_token_type_ids=False)
            out.append(model(**enc).logits.float())
    return torch.cat(out).numpy()


def ours(model, tok, seqs):
    return predict(model, *encode(tok, seqs, 512), batch_size=256)


def timed(fn, repeats):
    best = (np.inf, np.inf)
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        res = fn()
        best = min(best, (time.process_time() - c, time.perf_counter() - w))
    return res, best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--task', default=str((published_data_dir() or Path('missing')) / 'fewshot' / 'Prom-core'))
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--n', type=int, default=None, help='score only the first N test sequences')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    task = load_task(a.task)
    seqs = task.test.seqs[:a.n] if a.n else task.test.seqs
    with tempfile.TemporaryDirectory() as d:
        ck = save_checkpoint(build_model('tiny', seed=0), KmerTokenizer(k=6), Path(d) / 'tiny')
        tok, model = load_tokenizer(ck), load_classifier(ck, len(task.classes), seed=0, device='cpu')
        ref, (bc, bw) = timed(lambda: baseline(model, tok, seqs), a.repeats)
        res, (oc, ow) = timed(lambda: ours(model, tok, seqs), a.repeats)
    assert np.array_equal(ref.argmax(1), res.argmax(1)) and np.allclose(ref, res, atol=1e-4), 'predictions differ'
    print(f'{task.name} test set, {len(seqs)} sequences, tiny model, 1 thread, best of {a.repeats}')
    print(f'baseline: {bc:7.2f} CPU s ({bw:.2f} wall s)')
    print(f'ours:     {oc:7.2f} CPU s ({ow:.2f} wall s)')
    print(f'speed-up: {bc / oc:.2f}x (CPU time)')


if __name__ == '__main__':
    main()
