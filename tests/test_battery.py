"""Every `genemask` command on bad input and faults: a table of cases, each with the outcome it expects.

A case is a command line (`python -m genemask.cli COMMAND ...`) on inputs written into the case's own folder, and one
of three outcomes:

* `error(words)`: a clear error. Exit status 1, stderr holds `genemask COMMAND: error: ...` with every one of `words`
  (they name the file, the line or the parameter), no traceback, and the case's folder is exactly as it was before
  the command: nothing half-written, nothing earlier lost.
* `usage(words)`: argparse refuses the command line (exit status 2, its usage message naming the option).
* `ok(check)`: handled. Exit status 0, and `check` looks at what was written.

Cases that fail before any work (nearly all of them) run in bulk: one Python process per command runs its cases one
after another, each through `genemask.cli.main` with its own argv, working folder, stdout and stderr, an uncaught
exception printed as Python prints it (a traceback) and counted as exit status 1, as `python -m genemask.cli` would.
A few cases per command (`solo`) and the cases that train a model run in a process of their own, which also checks
that the bulk runner tells the truth.

Unwritable outputs. The tests run as root here, and root writes into a `chmod 555` folder anyway, so a read-only
folder made with chmod would test nothing. Instead the outputs go where nobody can create anything: below a regular
file (`NotADirectoryError` for every user, root included) and below `/proc` (a kernel file system that refuses new
files). Both behave the same for root and for other users, need no privilege juggling, and leave nothing to clean up.
A full disk is simulated in tests/test_evaluate.py (a failing write at the probe).

Cases that fail because of code owned by another chapter are marked `xfail(strict=True)` with the fault as reason:
when the owner fixes it the case passes, the strict mark turns that into a failure, and the mark must go.
"""
import csv, hashlib, json, os, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'MPLBACKEND': 'Agg',
                    'TOKENIZERS_PARALLELISM': 'false', 'PYTHONWARNINGS': 'ignore'}
PROC = '/proc/genemask-battery'        # nothing can be created below /proc, not even by root
DIR, GONE = object(), object()         # in `files`: make a folder / remove the file


# ---- the outcomes ---------------------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str                      # '<command>-<what>'
    args: list                   # after `genemask`; '{name}' placeholders: the case folder {d} and the shared inputs
    expect: str                  # 'error', 'usage' or 'ok'
    words: tuple = ()            # what the message must hold (a tuple inside: any one of them)
    setup: object = None         # setup(d, w): write the case's inputs into its folder d
    check: object = None         # ok: check(d, w, result)
    xfail: str | None = None     # the fault of another chapter that makes this case fail today
    solo: bool = False           # run in a process of its own (always so for cases that train)
    pre: list = field(default_factory=list)   # commands that must succeed first (own process)

    @property
    def cmd(self): return self.args[0]

def error(id, args, *words, **kw): return Case(id, args, 'error', words, **kw)
def usage(id, args, *words, **kw): return Case(id, args, 'usage', words, **kw)
def ok(id, args, check=None, **kw): return Case(id, args, 'ok', (), check=check, **kw)


# ---- inputs ---------------------------------------------------------------------------------------------------------

def files(spec:dict, base=None):
    "setup(d, w): copy the shared input `base` (a World attribute) to d/`base`, then write `spec` (path -> content)."
    def setup(d, w):
        if base:
            src = Path(getattr(w, base))
            shutil.copytree(src, d / base) if src.is_dir() else shutil.copy(src, d / base)
        for name, content in spec.items():
            p = d / name.format(**w.paths(d))
            p.parent.mkdir(parents=True, exist_ok=True)
            if content is GONE: p.unlink()
            elif content is DIR:
                if p.is_file(): p.unlink()
                p.mkdir()
            elif isinstance(content, bytes): p.write_bytes(content)
            else: p.write_text(content.format(**w.paths(d)) if '{d}' in content else content)
    return setup

def toy_rows(n, rng, length=40):
    "n (sequence, label) rows: label 0 A-rich, label 1 C-rich."
    p = ([.7, .1, .1, .1], [.1, .7, .1, .1])
    return [(''.join(rng.choice(list('ACGT'), length, p=p[i % 2])), i % 2) for i in range(n)]

def write_gue_task(folder, rng, splits=('train', 'dev', 'test'), sizes=dict(train=24, dev=10, test=30)):
    folder.mkdir(parents=True, exist_ok=True)
    for sp in splits:
        with open(folder / f'{sp}.csv', 'w', newline='') as f:
            w = csv.writer(f); w.writerow(['sequence', 'label']); w.writerows(toy_rows(sizes[sp], rng))
    return folder

def random_genome(folder, seed=0, length=30_000):
    "g.fa (one sequence, chrR) and g.gff (two-exon transcripts on both strands)."
    rng = np.random.default_rng(seed)
    seq = ''.join(rng.choice(list('ACGT'), length))
    (folder / 'g.fa').write_text('>chrR test\n' + '\n'.join(seq[i:i + 70] for i in range(0, length, 70)) + '\n')
    gff = ['##gff-version 3']
    for i, x in enumerate(range(1000, length - 2000, 1500)):
        strand = '+-'[i % 2]
        gff.append(f'chrR\t.\tmRNA\t{x}\t{x + 700}\t.\t{strand}\t.\tID=t{i}')
        gff += [f'chrR\t.\texon\t{s}\t{e}\t.\t{strand}\t.\tParent=t{i}' for s, e in ((x, x + 200), (x + 500, x + 700))]
    (folder / 'g.gff').write_text('\n'.join(gff) + '\n')


