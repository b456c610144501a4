"""Folders written by genemask open with plain transformers (issue 16, point 6): a process that never imports
genemask loads the tokenizer with `BertTokenizer` and `AutoTokenizer`, and the models with `AutoModel`,
`AutoModelForMaskedLM` and `AutoModelForSequenceClassification`, and gets genemask's ids and outputs.
The checkpoints are tiny and untrained: written by the save functions directly, no training."""
import subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from genemask.tokenize import KmerTokenizer, NucleotideTokenizer, batch_encode_dna
from genemask.models import build_model, save_checkpoint
from genemask.electra import build_electra


def _dna(rng, n):
    return ''.join(rng.choice(list('ACGT'), size=n))

def _kmer_text(seq, k):
    "DNABERT's input convention: the overlapping k-mers of `seq`, space-separated."
    return ' '.join(seq[i:i + k] for i in range(len(seq) - k + 1))


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    "Checkpoint folders of the three kinds, and what genemask computes on them in this process."
    root = tmp_path_factory.mktemp('plain')
    rng = np.random.default_rng(16)
    seqs = [_dna(rng, 40), _dna(rng, 25) + 'N' + _dna(rng, 20), _dna(rng, 12)]   # one holds an N
    kt, nt = KmerTokenizer(k=6), NucleotideTokenizer()
    bert_k, bert_n = build_model('tiny', seed=1).eval(), build_model('tiny', vocab_size=len(nt), seed=2).eval()
    pair = build_electra('tiny', seed=3).eval()
    save_checkpoint(bert_k, kt, root / 'kmer')
    save_checkpoint(bert_n, nt, root / 'nt')
    save_checkpoint(pair, nt, root / 'electra')
    KmerTokenizer(k=3).save_pretrained(root / 'tok3')     # a tokenizer alone, no config.json
    NucleotideTokenizer().save_pretrained(root / 'toknt')

    exp = {'seqs': seqs, 'kmer_text': [_kmer_text(s, 6) for s in seqs], 'kmer3_text': [_kmer_text(s, 3) for s in seqs],
           'nt_text': [' '.join(s) for s in seqs]}
    with torch.no_grad():
        for name, tok, model in [('kmer', kt, bert_k), ('nt', nt, bert_n)]:
            exp[f'{name}_ids'] = [tok(s)['input_ids'] for s in seqs]
            ids, att, _ = batch_encode_dna(tok, seqs)
            ids, att = torch.as_tensor(ids), torch.as_tensor(att)
            exp[f'{name}_batch'], exp[f'{name}_mask'] = ids, att
            exp[f'{name}_logits'] = model(input_ids=ids, attention_mask=att).logits
            exp[f'{name}_hidden'] = model.bert(input_ids=ids, attention_mask=att).last_hidden_state
        exp['kmer3_ids'] = [KmerTokenizer(k=3)(s)['input_ids'] for s in seqs]
        ids, att = exp['nt_batch'], exp['nt_mask']
        exp['disc_hidden'] = pair.discriminator.electra(input_ids=ids, attention_mask=att).last_hidden_state
        exp['disc_logits'] = pair.discriminator(input_ids=ids, attention_mask=att).logits
        exp['gen_logits'] = pair.generator(input_ids=ids, attention_mask=att).logits
    torch.save(exp, root / 'expected.pt')
    return root


