"""genemask.evaluate from the outside: command-line runs, bad input, fault injection, reproducibility.

The protocol's pieces (draws, scores, prediction, training, tables, t-test) are checked in
nbs/08_evaluate.ipynb; here the whole thing runs the way a user runs it, on a tiny model and a tiny task.
"""
import csv, os, subprocess, sys, warnings
from pathlib import Path
from types import SimpleNamespace as NS
import numpy as np
import pandas as pd
import pytest
import torch

from shared_data import published
from genemask.tokenize import KmerTokenizer
from genemask.models import build_model, save_checkpoint
from genemask import evaluate as ev
from genemask.cli import main as genemask

def evaluate(*args):
    "`genemask evaluate ARGS` as the console script runs it: errors are printed on stderr with exit status 1."
    return genemask(['evaluate', *map(str, args)])

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def tiny_checkpoint(path, max_positions=512, weights=True, seed=0):
    "The `tiny` BERT of genemask.models with random weights, saved with a 6-mer tokenizer."
    save_checkpoint(build_model('tiny', seed=seed, max_position_embeddings=max_positions), KmerTokenizer(k=6), path)
    if not weights: (Path(path) / 'model.safetensors').unlink()
    return Path(path)


def toy_split(n, rng, length=40):
    "Alternating A-rich (label 0) and C-rich (label 1) sequences."
    labels = np.arange(n) % 2
    seqs = [''.join(rng.choice(list('ACGT'), length, p=[.7, .1, .1, .1] if l == 0 else [.1, .7, .1, .1])) for l in labels]
    return seqs, labels


def gue_folder(path, n_train=24, n_dev=10, n_test=30, length=40, seed=0):
    "A task in DNABERT-2's GUE layout: train.csv, dev.csv, test.csv with header sequence,label."
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    for name, n in (('train', n_train), ('dev', n_dev), ('test', n_test)):
        seqs, labels = toy_split(n, rng, length)
        with open(path / f'{name}.csv', 'w', newline='') as f:
            w = csv.writer(f); w.writerow(['sequence', 'label']); w.writerows(zip(seqs, labels.tolist()))
    return path


def toy_task(n_train=24, n_test=30, length=40, seed=0, dev=True):
    rng = np.random.default_rng(seed)
    split = lambda s: NS(seqs=s[0], labels=np.asarray(s[1]))
    return NS(name='toy', classes=['A-rich', 'C-rich'], train=split(toy_split(n_train, rng, length)),
              dev=split(toy_split(10, rng, length)) if dev else None, test=split(toy_split(n_test, rng, length)))


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp('run', numbered=False) / 'final')


# ---- command line ---------------------------------------------------------------------------------

def test_cli_few_shot_writes_results(ckpt, tmp_path, capsys):
    task = gue_folder(tmp_path / 'toytask')
    out = tmp_path / 'out'
    rc = ev.evaluate_cli([str(ckpt), str(task), '--shots', '2', '5', '--repeats', '2', '--epochs', '2',
                          '--out', str(out), '--quiet'])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ['fewshot.csv', 'fewshot.png', 'fewshot_summary.csv']
    res = ev.read_results(out / 'fewshot.csv')
    assert len(res) == 4 and sorted(set(res['shots'])) == [2, 5]
    assert set(res['model']) == {'run'}                      # run/final is labelled by its run folder
    assert (res['n_test'] == 30).all() and (res['epochs'] == 2).all()
    from genemask.tasks import load_task
    t = load_task(task)
    for row in res.itertuples():                               # every recorded draw replays
        assert list(row.indices) == ev.draw_shots(t.train.labels, row.shots, row.seed).tolist()
        assert np.bincount(t.train.labels[row.indices]).tolist() == [row.shots, row.shots]
    summ = pd.read_csv(out / 'fewshot_summary.csv')
    assert len(summ) == 2 and (summ['n'] == 2).all()
    assert np.isclose(summ.query('shots == 5')['mean'].item(), res.query('shots == 5')['accuracy'].mean())
    assert (out / 'fewshot.png').read_bytes()[:4] == b'\x89PNG'
    assert 'few-shot accuracy' in capsys.readouterr().out