class World:
    "The good inputs every case shares (built once per module); cases copy what they change."
    def __init__(self, root:Path):
        from genemask.models import build_model, save_checkpoint
        from genemask.tokenize import KmerTokenizer
        from genemask.genome import build_corpus
        self.root = root
        shared = root / 'shared'; shared.mkdir()
        self.ck = save_checkpoint(build_model('tiny', seed=0), KmerTokenizer(k=6), shared / 'run' / 'final')
        rng = np.random.default_rng(0)
        self.task = write_gue_task(shared / 'toytask', rng)           # 12 training examples per class
        self.task2 = write_gue_task(shared / 'other' / 'toytask', rng) # same name, another folder
        self.task_b = write_gue_task(shared / 'second', rng)
        self.gue = shared / 'GUE'
        for name in ('EMP/H3', 'tf/0'): write_gue_task(self.gue / name, rng)
        random_genome(shared)
        self.fa, self.gff = shared / 'g.fa', shared / 'g.gff'
        self.corpus = build_corpus(self.fa, shared / 'corpus', max_tokens=20_000, progress=False)
        self.file = shared / 'a-file.txt'; self.file.write_text('a regular file\n')
        preset = (ROOT / 'nbs' / 'presets' / 'quick.yaml').read_text()
        preset = preset.replace('genome: default', f'genome: {shared}/no-such-genome.fa')
        self.params = shared / 'params.yaml'; self.params.write_text(preset)

    def paths(self, d):
        return dict(d=d, ck=self.ck, task=self.task, task2=self.task2, task_b=self.task_b, gue=self.gue, fa=self.fa,
                    gff=self.gff, corpus=self.corpus, file=self.file, params=self.params, proc=PROC)


# ---- the cases ----------------------------------------------------------------------------------------------------

EV = ['--shots', '2', '--repeats', '1', '--epochs', '1', '--out', '{d}/out', '--quiet', '--threads', '1']

def ev(*extra, ck='{ck}', task='{task}', base=EV):
    "An evaluate command line: a cheap good one, with `extra` options after it (the last of an option wins)."
    return ['evaluate', ck, *([task] if task else []), *base, *extra]

def task_files(spec): return files({f'task/{k}': v for k, v in spec.items()}, base='task')
def ck_files(spec): return files({f'ck/{k}': v for k, v in spec.items()}, base='ck')

def rows_text(rows): return 'sequence,label\n' + ''.join(f'{s},{l}\n' for s, l in rows)
GOOD_ROWS = toy_rows(24, np.random.default_rng(1))
UTF8_BAD = rows_text(GOOD_ROWS[:5]).encode() + b'ACGT\xff\xfeACGT,0\n' + rows_text(GOOD_ROWS[5:]).split('\n', 1)[1].encode()
NOT_ACGT = rows_text(GOOD_ROWS[:1] + [('ACGTXXACGT', 0)] + GOOD_ROWS[1:])
TASK = 'task'

