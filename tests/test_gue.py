"""`genemask evaluate CKPT --full GUE/` on a small synthetic tree shaped like GUE.

Families with same-named leaves (tf/0 and mouse/0), a 3-class task (splice/reconstructed), a task without dev.csv
(refused by default, as DNABERT-2's train.py cannot run it; held out from train with --missing-dev hold-out),
resume after an interruption, and the table in the layout of DNABERT-2's GUE table.
"""
import csv
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from genemask.tokenize import KmerTokenizer
from genemask.models import build_model, save_checkpoint
from genemask import evaluate as ev
from genemask.tasks import GUE_TASKS, task_names
from genemask.cli import main as genemask

torch.set_num_threads(1)
TASKS = {'EMP/H3': 2, 'prom/prom_core_all': 2, 'tf/0': 2, 'tf/1': 2, 'mouse/0': 2, 'splice/reconstructed': 3}
QUICK = ['--epochs', '1', '--eval-every', '2', '--batch-size', '8', '--quiet']


def write_task(folder, n_classes, rng, splits=('train', 'dev', 'test'), sizes=dict(train=30, dev=15, test=30)):
    "A GUE folder: class c is rich in base c, header sequence,label."
    folder.mkdir(parents=True)
    for sp in splits:
        labels = np.arange(sizes[sp]) % n_classes
        p = lambda c: [.7 if b == c else .1 for b in range(4)]
        seqs = [''.join(rng.choice(list('ACGT'), 40, p=p(c))) for c in labels]
        with open(folder / f'{sp}.csv', 'w', newline='') as f:
            w = csv.writer(f); w.writerow(['sequence', 'label']); w.writerows(zip(seqs, labels.tolist()))


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('gue_run', numbered=False) / 'final'
    return save_checkpoint(build_model('tiny', seed=0), KmerTokenizer(k=6), path)