def test_cli_full_fine_tuning(ckpt, tmp_path):
    task = gue_folder(tmp_path / 'toytask')
    out = tmp_path / 'out'
    rc = ev.evaluate_cli([str(ckpt), str(task), '--full', '--epochs', '2', '--batch-size', '8', '--eval-every', '2',
                          '--out', str(out), '--quiet'])
    assert rc == 0
    assert not (out / 'fewshot.csv').exists()                 # --full alone: no few-shot runs
    res = ev.read_results(out / 'full.csv')
    assert len(res) == 1 and res.loc[0, 'dev'] == 'dev' and res.loc[0, 'steps'] == 2 * 3
    curve = res.loc[0, 'dev_curve']
    assert [s for s, _ in curve] == [2, 4, 6]
    assert res.loc[0, 'best_step'] == min(curve, key=lambda c: c[1])[0]
    assert -1 <= res.loc[0, 'mcc'] <= 1 and (out / 'full.png').exists()


def test_cli_default_out_is_beside_the_run(tmp_path):
    ck = tiny_checkpoint(tmp_path / 'myrun' / 'final')
    task = gue_folder(tmp_path / 'toytask')
    assert ev.evaluate_cli([str(ck), str(task), '--shots', '2', '--repeats', '1', '--epochs', '1', '--quiet']) == 0
    assert (tmp_path / 'myrun' / 'eval-final' / 'fewshot.csv').exists()


def test_console_entry_point(ckpt, tmp_path):
    "`genemask evaluate ...` through the CLI dispatcher, in a fresh process."
    task = gue_folder(tmp_path / 'toytask')
    cmd = [sys.executable, '-c', 'import sys; from genemask.cli import main; sys.exit(main())', 'evaluate',
           str(ckpt), str(task), '--shots', '2', '--repeats', '1', '--epochs', '1', '--out', str(tmp_path / 'o'),
           '--quiet', '--threads', '1']
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ | {'PYTHONPATH': str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert 'results in' in r.stdout and (tmp_path / 'o' / 'fewshot.csv').exists()


# ---- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize('remove, missing', [('config.json', 'config.json'), ('vocab.txt', 'vocab.txt'),
                                             ('model.safetensors', 'model.safetensors')])
def test_checkpoint_without_files(tmp_path, capsys, remove, missing):
    ck = tiny_checkpoint(tmp_path / 'ck')
    (ck / remove).unlink()
    if remove == 'vocab.txt': (ck / 'tokenizer_config.json').unlink()
    task = gue_folder(tmp_path / 'toytask')
    rc = evaluate(ck, task, '--shots', '2', '--repeats', '1', '--out', tmp_path / 'o', '--quiet')
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith('genemask evaluate: error: checkpoint') and f'missing {missing}' in err and str(ck) in err
    assert not (tmp_path / 'o').exists()


def test_random_init_needs_no_weights(tmp_path):
    ck = tiny_checkpoint(tmp_path / 'ck', weights=False)
    with pytest.raises(FileNotFoundError, match='missing model.safetensors'): ev.few_shot(ck, toy_task(), (2,), 1, progress=False)
    res = ev.few_shot(ck, toy_task(), (2,), 1, init='random', epochs=1, progress=False)
    assert res.loc[0, 'model'] == 'random init' and res.loc[0, 'init'] == 'random'


def test_too_many_shots_names_class_and_count(ckpt, tmp_path, capsys):
    task = gue_folder(tmp_path / 'toytask', n_train=24)     # 12 examples per class
    rc = evaluate(ckpt, task, '--shots', '2', '13', '--repeats', '1', '--out', tmp_path / 'o', '--quiet')
    err = capsys.readouterr().err
    assert rc == 1 and '13 shots per class asked' in err and "class 0 ('0') has only 12 training examples" in err
    assert not (tmp_path / 'o').exists()                      # checked before any training


def test_long_sequences_truncated_with_a_count(tmp_path):
    ck = tiny_checkpoint(tmp_path / 'ck', max_positions=32)   # 30 k-mers fit
    task = toy_task(length=40)                                  # 35 k-mers each
    task.test.seqs[:3] = [s[:30] for s in task.test.seqs[:3]]   # 3 test sequences short enough (25 k-mers)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        res = ev.few_shot(ck, task, (2,), 1, epochs=1, progress=False)
    msgs = [str(x.message) for x in w if 'truncated' in str(x.message)]
    assert any(m.startswith('24 of 24 toy training sequences') for m in msgs), msgs
    assert any(m.startswith("27 of 30 toy test sequences are longer than the model's 32 positions") for m in msgs), msgs
    assert len(res) == 1


def test_paired_ttest_refuses_bad_pairs():
    with pytest.raises(ValueError, match='at least 2 pairs'): ev.paired_ttest([0.5], [0.4])
    with pytest.raises(ValueError, match='only in b'): ev.paired_ttest({'a': 1, 'b': 2}, {'a': 1, 'c': 2})