EVALUATE = [
    # numbers: 0, -1, out of range
    *[error(f'evaluate-{opt[2:]}-{v}', ev(opt, v, *(['--full'] if opt in ('--eval-every', '--max-steps') else [])), opt)
      for opt in ('--shots', '--repeats', '--epochs', '--batch-size', '--eval-batch-size', '--eval-every', '--max-steps',
                  '--threads') for v in ('0', '-1')],
    *[error(f'evaluate-lr-{v}', ev('--lr', v), '--lr') for v in ('0', '-1', 'nan', 'inf')],
    error('evaluate-shots-more-than-a-class-has', ev('--shots', '2', '13'), '13 shots per class', "class 0 ('0') has only 12"),
    error('evaluate-seed-negative', ev('--seed', '-1'), '--seed'),
    error('evaluate-seed-too-large', ev('--seed', str(2**32)), '--seed'),
    error('evaluate-eval-every-without-full', ev('--eval-every', '5'), '--eval-every', '--full'),
    error('evaluate-max-steps-without-full', ev('--max-steps', '5'), '--max-steps', '--full'),
    usage('evaluate-epochs-not-a-number', ev('--epochs', 'two'), '--epochs', 'invalid int'),
    usage('evaluate-lr-not-a-number', ev('--lr', 'fast'), '--lr'),
    # devices and names
    error('evaluate-device-cuda-on-a-cpu-build', ev('--device', 'cuda'), '--device', 'cuda', solo=True),
    error('evaluate-device-cuda-3', ev('--device', 'cuda:3'), '--device', 'cuda:3'),
    error('evaluate-device-unknown', ev('--device', 'gpu'), '--device', 'gpu'),
    error('evaluate-device-mps', ev('--device', 'mps'), '--device', 'mps'),
    usage('evaluate-init-unknown', ev('--init', 'zeros'), '--init', 'zeros'),
    usage('evaluate-missing-dev-unknown', ev('--missing-dev', 'skip'), '--missing-dev'),
    usage('evaluate-unknown-option', ev('--shotz', '3'), '--shotz'),
    usage('evaluate-no-task', ev(task=None), 'TASK'),
    # checkpoints
    error('evaluate-checkpoint-missing', ev(ck='{d}/nowhere'), '{d}/nowhere', 'no such folder'),
    error('evaluate-checkpoint-is-a-file', ev(ck='{file}'), '{file}', 'a file, not a checkpoint folder'),
    error('evaluate-checkpoint-empty-folder', ev(ck='{d}/empty'), '{d}/empty', 'missing config.json, vocab.txt, model.safetensors',
          setup=files({'empty': DIR})),
    error('evaluate-checkpoint-without-config', ev(ck='{d}/ck'), 'missing config.json', setup=ck_files({'config.json': GONE})),
    error('evaluate-checkpoint-without-tokenizer', ev(ck='{d}/ck'), 'missing vocab.txt',
          setup=ck_files({'vocab.txt': GONE, 'tokenizer_config.json': GONE})),
    error('evaluate-checkpoint-without-weights', ev(ck='{d}/ck'), 'missing model.safetensors',
          setup=ck_files({'model.safetensors': GONE})),
    error('evaluate-checkpoint-config-is-a-folder', ev(ck='{d}/ck'), 'config.json is a folder', setup=ck_files({'config.json': DIR})),
    error('evaluate-checkpoint-weights-are-a-folder', ev(ck='{d}/ck'), 'model.safetensors is a folder',
          setup=ck_files({'model.safetensors': DIR})),
    error('evaluate-checkpoint-vocab-is-a-folder', ev(ck='{d}/ck'), 'vocab.txt is a folder', setup=ck_files({'vocab.txt': DIR})),
    error('evaluate-checkpoint-config-not-json', ev(ck='{d}/ck'), '{d}/ck', 'config.json is not valid JSON',
          setup=ck_files({'config.json': '{"hidden_size": 8,'})),
    error('evaluate-checkpoint-config-undecodable', ev(ck='{d}/ck'), 'config.json is not valid JSON',
          setup=ck_files({'config.json': b'\xff\xfe{}'})),
    error('evaluate-checkpoint-config-not-a-model', ev(ck='{d}/ck'), 'config.json is not a model configuration',
          setup=ck_files({'config.json': '[1, 2]'})),
    error('evaluate-checkpoint-weights-garbage', ev(ck='{d}/ck'), '{d}/ck', 'cannot load',
          setup=ck_files({'model.safetensors': b'not a safetensors file at all'})),
    error('evaluate-checkpoint-weights-truncated', ev(ck='{d}/ck'), '{d}/ck', 'cannot load',
          setup=lambda d, w: (ck_files({})(d, w), (d / 'ck' / 'model.safetensors').write_bytes(
              (w.ck / 'model.safetensors').read_bytes()[:5000]))),
    error('evaluate-checkpoint-vocab-wrong-size', ev(ck='{d}/ck'), 'vocab.txt', 'tokens',
          setup=ck_files({'tokenizer_config.json': GONE, 'vocab.txt': '[PAD]\n[UNK]\nAAA\n'})),
    # task folders and tables
    error('evaluate-task-missing', ev(task='{d}/nowhere'), '{d}/nowhere', 'not a task folder'),
    error('evaluate-task-is-a-file', ev(task='{file}'), '{file}', 'not a task folder'),
    error('evaluate-task-empty-folder', ev(task='{d}/empty'), '{d}/empty', 'no train.csv', setup=files({'empty': DIR})),
    error('evaluate-task-train-empty', ev(task='{d}/task'), 'train.csv', 'empty file', setup=task_files({'train.csv': ''})),
    error('evaluate-task-no-header', ev(task='{d}/task'), 'train.csv, line 1', 'no header',
          setup=task_files({'train.csv': rows_text(GOOD_ROWS).split('\n', 1)[1]})),
    error('evaluate-task-wrong-header', ev(task='{d}/task'), 'train.csv, line 1', "missing column 'label'",
          setup=task_files({'train.csv': rows_text(GOOD_ROWS).replace('sequence,label', 'sequence,class', 1)})),
    error('evaluate-task-header-only', ev(task='{d}/task'), 'train.csv', 'no rows', setup=task_files({'train.csv': 'sequence,label\n'})),
    error('evaluate-task-not-acgt', ev(task='{d}/task'), 'train.csv', 'line 3', "'X'", setup=task_files({'train.csv': NOT_ACGT})),
    error('evaluate-task-label-not-an-integer', ev(task='{d}/task'), 'train.csv', 'line 2', 'integers',
          setup=task_files({'train.csv': rows_text([(GOOD_ROWS[0][0], 'yes')] + GOOD_ROWS[1:])})),
    error('evaluate-task-label-negative', ev(task='{d}/task'), 'train.csv', 'line 2', 'labels must be 0..',
          setup=task_files({'train.csv': rows_text([(GOOD_ROWS[0][0], -1)] + GOOD_ROWS[1:])})),
    error('evaluate-task-label-gap', ev(task='{d}/task'), 'no row has label [2]',
          setup=task_files({'train.csv': rows_text(GOOD_ROWS + [(GOOD_ROWS[0][0], 3)])})),
    error('evaluate-task-too-few-fields', ev(task='{d}/task'), 'train.csv, line 4', 'fields',
          setup=task_files({'train.csv': rows_text(GOOD_ROWS[:2]) + 'ACGTACGT\n' + rows_text(GOOD_ROWS[2:]).split('\n', 1)[1]})),
    error('evaluate-task-undecodable-bytes', ev(task='{d}/task'), 'train.csv', 'line 7',
          setup=task_files({'train.csv': UTF8_BAD})),
    error('evaluate-task-without-test', ev(task='{d}/task'), 'without test.csv', setup=task_files({'test.csv': GONE})),
    error('evaluate-task-train-is-a-folder', ev(task='{d}/task'), '{d}/task', 'train.csv', setup=task_files({'train.csv': DIR})),
    error('evaluate-task-test-is-a-folder', ev(task='{d}/task'), '{d}/task', 'test.csv', setup=task_files({'test.csv': DIR})),
    error('evaluate-tsv-folder-wrong-header', ev(task='{d}/tsv'), 'train.tsv, line 1',
          setup=files({'tsv/train.tsv': 'seq\tlab\nACGTACGT\t0\n', 'tsv/test.tsv': 'sequence\tlabel\nACGTACGT\t0\n'})),
    error('evaluate-tsv-folder-comma-separated', ev(task='{d}/tsv'), 'train.tsv, line 1',
          setup=files({'tsv/train.tsv': rows_text(GOOD_ROWS), 'tsv/test.tsv': rows_text(GOOD_ROWS).replace(',', '\t')})),
    error('evaluate-same-task-twice', ['evaluate', '{ck}', '{task}', '{task}/../toytask', *EV], 'given twice'),
    # GUE folders
    error('evaluate-gue-empty-folder', ev('--full', task='{d}/empty'), '{d}/empty', setup=files({'empty': DIR})),
    error('evaluate-gue-task-without-dev', ev('--full', task='{d}/gue', base=EV[4:]), 'tf/0: no dev.csv', '--missing-dev',
          setup=files({'gue/tf/0/dev.csv': GONE}, base='gue')),
    error('evaluate-gue-task-without-test', ev('--full', task='{d}/gue', base=EV[4:]), 'tf/0', 'test.csv',
          setup=files({'gue/tf/0/test.csv': GONE}, base='gue')),
    error('evaluate-gue-with-shots', ev('--full', task='{gue}'), 'runs with --full only'),
    error('evaluate-gue-bad-table', ev('--full', task='{d}/gue', base=EV[4:]), 'EMP/H3/train.csv, line 1',
          setup=files({'gue/EMP/H3/train.csv': 'seq,lab\nACGT,0\n'}, base='gue')),
    error('evaluate-gue-csv-garbage', ev('--full', task='{gue}', base=EV[4:]), '{d}/out/gue.csv', 'not a results table',
          setup=files({'out/gue.csv': b'\x00\xff garbage \x00'})),
    # outputs
    error('evaluate-out-below-a-file', ev('--out', '{file}/out'), '--out', '{file}/out'),
    error('evaluate-out-is-a-file', ev('--out', '{file}'), '--out', '{file}', 'a file, not a folder'),
    error('evaluate-out-in-proc', ev('--out', '{proc}/out'), '--out', '{proc}/out', solo=True),
    error('evaluate-full-out-below-a-file', ev('--full', '--out', '{file}/out'), '--out', '{file}/out'),
    error('evaluate-gue-out-below-a-file', ev('--full', '--out', '{file}/out', task='{gue}', base=EV[4:]), '--out'),
    error('evaluate-results-garbage', ev(), '{d}/out/fewshot.csv', 'not a results table',
          setup=files({'out/fewshot.csv': b'\x89PNG\r\n\x1a\n\x00\x00\xff'})),
    error('evaluate-results-not-ours', ev(), '{d}/out/fewshot.csv', 'no column',
          setup=files({'out/fewshot.csv': 'a,b\n1,2\n'})),
    error('evaluate-results-empty-file', ev(), '{d}/out/fewshot.csv', 'not a results table', setup=files({'out/fewshot.csv': ''})),
    error('evaluate-results-csv-is-a-folder', ev(), '{d}/out/fewshot.csv', 'a folder where a results file goes',
          setup=files({'out/fewshot.csv': DIR})),
    error('evaluate-results-png-is-a-folder', ev(), '{d}/out/fewshot.png', 'a folder where a results file goes',
          setup=files({'out/fewshot.png': DIR})),
    error('evaluate-full-results-garbage', ev('--full'), '{d}/out/full.csv', 'not a results table',
          setup=files({'out/full.csv': b'\x00\x01\x02'})),
    error('evaluate-results-hold-a-same-named-task', ev(task='{task2}'), '{d}/out/fewshot.csv', "'toytask' stands for 2",
          setup=files({'out/fewshot.csv': 'task,task_path,model,init,shots,repeat,seed,accuracy\n'
                                          'toytask,{d}/elsewhere/toytask,run,pretrained,2,0,42,0.5\n'})),
]