CHILD = textwrap.dedent(r'''
    import sys, torch
    from pathlib import Path
    from transformers import (AutoModel, AutoModelForMaskedLM, AutoModelForPreTraining, AutoModelForSequenceClassification,
                              AutoTokenizer, BertTokenizer)
    from transformers.utils import logging
    logging.set_verbosity_error(); logging.disable_progress_bar()
    root = Path(sys.argv[1])
    exp = torch.load(root / 'expected.pt')

    def ids_of(tok, texts): return [tok(t)['input_ids'] for t in texts]
    def close(a, b, what): assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (what, (a - b).abs().max())
    def load(cls, folder, **kw):
        model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
        return model.eval(), set(info['missing_keys']), set(info['unexpected_keys']), info['mismatched_keys']

    # tokenizers: DNABERT's space-separated k-mer text everywhere; raw DNA where the tokenizer reads it
    for name, k in [('kmer', 6), ('nt', 1)]:
        text = exp['kmer_text'] if k > 1 else exp['nt_text']
        bert = BertTokenizer.from_pretrained(root / name)
        assert bert.do_lower_case is False and bert.vocab_size == (4101 if k > 1 else 10)
        assert ids_of(bert, text) == exp[f'{name}_ids'], (name, 'BertTokenizer', ids_of(bert, text))
        auto = AutoTokenizer.from_pretrained(root / name)
        assert ids_of(auto, text) == exp[f'{name}_ids'], (name, 'AutoTokenizer', ids_of(auto, text))
        assert auto.convert_tokens_to_ids(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']) == [0, 1, 2, 3, 4]
        assert auto.mask_token_id == 4 and auto.pad_token_id == 0 and len(auto) == bert.vocab_size
        if k == 1:
            assert ids_of(auto, exp['seqs']) == exp['nt_ids'], ('AutoTokenizer on raw DNA', ids_of(auto, exp['seqs']))
            assert ids_of(auto, [s.lower() for s in exp['seqs']]) == exp['nt_ids']
        batch = auto(text if k > 1 else exp['seqs'], padding=True, return_tensors='pt')
        assert torch.equal(batch['input_ids'], exp[f'{name}_batch']) and torch.equal(batch['attention_mask'], exp[f'{name}_mask'])

        ids, att = exp[f'{name}_batch'], exp[f'{name}_mask']
        with torch.no_grad():
            mlm, missing, unexpected, mismatched = load(AutoModelForMaskedLM, root / name)
            assert type(mlm).__name__ == 'BertForMaskedLM' and not missing and not unexpected and not mismatched
            close(mlm(input_ids=ids, attention_mask=att).logits, exp[f'{name}_logits'], (name, 'MLM logits'))
            enc, missing, _, _ = load(AutoModel, root / name)
            assert type(enc).__name__ == 'BertModel' and missing <= {'pooler.dense.weight', 'pooler.dense.bias'}
            close(enc(input_ids=ids, attention_mask=att).last_hidden_state, exp[f'{name}_hidden'], (name, 'hidden'))
            clf, missing, _, _ = load(AutoModelForSequenceClassification, root / name, num_labels=2)
            assert type(clf).__name__ == 'BertForSequenceClassification'
            assert {m.split('.')[0] + '.' + m.split('.')[1] for m in missing} <= {'classifier.weight', 'classifier.bias', 'bert.pooler'}
            close(clf.bert(input_ids=ids, attention_mask=att).last_hidden_state, exp[f'{name}_hidden'], (name, 'classifier encoder'))

    for name, k in [('tok3', 3), ('toknt', 1)]:        # tokenizer folders without a model config
        text, want = (exp['kmer3_text'], exp['kmer3_ids']) if k > 1 else (exp['nt_text'], exp['nt_ids'])
        for cls in (BertTokenizer, AutoTokenizer):
            assert ids_of(cls.from_pretrained(root / name), text) == want, (name, cls.__name__)

    # ELECTRA: the discriminator at the top, the generator (the run's masked LM) in generator/
    el, ids, att = root / 'electra', exp['nt_batch'], exp['nt_mask']
    for folder in (el, el / 'generator'):
        auto = AutoTokenizer.from_pretrained(folder)
        assert ids_of(auto, exp['seqs']) == exp['nt_ids'] and ids_of(auto, exp['nt_text']) == exp['nt_ids'], folder
        assert ids_of(BertTokenizer.from_pretrained(folder), exp['nt_text']) == exp['nt_ids'], folder
    with torch.no_grad():
        enc, missing, unexpected, _ = load(AutoModel, el)
        assert type(enc).__name__ == 'ElectraModel' and not missing
        close(enc(input_ids=ids, attention_mask=att).last_hidden_state, exp['disc_hidden'], 'discriminator hidden')
        disc, missing, unexpected, _ = load(AutoModelForPreTraining, el)
        assert type(disc).__name__ == 'ElectraForPreTraining' and not missing and not unexpected
        close(disc(input_ids=ids, attention_mask=att).logits, exp['disc_logits'], 'discriminator logits')
        clf, missing, _, _ = load(AutoModelForSequenceClassification, el, num_labels=2)
        assert type(clf).__name__ == 'ElectraForSequenceClassification' and all(m.startswith('classifier.') for m in missing)
        close(clf.electra(input_ids=ids, attention_mask=att).last_hidden_state, exp['disc_hidden'], 'classifier encoder')
        for kw in ({'pretrained_model_name_or_path': el / 'generator'}, {'pretrained_model_name_or_path': el, 'subfolder': 'generator'}):
            gen, info = AutoModelForMaskedLM.from_pretrained(**kw, output_loading_info=True)
            assert type(gen).__name__ == 'ElectraForMaskedLM' and not info['missing_keys'] and not info['unexpected_keys']
            close(gen.eval()(input_ids=ids, attention_mask=att).logits, exp['gen_logits'], 'generator logits')
        # the top folder holds no masked-LM head: transformers reports the head it had to initialise
        _, missing, _, _ = load(AutoModelForMaskedLM, el)
        assert any(m.startswith('generator_') for m in missing), missing
    assert 'genemask' not in sys.modules
    print('plain transformers ok')
''')


