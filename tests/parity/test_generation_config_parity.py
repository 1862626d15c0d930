"""GenerationConfig against transformers' ``generate``: every option, on random models and settings.

Each case builds a random tiny T5 with transformers' own initializer (sizes, activation and tying
drawn from the case's seed), sharpens it (varied tokens instead of one repeated), and raises the
</s> row of its lm_head until the batch mixes rows that end early with rows cut at the limit.
The weights go through a folder into minillm, and both libraries decode a padded batch with the
same GenerationConfig: greedy or beam search, num_return_sequences, length_penalty,
early_stopping True / False / "never", output_scores with return_dict_in_generate.

Compared: the tokens (up to and including each row's first </s>: the one documented difference is
the fill after it, counted and reported below), sequences_scores, and greedy's per-step scores.
"""
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need PyTorch as the oracle's backend")
transformers = pytest.importorskip("transformers", reason="parity tests need Hugging Face transformers")

from minillm.generation import generate  # noqa: E402
from minillm.generation_config import GenerationConfig  # noqa: E402
from minillm.models import T5ForConditionalGeneration  # noqa: E402

EOS, PAD = 1, 0
NUM_CASES = 24


def random_case(seed):
    """A model shape and a GenerationConfig drawn from ``seed`` (every option varies across cases)."""
    rng = np.random.default_rng(seed)
    heads = int(rng.choice([2, 4]))
    shape = dict(vocab_size=int(rng.choice([40, 64])), d_model=8 * heads, d_kv=8, d_ff=int(rng.choice([32, 64])),
                 num_layers=int(rng.integers(1, 3)), num_heads=heads, dropout_rate=0.0,
                 feed_forward_proj=str(rng.choice(["relu", "gated-gelu"])), tie_word_embeddings=bool(seed % 2))
    beams = int(rng.choice([1, 2, 3, 4]))
    config = GenerationConfig(
        max_new_tokens=int(rng.integers(4, 12)), num_beams=beams,
        num_return_sequences=int(rng.integers(1, beams + 1)) if beams > 1 else 1,
        length_penalty=float(rng.choice([-0.5, 0.0, 0.5, 1.0, 2.0])),
        early_stopping=[True, False, "never"][seed % 3], output_scores=True, return_dict_in_generate=True)
    return shape, config


def padded_batch(vocab, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(5, 9))
    ids[:, -1] = EOS
    ids[1, 5:] = [EOS, PAD, PAD, PAD]
    ids[3, 3:] = [EOS, PAD, PAD, PAD, PAD, PAD]
    return ids, (ids != PAD).astype(np.int64)


def build_pair(shape, seed, directory):
    """transformers' random T5 (sharpened, </s> made reachable) and the same weights in minillm."""
    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
        **shape, decoder_start_token_id=0, eos_token_id=EOS, pad_token_id=PAD)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi.weight", "wo.weight",
                              "wi_0.weight", "wi_1.weight")):
                p.mul_(3.0)
    ids, mask = padded_batch(shape["vocab_size"], seed)
    eos_row = hf.lm_head.weight[EOS].detach().clone()
    for scale in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0):
        with torch.no_grad():
            hf.lm_head.weight[EOS] = eos_row * scale
        greedy = hf_generate(hf, ids, mask, GenerationConfig(max_new_tokens=12)).sequences.numpy()
        ended = [bool((row[1:] == EOS).any()) for row in greedy]
        if any(ended) and not all(ended):
            break
    hf.save_pretrained(directory)
    return hf, T5ForConditionalGeneration.from_pretrained(directory), ids, mask


def hf_generate(hf, ids, mask, config):
    options = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    options.update(top_k=None, return_dict_in_generate=True, output_scores=True)  # top_k: sampling only
    with torch.no_grad():
        return hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **options)


def up_to_eos(tokens):
    """Each row up to and including its first generated </s> (the whole row when it has none)."""
    rows = []
    for row in tokens.tolist():
        end = row.index(EOS, 1) + 1 if EOS in row[1:] else len(row)
        rows.append(row[:end])
    return rows