def read_rows(path):
    from genemask.evaluate import read_results
    return read_results(path)

def accumulated(d, w, r):
    "The second task's rows were added to the first's, which stay as they were."
    out = d / 'run' / 'eval-final'
    rows = read_rows(out / 'fewshot.csv')
    assert rows['task'].tolist() == ['toytask', 'second'], rows['task'].tolist()
    first = read_rows(d / 'first.csv')
    assert np.allclose(rows.loc[rows.task == 'toytask', 'accuracy'], first['accuracy'])
    assert rows.loc[0, 'indices'] == first.loc[0, 'indices']
    summary = (out / 'fewshot_summary.csv').read_text()
    assert 'toytask' in summary and 'second' in summary
    assert not [p for p in out.iterdir() if p.name.startswith('.')]            # no temporary files

def replaced(d, w, r):
    "The same setting run again replaced its own rows; the other task's rows stayed."
    rows = read_rows(d / 'out' / 'fewshot.csv')
    assert sorted(rows['task']) == ['second', 'second', 'toytask', 'toytask'], rows['task'].tolist()
    assert rows.set_index(['task', 'repeat'])['epochs'].to_dict() == {('toytask', 0): 1, ('toytask', 1): 1,
                                                                      ('second', 0): 2, ('second', 1): 2}

