// The varied corpus version 4: chord, bell, tone and buzz layers rendered from recordings (a General
// MIDI SoundFont played by FluidSynth, a desktop theme's sounds). Plan checks need no audio; the
// renders need fluidsynth, timgm6mb-soundfont and deepin-sound-theme, which CI installs
// (tools/setup.sh --with-test-tools): there a missing one fails instead of skipping.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { runCli, strongestHz } from './helpers.js';
import { renderClip } from '../src/corpus/make-corpus.js';
import { planCorpus, RECORDED_SHARE, VARIETY_VERSIONS } from '../src/corpus/plan.js';
import { DESKTOP_SOUNDS, FLUIDSYNTH_BIN, hasRecorded, midiFile, RECORDED_CONCEPTS, renderRecorded, SOUNDFONT } from '../src/corpus/recorded.js';
import { Rng } from '../src/corpus/rng.js';

function installed(): boolean {
  try {
    execFileSync(FLUIDSYNTH_BIN, ['--version'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  return fs.existsSync(SOUNDFONT) && fs.existsSync(DESKTOP_SOUNDS);
}
const HAVE = installed();
const RUN = HAVE || !!process.env.CI;

describe('varied corpus version 4 plan', () => {
  const plan3 = planCorpus(0, 2000, { variety: 3 });
  const plan4 = planCorpus(0, 2000, { variety: 4 });

  it('renders a share of chord, bell, tone and buzz layers from recordings; every other draw is version 3\'s', () => {
    const layers = plan4.clips.flatMap((c) => c.layers);
    const eligible = layers.filter((l) => hasRecorded(l.concept));
    const recorded = layers.filter((l) => l.style === 'recorded');
    expect(eligible.length).toBeGreaterThan(200);
    for (const l of recorded) expect(hasRecorded(l.concept), l.concept).toBe(true);
    expect(recorded.length / eligible.length).toBeGreaterThan(RECORDED_SHARE - 0.08);
    expect(recorded.length / eligible.length).toBeLessThan(RECORDED_SHARE + 0.08);
    let same = 0;
    for (const c of plan4.clips) {
      const c3 = plan3.clips[c.index]!;
      expect(c.labels).toEqual(c3.labels);
      expect(c.speech).toEqual(c3.speech);
      expect(c.augment).toEqual(c3.augment);
      expect(c.layers.map((l, j) => (l.style === 'recorded' ? { ...l, style: c3.layers[j]!.style } : l))).toEqual(c3.layers);
      if (c.layers.some((l) => l.style === 'recorded')) expect(c.file).not.toBe(c3.file);
      else {
        expect(c.file).toBe(c3.file);
        same++;
      }
    }
    expect(same).toBeGreaterThan(1500);
    for (const v of [undefined, 1, 2, 3] as const) {
      expect(planCorpus(0, 2000, { variety: v }).clips.some((c) => c.layers.some((l) => l.style === 'recorded'))).toBe(false);
    }
  });
});

describe('midiFile', () => {
  // an independent reader: header fields, then (delta, status, data) events with running time
  function readMidi(b: Uint8Array) {
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const text = (at: number) => String.fromCharCode(...b.subarray(at, at + 4));
    expect(text(0)).toBe('MThd');
    const header = { length: dv.getUint32(4), format: dv.getUint16(8), tracks: dv.getUint16(10), division: dv.getUint16(12) };
    expect(text(14)).toBe('MTrk');
    const end = 22 + dv.getUint32(18);
    expect(end).toBe(b.length);
    const events: { tick: number; bytes: number[] }[] = [];
    let at = 22, tick = 0;
    while (at < end) {
      let d = 0;
      for (;;) {
        const v = b[at++]!;
        d = (d << 7) | (v & 0x7f);
        if (!(v & 0x80)) break;
      }
      tick += d;
      const s = b[at]!;
      const n = s === 0xff ? 3 + b[at + 2]! : (s & 0xf0) === 0xc0 ? 2 : 3;
      events.push({ tick, bytes: [...b.subarray(at, at + n)] });
      at += n;
    }
    return { header, events };
  }

  it('writes a format-0 file at 960 ticks per second: programs, then notes with a note-off before a note-on at the same time', () => {
    const f = midiFile(new Map([[0, 12], [2, 81]]), [
      { t: 0.5, dur: 0.25, key: 60, vel: 100, channel: 0 },
      { t: 0.75, dur: 10, key: 64.4, vel: 200, channel: 2 },
      { t: 0, dur: 0.0001, key: 130, vel: 0, channel: 0 },
    ]);
    const { header, events } = readMidi(f);
    expect(header).toEqual({ length: 6, format: 0, tracks: 1, division: 480 });
    expect(events).toEqual([
      { tick: 0, bytes: [0xff, 0x51, 0x03, 0x07, 0xa1, 0x20] }, // 500,000 µs a quarter: 480 ticks = 0.5 s
      { tick: 0, bytes: [0xc0, 12] },
      { tick: 0, bytes: [0xc2, 81] },
      { tick: 0, bytes: [0x90, 127, 1] }, // key and velocity clamped to MIDI's range
      { tick: 1, bytes: [0x80, 127, 0] }, // a note lasts at least a tick
      { tick: 480, bytes: [0x90, 60, 100] },
      { tick: 720, bytes: [0x80, 60, 0] },
      { tick: 720, bytes: [0x92, 64, 127] },
      { tick: 10320, bytes: [0x82, 64, 0] }, // a two-byte delta (9,600 ticks)
      { tick: 10320, bytes: [0xff, 0x2f, 0x00] },
    ]);
  });
});

describe.runIf(RUN)('recorded renderings (fluidsynth, timgm6mb-soundfont, deepin-sound-theme)', () => {
  it.runIf(!HAVE && !!process.env.CI)('are installed (CI)', () => {
    expect(HAVE, `install them: apt-get install fluidsynth timgm6mb-soundfont deepin-sound-theme`).toBe(true);
  });

  // strongest spectral peak (Hz) of a stretch on a log grid from 60 Hz to 7 kHz
  const grid = Array.from({ length: 479 }, (_, k) => 60 * Math.pow(1.01, k));
  const peakHz = (x: Float32Array, from: number, len: number) => strongestHz(x, from, len, grid);

  it('gives each concept at its exact length, finite, at the generators\' peak, the same for the same seed and not for another', async () => {
    for (const concept of RECORDED_CONCEPTS) {
      for (const [seed, seconds] of [[1, 0.25], [3, 2.5]] as const) {
        const y = await renderRecorded(concept, new Rng(seed), seconds);
        expect(y.length, concept).toBe(Math.round(seconds * 16000));
        expect(y.every((v) => Number.isFinite(v)), concept).toBe(true);
        const pk = y.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        expect(pk, `${concept} ${seconds} s`).toBeGreaterThan(0.6); // peak 0.8, less where the edge fades cut it
        expect(pk).toBeLessThanOrEqual(0.8 + 1e-6);
        expect(await renderRecorded(concept, new Rng(seed), seconds)).toEqual(y);
        if (seed === 3) expect(await renderRecorded(concept, new Rng(seed + 100), seconds)).not.toEqual(y);
      }
    }
  }, 120_000);

  it('plays tones in their register: the strongest partial of a high tone lies far above any low tone\'s', async () => {
    const strongest = async (concept: 'low tone' | 'high tone', seed: number) => peakHz(await renderRecorded(concept, new Rng(seed), 1), 3200, 3200);
    for (let seed = 0; seed < 4; seed++) {
      const high = await strongest('high tone', seed);
      expect(high, `high tone seed ${seed}`).toBeGreaterThan(1400);
      const low = await strongest('low tone', seed);
      expect(low, `low tone seed ${seed}`).toBeLessThan(1400);
    }
  }, 60_000);

  it('renders a planned version-4 clip with recorded layers to a valid clip', async () => {
    const plan = planCorpus(0, 400, { variety: 4 });
    const clips = plan.clips.filter((c) => !c.speech && c.layers.some((l) => l.style === 'recorded')).slice(0, 3);
    expect(clips.length).toBe(3);
    for (const c of clips) {
      const x = await renderClip(c);
      expect(x.length).toBeGreaterThanOrEqual(Math.round(c.duration! * 16000));
      expect(x.every((v) => Number.isFinite(v) && Math.abs(v) <= 0.95)).toBe(true);
      expect(x.some((v) => Math.abs(v) > 0.05)).toBe(true);
      expect(await renderClip(c)).toEqual(x);
    }
  }, 60_000);
});

describe('make-corpus --variety 4', () => {
  it('refuses a version it does not have in one line, exit 2', () => {
    const next = String(Math.max(...VARIETY_VERSIONS) + 1); // the first version that does not exist
    const r = runCli(['make-corpus', '--variety', next, '--out', path.join(os.tmpdir(), `ardgpu-variety-${next}`)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toEqual([`error: --variety: '${next}' is not a version (${VARIETY_VERSIONS.join(', ')})`]);
    expect(VARIETY_VERSIONS).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it.each([
    ['ARDGPU_SOUNDFONT', '/nonexistent/GM.sf2', 'SoundFont not found'],
    ['ARDGPU_FLUIDSYNTH', '/nonexistent/fluidsynth', 'not found or not working'],
  ])('stops in one line naming what is missing (%s), before writing anything', (name, value, problem) => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-v4-'));
    const before = process.env[name];
    process.env[name] = value;
    try {
      const r = runCli(['make-corpus', '--variety', '4', '--size', '30', '--out', out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toEqual([`error: ${value}: ${problem} (make-corpus --variety 4 needs: apt-get install fluidsynth timgm6mb-soundfont deepin-sound-theme)`]);
      expect(fs.readdirSync(out)).toEqual([]);
    } finally {
      if (before === undefined) delete process.env[name];
      else process.env[name] = before;
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
