#!/usr/bin/env python3
"""Which gender a voice's spectral envelope sounds like, per espeak-ng variant, in a varied corpus.

For each clean single-voice clip of a split (no noise, band limit, telephone, reverb or clipping), the
long-term average spectrum of its loud frames in 20 log-spaced bands from 200 Hz to 7 kHz (dB, mean
removed), and whether it lies nearer the mean of the women's or the men's clips rendered from their own
gender's variants (grandma left out of the women's mean). Pitch plays almost no part in it, so a voice
whose label says one gender and whose envelope sits nearer the other can only be told by its pitch.
Run with Debian's python3 (numpy): /usr/bin/python3 tools/voice-envelope.py CORPUS [SPLIT]
(make-corpus --variety 1 --seed 0 --size 4000, test split: the unseen voices of the README's figures)."""
import collections, json, sys, wave
import numpy as np

NOT_CLEAN = ('noise', 'telephone', 'lowpass', 'reverb', 'clip')
EDGES = np.geomspace(200, 7000, 21)


def envelope(path):
    w = wave.open(path)
    x = np.frombuffer(w.readframes(w.getnframes()), dtype='<i2').astype(np.float32) / 32768
    n, hop = 1024, 256
    frames = np.stack([x[i:i + n] * np.hanning(n) for i in range(0, len(x) - n, hop)])
    energy = (frames ** 2).sum(1)
    power = (np.abs(np.fft.rfft(frames[energy > 0.1 * energy.max()], axis=1)) ** 2).mean(0)
    f = np.fft.rfftfreq(n, 1 / w.getframerate())
    bands = np.array([power[(f >= lo) & (f < hi)].mean() for lo, hi in zip(EDGES[:-1], EDGES[1:])])
    db = 10 * np.log10(bands + 1e-12)
    return db - db.mean()


def main():
    if len(sys.argv) < 2:
        sys.exit('usage: tools/voice-envelope.py CORPUS [SPLIT]')
    corpus, split = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else 'test'
    # the variants of female voices, as the corpus lists its voices by their own gender
    with open(f'{corpus}/corpus.json') as fh:
        voices = json.load(fh)['voices']
    female_variants = {v.split('+')[-1] for s in voices.values() for v in s['female']}
    groups = collections.defaultdict(list)
    with open(f'{corpus}/manifest.jsonl') as fh:
        for line in fh:
            m = json.loads(line)
            if m['split'] != split or m['labels'] not in (['female speech'], ['male speech']):
                continue
            if any(t.startswith(NOT_CLEAN) for t in m['augment']):
                continue
            variant = m['voice'].split('+')[-1]
            across = (variant in female_variants) != (m['gender'] == 'female')
            groups[(m['gender'], 'warped across' if across else 'own variants')].append((variant, envelope(f"{corpus}/{m['file']}")))
    women = np.mean([e for v, e in groups[('female', 'own variants')] if v != 'grandma'], 0)
    men = np.mean([e for _, e in groups[('male', 'own variants')]], 0)
    for (gender, kind), clips in sorted(groups.items()):
        per = collections.defaultdict(list)
        for v, e in clips:
            per[v].append(np.linalg.norm(e - women) < np.linalg.norm(e - men))
        print(f'{gender}, {kind} ({len(clips)} clips), nearer the women\'s mean:', ' '.join(f'{v} {sum(c)}/{len(c)}' for v, c in sorted(per.items())))


if __name__ == '__main__':
    main()