def same_again(d, w, r):
    "Exactly the same evaluate twice: the second run's rows replace the first's (same draws, same scores)."
    rows = read_rows(d / 'out' / 'fewshot.csv')
    first = read_rows(d / 'first.csv')
    assert len(rows) == len(first) == 1 and rows['indices'].tolist() == first['indices'].tolist()
    assert np.allclose(rows['accuracy'], first['accuracy'])

def full_accumulated(d, w, r):
    rows = read_rows(d / 'out' / 'full.csv')
    assert rows['task'].tolist() == ['toytask', 'second'] and (d / 'out' / 'full_summary.csv').exists()

def corpus_built(d, w, r):
    m = json.loads((d / 'c' / 'manifest.json').read_text())
    assert m['complete'] and not [p for p in d.iterdir() if p.name.startswith('.')]

def ranking_written(d, w, r):
    assert (d / 'out.tsv').read_text().startswith('kmer') and not [p for p in d.iterdir() if p.name.startswith('.')]

EV_TRAINS = [
    ok('evaluate-second-task-into-the-same-default-folder',
       ['evaluate', '{d}/run/final', '{task_b}', *EV[:6], '--quiet', '--threads', '1'], accumulated,
       setup=lambda d, w: shutil.copytree(w.ck, d / 'run' / 'final'),
       pre=[['evaluate', '{d}/run/final', '{task}', *EV[:6], '--quiet', '--threads', '1'],
            ['_copy', '{d}/run/eval-final/fewshot.csv', '{d}/first.csv']]),
    ok('evaluate-same-setting-again-replaces-its-rows', ev('--repeats', '2', '--epochs', '1'), replaced,
       pre=[ev('--repeats', '2', '--epochs', '3'), ev('--repeats', '2', '--epochs', '2', task='{task_b}')]),
    ok('evaluate-the-same-command-twice', ev(), same_again, pre=[ev(), ['_copy', '{d}/out/fewshot.csv', '{d}/first.csv']]),
    ok('evaluate-full-second-task-accumulates', ev('--full', '--batch-size', '8', '--eval-every', '2', task='{task_b}', base=EV[4:]),
       full_accumulated, pre=[ev('--full', '--batch-size', '8', '--eval-every', '2', base=EV[4:])]),
]

def co(*args, out='{d}/c'): return ['corpus', *args[:1], out, *args[1:]]

CORPUS = [
    error('corpus-fasta-missing', co('{d}/none.fa'), '{d}/none.fa', 'no such file'),
    error('corpus-fasta-is-a-folder', co('{d}'), '{d}'),
    error('corpus-fasta-empty', co('{d}/e.fa'), '{d}/e.fa', 'empty', setup=files({'e.fa': ''})),
    error('corpus-fasta-no-header', co('{d}/x.fa'), '{d}/x.fa', setup=files({'x.fa': 'ACGTACGT\nACGT\n'})),
    error('corpus-fasta-not-acgt', co('{d}/x.fa'), '{d}/x.fa', 'line 2', setup=files({'x.fa': '>a\nAC1GT\n'})),
    error('corpus-fasta-is-a-gff', co('{gff}'), '{gff}', 'GFF', solo=True),
    error('corpus-fasta-is-binary', co('{d}/p.png'), '{d}/p.png', 'not FASTA',
          setup=files({'p.png': b'\x89PNG\r\n\x1a\n\x00\x00'})),
    error('corpus-fasta-gzip-truncated', co('{d}/t.fa.gz'), '{d}/t.fa.gz', 'truncated',
          setup=lambda d, w: (d / 't.fa.gz').write_bytes(__import__('gzip').compress(w.fa.read_bytes())[:3000])),
    ok('corpus-fasta-undecodable-header', co('{d}/x.fa', '--valid-frac', '0'), corpus_built,   # only the name is odd
       setup=files({'x.fa': b'>chr\xff\xfe\n' + b'ACGTACGTACGT\n' * 50})),
    *[error(f'corpus-k-{v}', co('{fa}', '--k', v), 'k') for v in ('0', '-1', '9')],
    error('corpus-tokenizer-unknown', co('{fa}', '--tokenizer', 'bpe'), 'bpe'),
    *[error(f'corpus-valid-frac-{v}', co('{fa}', '--valid-frac', v), 'valid_frac') for v in ('-1', '1', '1.5')],
    *[error(f'corpus-max-tokens-{v}', co('{fa}', '--max-tokens', v), 'max_tokens') for v in ('0', '-1')],
    error('corpus-seed-negative', co('{fa}', '--seed', '-1'), 'seed'),
    error('corpus-out-below-a-file', co('{fa}', out='{file}/c'), '{file}/c'),
    error('corpus-out-in-proc', co('{fa}', out='{proc}/c'), '{proc}/c'),
    error('corpus-out-is-a-file', co('{fa}', out='{d}/f'), '{d}/f', setup=files({'f': 'x'})),
    error('corpus-another-corpus-in-out', co('{fa}', '--seed', '4', out='{d}/corpus'), 'holds another corpus', 'seed',
          setup=files({}, base='corpus')),
    usage('corpus-k-not-a-number', co('{fa}', '--k', 'six'), '--k'),
    ok('corpus-crlf-lowercase-fasta', co('{d}/x.fa', '--max-tokens', '2000'), corpus_built,
       setup=files({'x.fa': '>a test\r\n' + 'acgtnACGTTTGACCA\r\n' * 200})),
]

