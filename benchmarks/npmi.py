"""Benchmark: counting all k-mer lengths 1..6 over a genome, genemask vs a Python-dictionary counter.

    python benchmarks/npmi.py [--genome FASTA] [--dict-bases 2000000] [--repeats 3]

Prints, for the default genome (TAIR10 chr1, 30 Mbp) unless told otherwise:
  * ours, one process, sequence already in memory: Mbp/s (the per-core counting rate);
  * the dictionary counter a careful researcher writes in an afternoon (`collections.Counter.update` over
    the substrings of each A/C/G/T stretch, one length at a time), one process, on a slice of the genome
    (it is too slow for all of it), checked to give the same counts as ours on that slice; the ratio;
  * ours end to end from the FASTA file (reading, decompressing, counting) with 1 and 2 worker processes,
    as shipped (one 30 Mbp record) and cut into 8 gzipped records (a genome of many chromosomes, where
    reading and counting overlap), and the time each rate gives for a whole human genome (3.1 Gbp);
  * peak memory: the working memory of counting beyond the input (the same for 30 and 90 Mbp: it does
    not grow with the genome), and the traced peak of the FASTA path (one record at a time).
Goals (issue 3): >= 50 Mbp/s per core; 3.1 Gbp in < 2 min on 2 cores; >= 100x the dictionary counter.
"""
from __future__ import annotations
import argparse, collections, gc, gzip, os, re, resource, tempfile, time, tracemalloc
from pathlib import Path
import numpy as np
from genemask.genome import default_genome, read_fasta
from genemask.npmi import count_kmers, count_sequences
from genemask.tokenize import kmer_vocab

HUMAN_BP = 3.1e9


def dict_counts(seq:str, k:int=6)->list[collections.Counter]:
    "The afternoon version: split at non-ACGT, then count every substring of every length with a Counter."
    counts = [collections.Counter() for _ in range(k + 1)]
    for stretch in re.split('[^ACGT]+', seq.upper()):
        for l in range(1, k + 1):
            counts[l].update(stretch[i:i + l] for i in range(len(stretch) - l + 1))
    return counts


def best_time(f, repeats):
    "Best of `repeats` runs: (wall s, CPU s of this process, CPU s of worker processes, result)."
    best = None
    for _ in range(repeats):
        gc.collect()
        ch0, c0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time(), time.perf_counter()
        out = f()
        wall, cpu, ch1 = time.perf_counter() - t0, time.process_time() - c0, resource.getrusage(resource.RUSAGE_CHILDREN)
        kids = (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        if best is None or wall < best[0]: best = (wall, cpu, kids, out)
    return best


def traced_peak(f):
    gc.collect(); tracemalloc.start(); tracemalloc.reset_peak()
    f()
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--genome', default=None, help='FASTA (default: TAIR10 chr1)')
    p.add_argument('--dict-bases', type=int, default=2_000_000, help='bases of the genome for the dictionary counter')
    p.add_argument('--repeats', type=int, default=3)
    a = p.parse_args(argv)
    fasta = a.genome or default_genome()
    print(f'genome: {fasta}  (cpus visible: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f})')

    t, cpu, _, records = best_time(lambda: [seq for _, seq in read_fasta(fasta)], 1)
    total = sum(map(len, records))
    print(f'read_fasta: {total / 1e6:.1f} Mbp in {len(records)} records, {t:.2f} s wall = {total / t / 1e6:.0f} Mbp/s '
          f'({total / cpu / 1e6:.0f} Mbp per CPU second)')

    # ours, in memory, one process
    t_ours, cpu_ours, _, counts = best_time(lambda: count_sequences(records, 6), a.repeats)
    ours_rate, ours_cpu_rate = total / t_ours / 1e6, total / cpu_ours / 1e6
    print(f'ours, counting lengths 1..6, 1 process, in memory: {t_ours:.3f} s wall = {ours_rate:.0f} Mbp/s; '
          f'{cpu_ours:.3f} CPU s = {ours_cpu_rate:.0f} Mbp/s per core (goal >= 50)')

    # the dictionary counter on a slice, checked against ours on the same slice
    piece = records[0][:a.dict_bases]
    t_dict, cpu_dict, _, dc = best_time(lambda: dict_counts(piece.decode(), 6), 1)
    ours_piece = count_sequences([piece], 6)
    for l in range(1, 7):
        assert {w: int(n) for w, n in zip(kmer_vocab(l), ours_piece[l]) if n} == dict(dc[l]), f'length {l} differs'
    dict_rate, dict_cpu_rate = len(piece) / t_dict / 1e6, len(piece) / cpu_dict / 1e6
    print(f'dictionary counter, 1 process, on {len(piece) / 1e6:.1f} Mbp (same counts as ours): {t_dict:.2f} s wall = '
          f'{dict_rate:.2f} Mbp/s; {dict_cpu_rate:.2f} Mbp/s per core; the whole genome would take ~{total / 1e6 / dict_rate:.0f} s')
    print(f'ratio ours / dictionary: {ours_rate / dict_rate:.0f}x wall, {ours_cpu_rate / dict_cpu_rate:.0f}x CPU (goal >= 100x)')

    # end to end from the file: as shipped (one record), and cut into 8 records like a multi-chromosome genome,
    # where reading one record overlaps with the workers counting the previous one. "idle" estimates what two
    # idle cores would take: the larger of the reader's CPU time and half of all CPU time.
    with tempfile.TemporaryDirectory() as d:
        multi = Path(d) / 'multi.fa.gz'
        with gzip.open(multi, 'wb', compresslevel=6) as f:
            for r, s in enumerate(np.array_split(np.frombuffer(b''.join(records), np.uint8), 8)):
                f.write(f'>part{r}\n'.encode())
                for i in range(0, len(s), 80): f.write(s[i:i + 80].tobytes() + b'\n')
        for label, path, workers in (('as shipped, 1 record', fasta, 1), ('as shipped, 1 record', fasta, 2),
                                     ('cut into 8 records', multi, 1), ('cut into 8 records', multi, 2)):
            t_e2e, cpu, kids, c = best_time(lambda: count_kmers(path, 6, workers=workers, progress=False), max(1, a.repeats - 1))
            assert all((x == y).all() for x, y in zip(c[2:], counts[2:])) or label.startswith('cut')
            idle = max(cpu, (cpu + kids) / 2) if workers == 2 else cpu + kids
            print(f'ours end to end from FASTA ({label}), {workers} worker(s): {t_e2e:.2f} s wall, {cpu:.2f} + {kids:.2f} '
                  f'CPU s (main + workers) -> 3.1 Gbp in ~{HUMAN_BP / total * t_e2e:.0f} s at this load, '
                  f'~{HUMAN_BP / total * idle:.0f} s on idle cores' + (' (goal < 120 s on 2 cores)' if workers == 2 else ''))

    # memory: the same genome once and three times over (the list repeats one bytes object: no extra input memory)
    m_1 = traced_peak(lambda: count_sequences(records, 6))
    m_3 = traced_peak(lambda: count_sequences(records * 3, 6))
    print(f'working memory of counting beyond the input: {m_1 / 2**20:.0f} MiB for {total / 1e6:.0f} Mbp, '
          f'{m_3 / 2**20:.0f} MiB for {3 * total / 1e6:.0f} Mbp (bounded by the block size, not the genome)')
    del records
    m_file = traced_peak(lambda: count_kmers(fasta, 6, progress=False))
    print(f'traced peak of count_kmers(FASTA), 1 process: {m_file / 2**20:.0f} MiB '
          f'(the largest record held as bytes by read_fasta, plus the blocks)')


if __name__ == '__main__':
    main()
