// The report's players for compressed clips: FLAC, Ogg Vorbis, Ogg Opus and MP3 clips are decoded
// and embedded as 16-bit WAV data: URIs (writeReportAsync), byte for byte what a WAV clip of the
// same samples gets; writeReport alone lists them as pending; a clip that fails to decode says why
// in place of its player.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readAudio } from '../src/audio/decode.js';
import { encodeWav } from '../src/audio/wav.js';
import type { FeaturesFile } from '../src/ard/rank.js';
import { writeReport, writeReportAsync } from '../src/ard/report.js';
import type { CaptureManifest } from '../src/ard/run.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures', 'audio');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ardgpu-report-audio-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FILES = ['chirp-mono-8000.wav', 'chirp-mono-22050.flac', 'chirp-stereo-44100.ogg', 'chirp-stereo-48000.opus', 'chirp-mono-44100.mp3', 'broken.flac'];

function run(dir: string): void {
  fs.mkdirSync(path.join(dir, 'capture'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'clips'));
  const clips: CaptureManifest['clips'] = FILES.map((f, i) => {
    const to = path.join(dir, 'clips', f);
    if (f === 'broken.flac') fs.writeFileSync(to, fs.readFileSync(path.join(FIXTURES, 'chirp-mono-22050.flac')).subarray(0, 300));
    else fs.copyFileSync(path.join(FIXTURES, f), to);
    return { id: f, file: `clips/${f}`, labels: ['chirp'], split: 'test', caption: 'a chirp', duration: 1, rowStart: i * 25, rowCount: 25, frameSeconds: 0.04 };
  });
  const manifest: CaptureManifest = { model: 'tiny', layers: [1], d: 8, dtype: 'f32', positions: 'audio', clips, shards: {}, corpus: dir };
  fs.writeFileSync(path.join(dir, 'capture', 'manifest.json'), JSON.stringify(manifest));
  const feats: FeaturesFile = {
    layer: 1, p: 6, C: 1, method: 'synthetic', nClips: FILES.length, m: 16, excluded: {},
    features: [{
      id: 3, name: 'chirp', support: 1, captions: [],
      scores: { mono: 0.5, coherence: 0.5, separation: 0.5, within: 0.5, cross: 0, hMean: 1, lMean: 0, firingClips: 6, firingShare: 1, maxMean: 1 },
      H: FILES.map((f, i) => ({ clip: i, id: f, score: 1 - i / 10, mean: 1, coverage: 1 })),
      L: [],
    }],
  } as unknown as FeaturesFile;
  fs.writeFileSync(path.join(dir, 'features-1.json'), JSON.stringify(feats));
}

/** The page's embedded audio: clip index → data: URI. */
function embedded(html: string): Record<string, string> {
  return JSON.parse(html.match(/<script type="application\/json" id="audio-data">(.*?)<\/script>/s)![1]!);
}

describe('report players for compressed clips', () => {
  it('embeds FLAC, Ogg Vorbis, Ogg Opus and MP3 clips as WAV: their decoded first seconds, as a WAV clip would be', async () => {
    const dir = path.join(tmp, 'run');
    run(dir);
    // synchronous: only the WAV clip plays; the compressed ones wait for the decoders
    const sync = writeReport(dir, { hClips: 6 });
    expect(sync.audioClips).toBe(1);
    expect(sync.audioPending.map((f) => path.basename(f)).sort()).toEqual(FILES.filter((f) => !f.endsWith('.wav')).sort());
    expect(fs.readFileSync(sync.file, 'utf8')).toContain('flac clip: embedded by writeReportAsync');

    const res = await writeReportAsync(dir, { hClips: 6 });
    expect(res.audioClips).toBe(5);
    expect(res.audioPending).toEqual([]);
    const html = fs.readFileSync(res.file, 'utf8');
    const uris = embedded(html);
    expect(Object.keys(uris).sort()).toEqual(['0', '1', '2', '3', '4']);
    for (let i = 0; i < 5; i++) {
      expect(html).toContain(`<audio controls preload="metadata" data-clip="${i}"></audio>`);
      expect(uris[i]).toMatch(/^data:audio\/wav;base64,/);
      const samples = (await readAudio(path.join(dir, 'clips', FILES[i]!))).samples;
      const want = encodeWav(samples.subarray(0, Math.min(samples.length, 4 * 16000)), 16000);
      const got = Buffer.from(uris[i]!.slice('data:audio/wav;base64,'.length), 'base64');
      expect(got.length).toBe(want.length);
      expect(got.equals(Buffer.from(want))).toBe(true);
    }
    // the broken clip: no player, the decoder's one-line reason naming the file
    expect(html).toMatch(/<div class="noaudio">[^<]*broken\.flac[^<]*<\/div>/);
    expect(html).not.toContain('embedded by writeReportAsync');
  });
});