NPMI_OK = ['--k', '4', '--min-count', '1', '--quiet']
def nm(src, *extra, out='{d}/out.tsv'): return ['npmi', src, out, *NPMI_OK, *extra]

NPMI = [
    error('npmi-source-missing', nm('{d}/none.fa'), '{d}/none.fa', solo=True),
    error('npmi-source-folder-not-a-corpus', nm('{d}/empty'), '{d}/empty', setup=files({'empty': DIR})),
    error('npmi-source-empty', nm('{d}/e.fa'), '{d}/e.fa', 'empty', setup=files({'e.fa': ''})),
    error('npmi-source-no-header', nm('{d}/x.fa'), '{d}/x.fa', setup=files({'x.fa': 'ACGTACGT\n'})),
    error('npmi-source-not-acgt', nm('{d}/x.fa'), '{d}/x.fa', 'line 2', setup=files({'x.fa': '>a\nAC1GT\n'})),
    error('npmi-source-is-a-gff', nm('{gff}'), '{gff}', 'GFF'),
    ok('npmi-source-undecodable-name', nm('{d}/x.fa'), ranking_written, setup=files({'x.fa': b'>chr\xff\nACGTACGTAC\n'})),
    *[error(f'npmi-k-{v}', nm('{fa}', '--k', v), '--k') for v in ('0', '-1', '1', '9')],
    *[error(f'npmi-min-count-{v}', nm('{fa}', '--min-count', v), '--min-count') for v in ('0', '-1')],
    *[error(f'npmi-workers-{v}', nm('{fa}', '--workers', v), '--workers') for v in ('0', '-1')],
    error('npmi-out-below-a-file', nm('{fa}', out='{file}/out.tsv'), '{file}'),
    error('npmi-out-is-a-folder', nm('{fa}', out='{d}'), '{d}', 'is a folder'),
    error('npmi-out-in-proc', nm('{fa}', out='{proc}/out.tsv'), '{proc}'),
    error('npmi-out-folder-missing', nm('{fa}', out='{d}/nope/out.tsv'), '{d}/nope'),
    usage('npmi-split-unknown', nm('{corpus}', '--split', 'test'), '--split'),
    ok('npmi-tiny-fasta', nm('{fa}'), ranking_written),
]

def tk(*extra, fa='{fa}', gff='{gff}', out='{d}/tasks'): return ['tasks', fa, gff, out, '--quiet', *extra]

TASKS = [
    error('tasks-fasta-missing', tk(fa='{d}/none.fa'), '{d}/none.fa', solo=True),
    error('tasks-fasta-empty', tk(fa='{d}/e.fa'), '{d}/e.fa', setup=files({'e.fa': ''})),
    error('tasks-fasta-is-a-folder', tk(fa='{d}/x'), '{d}/x', setup=files({'x': DIR})),
    error('tasks-gff-missing', tk(gff='{d}/none.gff'), '{d}/none.gff', 'no such file'),
    error('tasks-gff-empty', tk(gff='{d}/e.gff'), '{d}/e.gff', setup=files({'e.gff': ''})),
    error('tasks-gff-is-a-folder', tk(gff='{d}/x'), '{d}/x', setup=files({'x': DIR})),
    error('tasks-gff-five-columns', tk(gff='{d}/x.gff'), '{d}/x.gff', 'line 2', '9',
          setup=files({'x.gff': '##gff-version 3\nchrR\t.\texon\t1\t9\n'})),
    error('tasks-gff-bad-coordinates', tk(gff='{d}/x.gff'), '{d}/x.gff', 'line 2', 'coordinates',
          setup=files({'x.gff': '##gff-version 3\nchrR\t.\texon\tten\t90\t.\t+\t.\tParent=t\n'})),
    error('tasks-gff-no-exons', tk(gff='{d}/x.gff'), '{d}/x.gff', 'no exon',
          setup=files({'x.gff': '##gff-version 3\nchrR\t.\tgene\t10\t90\t.\t+\t.\tID=g\n'})),
    error('tasks-gff-other-sequence-names', tk(gff='{d}/x.gff'), '{d}/x.gff', 'no sequence name of the GFF matches',
          setup=lambda d, w: (d / 'x.gff').write_text(w.gff.read_text().replace('chrR', 'chr9'))),
    error('tasks-gff-is-a-fasta', tk(gff='{fa}'), '{fa}', 'line'),
    error('tasks-gff-undecodable', tk(gff='{d}/x.gff'), '{d}/x.gff', 'line 2',
          setup=files({'x.gff': b'##gff-version 3\nchrR\t.\texon\t10\t90\t.\t+\t.\tParent=t\xff\n'})),
    error('tasks-gff-beyond-the-sequence', tk(gff='{d}/x.gff'), '{d}/x.gff', 'ends at',
          setup=files({'x.gff': '##gff-version 3\nchrR\t.\texon\t10\t90000\t.\t+\t.\tParent=t\n'})),
    *[error(f'tasks-block-size-{v}', tk('--block-size', v), 'block') for v in ('0', '-1')],
    error('tasks-fractions-zero', tk('--fractions', '0', '0.5', '0.5'), 'fractions'),
    error('tasks-fractions-negative', tk('--fractions', '-1', '1', '1'), 'fractions'),
    error('tasks-fractions-nan', tk('--fractions', 'nan', '0.5', '0.5'), 'fractions'),
    error('tasks-seed-negative', tk('--seed', '-1'), 'seed'),
    usage('tasks-unknown-task', tk('--tasks', 'enhancer'), '--tasks', 'enhancer'),
    usage('tasks-fractions-two', tk('--fractions', '0.5', '0.5'), '--fractions'),
    error('tasks-out-below-a-file', tk(out='{file}/tasks'), '{file}/tasks'),
    error('tasks-out-in-proc', tk(out='{proc}/tasks'), '{proc}/tasks'),
    error('tasks-out-holds-a-task', tk(), 'exist', 'prom_300', setup=files({'tasks/prom_300/train.csv': 'sequence,label\nACGT,0\n'})),
]