def test_unknown_init():
    with pytest.raises(ValueError, match='init must be one of'): ev.load_classifier('.', 2, init='zeros')


# ---- reproducibility and fault injection ------------------------------------------------------------

def test_same_seed_same_results_other_seed_other_draws(ckpt):
    task = toy_task(n_train=40)
    kw = dict(shots=(3,), repeats=2, epochs=2, progress=False)
    a, b = ev.few_shot(ckpt, task, seed=7, **kw), ev.few_shot(ckpt, task, seed=7, **kw)
    cols = ['seed', 'accuracy', 'macro_f1', 'mcc', 'train_loss']
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert a['indices'].tolist() == b['indices'].tolist()
    c = ev.few_shot(ckpt, task, seed=8, **kw)
    assert c.loc[0, 'indices'] != a.loc[0, 'indices'] and c.loc[0, 'indices'] == a.loc[1, 'indices']   # seed 8 = repeat 1 of seed 7


def test_fine_tune_holds_out_dev_when_task_has_none(ckpt):
    res = ev.fine_tune(ckpt, toy_task(n_train=40, dev=False), epochs=1, batch_size=8, dev_frac=0.25, progress=False)
    assert res['dev'] == '0.25 of train' and (res['n_train'], res['n_dev']) == (30, 10)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'fewshot.csv'
    old = pd.DataFrame({'task': ['x'], 'accuracy': [0.5]})
    ev.save_csv(old, path)
    before = path.read_bytes()
    real = pd.DataFrame.to_csv
    def half_then_crash(self, p, *a, **k):
        Path(p).write_text('task,accu')                         # a partial write, then the disk "fails"
        raise OSError('disk full')
    monkeypatch.setattr(pd.DataFrame, 'to_csv', half_then_crash)
    with pytest.raises(OSError, match='disk full'): ev.save_csv(pd.DataFrame({'task': ['y'] * 3}), path)
    monkeypatch.setattr(pd.DataFrame, 'to_csv', real)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ['fewshot.csv']   # no temporary file left


@pytest.mark.slow
def test_prom_core_ten_repeats_random_init(ckpt):
    "The protocol in full on the published Prom-core set (run with --slow)."
    from genemask.tasks import load_task
    task = load_task(published('fewshot', 'Prom-core'))
    res = ev.few_shot(ckpt, task, shots=(10,), repeats=10, init='random', progress=False)
    assert len(res) == 10 and (res['n_test'] == 5920).all()
    assert len({tuple(i) for i in res['indices']}) == 10


# ---- task names and table order (issue 16, points 4 and 5) -------------------------------------------

def test_same_named_tasks_stay_apart(ckpt, tmp_path):
    a, b = gue_folder(tmp_path / 'a' / '50shot', seed=1), gue_folder(tmp_path / 'b' / '50shot', seed=2)
    out = tmp_path / 'out'
    assert ev.evaluate_cli([str(ckpt), str(a), str(b), '--shots', '2', '--repeats', '1', '--epochs', '1',
                            '--out', str(out), '--quiet']) == 0
    summ = pd.read_csv(out / 'fewshot_summary.csv')
    assert summ['task'].tolist() == ['a/50shot', 'b/50shot'] and (summ['n'] == 1).all()
    assert evaluate(ckpt, a, tmp_path / 'a' / '..' / 'a' / '50shot', '--shots', '2', '--out', out, '--quiet') == 1   # the same folder twice


def test_rows_of_two_folders_never_merge():
    rows = pd.DataFrame(dict(task='50shot', task_path=['/x/a/50shot', '/x/b/50shot'], model='m', shots=10, accuracy=[.5, .7]))
    for f in (ev.summarize, ev.paper_table):
        with pytest.raises(ValueError, match="'50shot' stands for 2 different task folders"): f(rows)


def test_paper_table_columns_in_task_order_then_shots():
    rows = pd.DataFrame(dict(model=['m'] * 4 + ['r'] * 4, task=['prom', 'prom', 'splice', 'splice'] * 2,
                             shots=[50, 10, 50, 10] * 2, accuracy=np.linspace(.5, .9, 8)))
    assert list(ev.paper_table(rows).columns) == [('prom', 10), ('prom', 50), ('splice', 10), ('splice', 50)]
    assert list(ev.paper_table(rows, tasks=['splice', 'prom']).columns) == [('splice', 10), ('splice', 50), ('prom', 10), ('prom', 50)]
    first_splice = pd.concat([rows[rows.task == 'splice'], rows[rows.task == 'prom']])
    assert list(ev.paper_table(first_splice).columns)[:2] == [('splice', 10), ('splice', 50)]
    assert ev.summarize(first_splice)[['model', 'task', 'shots']].values[:2].tolist() == [['m', 'splice', 10], ['m', 'splice', 50]]


