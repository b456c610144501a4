"""`genemask npmi` from the outside: the command line in a real process, bad input, killed runs.

The counting and scoring themselves are pinned against brute force in nbs/02_npmi.ipynb; here are the
things a notebook cannot express well: exit codes and messages of the console command, files left behind
by failures, and runs killed by a signal in the middle of counting or of writing the TSV.
"""
import collections, itertools, math, os, re, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from shared_data import published
from genemask.npmi import (count_kmers, count_sequences, kmer_pmi, load_ranks, npmi_cli, npmi_table, ranks_path,
                           revcomp_index, vocab_ranks)
from genemask.tokenize import N_SPECIAL, kmer_vocab

ROOT = Path(__file__).resolve().parents[1]
RANKING = ('reference', 'grch38_chr1-3_npmi6_ranking.csv')
MAIN = 'import sys; from genemask.cli import main; sys.exit(main(sys.argv[1:]))'


def genemask(*args, **kw):
    "Run the `genemask` command in a fresh Python process."
    return subprocess.run([sys.executable, '-c', MAIN, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=kw.pop('timeout', 120), **kw)


def random_fasta(path, n_records=3, length=5000, seed=0, n_run=True):
    rng = np.random.default_rng(seed)
    with open(path, 'w') as f:
        for r in range(n_records):
            s = bytearray(np.array(list(b'ACGT'), dtype=np.uint8)[rng.integers(0, 4, length)].tobytes())
            if n_run: s[length // 2:length // 2 + 50] = b'N' * 50
            f.write(f'>rec{r} random\n')
            for i in range(0, length, 60): f.write(s[i:i + 60].decode() + '\n')
    return path


def brute_counts(seqs, k):
    out = [collections.Counter() for _ in range(k + 1)]
    for seq in seqs:
        for stretch in re.split('[^ACGT]+', seq.upper()):
            for l in range(1, k + 1):
                for i in range(len(stretch) - l + 1): out[l][stretch[i:i + l]] += 1
    return out


def fasta_seqs(path):
    recs, cur = [], None
    for line in Path(path).read_text().splitlines():
        if line.startswith('>'): cur = []; recs.append(cur)
        else: cur.append(line.strip())
    return [''.join(r) for r in recs]


def leftovers(folder, name):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(f'.{name}.'))


# --- the command in a real process ---------------------------------------------------------------------

def test_cli_end_to_end(tmp_path):
    fa = random_fasta(tmp_path / 'g.fa')
    out = tmp_path / 'rank.tsv'
    r = genemask('npmi', fa, out, '--k', 4, '--min-count', 5, '--quiet')
    assert r.returncode == 0, r.stderr
    assert 'rank.tsv: 256 4-mers' in r.stdout
    t = pd.read_csv(out, sep='\t', keep_default_na=False, na_values=[''])
    assert list(t.columns) == ['kmer', 'count', 'pmi', 'npmi', 'rank'] and t.kmer.tolist() == kmer_vocab(4)
    ref = brute_counts(fasta_seqs(fa), 4)
    assert t['count'].tolist() == [ref[4][w] for w in kmer_vocab(4)]
    assert sorted(t['rank']) == list(range(1, 257))
    # PMI straight from the definition, for a few k-mers
    N = {l: sum(ref[l].values()) for l in range(1, 5)}
    p = lambda s: ref[len(s)][s] / N[len(s)]
    for w in t.sort_values('rank').kmer.head(5):
        segs = [(0,) + c + (4,) for n in range(1, 4) for c in itertools.combinations(range(1, 4), n)]
        pmi = min(math.log(p(w)) - sum(math.log(p(w[a:b])) for a, b in zip(s, s[1:])) for s in segs)
        row = t.set_index('kmer').loc[w]
        assert abs(row.pmi - pmi) < 1e-9
        assert abs(row.npmi - pmi * math.log(row['count']) / (math.log(5) + math.log(row['count']))) < 1e-9
    ranks = np.load(ranks_path(out))
    assert ranks.shape == (N_SPECIAL + 256,) and (ranks[:N_SPECIAL] == 257).all()
    assert (load_ranks(out, 4) == ranks).all()
    assert leftovers(tmp_path, 'rank.tsv') == [] and leftovers(tmp_path, 'rank.ranks.npy') == []


def test_cli_both_strands_workers_match_one_process(tmp_path):
    fa = random_fasta(tmp_path / 'g.fa', n_records=4, length=20_000, seed=1)
    r1 = genemask('npmi', fa, tmp_path / 'a.tsv', '--k', 6, '--min-count', 2, '--both-strands', '--quiet')
    r2 = genemask('npmi', fa, tmp_path / 'b.tsv', '--k', 6, '--min-count', 2, '--both-strands', '--workers', 2, '--quiet')
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    a, b = (pd.read_csv(tmp_path / f, sep='\t') for f in ('a.tsv', 'b.tsv'))
    pd.testing.assert_frame_equal(a, b)
    fwd = count_sequences(fasta_seqs(fa), 6)[6]
    assert (a['count'].to_numpy() == fwd + fwd[revcomp_index(6)]).all()


def test_cli_on_a_corpus(tmp_path):
    from genemask.genome import build_corpus, Corpus
    fa = random_fasta(tmp_path / 'g.fa', n_records=2, length=30_000, seed=2)
    cdir = build_corpus(fa, tmp_path / 'corpus', k=6, progress=False)
    r = genemask('npmi', cdir, tmp_path / 'c.tsv', '--k', 5, '--min-count', 3, '--quiet')
    assert r.returncode == 0, r.stderr
    t = pd.read_csv(tmp_path / 'c.tsv', sep='\t')
    c = Corpus(cdir)
    pieces = [c.tokenizer.decode_dna(c.train[i]) for i in range(len(c.train))]
    ref = brute_counts(pieces, 5)
    assert t['count'].tolist() == [ref[5][w] for w in kmer_vocab(5)]


def test_cli_help_and_top_level_dispatch():
    r = genemask('npmi', '--help')
    assert r.returncode == 0 and '--min-count' in r.stdout and '--both-strands' in r.stdout


# --- bad input -----------------------------------------------------------------------------------------

BAD = {  # name: (FASTA text or None for no file, extra args, phrase expected in the error)
    'empty file': ('', [], 'empty file'),
    'header only': ('>x\n', [], 'has no sequence'),
    'only N': ('>x\nNNNNNNNNNNNN\n', [], 'no window of 6 consecutive'),
    'fewer than k bases': ('>x\nACGTA\n>y\nACGNNTAC\n', [], 'no window of 6 consecutive'),
    'not FASTA': ('##gff-version 3\nchr1\t.\tgene\t1\t10\n', [], 'expected a FASTA header'),
    'missing source': (None, [], 'no such file'),
    'min-count above every count': ('>x\n' + 'ACGT' * 100 + '\n', ['--min-count', '1000'], 'larger than every 6-mer count'),
    'min-count zero': ('>x\nACGTACGTAC\n', ['--min-count', '0'], '--min-count must be a positive integer'),
    'k = 0': ('>x\nACGTACGTAC\n', ['--k', '0'], '--k must be an integer in 1..8'),
    'k = 9': ('>x\nACGTACGTAC\n', ['--k', '9'], '--k must be an integer in 1..8'),
    'k = 1': ('>x\nACGTACGTAC\n', ['--k', '1'], 'PMI needs at least two bases'),
    'workers = 0': ('>x\nACGTACGTAC\n', ['--workers', '0'], '--workers must be a positive integer'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input_is_refused_and_writes_nothing(tmp_path, capsys, case):
    text, extra, phrase = BAD[case]
    fa = tmp_path / 'in.fa'
    if text is not None: fa.write_text(text)
    out = tmp_path / 'out.tsv'
    assert npmi_cli([str(fa), str(out), '--quiet', *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith('genemask npmi: error:') and phrase in err, err
    if text is not None and case not in ('k = 0', 'k = 9', 'k = 1', 'min-count zero', 'workers = 0'):
        assert str(fa) in err                                       # the message names the file
    assert not out.exists() and not ranks_path(out).exists() and leftovers(tmp_path, 'out.tsv') == []


def test_output_folder_missing_fails_before_counting(tmp_path, capsys, monkeypatch):
    import genemask.npmi as m
    monkeypatch.setattr(m, 'count_kmers', lambda *a, **kw: pytest.fail('counted before checking the output path'))
    fa = random_fasta(tmp_path / 'g.fa')
    assert npmi_cli([str(fa), str(tmp_path / 'nope' / 'x.tsv'), '--quiet']) == 1
    assert 'output folder' in capsys.readouterr().err and 'nope' in str(tmp_path / 'nope')
    assert npmi_cli([str(fa), str(tmp_path), '--quiet']) == 1                   # a folder, not a file
    assert 'is a folder' in capsys.readouterr().err


def test_bad_input_in_a_real_process(tmp_path):
    (tmp_path / 'e.fa').write_text('')
    r = genemask('npmi', tmp_path / 'e.fa', tmp_path / 'o.tsv', '--quiet')
    assert r.returncode == 1 and 'empty file' in r.stderr and str(tmp_path / 'e.fa') in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['e.fa']


def test_api_errors():
    with pytest.raises(ValueError, match='k must be an integer in 1..8'): count_sequences(['ACGT'], 0)
    with pytest.raises(ValueError, match='k must be an integer in 1..8'): count_sequences(['ACGT'], 9)
    with pytest.raises(ValueError, match='workers must be a positive integer'): count_sequences(['ACGT'], 2, workers=0)
    with pytest.raises(ValueError, match='needs counts of lengths 1..6'): kmer_pmi(count_sequences(['ACGTAC'], 4), 6)
    with pytest.raises(ValueError, match='no 3-mer was counted'): kmer_pmi(count_sequences(['AC'], 3), 3)


# --- k = 7 and 8 (the uint32 index path), against brute force ----------------------------------------

@pytest.mark.parametrize('k', [7, 8])
def test_long_kmers_match_brute_force(k):
    rng = np.random.default_rng(k)
    seqs = [''.join(rng.choice(list('ACGTN'), p=[.24, .24, .24, .24, .04], size=n)) for n in (0, 5, 300, 2000)]
    got = count_sequences(seqs, k, chunk=97)
    ref = brute_counts(seqs, k)
    for l in range(1, k + 1):
        assert {w: int(n) for w, n in zip(kmer_vocab(l), got[l]) if n} == dict(ref[l])
    t = npmi_table(got, k, min_count=1)
    assert sorted(t['rank']) == list(range(1, 4**k + 1))


# --- rankings on disk ----------------------------------------------------------------------------------

def test_published_ranking_loads():
    r = load_ranks(published(*RANKING))
    vocab = kmer_vocab(6)
    assert r.shape == (N_SPECIAL + 4096,) and (r[:N_SPECIAL] == 4097).all()
    top = [vocab[i - N_SPECIAL] for i in np.argsort(r)[:4]]
    assert top == ['CCTCCC', 'GGGAGG', 'GTGTGT', 'CCCAGC']
    pub = pd.read_csv(published(*RANKING))
    assert r[N_SPECIAL + vocab.index('TCGCGA')] == pub.set_index('ngram').loc['TCGCGA', 'norm_pmi_rank_rel'] == 4096


def test_bad_ranking_files(tmp_path):
    pub = pd.read_csv(published(*RANKING))
    cases = {
        'cols.csv': pub.rename(columns={'norm_pmi_rank_rel': 'whatever', 'ngram': 'x'}),
        'short.csv': pub.iloc[:-1],
        'dup.csv': pub.assign(ngram=pub.ngram.where(pub.index != 5, pub.ngram[4])),
        'rank0.csv': pub.assign(norm_pmi_rank_rel=pub.norm_pmi_rank_rel - 1),
    }
    msgs = {'cols.csv': 'no ranking columns', 'short.csv': '4095 k-mers', 'dup.csv': 'duplicates',
            'rank0.csv': 'ranks must be integers in 1..4096'}
    for name, df in cases.items():
        df.to_csv(tmp_path / name, index=False)
        with pytest.raises(ValueError, match=re.escape(msgs[name])) as e: load_ranks(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(FileNotFoundError): load_ranks(tmp_path / 'none.tsv')
    np.save(tmp_path / 'r.npy', np.arange(7))
    with pytest.raises(ValueError, match='expected'): load_ranks(tmp_path / 'r.npy')
    with pytest.raises(ValueError, match='4096 k-mers, expected all 256'): load_ranks(published(*RANKING), k=4)


# --- killed runs ---------------------------------------------------------------------------------------

# The child patches one step to stop at a known point (half the TSV written, or counting under way),
# tells the test it got there by creating READY, and waits to be killed by a real signal.
STALL_WRITE = '''
import sys, time, pandas as pd
from pathlib import Path
ready = Path(sys.argv[1]); argv = sys.argv[2:]
orig = pd.DataFrame.to_csv
def half_then_stall(self, path, **kw):
    orig(self.iloc[:len(self) // 2], path, **kw)          # half of the rows are on disk
    ready.touch(); time.sleep(120)
pd.DataFrame.to_csv = half_then_stall
from genemask.npmi import npmi_cli
sys.exit(npmi_cli(argv))
'''

STALL_COUNT = '''
import sys, time
from pathlib import Path
ready = Path(sys.argv[1]); argv = sys.argv[2:]
import genemask.genome as g
orig = g.read_fasta
def stalled(path):
    it = orig(path)
    yield next(it)                                          # one record handed to the workers
    ready.touch(); time.sleep(120)
g.read_fasta = stalled
from genemask.npmi import npmi_cli
sys.exit(npmi_cli(argv))
'''


def run_and_kill(script, argv, sig, tmp_path):
    ready = tmp_path / 'READY'
    p = subprocess.Popen([sys.executable, '-c', script, str(ready), *map(str, argv)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not ready.exists():
        assert p.poll() is None, f'child ended early: {p.communicate()}'
        assert time.time() - t0 < 120, 'child never reached the stall point'
        time.sleep(0.05)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    return p.returncode, err


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM], ids=['SIGKILL', 'SIGTERM'])
@pytest.mark.parametrize('old', [False, True], ids=['fresh', 'over-old-file'])
def test_killed_while_writing_leaves_no_partial_tsv(tmp_path, sig, old):
    fa = random_fasta(tmp_path / 'g.fa')
    out = tmp_path / 'rank.tsv'
    if old:
        assert npmi_cli([str(fa), str(out), '--k', '4', '--min-count', '1', '--quiet']) == 0
        before = out.read_bytes()
    rc, err = run_and_kill(STALL_WRITE, [fa, out, '--k', 4, '--min-count', 1, '--quiet'], sig, tmp_path)
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + signal.SIGTERM), err
    if old: assert out.read_bytes() == before                   # the previous complete ranking is untouched
    else: assert not out.exists()
    tmp = leftovers(tmp_path, 'rank.tsv')
    if sig == signal.SIGTERM: assert tmp == []                   # SIGTERM unwinds and removes the temporary file
    else: assert len(tmp) == 1 and len(pd.read_csv(tmp_path / tmp[0], sep='\t')) == 128   # the half-written file, never renamed


def test_killed_while_counting_with_workers(tmp_path):
    fa = random_fasta(tmp_path / 'g.fa', n_records=3, length=50_000)
    out = tmp_path / 'rank.tsv'
    t0 = time.time()
    rc, err = run_and_kill(STALL_COUNT, [fa, out, '--workers', 2, '--min-count', 1, '--quiet'], signal.SIGTERM, tmp_path)
    assert rc == 128 + signal.SIGTERM, err
    assert time.time() - t0 < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ['READY', 'g.fa']


# --- issue 19: the TSV and its .ranks.npy are one unit ----------------------------------------------------

def test_a_kill_between_the_two_renames_cannot_pair_two_genomes(tmp_path, monkeypatch):
    "Genome B's rank array renamed into place, the run killed before B's TSV: A's TSV and B's array must not load as a pair."
    import genemask.npmi as m
    a, b = random_fasta(tmp_path / 'a.fa', seed=1), random_fasta(tmp_path / 'b.fa', seed=2)
    out, args = tmp_path / 'r.tsv', ['--k', '4', '--min-count', '2', '--quiet']
    assert npmi_cli([str(b), str(out), *args]) == 0
    ranks_b = load_ranks(out, 4)
    assert npmi_cli([str(a), str(out), *args]) == 0
    ranks_a = load_ranks(out, 4)
    assert not np.array_equal(ranks_a, ranks_b)
    real = m.atomic_write
    def killed_before_the_tsv(path, write):
        if Path(path).suffix == '.tsv': raise KeyboardInterrupt     # SIGKILL between the two renames
        return real(path, write)
    monkeypatch.setattr(m, 'atomic_write', killed_before_the_tsv)
    with pytest.raises(KeyboardInterrupt): npmi_cli([str(b), str(out), *args])
    monkeypatch.undo()
    assert np.array_equal(np.load(ranks_path(out)), ranks_b)        # B's array beside A's TSV ...
    with pytest.raises(ValueError, match=r'r.ranks.npy: does not match the ranking .*r.tsv'): load_ranks(ranks_path(out), 4)
    assert np.array_equal(load_ranks(out, 4), ranks_a)              # ... and the TSV is still A's, whole
    assert npmi_cli([str(b), str(out), *args]) == 0                 # a rerun writes both again
    assert np.array_equal(load_ranks(ranks_path(out), 4), ranks_b)