def test_random_configs_decode_as_transformers_does(tmp_path):
    counts = dict(cases=0, rows=0, rows_ended_early=0, rows_cut=0, fill_differs=0)
    for seed in range(NUM_CASES):
        shape, config = random_case(seed)
        hf, model, ids, mask = build_pair(shape, seed, tmp_path / str(seed))
        ours = generate(model, ids, mask, config)
        theirs = hf_generate(hf, ids, mask, config)
        their_tokens = theirs.sequences.numpy()
        where = f"case {seed}: {config}"
        assert ours.sequences.shape == their_tokens.shape, where
        assert up_to_eos(ours.sequences) == up_to_eos(their_tokens), where
        if config.num_beams > 1:
            np.testing.assert_allclose(ours.sequences_scores, theirs.sequences_scores.numpy(), rtol=1e-4,
                                       atol=1e-5, err_msg=where)
        else:
            np.testing.assert_allclose(np.stack(ours.scores), np.stack([s.numpy() for s in theirs.scores]),
                                       rtol=1e-4, atol=1e-4, err_msg=where)
        ended = [EOS in row[1:] for row in ours.sequences.tolist()]
        counts["cases"] += 1
        counts["rows"] += len(ended)
        counts["rows_ended_early"] += sum(ended)
        counts["rows_cut"] += len(ended) - sum(ended)
        counts["fill_differs"] += int((ours.sequences != their_tokens).any(axis=1).sum())
    print("GenerationConfig parity:", counts)
    assert counts["rows_ended_early"] > 0 and counts["rows_cut"] > 0  # </s> was reachable mid-sequence


@pytest.mark.parametrize("early_stopping", [True, False, "never"])
def test_early_stopping_values_decode_as_transformers_does(tmp_path, early_stopping):
    """A positive length penalty is where "never" differs from False: it looks to the length limit.

    Seed 125 is a model on which transformers' "never" and False give different hypotheses
    (found by a search over seeds 100-129; the assertion below keeps the choice honest)."""
    shape = dict(vocab_size=48, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
                 feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    hf, model, ids, mask = build_pair(shape, 125, tmp_path)
    config = GenerationConfig(max_new_tokens=10, num_beams=4, num_return_sequences=4, length_penalty=2.0,
                              early_stopping=early_stopping, output_scores=True, return_dict_in_generate=True)
    ours, theirs = generate(model, ids, mask, config), hf_generate(hf, ids, mask, config)
    assert up_to_eos(ours.sequences) == up_to_eos(theirs.sequences.numpy())
    np.testing.assert_allclose(ours.sequences_scores, theirs.sequences_scores.numpy(), rtol=1e-4, atol=1e-5)
    other = "never" if early_stopping is False else False
    assert up_to_eos(theirs.sequences.numpy()) != up_to_eos(
        hf_generate(hf, ids, mask, config.update(early_stopping=other)).sequences.numpy())


def test_generation_config_files_are_read_both_ways(tmp_path):
    """minillm reads transformers' generation_config.json, and transformers reads minillm's."""
    theirs = transformers.GenerationConfig(num_beams=3, length_penalty=0.6, early_stopping="never",
                                           max_new_tokens=17, decoder_start_token_id=0, eos_token_id=1,
                                           pad_token_id=0, no_repeat_ngram_size=0)
    theirs.save_pretrained(tmp_path / "hf")
    ours = GenerationConfig.from_pretrained(tmp_path / "hf")
    assert (ours.num_beams, ours.length_penalty, ours.early_stopping, ours.max_new_tokens) == (3, 0.6, "never", 17)
    ours.update(num_return_sequences=2, top_p=0.9).save_pretrained(tmp_path / "ours")
    back = transformers.GenerationConfig.from_pretrained(tmp_path / "ours")
    assert (back.num_beams, back.length_penalty, back.early_stopping, back.max_new_tokens,
            back.num_return_sequences, back.top_p, back.eos_token_id) == (3, 0.6, "never", 17, 2, 0.9, 1)