PRETRAIN_OK = ['--model', 'tiny', '--steps', '2', '--batch-size', '2', '--grad-accum', '1', '--warmup', '0',
               '--eval-every', '1', '--valid-pieces', '2', '--save-every', '1', '--no-progress', '--no-tensorboard']
def pt(*extra, corpus='{corpus}'): return ['pretrain', corpus, '{d}/run', *PRETRAIN_OK, *extra]

PRETRAIN = [
    error('pretrain-corpus-missing', pt(corpus='{d}/nowhere'), 'corpus', solo=True),
    error('pretrain-corpus-is-a-fasta', pt(corpus='{fa}'), 'corpus'),
    *[error(f'pretrain-steps-{v}', pt('--steps', v), 'steps') for v in ('0', '-1')],
    *[error(f'pretrain-batch-size-{v}', pt('--batch-size', v), ('batch_size', 'batch-size')) for v in ('0', '-1')],
    error('pretrain-strategy-unknown', pt('--strategy', 'sometimes'), 'strategy'),
    error('pretrain-model-unknown', pt('--model', 'huge'), 'model'),
    error('pretrain-ranks-missing', pt('--strategy', 'genemask', '--ranks', '{d}/none.tsv'), 'ranks'),
    error('pretrain-ranks-garbage', pt('--strategy', 'genemask', '--ranks', '{d}/r.tsv'), 'ranks',
          setup=files({'r.tsv': 'this is not\ta ranking\n\x00\n'})),
]

def rn(*extra): return ['run', '--params', '{params}', '--out', '{d}/grid', *extra]
def params(text): return files({'p.yaml': text})

RUN = [
    error('run-preset-unknown', ['run', '--preset', 'nosuch', '--out', '{d}/grid'], 'nosuch', 'no such preset', solo=True),
    error('run-params-missing', ['run', '--params', '{d}/none.yaml', '--out', '{d}/grid'], '{d}/none.yaml'),
    error('run-params-empty', ['run', '--params', '{d}/p.yaml', '--out', '{d}/grid'], '{d}/p.yaml', 'mapping',
          setup=params('')),
    error('run-params-not-yaml', ['run', '--params', '{d}/p.yaml', '--out', '{d}/grid'], '{d}/p.yaml', 'not valid YAML',
          setup=params('grid: [unclosed\n')),
    error('run-params-a-list', ['run', '--params', '{d}/p.yaml', '--out', '{d}/grid'], '{d}/p.yaml', 'mapping',
          setup=params('- 1\n- 2\n')),
    error('run-params-is-a-folder', ['run', '--params', '{d}', '--out', '{d}/grid'], '{d}'),
    error('run-params-unknown-key', rn('--set', 'gird.steps=[1]'), 'unknown keys', 'gird'),
    error('run-set-without-equals', rn('--set', 'grid.steps'), 'grid.steps', 'key.sub=value'),
    *[error(f'run-grid-steps-{v}', rn('--set', f'grid.steps=[{v}]'), 'grid.steps') for v in ('0', '-1')],
    error('run-grid-seed-empty', rn('--set', 'grid.seed=[]'), 'grid.seed'),
    error('run-grid-strategy-unknown', rn('--set', 'grid.strategy=[sometimes]'), 'grid.strategy', 'sometimes'),
    error('run-grid-model-unknown', rn('--set', 'grid.model=[huge]'), 'grid.model', 'huge'),
    error('run-tasks-empty', rn('--set', 'tasks=[]'), 'tasks'),
    error('run-pretrain-key-unknown', rn('--set', 'pretrain.stepz=5'), 'pretrain.stepz', "did you mean 'steps'"),
    error('run-evaluate-shots-zero', rn('--set', 'evaluate.shots=[0]'), 'evaluate.shots'),
    *[error(f'run-jobs-{v}', rn('--jobs', v), '--jobs') for v in ('0', '-1')],
    error('run-genome-missing', rn(), 'data.genome', 'no-such-genome.fa'),
    error('run-out-below-a-file', ['run', '--params', '{params}', '--out', '{file}/grid'], '{file}/grid'),
    usage('run-jobs-not-a-number', rn('--jobs', 'many'), '--jobs'),
    usage('genemask-unknown-command', ['evaluat', '{ck}', '{task}'], 'unknown command'),
]