# ---- nothing lost, nothing silent (issue 19) ---------------------------------------------------------------

def no_training(monkeypatch):
    for f in ('few_shot', 'fine_tune', 'run_gue'):
        monkeypatch.setattr(ev, f, lambda *a, _f=f, **k: pytest.fail(f'{_f} ran before the input was checked'))


@pytest.mark.parametrize('opt, value', [('--epochs', 0), ('--repeats', 0), ('--batch-size', 0), ('--eval-batch-size', 0),
                                        ('--shots', 0), ('--lr', 0), ('--epochs', -1), ('--seed', -1), ('--device', 'cuda:9')])
def test_bad_options_refused_before_any_work(ckpt, tmp_path, capsys, monkeypatch, opt, value):
    no_training(monkeypatch)
    task = gue_folder(tmp_path / 'toytask')
    assert evaluate(ckpt, task, '--shots', '2', '--repeats', '1', opt, value, '--out', tmp_path / 'o', '--quiet') == 1
    err = capsys.readouterr().err
    assert err.startswith(f'genemask evaluate: error: {opt}') and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'o').exists()


def test_library_refuses_an_untrained_head(ckpt):
    with pytest.raises(ValueError, match='few_shot: epochs must be a positive integer, got 0'):
        ev.few_shot(ckpt, toy_task(), (2,), 1, epochs=0, progress=False)
    with pytest.raises(ValueError, match='few_shot: repeats must be a positive integer'):
        ev.few_shot(ckpt, toy_task(), (2,), 0, progress=False)
    with pytest.raises(ValueError, match='fine_tune: eval_every'):
        ev.fine_tune(ckpt, toy_task(), eval_every=0, progress=False)
    clf = ev.load_classifier(ckpt, 2)
    ids, mask = ev.encode(ev.load_tokenizer(ckpt), ['ACGTACGT'] * 4)
    with pytest.raises(ValueError, match='train_classifier: batch_size'): ev.train_classifier(clf, ids, mask, [0, 1, 0, 1], batch_size=0)
    with pytest.raises(ValueError, match='predict: batch_size'): ev.predict(clf, ids, mask, 0)


def test_full_disk_found_before_training(ckpt, tmp_path, capsys, monkeypatch):
    "The probe write fails as on a full disk: the error names --out, and nothing trained."
    import errno
    no_training(monkeypatch)
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(ev.tempfile, 'mkstemp', full)
    task = gue_folder(tmp_path / 'toytask')
    assert evaluate(ckpt, task, '--shots', '2', '--repeats', '1', '--out', tmp_path / 'o', '--quiet') == 1
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'o'}: cannot write there (No space left on device)" in err
    assert not (tmp_path / 'o').exists()                      # the folder it made for the probe is gone again


def test_second_task_accumulates_in_the_default_folder(tmp_path):
    "Two tasks evaluated one after the other into run/eval-final: fewshot.csv holds both; a re-run replaces its own rows."
    ck = tiny_checkpoint(tmp_path / 'run' / 'final')
    a, b = gue_folder(tmp_path / 'a', seed=1), gue_folder(tmp_path / 'b', seed=2)
    quick = ('--shots', '2', '--repeats', '2', '--epochs', '1', '--quiet')
    out = tmp_path / 'run' / 'eval-final'
    assert evaluate(ck, a, *quick) == 0
    first = ev.read_results(out / 'fewshot.csv')
    assert evaluate(ck, b, *quick) == 0
    both = ev.read_results(out / 'fewshot.csv')
    assert both['task'].tolist() == ['a', 'a', 'b', 'b']
    pd.testing.assert_frame_equal(both.iloc[:2][first.columns].reset_index(drop=True), first)   # the first run's rows, as they were
    assert evaluate(ck, a, *quick[:-2], '3', '--quiet') == 0                                     # a again, 3 epochs
    again = ev.read_results(out / 'fewshot.csv')
    assert again['task'].tolist() == ['a', 'a', 'b', 'b'] and again['epochs'].tolist() == [3, 3, 1, 1]
    assert pd.read_csv(out / 'fewshot_summary.csv')['task'].tolist() == ['a', 'b']