@pytest.fixture
def gue(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / 'GUE'
    for name, C in TASKS.items():
        write_task(root / name, C, rng, splits=('train', 'test') if name == 'tf/1' else ('train', 'dev', 'test'))
    return root


def run(ckpt, gue, out, *extra):
    return ev.evaluate_cli([str(ckpt), '--full', str(gue), '--out', str(out), '--init', 'random', *QUICK, *extra])


def cli(ckpt, gue, out, *extra):
    "The same through the console script's entry point: errors on stderr, exit status 1."
    return genemask(['evaluate', str(ckpt), '--full', str(gue), '--out', str(out), '--init', 'random', *QUICK, *extra])


def test_missing_dev_refused_naming_the_folder(ckpt, gue, tmp_path, capsys):
    assert cli(ckpt, gue, tmp_path / 'out') == 1
    err = capsys.readouterr().err
    assert 'tf/1: no dev.csv' in err and '--missing-dev hold-out' in err
    assert not (tmp_path / 'out' / 'gue.csv').exists()          # refused before any training


def test_gue_runs_every_task_with_its_family_settings(ckpt, gue, tmp_path, capsys):
    out = tmp_path / 'out'
    assert run(ckpt, gue, out, '--missing-dev', 'hold-out', '--lr', '2e-3', '--epochs', '4') == 0
    printed = capsys.readouterr().out
    rows = ev.read_results(out / 'gue.csv')
    # every task once, unique names, in the paper's column order; tf/0 and mouse/0 are two tasks
    assert rows['task'].tolist() == [t for t in GUE_TASKS if t in TASKS]
    assert rows.set_index('task').loc['tf/0', 'task_path'] != rows.set_index('task').loc['mouse/0', 'task_path']
    r = rows.set_index('task')
    assert r.loc['tf/1', 'dev'] == '0.1 of train' and (r.drop('tf/1')['dev'] == 'dev').all()
    assert r.loc['splice/reconstructed', 'n_test'] == 30
    # family settings from DNABERT's 6-mer script where not overridden: lr, max length (capped at 512 positions)
    assert (r['lr'] == 2e-3).all() and (r['epochs'] == 4).all() and (r['batch_size'] == 8).all()   # overridden
    assert ev.gue_settings('tf/0')['lr'] == 3e-5 and ev.gue_settings('virus/covid')['batch_size'] == 128
    assert r['max_length'].to_dict() == {'EMP/H3': 512, 'prom/prom_core_all': 80, 'tf/0': 110, 'tf/1': 110,
                                         'mouse/0': 110, 'splice/reconstructed': 410}
    assert r['max_steps'].isna().all()                  # --epochs drops mouse's max_steps=1000
    assert r['family'].to_dict()['mouse/0'] == 'Transcription Factor Prediction (Mouse)'
    # the table: our row, then the published ones; columns grouped by family in the paper's order
    table = pd.read_csv(out / 'gue_table.csv', header=[0, 1], index_col=0)
    assert list(table.index) == ['random init'] + list(ev.published_gue().index)
    assert list(table.columns) == [('Epigenetic Marks Prediction', 'H3'), ('Transcription Factor Prediction (Human)', '0'),
                                   ('Transcription Factor Prediction (Human)', '1'), ('Core Promoter Detection', 'all'),
                                   ('Transcription Factor Prediction (Mouse)', '0'), ('Splice', 'Reconstruct')]
    assert np.allclose(table.loc['random init'].values, (100 * rows['mcc']).round(2).values)
    assert table.loc['DNABERT-2', ('Transcription Factor Prediction (Human)', '0')] == 71.99
    assert 'DNABERT (6-mer)' in printed and 'Reconstruct' in printed
    print(table.to_string())


def test_resume_skips_finished_tasks(ckpt, gue, tmp_path, monkeypatch):
    out, real, calls = tmp_path / 'out', ev.fine_tune, []

    def killed_after_two(*args, **kw):
        if len(calls) == 2: raise KeyboardInterrupt
        calls.append(args[1].name); return real(*args, **kw)

    monkeypatch.setattr(ev, 'fine_tune', killed_after_two)
    with pytest.raises(KeyboardInterrupt): run(ckpt, gue, out, '--missing-dev', 'hold-out')
    first = ev.read_results(out / 'gue.csv')
    assert first['task'].tolist() == calls == ['EMP/H3', 'tf/0']          # written after each task

    def counting(*args, **kw):
        calls.append(args[1].name); return real(*args, **kw)
    monkeypatch.setattr(ev, 'fine_tune', counting)
    calls.clear()
    assert run(ckpt, gue, out, '--missing-dev', 'hold-out') == 0
    assert calls == ['tf/1', 'prom/prom_core_all', 'mouse/0', 'splice/reconstructed']
    rows = ev.read_results(out / 'gue.csv')
    assert sorted(rows['task']) == sorted(TASKS) and rows['task'].is_unique
    assert np.allclose(rows['mcc'][:2], first['mcc'])                   # the finished rows are kept as they were
    calls.clear()
    assert run(ckpt, gue, out, '--missing-dev', 'hold-out') == 0 and calls == []   # all done: nothing retrained
    calls.clear()                                                          # another model label runs everything
    assert run(ckpt, gue, out, '--missing-dev', 'hold-out', '--model', 'other') == 0 and len(calls) == len(TASKS)


def test_not_a_gue_folder(ckpt, tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    assert genemask(['evaluate', str(ckpt), '--full', str(tmp_path / 'empty'), '--quiet']) == 1
    assert 'empty' in capsys.readouterr().err


def test_published_figures_carry_their_source():
    cells = ev.published_gue(long=True)
    assert len(cells) == 7 * 28 and set(cells['task']) == set(GUE_TASKS)
    assert cells['value'].between(0, 100).all() and (cells['source'] == ev.GUE_SOURCE).all()
    assert set(cells.loc[cells.task == 'virus/covid', 'metric']) == {'F1'}
    row = cells.query("model == 'DNABERT (6-mer)' and task == 'mouse/0'").iloc[0]
    assert (row.value, row.table_column) == (44.42, 'Transcription Factor Prediction (Mouse) / 0')