CASES = EVALUATE + EV_TRAINS + CORPUS + NPMI + TASKS + PRETRAIN + RUN
assert len({c.id for c in CASES}) == len(CASES), 'case ids must be unique'


# ---- running them -------------------------------------------------------------------------------------------------

RUNNER = r'''
import contextlib, io, json, os, shutil, sys, traceback
from genemask.cli import main

def one(argv):
    "What `python -m genemask.cli ARGV` would give: exit status, stdout, stderr (a traceback for an uncaught exception)."
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ['genemask', *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if isinstance(e.code, str): print(e.code, file=sys.stderr)
        except BaseException: traceback.print_exc(); rc = 1
    return dict(rc=rc, stdout=out.getvalue(), stderr=err.getvalue())

results = []
for case in json.load(sys.stdin):
    os.chdir(case['cwd'])
    for step in case['pre']:                     # commands that must succeed first; ['_copy', SRC, DST] copies a file
        if step[0] == '_copy': shutil.copy(step[1], step[2]); continue
        r = one(step)
        if r['rc'] != 0: r['stderr'] = f'pre-step {step} failed:\n' + r['stderr']; break
    else: r = one(case['argv'])
    results.append(dict(id=case['id'], **r))
json.dump(results, sys.__stdout__)
'''

def snapshot(folder:Path)->dict:
    "Every file and folder below `folder`, with a hash of each file's bytes."
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else 'dir'
            for p in sorted(folder.rglob('*'))}

def fmt(args, w, d): return [a.format(**w.paths(d)) for a in args]

def solo(argv, cwd, timeout=300):
    r = subprocess.run([sys.executable, '-m', 'genemask.cli', *argv], cwd=cwd, env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    return dict(rc=r.returncode, stdout=r.stdout, stderr=r.stderr)

def run_bulk(cases, w, root):
    "Run `cases` one after another in one Python process (each after its `pre` steps); id -> result."
    payload = json.dumps([dict(id=c.id, cwd=str(root / c.id), argv=fmt(c.args, w, root / c.id),
                               pre=[fmt(s, w, root / c.id) for s in c.pre]) for c in cases])
    r = subprocess.run([sys.executable, '-c', RUNNER], input=payload, cwd=root, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f'the bulk runner failed:\n{r.stderr[-3000:]}'
    return {x['id']: x for x in json.loads(r.stdout)}

@pytest.fixture(scope='module')
def results(tmp_path_factory, request):
    """Run the selected cases, two processes at a time: the cheap ones in one process per command, each case that
    trains in a process of its own (its `pre` steps in the same process), the `solo` ones with `python -m genemask.cli`."""
    wanted = {item.callspec.params['case'].id for item in request.session.items
              if item.module.__name__ == __name__ and hasattr(item, 'callspec')}
    cases = [c for c in CASES if c.id in wanted]
    root = tmp_path_factory.mktemp('battery')
    w = World(root)
    before = {}
    for c in cases:
        d = root / c.id; d.mkdir()
        if c.setup: c.setup(d, w)
        before[c.id] = snapshot(d)
    alone = lambda c: c.solo or c.pre or c.expect == 'ok'
    groups = [[c for c in cases if c.cmd == cmd and not alone(c)] for cmd in dict.fromkeys(c.cmd for c in cases)]
    jobs = [lambda cs=cs: run_bulk(cs, w, root) for cs in sorted(groups, key=len, reverse=True) if cs]
    jobs += [lambda c=c: run_bulk([c], w, root) for c in cases if alone(c) and not c.solo]
    jobs += [lambda c=c: {c.id: solo(fmt(c.args, w, root / c.id), root / c.id)} for c in cases if c.solo]
    out = {}
    with ThreadPoolExecutor(2) as pool:
        for r in pool.map(lambda job: job(), jobs): out.update(r)
    for c in cases: out[c.id] |= dict(before=before[c.id], after=snapshot(root / c.id), d=root / c.id)
    return out, w

def words(case, w, d):
    return [tuple(x.format(**w.paths(d)) for x in (alt if isinstance(alt, tuple) else (alt,))) for alt in case.words]

def params_of(cases): return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
                              for c in cases]

@pytest.mark.parametrize('case', params_of(CASES))
def test_case(case, results):
    res, w = results
    r = res[case.id]
    d, err, shown = r['d'], r['stderr'], f"exit {r['rc']}\nstdout: {r['stdout'][-1500:]}\nstderr: {r['stderr'][-3000:]}"
    assert 'Traceback' not in err, shown
    if case.expect == 'ok':
        assert r['rc'] == 0, shown
        if case.check: case.check(d, w, r)
        return
    if case.expect == 'usage':
        assert r['rc'] == 2 and ('usage:' in err or 'unknown command' in err), shown
        msg = err
    else:
        marker = f'genemask {case.cmd}: error: '
        assert r['rc'] == 1 and marker in err, shown
        msg = err[err.index(marker):]
    for alts in words(case, w, d):
        assert any(a in msg for a in alts), f'{alts} not in the message\n{shown}'
    assert r['after'] == r['before'], f"the case's folder changed: {set(r['after'].items()) ^ set(r['before'].items())}\n{shown}"


def test_the_battery_is_big_enough():
    by = {}
    for c in CASES: by.setdefault(c.cmd, []).append(c)
    assert len(CASES) >= 100 and {'corpus', 'npmi', 'tasks', 'pretrain', 'evaluate', 'run'} <= set(by)