def test_folders_open_with_plain_transformers(folders):
    r = subprocess.run([sys.executable, '-c', CHILD, str(folders)], cwd=folders, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    assert 'plain transformers ok' in r.stdout


def test_folders_still_load_through_genemask(folders):
    "genemask's own loaders read the new folders (and `AutoTokenizer` in a genemask process gives genemask's classes)."
    from transformers import AutoTokenizer
    from genemask.tokenize import load_tokenizer
    from genemask.models import load_checkpoint
    from genemask.electra import load_electra
    exp = torch.load(folders / 'expected.pt')
    for name, cls in [('kmer', KmerTokenizer), ('nt', NucleotideTokenizer), ('tok3', KmerTokenizer), ('toknt', NucleotideTokenizer)]:
        for tok in (load_tokenizer(folders / name), AutoTokenizer.from_pretrained(folders / name)):
            assert type(tok).__name__ == cls.__name__, (name, type(tok))   # by name: a notebook run in this process re-registers its own copy
            want = exp['kmer3_ids' if name == 'tok3' else 'kmer_ids' if name == 'kmer' else 'nt_ids']
            assert [tok(s)['input_ids'] for s in exp['seqs']] == want
    model, tok = load_checkpoint(folders / 'kmer')
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(input_ids=exp['kmer_batch'], attention_mask=exp['kmer_mask']).logits, exp['kmer_logits'])
    pair, tok = load_electra(folders / 'electra')
    assert isinstance(tok, NucleotideTokenizer)
    with torch.no_grad():
        torch.testing.assert_close(pair.eval().generator(input_ids=exp['nt_batch'], attention_mask=exp['nt_mask']).logits, exp['gen_logits'])


def test_folders_written_before_load_as_before(folders, tmp_path):
    "A folder without the new files (as genemask wrote them before) still loads through genemask."
    import json, shutil
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from genemask.tokenize import load_tokenizer
    from genemask.models import load_checkpoint
    from genemask.electra import load_electra
    exp = torch.load(folders / 'expected.pt')
    for name in ('kmer', 'nt', 'electra'):
        old = shutil.copytree(folders / name, tmp_path / name)
        if name == 'electra':
            for f in (old / 'generator').iterdir():
                if f.name not in ('config.json', 'model.safetensors'): f.unlink()
        (old / 'tokenizer.json').unlink(missing_ok=True); (old / 'special_tokens_map.json').unlink(missing_ok=True)
        cfg = json.loads((old / 'tokenizer_config.json').read_text()); cfg.pop('do_lower_case', None)
        (old / 'tokenizer_config.json').write_text(json.dumps(cfg))
        want = exp['kmer_ids' if name == 'kmer' else 'nt_ids']
        for tok in (load_tokenizer(old), AutoTokenizer.from_pretrained(old)):
            assert type(tok).__name__ == ('KmerTokenizer' if name == 'kmer' else 'NucleotideTokenizer')
            assert [tok(s)['input_ids'] for s in exp['seqs']] == want
        if name == 'electra': assert isinstance(load_electra(old)[1], NucleotideTokenizer)
        else: assert load_checkpoint(old)[1].k == (6 if name == 'kmer' else 1)
        assert AutoModelForSequenceClassification.from_pretrained(old, num_labels=2).num_labels == 2
